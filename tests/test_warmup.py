"""rag/warmup.py: background warm-ups, one at a time, requests during one merged into one more."""

from __future__ import annotations

import logging
import threading

import pytest

from rag.warmup import Warmer


class SlowWarm:
    """A warm-up that blocks until released, recording how many run at once."""

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.running = 0
        self.most_at_once = 0
        self.calls = 0
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.release()
        self.release.wait(5)
        with self._lock:
            self.running -= 1
        if self.fail:
            raise RuntimeError("model file missing")


def test_request_returns_at_once_and_the_warm_up_runs_in_the_background() -> None:
    warm = SlowWarm()
    warmer = Warmer(warm)
    warmer.request()  # returns while the warm-up is blocked
    assert warm.started.acquire(timeout=5) and warm.calls == 1 and warmer.runs == 0
    assert not warmer.wait(0.05)  # still running
    warm.release.set()
    assert warmer.wait(5) and warmer.runs == 1


def test_requests_during_a_warm_up_make_exactly_one_more_never_two_at_once() -> None:
    warm = SlowWarm()
    warmer = Warmer(warm)
    warmer.request()
    assert warm.started.acquire(timeout=5)
    for _ in range(3):  # e.g. three uploads while the first warm-up reads the old documents
        warmer.request()
    warm.release.set()
    assert warmer.wait(5)
    assert warm.calls == 2 and warm.most_at_once == 1 and warmer.runs == 2
    warmer.request()  # a later change starts a new one
    assert warmer.wait(5) and warm.calls == 3


def test_a_failing_warm_up_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    warm = SlowWarm(fail=True)
    warm.release.set()
    warmer = Warmer(warm)
    with caplog.at_level(logging.WARNING, logger="rag.warmup"):
        warmer.request()
        assert warmer.wait(5)
    assert warmer.runs == 1 and any(
        "could not warm the LLM: model file missing" in r.getMessage() for r in caplog.records
    )
    warmer.request()  # and it can still run again
    assert warmer.wait(5) and warm.calls == 2
