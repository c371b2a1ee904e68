"""Sharing the two cores: indexing pauses while a question is answered.

The bundled e5 and the embedded llama.cpp server each run two threads on the two cores. Run
together, each engine's threads wait at their barriers for a thread the other engine has
descheduled, and both slow down far more than twice: a question answered while 150
Service-Public pages were being indexed took 49 s instead of 18 s, and the indexing 52 s instead
of 28 s (`benchmarks/overlap.py`). So a thread marked `background()` (the Assistant's indexing)
waits, before each text it embeds, while any question is being answered (`answering()`): the
question runs at full speed and the indexing resumes after it.

A background thread waits `max_wait` seconds at most for one text, so a stream of questions (or
an answer never closed by its caller) slows an indexing down but never stops it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

MAX_WAIT = 60.0


class CoreShare:
    def __init__(self, max_wait: float = MAX_WAIT) -> None:
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._answering = 0
        self._local = threading.local()

    @contextmanager
    def answering(self) -> Iterator[None]:
        """While inside, background threads do not start embedding another text."""
        with self._cond:
            self._answering += 1
        try:
            yield
        finally:
            with self._cond:
                self._answering -= 1
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
        """In a background thread: return once no question is being answered (or after `max_wait`)."""
        if getattr(self._local, "background", False):
            with self._cond:
                self._cond.wait_for(lambda: self._answering == 0, timeout=self.max_wait)

    @property
    def answers_running(self) -> int:
        return self._answering
