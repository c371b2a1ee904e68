"""Faults across processes: SIGKILL mid-ingest, a second writer, and index growth on disk.

The children run `sync_folder` through benchmarks/crash_trials.py (hash embedder, settings from
RAG_* variables) and announce each collection write, then pause: a kill at write n lands during
write n or just after it, never later. The long randomised version is benchmarks/crash_trials.py.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from benchmarks.crash_trials import (
    COLLECTION,
    Child,
    check,
    child_env,
    clean_dump,
    dump,
    file_shas,
    folder_bytes,
    make_corpus,
    mutate,
)
from rag.embeddings import HashEmbedder
from rag.ingest import sync_folder
from rag.retrieve import Retriever
from rag.store import ChunkStore

PAUSE = 0.3  # seconds a child waits after each write
FLUSH = 40  # chunks per flush in the children: several flushes, so several writes, per run


def open_index(index: Path) -> ChunkStore:
    return ChunkStore(collection=COLLECTION, path=index, embedder_name=HashEmbedder.name)


def complete_index(docs: Path, index: Path, scratch: Path) -> None:
    """A finished ingest of `docs` copied to `index`: this process never opens `index` before a child does."""
    built = scratch / f"built-{index.name}"
    sync_folder(docs, open_index(built), HashEmbedder())
    shutil.copytree(built, index)


def kill_at_write(docs: Path, index: Path, write: int) -> Child:
    child = Child(child_env(docs, index), pause=PAUSE, flush=FLUSH)
    assert child.wait_for("write", write), child.stderr
    child.kill()
    child.finish()
    assert child.mid_write, child.lines
    return child


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "docs", pages=10, seed=3)  # 157 chunks: 4 flushes of 40 or more


@pytest.mark.slow  # 4 child processes: ~30 s of CPU, most of it importing llama-index and Chroma
@pytest.mark.parametrize(
    ("update", "kills"),
    [(False, [3]), (True, [2]), (True, [1, 1])],
    ids=["full-ingest", "update", "update-and-its-repair"],
)
def test_sigkill_mid_ingest_is_repaired(corpus: Path, tmp_path: Path, update: bool, kills: list[int]) -> None:
    index = tmp_path / "index"
    if update:
        complete_index(corpus, index, tmp_path)
        mutate(corpus, random.Random(0), edits=3, deletes=1, adds=1)
    for write in kills:
        killed = kill_at_write(corpus, index, write)
    assert (index / ".write.lock").read_text() == str(killed.proc.pid)  # a stale lock file, naming a dead writer

    store, embedder = open_index(index), HashEmbedder()
    before = dump(store)
    report = sync_folder(corpus, store, embedder)  # the kernel released the dead writer's flock

    assert report.changed  # the kill left work undone
    assert check(before, dump(store, embedder), clean_dump(corpus, "hash", tmp_path), file_shas(corpus)) == []


def test_second_writer_fails_at_once_naming_the_holder_while_a_reader_searches(corpus: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    complete_index(corpus, index, tmp_path)
    mutate(corpus, random.Random(1), edits=4, deletes=0, adds=2)
    env = child_env(corpus, index)
    holder = Child(env, pause=600, flush=FLUSH)  # stops after its first write, holding the lock
    try:
        assert holder.wait_for("write"), holder.stderr

        second = Child(env).finish(timeout=120)
        assert second.proc.returncode == 3, (second.lines, second.stderr)
        ready, error = second.at("ready"), second.at("error")
        assert ready is not None and error is not None
        assert error - ready < 2.0  # refused at once, not after waiting on a lock
        message = next(line for _, line in second.lines if line.startswith("error"))
        assert "IndexLockedError" in message and f"pid {holder.proc.pid}" in message

        reader = Retriever(open_index(index), HashEmbedder())  # opened while the holder is mid-write
        assert len(reader.search("demande de carte identité en mairie", 3)) == 3
        assert holder.proc.poll() is None, "the holder should still hold the lock"
    finally:
        holder.kill()
        holder.finish()


def test_index_grows_less_than_ten_percent_over_reingests(tmp_path: Path) -> None:
    docs = make_corpus(tmp_path / "docs", pages=30, seed=5)
    index = tmp_path / "index"
    store, embedder = open_index(index), HashEmbedder()
    sync_folder(docs, store, embedder)
    first, content = folder_bytes(index), dump(store)

    for _ in range(10):
        sync_folder(docs, store, embedder)
    for path in docs.iterdir():
        path.write_bytes(path.read_bytes())  # same bytes, new mtime
        os.utime(path)
    sync_folder(docs, store, embedder)
    assert folder_bytes(index) == first  # nothing written at all

    rng = random.Random(0)
    for _ in range(5):  # edit then revert 3 files: one paragraph rewritten in each
        edited = rng.sample(sorted(docs.iterdir()), 3)
        saved = {path: path.read_bytes() for path in edited}
        for path in edited:
            paragraphs = path.read_text(encoding="utf-8").split("\n\n")
            paragraphs[len(paragraphs) // 2] = "Paragraphe réécrit : la démarche se fait désormais en ligne."
            path.write_text("\n\n".join(paragraphs), encoding="utf-8")
        sync_folder(docs, store, embedder)
        for path, data in saved.items():
            path.write_bytes(data)
        sync_folder(docs, store, embedder)

    assert dump(store) == content
    assert folder_bytes(index) < 1.10 * first, f"{first} -> {folder_bytes(index)} bytes"
