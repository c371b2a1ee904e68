"""app.py: the LLM is warmed only once the page answers HTTP (so warming does not slow the page)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import app


class _Recorder:
    def __init__(self) -> None:
        self.warmed_at: float | None = None

    def warm(self) -> None:
        self.warmed_at = time.monotonic()


class _Page(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_warm_waits_until_the_page_answers_not_just_until_the_port_listens() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, answers nothing: Gradio before its page is ready
    port = listener.getsockname()[1]
    recorder = _Recorder()
    worker = threading.Thread(target=app._when_serving, args=("127.0.0.1", port, recorder.warm, 10.0))
    worker.start()
    time.sleep(2.5)  # longer than one 2 s request timeout
    assert recorder.warmed_at is None  # the port listens, the page does not answer: still waiting
    listener.close()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opened = time.monotonic()
    worker.join(10)
    server.shutdown()
    server.server_close()
    assert recorder.warmed_at is not None and recorder.warmed_at >= opened


def test_any_http_answer_counts_and_a_wildcard_host_is_asked_on_loopback() -> None:
    class Login(_Page):
        status = 401  # e.g. RAG_UI_AUTH

    server = ThreadingHTTPServer(("127.0.0.1", 0), Login)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    recorder = _Recorder()
    started = time.monotonic()
    app._when_serving("0.0.0.0", server.server_address[1], recorder.warm, wait_s=10)
    server.shutdown()
    server.server_close()
    assert recorder.warmed_at is not None and recorder.warmed_at - started < 2


def test_warm_gives_up_waiting_and_still_warms() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing will listen there
    recorder = _Recorder()
    app._when_serving("127.0.0.1", port, recorder.warm, wait_s=0.3)
    assert recorder.warmed_at is not None
