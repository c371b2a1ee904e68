"""Unit tests for rag.store: ChunkStore over an embedded (temporary) Chroma, and WriteLock."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from rag.errors import IndexLockedError, StoreError
from rag.store import PARTIAL, ChunkStore, WriteLock, chunk_metadata, index_name, text_sha
from rag.types import Chunk

SRC_A = "/docs/a"
SRC_B = "/docs/b"


def make_chunk(doc_path: str, position: int, text: str, source: str = SRC_A, sha: str = "v1") -> Chunk:
    return Chunk(
        id=f"{source}|{doc_path}|{position}",
        doc_path=doc_path,
        title=doc_path.upper(),
        date="2021-03",
        text=text,
        start=position * 100,
        end=position * 100 + len(text),
        position=position,
        doc_sha256=sha,
        tokens=len(text.split()),
        source=source,
    )


def put(store: ChunkStore, embedder, chunks: list[Chunk]) -> None:  # type: ignore[no-untyped-def]
    store.upsert(chunks, embedder.embed_passages([c.text for c in chunks]))


# -- opening --------------------------------------------------------------------------------


def test_new_store_is_empty(chunk_store):
    assert chunk_store.count() == 0
    assert chunk_store.chunks() == []
    assert chunk_store.manifest() == {}


def test_reopening_with_the_same_embedder_keeps_the_data(make_chunk_store, hash_embedder):
    put(make_chunk_store(), hash_embedder, [make_chunk("a.txt", 0, "some text here")])
    assert make_chunk_store().count() == 1


def test_embedder_mismatch_raises_store_error_naming_both(make_chunk_store):
    make_chunk_store(embedder_name="model/alpha")
    with pytest.raises(StoreError) as info:
        make_chunk_store(embedder_name="model/beta")
    assert "model/alpha" in str(info.value)
    assert "model/beta" in str(info.value)


def test_another_collection_in_the_same_folder_may_use_another_embedder(make_chunk_store):
    make_chunk_store(collection="first", embedder_name="model/alpha")
    assert make_chunk_store(collection="second", embedder_name="model/beta").count() == 0


def test_missing_path_raises_store_error():
    with pytest.raises(StoreError):
        ChunkStore(collection="test", path=None)


def test_invalid_collection_name_raises_store_error(tmp_path):
    # Chroma refuses names shorter than 3 characters; the user must get a StoreError, not a Chroma traceback
    with pytest.raises(StoreError, match="'t'"):
        ChunkStore(collection="t", path=tmp_path / "index", embedder_name="x")


def test_new_collection_persists_its_vector_index_every_100_records(chunk_store):
    # Chroma keeps every written record (vector included) in its sqlite log until the next
    # HNSW save: every 1000 records by default, which lets a small index double in size
    assert chunk_store.collection.configuration_json["hnsw"]["sync_threshold"] == 100


def test_store_in_its_own_folder_persists_across_clients(tmp_path, hash_embedder):
    store = ChunkStore(collection="test", path=tmp_path / "index", embedder_name=hash_embedder.name)
    put(store, hash_embedder, [make_chunk("a.txt", 0, "some text here")])
    assert (tmp_path / "index").is_dir()
    again = ChunkStore(collection="test", path=tmp_path / "index", embedder_name=hash_embedder.name)
    assert [c.text for c in again.chunks()] == ["some text here"]


# -- reads ----------------------------------------------------------------------------------


def test_chunks_round_trip_all_fields(chunk_store, hash_embedder):
    chunk = make_chunk("dir/a.txt", 3, "Volcanoes erupt with lava.")
    put(chunk_store, hash_embedder, [chunk])
    assert chunk_store.chunks() == [chunk]


def test_chunks_sorted_by_path_then_numeric_position(chunk_store, hash_embedder):
    chunks = [
        make_chunk("b.txt", 0, "bravo zero"),
        make_chunk("a.txt", 10, "alpha ten"),
        make_chunk("a.txt", 2, "alpha two"),
        make_chunk("b.txt", 1, "bravo one"),
        make_chunk("a.txt", 0, "alpha zero"),
    ]
    put(chunk_store, hash_embedder, chunks)
    got = [(c.doc_path, c.position) for c in chunk_store.chunks()]
    assert got == [("a.txt", 0), ("a.txt", 2), ("a.txt", 10), ("b.txt", 0), ("b.txt", 1)]


def test_chunks_where_filters(chunk_store, hash_embedder):
    put(chunk_store, hash_embedder, [make_chunk("a.txt", 0, "alpha"), make_chunk("b.txt", 0, "bravo")])
    assert [c.doc_path for c in chunk_store.chunks({"doc_path": "b.txt"})] == ["b.txt"]


def test_manifest_is_per_source(chunk_store, hash_embedder):
    put(
        chunk_store,
        hash_embedder,
        [
            make_chunk("a.txt", 0, "alpha one", source=SRC_A, sha="sa"),
            make_chunk("a.txt", 1, "alpha two", source=SRC_A, sha="sa"),
            make_chunk("b.txt", 0, "bravo", source=SRC_B, sha="sb"),
            make_chunk("a.txt", 0, "other alpha", source=SRC_B, sha="sa2"),
        ],
    )
    assert chunk_store.manifest(SRC_A) == {"a.txt": {"sa"}}
    assert chunk_store.manifest(SRC_B) == {"b.txt": {"sb"}, "a.txt": {"sa2"}}
    assert chunk_store.manifest("/elsewhere") == {}
    assert chunk_store.manifest() == {"a.txt": {"sa", "sa2"}, "b.txt": {"sb"}}


def test_manifest_shows_two_versions_of_a_half_replaced_document(chunk_store, hash_embedder):
    put(chunk_store, hash_embedder, [make_chunk("a.txt", 0, "new", sha="v2"), make_chunk("a.txt", 1, "old", sha="v1")])
    assert chunk_store.manifest(SRC_A) == {"a.txt": {"v1", "v2"}}


def test_manifest_marks_a_version_missing_chunks_as_partial(chunk_store, hash_embedder):
    # a crash between two write batches: 2 of the version's 3 chunks were written
    chunks = [make_chunk("a.txt", i, f"text number {i}", sha="v2") for i in range(3)]
    put(chunk_store, hash_embedder, chunks)
    chunk_store.collection.delete(ids=[chunks[2].id])
    assert chunk_store.manifest(SRC_A) == {"a.txt": {PARTIAL + "v2"}}


def test_manifest_of_chunks_without_a_recorded_count_trusts_them(chunk_store, hash_embedder):
    chunk = make_chunk("a.txt", 0, "written by an older version")
    meta = {k: v for k, v in chunk_metadata(chunk).items() if k != "doc_chunks"}
    vector = hash_embedder.embed_passages([chunk.text])
    chunk_store.collection.upsert(ids=[chunk.id], documents=[chunk.text], metadatas=[meta], embeddings=vector.tolist())
    assert chunk_store.manifest(SRC_A) == {"a.txt": {"v1"}}


def test_query_returns_most_similar_first_with_cosine_in_range(chunk_store, hash_embedder):
    put(
        chunk_store,
        hash_embedder,
        [
            make_chunk("cats.txt", 0, "Cats purr and sleep on warm windowsills."),
            make_chunk("volcano.txt", 0, "Volcanoes erupt molten lava and ash."),
            make_chunk("bread.txt", 0, "Bakers knead dough before baking bread."),
        ],
    )
    results = chunk_store.query(hash_embedder.embed_query("when do volcanoes erupt lava"), 3)
    assert results[0][0].doc_path == "volcano.txt"
    sims = [s for _, s in results]
    assert all(-1.0 <= s <= 1.0 for s in sims)
    assert sims == sorted(sims, reverse=True)
    assert sims[0] > sims[1]


def test_query_of_a_stored_text_scores_about_one(chunk_store, hash_embedder):
    text = "Bakers knead dough before baking bread."
    put(chunk_store, hash_embedder, [make_chunk("bread.txt", 0, text), make_chunk("cats.txt", 0, "Cats purr.")])
    (chunk, sim), *_ = chunk_store.query(hash_embedder.embed_passages([text])[0], 1)
    assert chunk.text == text
    assert sim == pytest.approx(1.0, abs=1e-4)


def test_query_k_larger_than_store_and_empty_store(chunk_store, hash_embedder):
    vector = hash_embedder.embed_query("anything")
    assert chunk_store.query(vector, 5) == []
    put(chunk_store, hash_embedder, [make_chunk("a.txt", 0, "alpha")])
    assert len(chunk_store.query(vector, 5)) == 1


def test_embeddings_by_text_returns_stored_vectors_for_known_texts_only(chunk_store, hash_embedder):
    chunks = [make_chunk("a.txt", 0, "alpha text"), make_chunk("b.txt", 0, "bravo text")]
    put(chunk_store, hash_embedder, chunks)
    known = chunk_store.embeddings_by_text([text_sha("alpha text"), text_sha("missing"), text_sha("alpha text")])
    assert set(known) == {text_sha("alpha text")}
    np.testing.assert_allclose(
        known[text_sha("alpha text")], hash_embedder.embed_passages(["alpha text"])[0], atol=1e-6
    )
    assert chunk_store.embeddings_by_text([]) == {}


# -- writes ---------------------------------------------------------------------------------


def test_upsert_same_ids_twice_does_not_duplicate(chunk_store, hash_embedder):
    chunks = [make_chunk("a.txt", i, f"text number {i}") for i in range(3)]
    put(chunk_store, hash_embedder, chunks)
    put(chunk_store, hash_embedder, chunks)
    assert chunk_store.count() == 3


def test_upsert_in_small_batches(chunk_store, hash_embedder):
    chunks = [make_chunk("a.txt", i, f"text number {i}") for i in range(7)]
    chunk_store.upsert(chunks, hash_embedder.embed_passages([c.text for c in chunks]), batch=3)
    assert [c.text for c in chunk_store.chunks()] == [c.text for c in chunks]


def test_upsert_records_each_version_chunk_count(chunk_store, hash_embedder):
    put(
        chunk_store,
        hash_embedder,
        [make_chunk("a.txt", i, f"alpha {i}") for i in range(3)] + [make_chunk("b.txt", 0, "b")],
    )
    counts = {m["doc_path"]: m["doc_chunks"] for m in chunk_store.collection.get(include=["metadatas"])["metadatas"]}
    assert counts == {"a.txt": 3, "b.txt": 1}


def test_write_upserts_new_chunks_with_the_vectors_asked_for(chunk_store, hash_embedder):
    chunks = [make_chunk("a.txt", i, f"text number {i}") for i in range(3)]
    asked: list[list[str]] = []

    def vectors(todo):  # type: ignore[no-untyped-def]
        asked.append([c.id for c in todo])
        return hash_embedder.embed_passages([c.text for c in todo])

    assert chunk_store.write(chunks, vectors) == chunks
    assert asked == [[c.id for c in chunks]]
    assert chunk_store.chunks() == chunks
    assert chunk_store.manifest(SRC_A) == {"a.txt": {"v1"}}


def test_write_of_stored_chunks_writes_nothing(chunk_store, hash_embedder, monkeypatch):
    chunks = [make_chunk("a.txt", i, f"text number {i}") for i in range(3)]
    put(chunk_store, hash_embedder, chunks)
    for name in ("upsert", "update", "add"):
        monkeypatch.setattr(chunk_store.collection, name, lambda *a, **k: pytest.fail("wrote"))
    assert chunk_store.write(chunks, lambda todo: pytest.fail("asked for vectors")) == []


def test_write_of_a_new_version_relabels_unchanged_texts_and_upserts_changed_ones(chunk_store, hash_embedder):
    put(chunk_store, hash_embedder, [make_chunk("a.txt", i, f"text number {i}") for i in range(3)])
    new = [make_chunk("a.txt", 0, "text number 0", sha="v2"), make_chunk("a.txt", 1, "changed text", sha="v2")]
    new[0] = replace(new[0], start=7, end=20)  # same text, shifted span

    upserted = chunk_store.write(new, lambda todo: hash_embedder.embed_passages([c.text for c in todo]))

    assert upserted == [new[1]]  # the unchanged text only had its metadata updated
    stored = {c.id: c for c in chunk_store.chunks()}
    assert stored[new[0].id] == new[0]
    assert stored[new[1].id] == new[1]
    # the old version's third chunk is left for delete_document: two versions until then
    assert chunk_store.manifest(SRC_A) == {"a.txt": {"v2", PARTIAL + "v1"}}
    chunk_store.delete_document(SRC_A, "a.txt", keep_sha256="v2")
    assert chunk_store.manifest(SRC_A) == {"a.txt": {"v2"}}


def test_delete_document_removes_only_that_document_of_that_source(chunk_store, hash_embedder):
    put(
        chunk_store,
        hash_embedder,
        [
            make_chunk("a.txt", 0, "a0"),
            make_chunk("a.txt", 1, "a1"),
            make_chunk("b.txt", 0, "b0"),
            make_chunk("a.txt", 0, "other a0", source=SRC_B),
        ],
    )
    chunk_store.delete_document(SRC_A, "a.txt")
    assert sorted((c.source, c.doc_path) for c in chunk_store.chunks()) == [(SRC_A, "b.txt"), (SRC_B, "a.txt")]


def test_delete_document_keep_sha_removes_only_other_versions(chunk_store, hash_embedder):
    put(
        chunk_store,
        hash_embedder,
        [
            make_chunk("a.txt", 0, "new zero", sha="v2"),
            make_chunk("a.txt", 1, "old one", sha="v1"),
            make_chunk("a.txt", 2, "old two", sha="v1"),
        ],
    )
    chunk_store.delete_document(SRC_A, "a.txt", keep_sha256="v2")
    assert [(c.position, c.doc_sha256) for c in chunk_store.chunks()] == [(0, "v2")]
    assert chunk_store.manifest(SRC_A) == {"a.txt": {"v2"}}


def test_drop_unsearchable_deletes_what_an_exhaustive_search_leaves_out(chunk_store, hash_embedder, monkeypatch):
    chunks = [make_chunk("a.txt", i, f"text number {i}") for i in range(3)]
    put(chunk_store, hash_embedder, chunks)
    probe = hash_embedder.embed_query("text")
    assert chunk_store.drop_unsearchable(probe) == []  # a healthy index: nothing dropped
    assert chunk_store.count() == 3

    real_query = chunk_store.collection.query

    def lost_one(**kwargs):  # type: ignore[no-untyped-def]
        assert kwargs["n_results"] == 3  # exhaustive
        result = real_query(**kwargs)
        result["ids"][0].remove(chunks[1].id)  # as if the HNSW files lost it
        return result

    monkeypatch.setattr(chunk_store.collection, "query", lost_one)
    assert chunk_store.drop_unsearchable(probe) == [chunks[1].id]
    assert [c.id for c in chunk_store.chunks()] == [chunks[0].id, chunks[2].id]
    assert chunk_store.manifest(SRC_A) == {"a.txt": {PARTIAL + "v1"}}  # so the next sync redoes a.txt


def test_delete_of_an_unknown_document_is_a_no_op(chunk_store, hash_embedder):
    put(chunk_store, hash_embedder, [make_chunk("a.txt", 0, "alpha")])
    chunk_store.delete_document(SRC_A, "nope.txt")
    chunk_store.delete_document(SRC_A, "a.txt", keep_sha256="v1")
    assert chunk_store.count() == 1


# -- WriteLock ------------------------------------------------------------------------------


def test_write_lock_second_holder_fails_with_pid(tmp_path):
    with WriteLock(tmp_path), pytest.raises(IndexLockedError, match=rf"pid {os.getpid()}\b"), WriteLock(tmp_path):
        pass  # pragma: no cover


def test_write_lock_is_reusable_after_release(tmp_path):
    with WriteLock(tmp_path):
        pass
    with WriteLock(tmp_path) as lock:
        assert lock.path.read_text() == str(os.getpid())


def test_write_lock_error_is_a_store_error(tmp_path):
    with WriteLock(tmp_path), pytest.raises(StoreError, match=str(tmp_path)):
        WriteLock(tmp_path).__enter__()


def test_write_lock_file_names_the_writer_only_while_it_writes(tmp_path):
    with WriteLock(tmp_path) as lock:
        assert lock.path.read_text() == str(os.getpid())
        assert lock.interrupted == ""
    assert lock.path.read_text() == ""


def test_write_lock_reports_a_writer_that_died_holding_it(tmp_path):
    (tmp_path / ".write.lock").write_text("4242")  # what a SIGKILLed writer leaves: its pid, no flock
    with WriteLock(tmp_path) as lock:
        assert lock.interrupted == "4242"
        assert lock.path.read_text() == str(os.getpid())
    with WriteLock(tmp_path) as lock:
        assert lock.interrupted == ""


def test_write_locks_on_different_folders_do_not_conflict(tmp_path):
    with WriteLock(tmp_path / "one"), WriteLock(tmp_path / "two"):
        pass


def test_new_collections_score_by_inner_product_so_mean_vectors_are_not_renormalised(chunk_store):
    assert chunk_store.collection.metadata["hnsw:space"] == "ip"


def test_index_name_records_the_window_size():
    assert index_name("e5", 0) == "e5"
    assert index_name("e5", 320) == "e5+window320"


def test_a_window_size_mismatch_says_which_setting_reopens_the_index(make_chunk_store):
    make_chunk_store("w", embedder_name=index_name("model-a", 0))
    with pytest.raises(StoreError, match=r"'model-a'.*'model-a\+window320'.*RAG_WINDOW_TOKENS"):
        make_chunk_store("w", embedder_name=index_name("model-a", 320))
    with pytest.raises(StoreError) as other_model:
        make_chunk_store("w", embedder_name=index_name("model-b", 0))
    assert "RAG_WINDOW_TOKENS" not in str(other_model.value)


@pytest.mark.parametrize("space", ["ip", "cosine", "l2"])
def test_similarities_give_the_score_query_gives(make_chunk_store, hash_embedder, space):
    # a chunk that `query` did not return can be scored exactly, whatever the collection's space
    store = make_chunk_store(index=f"space-{space}")
    store.client.delete_collection(store.name)
    store.collection = store.client.create_collection(
        store.name, metadata={"hnsw:space": space}, embedding_function=None
    )
    chunks = [
        make_chunk(f"d{i}.txt", i, t) for i, t in enumerate(["lava and volcanoes", "bread and yeast", "steam trains"])
    ]
    vectors = hash_embedder.embed_passages([c.text for c in chunks]) * np.array([[1.0], [0.5], [2.0]])  # not unit
    store.upsert(chunks, vectors)
    query = hash_embedder.embed_query("volcanoes erupt lava")
    returned = {c.id: score for c, score in store.query(query, 3)}
    assert len(returned) == 3 and len(set(returned.values())) == 3
    assert store.similarities(query, list(returned)) == pytest.approx(returned, abs=1e-5)
    assert store.similarities(query, []) == {}
