"""The LLM, always through the OpenAI chat protocol.

`LLM` is the small interface the answering code needs: stream a chat completion, and
the probability that the model's next word is "Yes" (the support check). `OpenAILLM`
implements it with the `openai` client against any OpenAI-compatible server.

`EmbeddedServer` runs the bundled GGUF in the real llama.cpp HTTP server (`xllamacpp`)
inside this process, on loopback, a free port and a random API key; `default_llm`
starts it once per process and stops it at exit, and returns an `EmbeddedLLM`: an
`OpenAILLM` that restarts the server if it finds it dead, or stuck (silent for
`RAG_LLM_TIMEOUT`, and its main loop does not answer a probe within as long again), at most
once per request and MAX_RESTARTS times in RESTART_WINDOW. A user who sets
`RAG_LLM_BASE_URL` gets a plain `OpenAILLM` against their server.

Faults (see `OpenAILLM`): a short connect timeout, `RAG_LLM_TIMEOUT` as the longest silence
(before the reply or between two streamed pieces), `RAG_LLM_RETRIES` retries with exponential
backoff or the server's Retry-After, `RAG_LLM_DEADLINE` as the longest any one request may take
in all, and always an LLMError that names the URL and the setting.

Requests send `cache_prompt: true`: llama.cpp keeps the KV cache of the last prompt and
reuses its longest common prefix, so a fixed system prefix (instructions + sources) is
read once and each later question pays only for its own tokens. The embedded server has
`RAG_LLM_SLOTS` slots, each with its own KV cache in one shared pool; a request names its
slot (`id_slot`). Slot 0 takes every request but the small-set answers with a quoted key
passage and the checks of sentences citing it: slot k keeps the prefix followed by passage
k's block, so a question whose key passage is k, and a check quoting passage k, pay only
for their own words. `hold` puts a prompt into a slot: the embedded
server saves each state it reads to a file named by the prompt's hash (llama.cpp's slot
save / restore, ~25 MB and ~10 ms for the seed prefix, against ~25 s to read it), so a slot
starts from a copy of the shared prefix, and a restarted app restores its slots instead of
reading them again.
"""

from __future__ import annotations

import atexit
import email.utils
import hashlib
import json
import logging
import math
import random
import secrets
import shutil
import socket
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.deadline import DEADLINE, DeadlinePassed, within
from rag.errors import LLMError

log = logging.getLogger(__name__)

Message = dict[str, str]


@dataclass
class Completion:
    """Filled in while streaming: usage arrives with the last chunk."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class LLM(ABC):
    name: str = "llm"
    base_url: str = ""
    slots: int = 1  # KV-cache slots a request may name (see the module docstring); 1 = no choice

    @abstractmethod
    def stream(self, messages: list[Message], max_tokens: int, result: Completion, slot: int = 0) -> Iterator[str]:
        """Yield text pieces of the reply; fill `result` (text, token counts) as it goes. `slot`
        (0 to `slots` - 1) is the KV cache to use, where the server has several."""

    @abstractmethod
    def yes_probability(self, messages: list[Message], slot: int = 0) -> float:
        """P(the reply starts with "Yes") among Yes/No, in [0, 1]; `slot` as in `stream`."""

    def complete(self, messages: list[Message], max_tokens: int, slot: int = 0) -> Completion:
        result = Completion()
        for _ in self.stream(messages, max_tokens, result, slot):
            pass
        return result

    def hold(self, messages: list[Message], slot: int = 0, after: list[Message] | None = None) -> None:
        """Make `slot` hold the prompt of `messages` in its KV cache, reading it now. `after`: a prompt
        `messages` extends, whose state a server that keeps states may start from."""
        self.complete(messages, 1, slot)

    def cut(self) -> None:
        """Note that the caller stopped reading a reply before its end (see `settle`)."""
        return None

    def settle(self) -> None:
        """Return once the server has stopped writing the replies cut short, before this process
        uses the cores itself. A remote server's work does not slow this process: nothing to wait for."""
        return None


# -- faults: timeouts, retries, backoff --------------------------------------------------------

CONNECT_TIMEOUT = 5.0  # seconds to open a connection (capped by the request timeout)
RETRY_BASE_DELAY = 0.5  # first backoff; doubled at each retry
RETRY_MAX_DELAY = 8.0  # longest backoff between two attempts
MAX_RETRY_AFTER = 30.0  # longest Retry-After honoured; a server asking for more fails at once
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx


def backoff(retry: int) -> float:
    """Seconds before retry number `retry` (0-based): 0.5, 1, 2, 4, 8, 8... minus up to 25 % jitter."""
    return min(RETRY_BASE_DELAY * 2.0**retry, RETRY_MAX_DELAY) * (1 - 0.25 * random.random())


def worst_case_seconds(timeout: float, retries: int) -> float:
    """The longest a request to a server that never answers takes before LLMError:
    every attempt waits the whole timeout, with the (unjittered) backoff in between.
    A 429/503 with Retry-After adds at most MAX_RETRY_AFTER per retry instead of the backoff."""
    return (retries + 1) * timeout + sum(min(RETRY_BASE_DELAY * 2.0**i, RETRY_MAX_DELAY) for i in range(retries))


def retry_after(exc: Exception) -> float | None:
    """Seconds the server asked to wait (Retry-After-Ms, Retry-After in seconds or as a date), or None."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


@dataclass
class _Attempt:
    """Where one request stands: retries used, whether the server was already restarted for it,
    and the monotonic time by which it must be over."""

    ends: float
    retries: int = 0
    recovered: bool = False


def _count_from_timings(result: Completion, timings: dict[str, Any]) -> None:
    """Token counts from llama.cpp's per-piece `timings` (sent with `timings_per_token`): the
    prompt's cached and newly read tokens, and the tokens written so far."""
    try:
        cached, read, written = (int(timings.get(k) or 0) for k in ("cache_n", "prompt_n", "predicted_n"))
    except (TypeError, ValueError):
        return
    result.prompt_tokens, result.cached_tokens, result.completion_tokens = cached + read, cached, written


class OpenAILLM(LLM):
    """Any OpenAI-compatible chat server through the official `openai` client.

    Faults are handled here rather than by the client (its retries are off), so the worst case
    is known (`worst_case_seconds`) and each retry is logged:
    - the connection must open within CONNECT_TIMEOUT (or `timeout` if shorter); after that the
      server may stay silent at most `timeout` seconds between two reads, so a stream that
      stalls midway fails after `timeout` seconds of silence, however long the answer;
    - connection errors, timeouts, 408/409/429 and 5xx are retried `retries` times with
      exponential backoff; a Retry-After header (up to `max_retry_after` seconds) replaces the
      backoff, a longer one fails at once;
    - a stream is retried only while nothing has been shown: once a word is out, a failure is
      an LLMError (repeating the answer would duplicate it);
    - other errors (bad key, unknown model, 4xx) are not retried;
    - a request, retries and waits included, ends within `deadline` seconds, however the server
      trickles its bytes (it is read in a worker thread: `rag.deadline.within`); no retry starts
      that could only end past it.
    Every failure reaches the caller as an LLMError naming the URL and the setting to check.
    """

    connect_hint = "is the server running and RAG_LLM_BASE_URL right?"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        timeout: float = 120.0,
        retries: int = 2,
        max_retry_after: float = MAX_RETRY_AFTER,
        connect_timeout: float = CONNECT_TIMEOUT,
        deadline: float = DEADLINE,
    ):
        self.name = model
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self.max_retry_after = max_retry_after
        self.connect_timeout = min(connect_timeout, timeout)
        self._client: Any = None
        self._logprobs_ok = True
        self._connect(base_url, api_key)

    def _connect(self, base_url: str, api_key: str) -> None:
        """(Re)build the client for this server; the previous client, if any, is closed."""
        from openai import OpenAI, Timeout

        old = self._client
        self.base_url = base_url
        self._client = OpenAI(
            base_url=base_url,
            api_key=api_key or "none",
            timeout=Timeout(self.timeout, connect=self.connect_timeout),
            max_retries=0,
        )
        if old is not None:
            old.close()

    # -- the two requests ----------------------------------------------------------------------

    def _extra(self, slot: int = 0) -> dict[str, Any]:
        """llama.cpp's request fields: keep the prompt's KV cache, in `slot` where there are slots
        (only the embedded server: another server may refuse a field it does not know)."""
        if self.slots > 1:  # and with each streamed piece, the token counts so far (see `stream`)
            return {"cache_prompt": True, "id_slot": slot, "timings_per_token": True}
        return {"cache_prompt": True}

    def stream(self, messages: list[Message], max_tokens: int, result: Completion, slot: int = 0) -> Iterator[str]:
        import openai

        def chunks() -> Iterator[Any]:
            response = self._client.chat.completions.create(
                model=self.name,
                messages=messages,
                max_tokens=max_tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
                extra_body=self._extra(slot),
            )
            with response:  # closes the connection once the caller stops reading
                yield from response

        attempt = _Attempt(time.monotonic() + self.deadline)
        while True:
            shown = False
            try:
                for chunk in within(attempt.ends, chunks):
                    if chunk.usage:
                        result.prompt_tokens = chunk.usage.prompt_tokens
                        result.completion_tokens = chunk.usage.completion_tokens
                        details = getattr(chunk.usage, "prompt_tokens_details", None)
                        result.cached_tokens = int(getattr(details, "cached_tokens", 0) or 0)
                    elif timings := (getattr(chunk, "model_extra", None) or {}).get("timings"):
                        _count_from_timings(result, timings)  # usage comes last: a reply cut short has none
                    if chunk.choices and chunk.choices[0].delta.content:
                        piece = chunk.choices[0].delta.content
                        result.text += piece
                        shown = True
                        yield piece
                return
            except DeadlinePassed:
                raise LLMError(f"The LLM server at {self.base_url} {self._too_long(shown)}") from None
            except openai.APIError as exc:
                if shown:
                    raise LLMError(
                        f"The LLM server at {self.base_url} stopped in the middle of the answer: {self._why(exc)}"
                    ) from exc
                self._retry_or_raise(exc, attempt)

    def yes_probability(self, messages: list[Message], slot: int = 0) -> float:
        if self._logprobs_ok:
            try:
                return self._yes_from_logprobs(messages, slot)
            except LLMError:
                raise
            except Exception as exc:  # server without logprobs support: fall back to text
                log.info("logprobs unavailable (%s); using the Yes/No text instead", exc)
                self._logprobs_ok = False
        reply = self.complete(messages, max_tokens=2, slot=slot).text.strip().lower()
        return 1.0 if reply.startswith(("yes", "oui", "ja", "sí", "si")) else 0.0

    def _yes_from_logprobs(self, messages: list[Message], slot: int = 0) -> float:
        import openai

        def reply() -> Iterator[Any]:
            yield self._client.chat.completions.create(
                model=self.name,
                messages=messages,
                max_tokens=1,
                temperature=0,
                logprobs=True,
                top_logprobs=10,
                extra_body=self._extra(slot),
            )

        attempt = _Attempt(time.monotonic() + self.deadline)
        while True:
            try:
                (response,) = within(attempt.ends, reply)
                break
            except DeadlinePassed:
                raise LLMError(f"The LLM server at {self.base_url} {self._too_long(False)}") from None
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                raise  # the server refuses logprobs: the caller falls back to the text
            except openai.APIError as exc:
                self._retry_or_raise(exc, attempt)
        content = response.choices[0].logprobs.content if response.choices[0].logprobs else None
        if not content:
            raise ValueError("no logprobs in response")
        yes = no = 0.0
        for cand in content[0].top_logprobs:
            word = cand.token.strip().lower()
            if word in ("yes", "oui"):
                yes += math.exp(cand.logprob)
            elif word in ("no", "non"):
                no += math.exp(cand.logprob)
        return yes / (yes + no) if yes + no > 0 else 0.0

    # -- failures ------------------------------------------------------------------------------

    def _retry_or_raise(self, exc: Exception, attempt: _Attempt) -> None:
        """After a failed attempt: return to try again (after restarting or waiting), or raise LLMError."""
        if not attempt.recovered and self._recover(exc, attempt.ends):
            attempt.recovered = True  # at most one restart per request, and it does not use a retry
            return
        delay = self._retry_delay(exc, attempt.retries)
        if delay is not None and time.monotonic() + delay >= attempt.ends:
            log.warning("LLM server at %s: %s; no time left for a retry", self.base_url, self._why(exc))
            raise LLMError(f"The LLM server at {self.base_url} {self._too_long(False)}") from exc
        if delay is None:
            tries = f" (after {attempt.retries + 1} attempts)" if attempt.retries else ""
            raise LLMError(f"The LLM server at {self.base_url} failed{tries}: {self._why(exc)}") from exc
        attempt.retries += 1
        log.warning(
            "LLM server at %s: %s; retry %d of %d in %.1f s",
            self.base_url,
            self._why(exc),
            attempt.retries,
            self.retries,
            delay,
        )
        time.sleep(delay)

    def _retry_delay(self, exc: Exception, retries_done: int) -> float | None:
        """Seconds to wait before the next attempt, or None if this failure is final."""
        import openai

        if retries_done >= self.retries:
            return None
        if isinstance(exc, openai.APIConnectionError):  # refused, reset, timed out
            return backoff(retries_done)
        if isinstance(exc, openai.APIStatusError) and (exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500):
            asked = retry_after(exc)
            if asked is None:
                return backoff(retries_done)
            return asked if asked <= self.max_retry_after else None
        return None

    def _recover(self, exc: Exception, ends: float) -> bool:
        """Repair the server after `exc` (by the monotonic time `ends`) and return True to retry at
        once; a remote server cannot be repaired."""
        return False

    def _too_long(self, shown: bool) -> str:
        where = "in the middle of the answer" if shown else "before answering"
        return (
            f"took longer than {self.deadline:g} s (RAG_LLM_DEADLINE) for one reply and was left {where}; "
            "is the server overloaded?"
        )

    def _why(self, exc: Exception) -> str:
        """What went wrong and which setting to check."""
        import openai

        if isinstance(exc, openai.APITimeoutError) and type(exc.__cause__).__name__ == "ConnectTimeout":
            return f"could not connect within {self.connect_timeout:g} s; {self.connect_hint}"
        if isinstance(exc, openai.APITimeoutError):
            return f"no reply within {self.timeout:g} s (RAG_LLM_TIMEOUT); is the server overloaded?"
        if isinstance(exc, openai.APIConnectionError):
            return f"cannot connect; {self.connect_hint}"
        if isinstance(exc, openai.AuthenticationError):
            return "the API key was refused; check RAG_LLM_API_KEY"
        if isinstance(exc, openai.NotFoundError):
            return "not found; check RAG_LLM_MODEL and that the URL ends in /v1"
        if isinstance(exc, openai.APIStatusError):
            asked = retry_after(exc)
            if asked is not None and asked > self.max_retry_after:
                return (
                    f"HTTP {exc.status_code}: the server asks to retry after {asked:g} s, longer than the "
                    f"{self.max_retry_after:g} s this app waits; try again later"
                )
            busy = " (the server is busy; RAG_LLM_RETRIES sets how often to retry)" if exc.status_code == 429 else ""
            return f"HTTP {exc.status_code}{busy}: {exc.message}"
        return f"{type(exc).__name__}: {exc}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedServer:
    """llama.cpp's OpenAI-compatible server inside this process, on loopback only."""

    def __init__(
        self, model_path: Path, n_ctx: int = 16384, threads: int = 2, slots: int = 1, slot_dir: Path | None = None
    ):
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.slots = slots
        self.slot_dir = slot_dir  # where slot states are saved (None: a private temporary folder)
        self.api_key = secrets.token_urlsafe(24)
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def state_name(self, messages: list[Message]) -> str:
        """The file name of the KV state of a prompt: its hash, with the model's."""
        digest = hashlib.sha256(json.dumps([self.model_path.name, messages]).encode()).hexdigest()
        return f"{digest[:32]}.bin"

    def slot_action(self, slot: int, action: str, name: str) -> bool:
        """Save slot `slot`'s KV state to `name` in the slot folder, or restore it from there; False
        if the file is absent or the server refuses."""
        import httpx

        if action == "restore" and not self._state_file(name).is_file():
            return False
        url = f"http://{self.host}:{self.port}/slots/{slot}?action={action}"
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            response = httpx.post(url, json={"filename": name}, headers=headers, timeout=60)
        except httpx.HTTPError as exc:
            log.warning("LLM slot %d %s of %s failed: %s", slot, action, name, exc)
            return False
        if response.status_code != 200:
            log.warning("LLM slot %d %s of %s refused: %s", slot, action, name, response.text[:200])
            return False
        if action == "save":
            self._prune()
        else:
            self._state_file(name).touch()  # recently used: kept by _prune
        return True

    def _state_file(self, name: str) -> Path:
        assert self.slot_dir is not None, "the server has not started"
        return self.slot_dir / name

    def _prune(self) -> None:
        """Keep the 4 x slots most recently used state files (~25-40 MB each)."""
        files = sorted(self._state_file("").glob("*.bin"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in files[4 * self.slots :]:
            old.unlink(missing_ok=True)

    def start(self) -> EmbeddedServer:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_ctx = self.n_ctx
        # several slots, one pool of n_ctx cells they share (each may use all of it); an idle
        # slot keeps its KV cache (llama.cpp would otherwise move it to host memory and clear it)
        params.n_parallel = self.slots
        params.kv_unified = True
        params.cache_idle_slots = False
        if self.slot_dir is None:
            self.slot_dir = Path(tempfile.mkdtemp(prefix="rag-slots-"))
            atexit.register(shutil.rmtree, self.slot_dir, True)
        self.slot_dir.mkdir(parents=True, exist_ok=True)
        params.slot_save_path = f"{self.slot_dir}/"
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.hostnames = [self.host]
        self.port = _free_port()
        params.port = self.port
        params.api_keys = [self.api_key]
        params.warmup = False
        params.verbosity = -1
        started = time.perf_counter()
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            raise LLMError(f"The embedded LLM server failed to start on {self.model_path}: {exc}") from exc
        log.info("embedded LLM server on %s in %.1f s", self.base_url, time.perf_counter() - started)
        return self

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            del server  # the destructor stops llama.cpp's main loop

    def responsive(self, timeout: float) -> bool:
        """Whether llama.cpp's main loop answers within `timeout` seconds. GET /slots is a task that
        loop runs between two batches, so a server busy reading a long prompt answers once its
        current batch is done, and a stuck one never does (/health would not tell them apart: the
        HTTP thread answers it alone)."""
        import httpx

        if not self.alive():
            return False
        url = f"http://{self.host}:{self.port}/slots"
        try:
            httpx.get(url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=timeout)
        except httpx.HTTPError:
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no slot is processing a request (polling the main loop's GET /slots), at most
        `timeout` seconds; whether it went idle."""
        import httpx

        ends = time.monotonic() + timeout
        url = f"http://{self.host}:{self.port}/slots"
        while True:
            try:
                wait = max(ends - time.monotonic(), 0.1)
                slots = httpx.get(url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=wait).json()
            except (httpx.HTTPError, ValueError):
                return False
            if not any(isinstance(s, dict) and s.get("is_processing") for s in slots):
                return True
            if time.monotonic() >= ends:
                return False
            time.sleep(IDLE_POLL)

    def alive(self) -> bool:
        """Started, not stopped, and its port accepts a connection."""
        if self._server is None or not self.port:
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False


IDLE_POLL = 0.02  # seconds between two looks at the embedded server's slots
SETTLE_TIMEOUT = 0.5  # longest wait for the embedded server to stop a reply cut short

_embedded: EmbeddedServer | None = None
_embedded_lock = threading.Lock()
MAX_RESTARTS = 3  # restarts of the embedded server allowed within RESTART_WINDOW seconds
RESTART_WINDOW = 600.0
_restarts: deque[float] = deque()


def _start_embedded(settings: Settings) -> EmbeddedServer:
    from rag.models import gguf_path

    return EmbeddedServer(
        gguf_path(settings.cache_dir),
        settings.llm_ctx,
        settings.llm_threads,
        settings.llm_slots,
        settings.cache_dir / "llm-slots",
    ).start()


def embedded_server(settings: Settings) -> EmbeddedServer:
    """The process-wide embedded server, started on first use."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            _embedded = _start_embedded(settings)
        return _embedded


def restart_embedded_server(settings: Settings, failed: EmbeddedServer, stuck: bool = False) -> EmbeddedServer:
    """The server to use instead of `failed`: a new one if `failed` is the current server and is
    dead (or `stuck`: it accepts connections but its main loop no longer answers), the current one
    if another thread already replaced it, `failed` itself if it still accepts connections and is
    not known to be stuck. Refuses (LLMError) after MAX_RESTARTS restarts within RESTART_WINDOW
    seconds: a server that keeps dying (out of memory, corrupt model) must be reported, not
    restarted forever."""
    global _embedded
    with _embedded_lock:
        if _embedded is not None and _embedded is not failed:
            return _embedded  # already restarted by someone else
        if _embedded is not None and not stuck and _embedded.alive():
            return _embedded
        now = time.monotonic()
        while _restarts and now - _restarts[0] > RESTART_WINDOW:
            _restarts.popleft()
        if len(_restarts) >= MAX_RESTARTS:
            raise LLMError(
                f"The embedded LLM server stopped {len(_restarts) + 1} times in {RESTART_WINDOW / 60:g} minutes; "
                "not restarting it again. Check free memory and the model file in RAG_CACHE_DIR, "
                "or use another server (RAG_LLM_BASE_URL)."
            )
        _restarts.append(now)
        how = "is stuck (its main loop does not answer)" if stuck else "is not answering"
        log.warning("The embedded LLM server at %s %s; restarting it", failed.base_url, how)
        if stuck:  # its destructor waits for the stuck loop: let a daemon thread wait, not the caller
            threading.Thread(target=failed.stop, name="stop-stuck-llm", daemon=True).start()
        else:
            failed.stop()
        _embedded = None
        started = time.perf_counter()
        server = _embedded = _start_embedded(settings)
        log.warning("The embedded LLM server restarted on %s in %.1f s", server.base_url, time.perf_counter() - started)
        return server


def stop_embedded_server() -> None:
    global _embedded
    with _embedded_lock:
        if _embedded is not None:
            _embedded.stop()
            _embedded = None


atexit.register(stop_embedded_server)


class EmbeddedLLM(OpenAILLM):
    """The client of the process-wide embedded server, which it restarts if it has died or is stuck.

    A connection error while the server's port refuses connections means the server is gone. A
    timeout (silent for RAG_LLM_TIMEOUT) may be a busy server or a stuck one: the server's main
    loop is probed (`EmbeddedServer.responsive`, for as long again at most, within the request's
    deadline), and only a loop that does not answer counts as stuck. Either way the request asks
    `restart_embedded_server` for a new server, follows it to its new port and key, and tries
    again, once per request.
    """

    connect_hint = "the embedded server does not answer, even restarted; restart the app"

    def __init__(self, settings: Settings, model: str):
        self.settings = settings
        self.server = embedded_server(settings)
        self.slots = self.server.slots
        self._restart_lock = threading.Lock()
        self._cut_at: float | None = None  # when a reply was last cut short (see `settle`)
        super().__init__(
            self.server.base_url,
            self.server.api_key,
            model,
            settings.llm_timeout,
            settings.llm_retries,
            deadline=settings.llm_deadline,
        )

    def hold(self, messages: list[Message], slot: int = 0, after: list[Message] | None = None) -> None:
        """Restore the prompt's saved state into `slot` if there is one; else start from `after`'s
        saved state if there is one, read the rest, and save the result for next time."""
        server = self.server
        name = server.state_name(messages)
        if server.slot_action(slot, "restore", name):
            return
        if after is not None:
            server.slot_action(slot, "restore", server.state_name(after))  # else the slot reads it all
        self.complete(messages, 1, slot)
        server.slot_action(slot, "save", name)

    def cut(self) -> None:
        self._cut_at = time.monotonic()

    def settle(self) -> None:
        """After a reply cut short, wait until the server has stopped writing it (`SETTLE_TIMEOUT`
        after the cut at most; nothing to do later than that, or without a cut). The server
        notices the closed connection only when it sends its next token, and the token or two it
        computes meanwhile hold both cores: an e5 query embedded then took 1.4 s instead of 15 ms,
        both sides' threads waiting at each other's barriers (after 7 of the seed set's 23 NOT_FOUND
        replies). Called before e5 runs (`Embedder.before_run`: the next question's search, the
        checks' sentence vectors), so a person typing the next question never waits for it."""
        cut_at, self._cut_at = self._cut_at, None
        if cut_at is not None and (left := cut_at + SETTLE_TIMEOUT - time.monotonic()) > 0:
            self.server.wait_idle(left)

    def _recover(self, exc: Exception, ends: float) -> bool:
        import openai

        if not isinstance(exc, openai.APIConnectionError):
            return False
        stuck = False
        if isinstance(exc, openai.APITimeoutError):
            # Silent for RAG_LLM_TIMEOUT seconds: busy with a long prompt, or stuck? Ask its main
            # loop, for as long again at most (within the request's deadline).
            wait = min(self.timeout, ends - time.monotonic() - 1.0)
            if wait <= 0 or self.server.responsive(wait):
                return False  # busy (an ordinary retry, if any is left), or no time left to find out
            stuck = True
        with self._restart_lock:
            server = restart_embedded_server(self.settings, self.server, stuck)
            if server is self.server:
                return False  # it still answers: an ordinary retry
            self.server = server
            self._connect(server.base_url, server.api_key)
            return True


def default_llm(settings: Settings) -> LLM:
    """The configured remote server, or the embedded one."""
    if settings.llm_base_url:
        return OpenAILLM(
            settings.llm_base_url,
            settings.llm_api_key,
            settings.llm_model or "default",
            settings.llm_timeout,
            settings.llm_retries,
            deadline=settings.llm_deadline,
        )
    from rag.models import LLM_MODEL_NAME

    return EmbeddedLLM(settings, settings.llm_model or LLM_MODEL_NAME)


class ScriptedLLM(LLM):
    """A fake for tests: replies come from a queue or a function of the messages.

    `yes_probability` is an honest, deterministic judge rather than a constant: for a support
    check, the share of the proposed answer's content words (4+ letters, accent-folded, first
    5 letters) that occur in the cited source's text inside the system message; for a fit
    check, 0.9 if the answer shares a content word (first 4 letters) with the question or the
    question has none, else 0.1.
    """

    name = "scripted"
    base_url = "scripted://"

    def __init__(self, replies: list[str] | None = None, reply_fn: Any = None, slots: int = 1) -> None:
        self.replies = list(replies or [])
        self.reply_fn = reply_fn
        self.slots = slots
        self.calls: list[list[Message]] = []
        self.slots_used: list[int] = []  # the slot of each `stream` call
        self.check_slots: list[int] = []  # the slot of each `yes_probability` call
        self.held: list[tuple[int, str, str | None]] = []  # (slot, user turn, user turn of `after`)
        self.held_messages: list[list[Message]] = []  # the prompt of each hold
        self.cuts = 0  # replies cut short (`cut`)
        self.settles = 0  # calls of `settle`

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    def stream(self, messages: list[Message], max_tokens: int, result: Completion, slot: int = 0) -> Iterator[str]:
        self.calls.append(messages)
        self.slots_used.append(slot)
        if self.reply_fn is not None:
            reply = str(self.reply_fn(messages))
        elif self.replies:
            reply = self.replies.pop(0)
        else:
            reply = "NOT_FOUND"
        result.prompt_tokens = sum(len(m["content"].split()) for m in messages)
        for word in reply.split(" "):
            piece = word if not result.text else " " + word
            result.text += piece
            result.completion_tokens += 1
            yield piece

    def cut(self) -> None:
        self.cuts += 1

    def settle(self) -> None:
        self.settles += 1

    def hold(self, messages: list[Message], slot: int = 0, after: list[Message] | None = None) -> None:
        """Recorded in `held` only: `calls` and the scripted replies are the answers' and checks'
        (a real server's one-token reply to a hold is thrown away)."""
        self.held.append((slot, messages[-1]["content"], after[-1]["content"] if after else None))
        self.held_messages.append(messages)

    def yes_probability(self, messages: list[Message], slot: int = 0) -> float:
        import re

        from rag.citations import fold

        self.calls.append(messages)
        self.check_slots.append(slot)
        system, user = messages[0]["content"], messages[-1]["content"]
        stems = lambda text, n=5: {fold(w)[:n] for w in re.findall(r"\w{4,}", text)}  # noqa: E731
        fit = re.search(r"^Question: (.*)\n(?:.*\n)?Proposed answer: (.*)\nDoes the proposed answer give", user, re.M)
        if fit:
            asked = stems(fit.group(1), 4)
            return 0.9 if not asked or asked & stems(fit.group(2), 4) else 0.1
        claim = re.search(r"Proposed answer: (.*)", user)
        number = re.search(r"source \[(\d+)\]", user)
        if not claim or not number:
            return 0.5
        # the last match: the worked example in the prompt also has a [1]
        found = re.findall(rf"^\[{number.group(1)}\] (.*)$", system, re.MULTILINE)
        if not found:
            return 0.0
        words = stems(claim.group(1))
        return len(words & stems(found[-1])) / len(words) if words else 0.0
