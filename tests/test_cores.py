"""CoreShare: background threads wait while a question is answered, and never for ever."""

from __future__ import annotations

import threading
import time

from rag.cores import CoreShare


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_background_thread_waits_until_no_answer_runs() -> None:
    cores = CoreShare()
    turns: list[str] = []

    def index() -> None:
        with cores.background():
            cores.wait_turn()
            turns.append("indexed")

    with cores.answering():
        with cores.answering():  # two questions at once
            worker = _in_thread(index)
            worker.join(0.3)
            assert worker.is_alive() and turns == []
        worker.join(0.3)
        assert worker.is_alive() and turns == [] and cores.answers_running == 1
    worker.join(5)
    assert turns == ["indexed"] and cores.answers_running == 0


def test_other_threads_never_wait() -> None:
    cores = CoreShare()
    with cores.answering():
        started = time.monotonic()
        cores.wait_turn()  # not marked background (the answering thread's own embeddings)
        done = _in_thread(cores.wait_turn)
        done.join(5)
        assert not done.is_alive() and time.monotonic() - started < 1


def test_the_background_mark_ends_with_its_block() -> None:
    cores = CoreShare(max_wait=10)
    with cores.background():
        pass
    with cores.answering():
        started = time.monotonic()
        cores.wait_turn()
        assert time.monotonic() - started < 1


def test_an_answer_never_closed_holds_the_indexing_back_once_for_max_wait() -> None:
    cores = CoreShare(max_wait=0.3)
    with cores.answering(), cores.background():  # an answer never closed
        started = time.monotonic()
        cores.wait_turn()
        assert 0.25 < time.monotonic() - started < 2
        started = time.monotonic()
        for _ in range(5):  # the next texts: not held back again
            cores.wait_turn()
        assert time.monotonic() - started < 0.1
        with cores.answering():  # a new question is waited for again
            started = time.monotonic()
            cores.wait_turn()
            assert 0.25 < time.monotonic() - started < 2


def test_an_answer_that_raises_still_ends() -> None:
    cores = CoreShare()
    try:
        with cores.answering():
            raise ValueError("the LLM failed")
    except ValueError:
        pass
    assert cores.answers_running == 0
