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


class _Syncing:
    """An assistant whose syncs are recorded; folders named "broken" fail."""

    def __init__(self) -> None:
        self.synced: list[tuple[str, bool]] = []

    def ingest(self, folder, show_bar=False):  # type: ignore[no-untyped-def]
        from rag.errors import IndexLockedError
        from rag.types import IngestReport

        self.synced.append((folder.name, show_bar))
        if folder.name == "broken":
            raise IndexLockedError("The index is being written by another process (pid 1).")
        return IngestReport(unchanged=3)


def test_the_folders_are_synced_in_order_after_the_page_then_the_model_is_warmed(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    for name in ("docs", "broken", "uploads"):
        (tmp_path / name).mkdir()
    assistant, recorder = _Syncing(), _Recorder()
    folders = [tmp_path / "docs", tmp_path / "missing", tmp_path / "broken", tmp_path / "uploads"]
    with caplog.at_level("INFO", logger="app"):
        app.sync_then_warm(assistant, folders, recorder.warm)
    # a missing folder is passed over; a failed sync is logged and the rest still runs
    assert assistant.synced == [("docs", True), ("broken", False), ("uploads", False)]
    assert "could not sync" in caplog.text and "another process" in caplog.text
    assert "unchanged 3" in caplog.text
    assert recorder.warmed_at is not None
