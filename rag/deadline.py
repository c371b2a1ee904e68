"""A bound on how long one request to a server may hold its caller.

An HTTP client's read timeout bounds each silence, not the whole reply: a server that sends a
byte every few seconds, or streams without end, holds the caller forever. `within` reads the
request in a worker thread and hands its items over, so the caller waits until a deadline at
most, however the server trickles its bytes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

DEADLINE = 300.0  # RAG_LLM_DEADLINE's default: seconds one request may take, retries and the whole reply included


class DeadlinePassed(Exception):
    """The deadline passed before the request ended."""


def within(ends: float, produce: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """The items of `produce()`, read in a worker thread and handed over here, so that the caller
    waits until `ends` (monotonic time) at the latest, then gets `DeadlinePassed`. An exception
    in the worker is raised here. When the caller stops (deadline, error, or it stops reading),
    the worker closes `produce()` (and with it the response) at its next item, or when its read
    fails or times out."""
    items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        produced = produce()
        try:
            for item in produced:
                if stop.is_set():
                    break
                items.put(("item", item))
            items.put(("end", None))
        except BaseException as exc:  # handed to the caller, who re-raises it
            items.put(("error", exc))
        finally:
            close = getattr(produced, "close", None)
            if close is not None:
                close()

    threading.Thread(target=work, name="server-request", daemon=True).start()
    try:
        while True:
            try:
                kind, value = items.get(timeout=max(ends - time.monotonic(), 0.0))
            except queue.Empty:
                raise DeadlinePassed() from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


def call_within(seconds: float, fn: Callable[[], Any]) -> Any:
    """`fn()`, run so that the caller waits `seconds` at most (then `DeadlinePassed`)."""

    def produce() -> Iterator[Any]:
        yield fn()

    (result,) = within(time.monotonic() + seconds, produce)
    return result
