"""rag.deadline: a request read in a worker thread, its caller never held past the deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from rag.deadline import DeadlinePassed, call_within, within


def test_items_pass_through_in_order_and_the_end_ends() -> None:
    assert list(within(time.monotonic() + 5, lambda: iter(range(5)))) == [0, 1, 2, 3, 4]
    assert call_within(5, lambda: "reply") == "reply"


def test_an_error_in_the_worker_is_raised_to_the_caller_after_the_items_before_it() -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise ValueError("server said no")

    got: list[int] = []
    with pytest.raises(ValueError, match="server said no"):
        for item in within(time.monotonic() + 5, produce):
            got.append(item)
    assert got == [1]


def test_a_producer_that_never_ends_is_left_at_the_deadline_and_closed_at_its_next_item() -> None:
    closed = threading.Event()

    def produce() -> Iterator[int]:
        try:
            i = 0
            while True:
                time.sleep(0.1)
                yield i
                i += 1
        finally:
            closed.set()

    got: list[int] = []
    started = time.monotonic()
    with pytest.raises(DeadlinePassed):
        for item in within(started + 0.5, produce):
            got.append(item)
    assert 0.5 <= time.monotonic() - started < 1.5
    assert 2 <= len(got) <= 6
    assert closed.wait(2)  # the worker stopped and closed the producer


def test_a_call_that_blocks_is_left_at_the_deadline() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(DeadlinePassed):
        call_within(0.3, lambda: release.wait(10))
    assert time.monotonic() - started < 1.0
    release.set()


def test_a_caller_that_stops_reading_closes_the_producer() -> None:
    closed = threading.Event()

    def produce() -> Iterator[int]:
        try:
            i = 0
            while True:  # never ends by itself
                time.sleep(0.05)
                yield i
                i += 1
        finally:
            closed.set()

    items = within(time.monotonic() + 60, produce)
    assert next(items) == 0
    assert not closed.is_set()
    items.close()
    assert closed.wait(2)
