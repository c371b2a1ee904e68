"""The LLM, always through the OpenAI chat protocol.

`LLM` is the small interface the answering code needs: stream a chat completion, and
the probability that the model's next word is "Yes" (the support check). `OpenAILLM`
implements it with the `openai` client against any OpenAI-compatible server.

`EmbeddedServer` runs the bundled GGUF in the real llama.cpp HTTP server (`xllamacpp`)
inside this process, on loopback, a free port and a random API key; `default_llm`
starts it once per process and stops it at exit. A user who sets `RAG_LLM_BASE_URL`
gets the very same `OpenAILLM` against their server.

Requests send `cache_prompt: true`: llama.cpp keeps the KV cache of the last prompt and
reuses its longest common prefix, so a fixed system prefix (instructions + sources) is
read once and each later question pays only for its own tokens.
"""

from __future__ import annotations

import atexit
import logging
import math
import secrets
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.config import Settings
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

    @abstractmethod
    def stream(self, messages: list[Message], max_tokens: int, result: Completion) -> Iterator[str]:
        """Yield text pieces of the reply; fill `result` (text, token counts) as it goes."""

    @abstractmethod
    def yes_probability(self, messages: list[Message]) -> float:
        """P(the reply starts with "Yes") among Yes/No, in [0, 1]."""

    def complete(self, messages: list[Message], max_tokens: int) -> Completion:
        result = Completion()
        for _ in self.stream(messages, max_tokens, result):
            pass
        return result


class OpenAILLM(LLM):
    """Any OpenAI-compatible chat server through the official `openai` client."""

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float = 120.0, retries: int = 2):
        from openai import OpenAI

        self.base_url = base_url
        self.name = model
        # the client retries connection errors, 429 and 5xx with exponential backoff
        self._client: Any = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=retries)
        self._logprobs_ok = True

    def _errors(self) -> tuple[type[Exception], ...]:
        import openai

        return (openai.APIError,)

    def stream(self, messages: list[Message], max_tokens: int, result: Completion) -> Iterator[str]:
        try:
            response = self._client.chat.completions.create(
                model=self.name,
                messages=messages,
                max_tokens=max_tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"cache_prompt": True},
            )
            for chunk in response:
                if chunk.usage:
                    result.prompt_tokens = chunk.usage.prompt_tokens
                    result.completion_tokens = chunk.usage.completion_tokens
                    details = getattr(chunk.usage, "prompt_tokens_details", None)
                    result.cached_tokens = int(getattr(details, "cached_tokens", 0) or 0)
                if chunk.choices and chunk.choices[0].delta.content:
                    piece = chunk.choices[0].delta.content
                    result.text += piece
                    yield piece
        except self._errors() as exc:
            raise LLMError(f"The LLM server at {self.base_url} failed: {_describe(exc)}") from exc

    def yes_probability(self, messages: list[Message]) -> float:
        try:
            if self._logprobs_ok:
                try:
                    return self._yes_from_logprobs(messages)
                except LLMError:
                    raise
                except Exception as exc:  # server without logprobs support: fall back to text
                    log.info("logprobs unavailable (%s); using the Yes/No text instead", exc)
                    self._logprobs_ok = False
            reply = self.complete(messages, max_tokens=2).text.strip().lower()
            return 1.0 if reply.startswith(("yes", "oui", "ja", "sí", "si")) else 0.0
        except self._errors() as exc:
            raise LLMError(f"The LLM server at {self.base_url} failed: {_describe(exc)}") from exc

    def _yes_from_logprobs(self, messages: list[Message]) -> float:
        response = self._client.chat.completions.create(
            model=self.name,
            messages=messages,
            max_tokens=1,
            temperature=0,
            logprobs=True,
            top_logprobs=10,
            extra_body={"cache_prompt": True},
        )
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


def _describe(exc: Exception) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "no reply before the timeout (RAG_LLM_TIMEOUT)"
    if isinstance(exc, openai.APIConnectionError):
        return "cannot connect; is the server running and RAG_LLM_BASE_URL right?"
    if isinstance(exc, openai.AuthenticationError):
        return "the API key was refused; check RAG_LLM_API_KEY"
    if isinstance(exc, openai.NotFoundError):
        return "not found; check RAG_LLM_MODEL and that the URL ends in /v1"
    return f"{type(exc).__name__}: {exc}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedServer:
    """llama.cpp's OpenAI-compatible server inside this process, on loopback only."""

    def __init__(self, model_path: Path, n_ctx: int = 8192, threads: int = 2):
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.api_key = secrets.token_urlsafe(24)
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> EmbeddedServer:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_ctx = self.n_ctx
        params.n_parallel = 1  # one slot: its KV cache holds the shared prefix between questions
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


_embedded: EmbeddedServer | None = None
_embedded_lock = threading.Lock()


def embedded_server(settings: Settings) -> EmbeddedServer:
    """The process-wide embedded server, started on first use."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            from rag.models import gguf_path

            _embedded = EmbeddedServer(gguf_path(settings.cache_dir), settings.llm_ctx, settings.llm_threads).start()
            atexit.register(stop_embedded_server)
        return _embedded


def stop_embedded_server() -> None:
    global _embedded
    with _embedded_lock:
        if _embedded is not None:
            _embedded.stop()
            _embedded = None


def default_llm(settings: Settings) -> LLM:
    """The configured remote server, or the embedded one."""
    if settings.llm_base_url:
        return OpenAILLM(
            settings.llm_base_url,
            settings.llm_api_key,
            settings.llm_model or "default",
            settings.llm_timeout,
            settings.llm_retries,
        )
    from rag.models import LLM_MODEL_NAME

    server = embedded_server(settings)
    return OpenAILLM(
        server.base_url,
        server.api_key,
        settings.llm_model or LLM_MODEL_NAME,
        settings.llm_timeout,
        settings.llm_retries,
    )


class ScriptedLLM(LLM):
    """A fake for tests: replies come from a queue or a function of the messages.

    `yes_probability` is an honest, deterministic judge rather than a constant: the share
    of the proposed answer's content words (4+ letters, accent-folded, first 5 letters)
    that occur in the cited source's text inside the system message.
    """

    name = "scripted"
    base_url = "scripted://"

    def __init__(self, replies: list[str] | None = None, reply_fn: Any = None) -> None:
        self.replies = list(replies or [])
        self.reply_fn = reply_fn
        self.calls: list[list[Message]] = []

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    def stream(self, messages: list[Message], max_tokens: int, result: Completion) -> Iterator[str]:
        self.calls.append(messages)
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

    def yes_probability(self, messages: list[Message]) -> float:
        import re

        from rag.citations import fold

        self.calls.append(messages)
        system, user = messages[0]["content"], messages[-1]["content"]
        claim = re.search(r"Proposed answer: (.*)", user)
        number = re.search(r"source \[(\d+)\]", user)
        if not claim or not number:
            return 0.5
        # the last match: the worked example in the prompt also has a [1]
        found = re.findall(rf"^\[{number.group(1)}\] (.*)$", system, re.MULTILINE)
        if not found:
            return 0.0
        stems = lambda text: {fold(w)[:5] for w in re.findall(r"\w{4,}", text)}  # noqa: E731
        words = stems(claim.group(1))
        return len(words & stems(found[-1])) / len(words) if words else 0.0
