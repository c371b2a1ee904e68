"""app.py: the LLM is warmed only once the UI port answers (so warming does not slow the page)."""

from __future__ import annotations

import socket
import threading
import time

import app


class _Recorder:
    def __init__(self) -> None:
        self.warmed_at: float | None = None

    def warm(self) -> None:
        self.warmed_at = time.monotonic()


def test_warm_waits_for_the_ui_port_then_warms() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    recorder = _Recorder()
    worker = threading.Thread(target=app._when_listening, args=("127.0.0.1", port, recorder.warm, 10.0))
    worker.start()
    time.sleep(0.6)
    assert recorder.warmed_at is None  # nothing listens yet: still waiting
    opened = time.monotonic()
    listener.listen()
    worker.join(5)
    listener.close()
    assert recorder.warmed_at is not None and recorder.warmed_at >= opened


def test_warm_gives_up_waiting_and_still_warms() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing will listen there
    recorder = _Recorder()
    app._when_listening("127.0.0.1", port, recorder.warm, wait_s=0.3)
    assert recorder.warmed_at is not None
