"""LLM server faults, against real HTTP servers on 127.0.0.1 started here (threads in this process
that speak enough of the OpenAI chat-completions protocol, SSE streaming included):

- nothing listening, a connection that cannot even open, a server that never answers, 5xx then
  success, 5xx forever, a stream that stalls midway, 429 with Retry-After: each ends in a clear
  LLMError (or a success) within a bound computed from the timeout and the retries;
- the embedded llama.cpp server restarted after a crash (a fake server here, the real model in
  the slow test at the end);
- network exposure: what listens where (read from /proc/net/tcp), keys, Chroma telemetry.

Timeouts are 1 s and retries 2, so the whole file takes about 20 s without the slow tests.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rag import llm as llm_module
from rag.config import Settings
from rag.errors import LLMError
from rag.llm import (
    RETRY_BASE_DELAY,
    Completion,
    EmbeddedLLM,
    EmbeddedServer,
    OpenAILLM,
    default_llm,
    embedded_server,
    retry_after,
    worst_case_seconds,
)

T = 1.0  # request timeout (RAG_LLM_TIMEOUT) in these tests
R = 2  # retries (RAG_LLM_RETRIES)
SLACK = 2.0  # scheduling slack on a loaded 2-core machine
REPLY = "Parler a quitté Amazon pour Epik [1]."
MESSAGES = [{"role": "system", "content": "Answer from the sources."}, {"role": "user", "content": "Why?"}]
LIMIT = 30.0  # the longest any fake handler waits, in case a test forgets to release it
OK: tuple[Any, ...] = ("ok",)
HANG: tuple[Any, ...] = ("hang",)

# ("ok",) | ("hang",) | ("status", code, headers) | ("stall", words before hanging)
# | ("trickle", "bytes" or "words", seconds between two): a byte that never completes a line, or a
# word event, every so often, never ending (until the test ends or LIMIT)
Action = tuple[Any, ...]


class FakeChatServer:
    """An OpenAI-style /v1/chat/completions server in a thread on 127.0.0.1.

    Each request takes the next action of `script` (OK once the script is used up) and is
    recorded in `seen` as (monotonic arrival time, JSON body, Authorization header)."""

    def __init__(
        self,
        script: list[Action] | None = None,
        api_key: str = "",
        yes: float = 0.8,
        stuck: bool = False,
        busy_polls: int = 0,
    ) -> None:
        self.script: deque[Action] = deque(script or [])
        self.busy_polls = busy_polls  # GET /slots shows a slot processing this many times, then none
        self.seen: list[tuple[float, dict[str, Any], str]] = []
        self.stuck = stuck  # GET /slots never answers, as when llama.cpp's main loop is stuck
        self.probes: list[str] = []  # the paths of GET requests
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _event(self, body: dict[str, Any] | str) -> None:
                data = body if isinstance(body, str) else json.dumps(body)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            def _trickle(self, unit: str, interval: float, stream: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
                if not stream:
                    self.send_header("Content-Length", "1000000")
                self.end_headers()
                self.wfile.flush()
                ends, i = time.monotonic() + LIMIT, 0
                while not outer.release.wait(interval) and time.monotonic() < ends:
                    if unit == "words" and stream:
                        self._event(chunk({"content": f"w{i}" if i == 0 else f" w{i}"}))
                    else:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    i += 1

            def do_GET(self) -> None:
                outer.probes.append(self.path)
                if outer.stuck and self.path.startswith("/slots"):
                    outer.release.wait(LIMIT)
                    return
                if self.headers.get("Authorization") != f"Bearer {api_key}" and api_key:
                    self._json(401, {"error": {"message": "Invalid API Key", "type": "authentication_error"}})
                    return
                if self.path == "/slots":
                    busy = outer.busy_polls != 0
                    outer.busy_polls -= 1 if outer.busy_polls > 0 else 0
                    self._json(200, [{"id": 0, "is_processing": False}, {"id": 1, "is_processing": busy}])
                    return
                self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "x"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization", "")
                outer.seen.append((time.monotonic(), body, auth))
                if api_key and auth != f"Bearer {api_key}":
                    self._json(401, {"error": {"message": "Invalid API Key", "type": "authentication_error"}})
                    return
                action = outer.script.popleft() if outer.script else OK
                if action[0] == "hang":
                    outer.release.wait(LIMIT)
                elif action[0] == "trickle":
                    self._trickle(action[1], action[2], bool(body.get("stream")))
                elif action[0] == "status":
                    _, code, headers = action
                    self._json(code, {"error": {"message": f"fake failure {code}", "type": "server_error"}}, headers)
                elif body.get("stream"):
                    words = REPLY.split(" ")
                    stall = action[1] if action[0] == "stall" else None
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for i, word in enumerate(words[:stall]):
                        piece = chunk({"content": word if i == 0 else " " + word})
                        if body.get("timings_per_token"):  # as llama.cpp sends them
                            piece["timings"] = {"cache_n": 4, "prompt_n": 8, "predicted_n": i + 1, "prompt_ms": 1.0}
                        self._event(piece)
                    if stall is not None:
                        outer.release.wait(LIMIT)
                        return
                    self._event(chunk({}, finish="stop"))
                    usage = {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)}
                    self._event({**chunk({}), "choices": [], "usage": usage})
                    self._event("[DONE]")
                elif action[0] == "stall":
                    outer.release.wait(LIMIT)
                else:
                    logprobs = None
                    if body.get("logprobs"):
                        top = [
                            {"token": w, "logprob": math.log(p), "bytes": None}
                            for w, p in (("Yes", yes), ("No", 1 - yes))
                        ]
                        logprobs = {"content": [{**top[0], "top_logprobs": top}]}
                    message = {"role": "assistant", "content": "Yes" if body.get("logprobs") else REPLY}
                    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}
                    usage = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
                    self._json(200, {**completion_head("chat.completion"), "choices": [choice], "usage": usage})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the client gave up on a hanging request: expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def gaps(self) -> list[float]:
        """Seconds between the arrivals of consecutive requests."""
        return [b[0] - a[0] for a, b in zip(self.seen, self.seen[1:], strict=False)]

    def close(self) -> None:
        """Stop listening: the port then refuses connections."""
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def completion_head(kind: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": kind, "created": 0, "model": "fake"}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        **completion_head("chat.completion.chunk"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeChatServer]]:
    servers: list[FakeChatServer] = []

    def start(script: list[Action] | None = None, **kw: Any) -> FakeChatServer:
        servers.append(FakeChatServer(script, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client(url: str, timeout: float = T, retries: int = R, **kw: Any) -> OpenAILLM:
    return OpenAILLM(url, "test-key", "fake", timeout=timeout, retries=retries, **kw)


def request_of(llm: OpenAILLM, call: str) -> Callable[[], Any]:
    """One streamed completion ("stream") or one logprobs request ("yes_probability")."""
    return (lambda: llm.complete(MESSAGES, 20)) if call == "stream" else (lambda: llm.yes_probability(MESSAGES))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    return fn(), time.monotonic() - started


def backoff_total(retries: int) -> float:
    return worst_case_seconds(0.0, retries)


def retry_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rag.llm" and "; retry " in r.getMessage()]


# -- (a) nothing listening, or the connection cannot open --------------------------------------


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections are refused (and nobody else can take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("call", ["stream", "yes_probability"])
def test_nothing_listening_is_a_clear_error_after_the_retries(
    closed_port: int, call: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    llm = client(url)
    request = request_of(llm, call)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="rag.llm"), pytest.raises(LLMError) as error:
        request()
    elapsed = time.monotonic() - started
    message = str(error.value)
    assert url in message and "cannot connect; is the server running and RAG_LLM_BASE_URL right?" in message
    assert f"after {R + 1} attempts" in message
    assert len(retry_warnings(caplog)) == R
    assert 0.75 * backoff_total(R) <= elapsed < backoff_total(R) + SLACK  # the backoff, and nothing more
    print(f"\n[refused/{call}] LLMError after {elapsed:.2f} s")


def test_a_connection_that_cannot_open_fails_after_the_connect_timeout() -> None:
    """A listening socket whose accept queue is full drops new connections, like an address no host answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=1):  # fills the queue
            llm = client(f"http://127.0.0.1:{port}/v1", timeout=60, retries=0, connect_timeout=1.0)
            started = time.monotonic()
            with pytest.raises(LLMError, match=r"could not connect within 1 s; is the server running and RAG_LLM_BASE"):
                llm.complete(MESSAGES, 20)
            elapsed = time.monotonic() - started
    assert 0.95 <= elapsed < 1.0 + SLACK  # not the 60 s read timeout
    print(f"\n[connect timeout] LLMError after {elapsed:.2f} s")


# -- (b) a server that accepts and never answers -----------------------------------------------


@pytest.mark.parametrize("call", ["stream", "yes_probability"])
def test_a_silent_server_times_out_on_every_attempt(serve: Callable[..., FakeChatServer], call: str) -> None:
    server = serve([HANG] * (R + 1))
    llm = client(server.base_url)
    request = request_of(llm, call)
    started = time.monotonic()
    with pytest.raises(LLMError, match=rf"no reply within {T:g} s \(RAG_LLM_TIMEOUT\)") as error:
        request()
    elapsed = time.monotonic() - started
    assert server.base_url in str(error.value)
    assert len(server.seen) == R + 1
    assert 0.95 * (R + 1) * T <= elapsed <= worst_case_seconds(T, R) + SLACK
    print(f"\n[silent/{call}] LLMError after {elapsed:.2f} s (bound {worst_case_seconds(T, R):.1f} s)")


# -- (c) 5xx: retried with backoff ------------------------------------------------------------


def test_500_twice_then_200_succeeds_thanks_to_the_retries(serve: Callable[..., FakeChatServer]) -> None:
    server = serve([("status", 500, {}), ("status", 500, {})])
    result = client(server.base_url).complete(MESSAGES, 20)
    assert result.text == REPLY and result.completion_tokens == len(REPLY.split(" "))
    assert len(server.seen) == 3
    first, second = server.gaps()
    assert first >= 0.75 * RETRY_BASE_DELAY and second >= 0.75 * 2 * RETRY_BASE_DELAY  # exponential backoff


def test_yes_probability_survives_a_503(serve: Callable[..., FakeChatServer]) -> None:
    server = serve([("status", 503, {})], yes=0.8)
    assert client(server.base_url).yes_probability(MESSAGES) == pytest.approx(0.8)
    assert len(server.seen) == 2 and server.seen[1][1]["logprobs"] is True


def test_a_request_names_its_slot_only_where_the_server_has_slots(serve: Callable[..., FakeChatServer]) -> None:
    server = serve()
    remote = client(server.base_url)  # any OpenAI-compatible server: no llama.cpp-only field
    remote.complete(MESSAGES, 5, slot=2)
    embedded = client(server.base_url)
    embedded.slots = 4  # as the embedded server's client has
    embedded.complete(MESSAGES, 5, slot=2)
    embedded.yes_probability(MESSAGES)
    bodies = [body for _, body, _ in server.seen]
    assert "id_slot" not in bodies[0] and bodies[0]["cache_prompt"] is True
    assert bodies[1]["id_slot"] == 2 and bodies[2]["id_slot"] == 0  # the checks share slot 0
    assert "timings_per_token" not in bodies[0] and bodies[1]["timings_per_token"] is True


def test_a_reply_the_caller_stops_reading_still_counts_its_tokens(serve: Callable[..., FakeChatServer]) -> None:
    """The usage chunk comes last, so a reply cut short has none: the embedded server's
    per-piece timings count it instead; a whole reply's usage is the server's own."""
    server = serve()
    embedded = client(server.base_url)
    embedded.slots = 4
    cut = Completion()
    pieces = embedded.stream(MESSAGES, 20, cut)
    assert [next(pieces), next(pieces)] == ["Parler", " a"]
    pieces.close()
    assert (cut.prompt_tokens, cut.cached_tokens, cut.completion_tokens) == (12, 4, 2)
    assert cut.text == "Parler a"
    whole = embedded.complete(MESSAGES, 20)
    assert (whole.prompt_tokens, whole.completion_tokens) == (12, len(REPLY.split(" ")))


@pytest.mark.parametrize("code", [500, 503])
def test_a_server_always_failing_is_a_clear_error_after_the_retries(
    serve: Callable[..., FakeChatServer], code: int
) -> None:
    server = serve([("status", code, {})] * 10)
    started = time.monotonic()
    with pytest.raises(LLMError, match=rf"failed \(after {R + 1} attempts\): HTTP {code}.*fake failure"):
        client(server.base_url).complete(MESSAGES, 20)
    assert len(server.seen) == R + 1
    assert time.monotonic() - started < backoff_total(R) + SLACK


def test_a_refused_key_is_not_retried(serve: Callable[..., FakeChatServer]) -> None:
    server = serve(api_key="the-right-key")
    with pytest.raises(LLMError, match="RAG_LLM_API_KEY"):
        client(server.base_url).complete(MESSAGES, 20)
    assert len(server.seen) == 1


# -- (d) a stream that stalls ------------------------------------------------------------------


def test_a_stream_stalling_midway_fails_after_the_read_timeout(serve: Callable[..., FakeChatServer]) -> None:
    server = serve([("stall", 3)])
    llm = client(server.base_url)
    result = Completion()
    pieces: list[str] = []
    with pytest.raises(LLMError, match=r"stopped in the middle of the answer: no reply within 1 s") as error:
        for piece in llm.stream(MESSAGES, 50, result):
            pieces.append(piece)
            last = time.monotonic()
    silence = time.monotonic() - last
    assert server.base_url in str(error.value)
    assert pieces == ["Parler", " a", " quitté"] and result.text == "Parler a quitté"
    assert len(server.seen) == 1  # not retried: the words already shown would be repeated
    assert 0.95 * T <= silence <= T + SLACK
    print(f"\n[stall midway] LLMError {silence:.2f} s after the last word")


def test_a_stream_stalling_before_its_first_word_is_retried(serve: Callable[..., FakeChatServer]) -> None:
    server = serve([("stall", 0)])
    assert client(server.base_url).complete(MESSAGES, 50).text == REPLY
    assert len(server.seen) == 2


# -- (d2) a server that trickles: the deadline ---------------------------------------------------

DEADLINE = 2.0  # RAG_LLM_DEADLINE in these tests


@pytest.mark.parametrize("call", ["stream", "yes_probability"])
def test_a_server_trickling_bytes_is_cut_off_at_the_deadline(serve: Callable[..., FakeChatServer], call: str) -> None:
    # a byte every 0.2 s: the 1 s read timeout never fires, and the reply never completes
    server = serve([("trickle", "bytes", 0.2)])
    llm = client(server.base_url, deadline=DEADLINE)
    request = request_of(llm, call)
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"took longer than 2 s \(RAG_LLM_DEADLINE\) .* before answering") as error:
        request()
    elapsed = time.monotonic() - started
    assert server.base_url in str(error.value)
    assert len(server.seen) == 1  # not retried: no time is left
    assert DEADLINE <= elapsed < DEADLINE + SLACK  # past the read timeout, stopped at the deadline
    print(f"\n[trickle/{call}] LLMError after {elapsed:.2f} s")


def test_an_endless_stream_is_cut_off_at_the_deadline_and_the_words_shown_stay(
    serve: Callable[..., FakeChatServer],
) -> None:
    server = serve([("trickle", "words", 0.2)])
    llm = client(server.base_url, deadline=DEADLINE)
    result = Completion()
    pieces: list[str] = []
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"RAG_LLM_DEADLINE\) for one reply and was left in the middle of the answer"):
        for piece in llm.stream(MESSAGES, 10_000, result):
            pieces.append(piece)
    elapsed = time.monotonic() - started
    assert len(pieces) >= 3 and result.text == "".join(pieces) and pieces[:2] == ["w0", " w1"]
    assert DEADLINE <= elapsed < DEADLINE + SLACK


def test_no_retry_starts_that_would_end_past_the_deadline(serve: Callable[..., FakeChatServer]) -> None:
    server = serve([("status", 503, {"Retry-After": "3"})])  # 3 s to wait, 2 s left
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"took longer than 2 s \(RAG_LLM_DEADLINE\)"):
        client(server.base_url, deadline=DEADLINE).complete(MESSAGES, 20)
    assert len(server.seen) == 1 and time.monotonic() - started < SLACK


def test_a_request_within_the_deadline_is_untouched(serve: Callable[..., FakeChatServer]) -> None:
    server = serve([("status", 503, {"Retry-After": "0.5"})])
    llm = client(server.base_url, deadline=DEADLINE)
    assert llm.complete(MESSAGES, 20).text == REPLY and llm.yes_probability(MESSAGES) == pytest.approx(0.8)
    assert len(server.seen) == 3


def test_the_deadline_setting_reaches_the_client() -> None:
    llm = default_llm(Settings(llm_base_url="http://127.0.0.1:9/v1", llm_deadline=7.5))
    assert isinstance(llm, OpenAILLM) and llm.deadline == 7.5


# -- (e) 429 and Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "wait"), [({"Retry-After": "1"}, 1.0), ({"Retry-After-Ms": "1200", "Retry-After": "9"}, 1.2)]
)
@pytest.mark.parametrize("call", ["stream", "yes_probability"])
def test_429_waits_as_long_as_retry_after_asks(
    serve: Callable[..., FakeChatServer], headers: dict[str, str], wait: float, call: str
) -> None:
    server = serve([("status", 429, headers)])
    llm = client(server.base_url)
    if call == "stream":
        assert llm.complete(MESSAGES, 20).text == REPLY
    else:
        assert llm.yes_probability(MESSAGES) == pytest.approx(0.8)
    assert len(server.seen) == 2
    (gap,) = server.gaps()
    assert 0.95 * wait <= gap <= wait + SLACK  # the backoff alone would be at most 0.5 s


def test_429_asking_for_too_long_fails_at_once(serve: Callable[..., FakeChatServer]) -> None:
    server = serve([("status", 429, {"Retry-After": "3600"})])
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"HTTP 429: the server asks to retry after 3600 s, longer than the 30 s"):
        client(server.base_url).complete(MESSAGES, 20)
    assert len(server.seen) == 1 and time.monotonic() - started < SLACK


def test_retry_after_forms() -> None:
    def exc(**headers: str) -> Any:
        return SimpleNamespace(response=SimpleNamespace(headers={k.replace("_", "-"): v for k, v in headers.items()}))

    assert retry_after(exc(retry_after="2")) == 2.0
    assert retry_after(exc(retry_after_ms="250", retry_after="9")) == 0.25
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))
    assert 3.0 <= (retry_after(exc(retry_after=date)) or 0) <= 5.0
    assert retry_after(exc(retry_after="soon")) is None and retry_after(exc()) is None
    assert retry_after(ValueError()) is None


# -- how a fault reaches the user ---------------------------------------------------------------


def test_the_assistant_reports_a_stalled_stream_then_a_dead_server(
    make_assistant: Any, serve: Callable[..., FakeChatServer]
) -> None:
    from rag.types import Token

    server = serve([OK, ("stall", 2)])  # the first request reads the small set's prefix (Assistant.warm)
    assistant = make_assistant(client(server.base_url, retries=0))
    assistant.ingest()
    events = []
    with pytest.raises(LLMError, match=rf"{server.base_url} stopped in the middle of the answer: no reply within"):
        for event in assistant.stream("Why did Parler drop its suit?"):
            events.append(event)
    assert "".join(e.text for e in events if isinstance(e, Token)) == "Parler a"  # what was shown stays shown

    server.close()
    with pytest.raises(LLMError, match=rf"{server.base_url} failed: cannot connect; .*RAG_LLM_BASE_URL"):
        assistant.ask("Why did Parler drop its suit?")


# -- the embedded server: restarted after a crash (fake server) --------------------------------


class FakeEmbedded(EmbeddedServer):
    """An EmbeddedServer whose llama.cpp is a FakeChatServer checking the server's own key."""

    def __init__(
        self, listen: bool = True, script: list[Action] | None = None, stuck: bool = False, busy_polls: int = 0
    ) -> None:
        super().__init__(Path("fake.gguf"))
        self.listen = listen
        self.script = script
        self.stuck = stuck
        self.busy_polls = busy_polls

    def start(self) -> FakeEmbedded:
        if self.listen:
            self._server = FakeChatServer(
                self.script, api_key=self.api_key, stuck=self.stuck, busy_polls=self.busy_polls
            )
            self.port = self._server.port
        else:  # dies at once: a port nothing listens on
            self._server = object()
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = int(sock.getsockname()[1])
        return self

    def stop(self) -> None:
        if isinstance(self._server, FakeChatServer):
            self._server.close()
        self._server = None


class Launches(list[FakeEmbedded]):
    """Every embedded server started during a test, in order; `plan` says how the next ones behave."""

    def __init__(self) -> None:
        super().__init__()
        self.plan: deque[dict[str, Any]] = deque()

    def start(self, settings: Settings) -> FakeEmbedded:
        self.append(FakeEmbedded(**(self.plan.popleft() if self.plan else {})).start())
        return self[-1]


@pytest.fixture
def fake_embedded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Launches]:
    launches = Launches()
    monkeypatch.setattr(llm_module, "_embedded", None)
    monkeypatch.setattr(llm_module, "_restarts", deque())
    monkeypatch.setattr(llm_module, "_start_embedded", launches.start)
    yield launches
    for server in launches:
        server.stop()


def embedded_settings(**kw: Any) -> Settings:
    return Settings(**{"llm_base_url": "", "llm_timeout": T, "llm_retries": R, **kw})


def test_a_crashed_embedded_server_is_restarted_and_followed(
    fake_embedded: Launches, caplog: pytest.LogCaptureFixture
) -> None:
    settings = embedded_settings()
    llm = default_llm(settings)
    assert isinstance(llm, EmbeddedLLM)
    assert llm.complete(MESSAGES, 20).text == REPLY
    (first,) = fake_embedded
    assert first._server.seen[-1][2] == f"Bearer {first.api_key}"

    first.stop()  # the crash: its port now refuses connections
    with caplog.at_level(logging.WARNING, logger="rag.llm"):
        result, elapsed = timed(lambda: llm.complete(MESSAGES, 20))
    assert result.text == REPLY
    second = fake_embedded[1]
    assert second is embedded_server(settings) and llm.server is second
    assert (second.port, second.api_key) != (first.port, first.api_key)
    assert llm.base_url == second.base_url and second._server.seen[-1][2] == f"Bearer {second.api_key}"
    assert any("not answering; restarting" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert not retry_warnings(caplog) and elapsed < SLACK  # restarted at once, no backoff spent on a dead port
    assert llm.yes_probability(MESSAGES) == pytest.approx(0.8) and len(fake_embedded) == 2


def test_a_second_client_follows_the_restart_without_restarting_again(fake_embedded: Launches) -> None:
    settings = embedded_settings()
    ui_llm, api_llm = default_llm(settings), default_llm(settings)  # e.g. the UI and the API in one process
    fake_embedded[0].stop()
    assert ui_llm.complete(MESSAGES, 20).text == REPLY
    assert api_llm.complete(MESSAGES, 20).text == REPLY
    assert len(fake_embedded) == 2 and api_llm.base_url == ui_llm.base_url == fake_embedded[1].base_url


def test_a_slow_embedded_server_is_not_restarted(fake_embedded: Launches) -> None:
    """Silent for RAG_LLM_TIMEOUT, but its main loop answers the probe: busy, not stuck."""
    fake_embedded.plan.append({"script": [HANG]})
    llm = default_llm(embedded_settings(llm_retries=0))
    with pytest.raises(LLMError, match="no reply within 1 s"):
        llm.complete(MESSAGES, 20)
    assert len(fake_embedded) == 1 and fake_embedded[0]._server.probes == ["/slots"]


def test_a_stuck_embedded_server_is_restarted_and_followed(
    fake_embedded: Launches, caplog: pytest.LogCaptureFixture
) -> None:
    """Silent for RAG_LLM_TIMEOUT, and its main loop does not answer the probe within as long
    again: restarted (without waiting for the stuck one to stop), and the request answered there."""
    fake_embedded.plan.append({"script": [HANG], "stuck": True})
    llm = default_llm(embedded_settings(llm_retries=0))
    stuck = fake_embedded[0]._server
    with caplog.at_level(logging.WARNING, logger="rag.llm"):
        result, elapsed = timed(lambda: llm.complete(MESSAGES, 20))
    assert result.text == REPLY
    first, second = fake_embedded
    assert stuck.probes == ["/slots"] and llm.server is second and llm.base_url == second.base_url
    waited = time.monotonic() + SLACK
    while first._server is not None and time.monotonic() < waited:
        time.sleep(0.05)
    assert first._server is None  # stopped, in a daemon thread
    assert any("is stuck (its main loop does not answer); restarting" in r.getMessage() for r in caplog.records)
    assert 2 * T <= elapsed < 2 * T + SLACK  # the silence, the probe, then at once the new server
    # the next request goes to the new server at once
    assert llm.yes_probability(MESSAGES) == pytest.approx(0.8) and len(fake_embedded) == 2


def test_no_probe_or_restart_when_the_deadline_leaves_no_time_for_it(fake_embedded: Launches) -> None:
    fake_embedded.plan.append({"script": [HANG], "stuck": True})
    llm = default_llm(embedded_settings(llm_retries=0, llm_deadline=1.5))
    with pytest.raises(LLMError, match="no reply within 1 s"):
        llm.complete(MESSAGES, 20)
    assert len(fake_embedded) == 1 and fake_embedded[0]._server.probes == []


def test_restarts_are_bounded(fake_embedded: Launches) -> None:
    """A server that dies as soon as it starts: one restart per request, then no more after MAX_RESTARTS."""
    fake_embedded.plan.extend([{"listen": False}] * 10)
    llm = default_llm(embedded_settings(llm_retries=0))
    for restarts in range(1, llm_module.MAX_RESTARTS + 1):
        with pytest.raises(LLMError, match="cannot connect; the embedded server does not answer, even restarted"):
            llm.complete(MESSAGES, 20)
        assert len(fake_embedded) == 1 + restarts
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"stopped 4 times in 10 minutes; not restarting it again.*RAG_LLM_BASE_URL"):
        llm.yes_probability(MESSAGES)
    assert len(fake_embedded) == 1 + llm_module.MAX_RESTARTS and time.monotonic() - started < SLACK


# -- network exposure --------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is little-endian
            found.add(str(ipaddress.ip_address(words)))
    return found


def test_listening_addresses_reads_proc_net_tcp(serve: Callable[..., FakeChatServer]) -> None:
    assert listening_addresses(serve().port) == {"127.0.0.1"}
    with socket.socket() as everywhere:  # the check can fail: a socket on all interfaces is seen as such
        everywhere.bind(("0.0.0.0", 0))
        everywhere.listen(1)
        assert listening_addresses(everywhere.getsockname()[1]) == {"0.0.0.0"}


def test_defaults_bind_loopback_and_chroma_telemetry_is_off(tmp_path: Path) -> None:
    from rag.store import ChunkStore
    from rag.ui import launch_options

    fields = Settings.model_fields
    assert fields["ui_host"].default == "127.0.0.1" and fields["api_host"].default == "127.0.0.1"
    assert EmbeddedServer(Path("x.gguf")).host == "127.0.0.1"
    options = launch_options(Settings())
    assert options["server_name"] == fields["ui_host"].default and options["share"] is False

    store = ChunkStore(collection="telemetry", path=tmp_path / "index")
    assert store.client.get_settings().anonymized_telemetry is False


def test_the_ui_listens_on_loopback_only(make_assistant: Any) -> None:
    from rag import ui

    assistant = make_assistant()
    assistant.ingest()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    app = ui.create_app(assistant)
    try:
        ui.launch(app, assistant.settings.model_copy(update={"ui_port": port}), prevent_thread_lock=True, quiet=True)
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        app.close()


# -- the real embedded server (slow) ------------------------------------------------------------


def _status(url: str, key: str | None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.slow
def test_real_embedded_server_is_loopback_keyed_and_restarted_after_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(llm_module, "_restarts", deque())
    settings = Settings(llm_base_url="", llm_timeout=120, llm_retries=1)
    llm = default_llm(settings)
    assert isinstance(llm, EmbeddedLLM)
    first = llm.server
    assert listening_addresses(first.port) == {"127.0.0.1"}
    models = f"{first.base_url}/models"
    assert _status(models, None) == 401 and _status(models, first.api_key) == 200

    first.stop()  # the crash
    assert not first.alive() and not listening_addresses(first.port)
    with caplog.at_level(logging.WARNING, logger="rag.llm"):
        answer, elapsed = timed(lambda: llm.complete([{"role": "user", "content": "Say OK."}], 3))
    assert answer.text.strip() and answer.completion_tokens > 0
    second = llm.server
    assert second is not first and second is embedded_server(settings) and llm.base_url == second.base_url
    assert any("restarted on" in r.getMessage() for r in caplog.records)
    assert listening_addresses(second.port) == {"127.0.0.1"}
    models = f"{second.base_url}/models"
    assert _status(models, None) == 401 and _status(models, first.api_key) == 401  # the old key is gone
    assert _status(models, second.api_key) == 200
    restart = next(r.getMessage() for r in caplog.records if "restarted on" in r.getMessage())
    print(f"\n[embedded crash] {restart}; restart + answer {elapsed:.1f} s")


def test_settle_waits_until_no_slot_is_processing(fake_embedded: Launches) -> None:
    fake_embedded.plan.append({"busy_polls": 3})
    llm = default_llm(embedded_settings())
    assert isinstance(llm, EmbeddedLLM)
    llm.settle()  # no reply was cut short: nothing to wait for, no look at the server
    (server,) = fake_embedded
    assert server._server.probes == []
    llm.cut()
    _, waited = timed(llm.settle)
    assert server._server.probes.count("/slots") == 4  # three looks at a busy slot, then idle
    assert waited < 1.0
    llm.settle()  # once settled, nothing more
    assert server._server.probes.count("/slots") == 4


def test_settle_does_not_wait_once_the_server_has_had_its_time(
    fake_embedded: Launches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llm_module, "SETTLE_TIMEOUT", 0.2)
    fake_embedded.plan.append({"busy_polls": -1})
    llm = default_llm(embedded_settings())
    assert isinstance(llm, EmbeddedLLM)
    llm.cut()
    time.sleep(0.25)  # a person typing the next question
    _, waited = timed(llm.settle)
    assert waited < 0.05 and fake_embedded[0]._server.probes == []


def test_settle_gives_up_after_its_timeout_and_on_a_stuck_server(
    fake_embedded: Launches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llm_module, "SETTLE_TIMEOUT", 0.3)
    fake_embedded.plan.extend([{"busy_polls": -1}, {"stuck": True}])  # -1: busy for ever
    for _ in range(2):
        llm = default_llm(embedded_settings())
        assert isinstance(llm, EmbeddedLLM)
        llm.cut()
        _, waited = timed(llm.settle)
        assert 0.25 <= waited < 1.5
        monkeypatch.setattr(llm_module, "_embedded", None)  # the next test server
    busy, stuck = fake_embedded
    assert busy._server.probes.count("/slots") > 3 and stuck._server.probes == ["/slots"]


@pytest.mark.slow
def test_real_embedded_server_stops_a_reply_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply closed after a few words: `settle` returns once llama.cpp has noticed and stopped,
    long before the reply's token limit."""
    monkeypatch.setattr(llm_module, "_restarts", deque())
    llm = default_llm(Settings(llm_base_url="", llm_timeout=120, llm_retries=0))
    assert isinstance(llm, EmbeddedLLM)
    pieces = llm.stream([{"role": "user", "content": "Count from 1 to 200, one number per line."}], 400, Completion())
    words = [next(pieces) for _ in range(3)]
    pieces.close()  # type: ignore[attr-defined]
    llm.cut()
    _, waited = timed(llm.settle)
    assert words and waited < 1.0  # 400 tokens would take 25 s or more here
    assert llm.server.wait_idle(0.0)
    print(f"\n[settle] the server stopped {waited:.2f} s after the reply was closed")


@pytest.mark.slow
def test_real_embedded_server_answers_the_probe_while_busy_reading_a_long_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The premise of the stuck-server restart: llama.cpp's main loop answers GET /slots between
    two batches, so a server busy reading a long prompt is never taken for a stuck one."""
    monkeypatch.setattr(llm_module, "_restarts", deque())
    llm = default_llm(Settings(llm_base_url="", llm_timeout=120, llm_retries=0))
    assert isinstance(llm, EmbeddedLLM)
    server = llm.server
    assert server.responsive(5.0)
    # 200 lines of new prompt: about a minute of reading on 2 cores, in several batches
    long_prompt = " ".join(f"Line {i}: Parler moved to Epik after Amazon cut it off." for i in range(200))
    busy = threading.Thread(
        target=lambda: llm.complete([{"role": "user", "content": long_prompt + "\nSay OK."}], 1), daemon=True
    )
    busy.start()
    time.sleep(3.0)  # the server is now reading the prompt
    answered, waited = timed(lambda: server.responsive(120.0))
    still_reading = busy.is_alive()
    busy.join(300)
    assert answered and still_reading, (answered, still_reading)
    print(f"\n[probe] answered after {waited:.1f} s while the server read a long prompt")
