"""Keeps the LLM's fixed prompt prefix warm in the background, at start-up and after the
documents change (see `Assistant.warm`: reading a small set's prefix takes ~25 s on 2 cores,
which the first question would otherwise pay).

`Warmer.request()` returns at once. One warm-up runs at a time; a request made while one
runs makes it run once more when it ends (the documents changed meanwhile), and requests
made in between are merged into that one. A failed warm-up is logged, never raised: the
question that needs the model reports the error properly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Warmer:
    def __init__(self, warm: Callable[[], None]) -> None:
        self._warm = warm
        self._lock = threading.Lock()
        self._pending = False
        self._thread: threading.Thread | None = None
        self.runs = 0  # warm-ups finished, failed ones included

    def request(self) -> None:
        """Warm up soon, in the background."""
        with self._lock:
            self._pending = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llm-warm-up", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no warm-up runs or is pending; False if `timeout` seconds passed first."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not thread or not thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._thread = None  # under the lock: a request from now on starts a new thread
                    return
                self._pending = False
            try:
                self._warm()
            except Exception as error:  # the first question will report it properly
                log.warning("could not warm the LLM: %s", error)
            self.runs += 1
