"""Sharing the two cores: indexing pauses while a question is answered.

The bundled e5 and the embedded llama.cpp server each run two threads on the two cores. Run
together, each engine's threads wait at their barriers for a thread the other engine has
descheduled, and both slow down far more than twice: the first of 4 questions asked while 150
Service-Public pages were being indexed took 66.7 s instead of 16.5 s, the 4 took 87.3 s instead
of 46.9 s, and the indexing 55.9 s instead of 31.5 s (`benchmarks/overlap.py`; with the pause:
48.9 s for the 4, the indexing after them). So a thread marked `background()` (the Assistant's indexing)
waits, before each text it embeds, while any question is being answered (`answering()`): the
question runs at full speed and the indexing resumes after it.

Only answers that started less than `max_wait` seconds ago are waited for: an answer never
closed by its caller (a stream abandoned half-read) holds an indexing back `max_wait` seconds
once, not before every text, and a stream of questions slows an indexing but never stops it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

MAX_WAIT = 60.0


class CoreShare:
    def __init__(self, max_wait: float = MAX_WAIT) -> None:
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._started: dict[int, float] = {}  # answers running: id -> start (time.monotonic)
        self._next_id = 0
        self._local = threading.local()

    @contextmanager
    def answering(self) -> Iterator[None]:
        """While inside (for `max_wait` seconds at most), background threads do not start embedding another text."""
        with self._cond:
            key = self._next_id
            self._next_id += 1
            self._started[key] = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                del self._started[key]
                self._cond.notify_all()

    @contextmanager
    def background(self) -> Iterator[None]:
        """Marks the calling thread's work (embedding for an index) as able to wait."""
        before = getattr(self._local, "background", False)
        self._local.background = True
        try:
            yield
        finally:
            self._local.background = before

    def wait_turn(self) -> None:
        """In a background thread: return once no answer younger than `max_wait` runs."""
        if not getattr(self._local, "background", False):
            return
        with self._cond:
            while True:
                now = time.monotonic()
                young = [t for t in self._started.values() if now - t < self.max_wait]
                if not young:
                    return
                self._cond.wait(timeout=min(young) + self.max_wait - now)

    @property
    def answers_running(self) -> int:
        return len(self._started)
