"""Unit tests for rag.ingest.sync_folder: incremental, idempotent, crash-repairing sync."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from rag.chunking import chunk_document
from rag.errors import IndexLockedError, RagError
from rag.ingest import file_sha256, source_key, sync_folder
from rag.loaders import load_file
from rag.store import PARTIAL, ChunkStore, WriteLock

TOKENS = 12  # small budget: each test sentence below becomes its own chunk


def sentences(topic: str, n: int) -> str:
    return " ".join(f"Sentence {i} tells something about {topic} number {i}." for i in range(n))


def snapshot(store: ChunkStore) -> dict[str, tuple[str, str, str, int, str]]:
    return {c.id: (c.source, c.doc_path, c.text, c.position, c.doc_sha256) for c in store.chunks()}


def texts_of(store: ChunkStore, doc_path: str) -> list[str]:
    return [c.text for c in store.chunks() if c.doc_path == doc_path]


def expected_chunks(folder: Path, rel: str):  # type: ignore[no-untyped-def]
    """What a clean ingest of one file must store."""
    from dataclasses import replace

    path = folder / rel
    doc = replace(load_file(path, folder), source=source_key(folder), sha256=file_sha256(path))
    return chunk_document(doc, TOKENS)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "cats.txt").write_text(sentences("cats", 4), encoding="utf-8")
    (folder / "volcano.md").write_text("# Volcanoes\n\n" + sentences("volcanoes", 3), encoding="utf-8")
    (folder / "sub" / "bread.txt").write_text(sentences("bread", 2), encoding="utf-8")
    return folder


def sync(folder: Path, store: ChunkStore, embedder):  # type: ignore[no-untyped-def]
    return sync_folder(folder, store, embedder, chunk_tokens=TOKENS)


def sync_killed_after(written: int, folder: Path, store: ChunkStore, embedder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A sync killed once `written` chunks of its first write batch are stored."""
    real_upsert = store._upsert

    def die(chunks, embeddings, metas, batch):  # type: ignore[no-untyped-def]
        real_upsert(chunks[:written], embeddings[:written], metas[:written], batch)
        raise RuntimeError("killed between two batches")

    monkeypatch.setattr(store, "_upsert", die)
    with pytest.raises(RuntimeError):
        sync(folder, store, embedder)
    monkeypatch.undo()


# -- first sync and no-op re-syncs -----------------------------------------------------------


def test_first_sync_adds_every_file(docs, chunk_store, hash_embedder):
    report = sync(docs, chunk_store, hash_embedder)
    assert sorted(report.added) == ["cats.txt", "sub/bread.txt", "volcano.md"]
    assert report.updated == report.removed == []
    assert report.unchanged == 0
    assert report.skipped == {}
    assert report.changed
    expected = sum(len(expected_chunks(docs, rel)) for rel in ("cats.txt", "sub/bread.txt", "volcano.md"))
    assert chunk_store.count() == report.chunks_added == expected
    assert set(chunk_store.manifest(source_key(docs))) == {"cats.txt", "sub/bread.txt", "volcano.md"}


def test_stored_chunks_match_a_clean_chunking(docs, chunk_store, hash_embedder):
    sync(docs, chunk_store, hash_embedder)
    want = expected_chunks(docs, "cats.txt")
    assert len(want) == 4
    assert [c for c in chunk_store.chunks() if c.doc_path == "cats.txt"] == want


def test_resync_of_unchanged_folder_embeds_and_writes_nothing(docs, chunk_store, counting_embedder, monkeypatch):
    sync(docs, chunk_store, counting_embedder)
    before = snapshot(chunk_store)
    counting_embedder.embedded.clear()
    writes: list[str] = []
    for name in ("write", "upsert", "delete_document"):
        monkeypatch.setattr(chunk_store, name, lambda *a, name=name, **k: writes.append(name))

    report = sync(docs, chunk_store, counting_embedder)

    assert counting_embedder.embedded == []
    assert writes == []
    assert report.unchanged == 3
    assert report.added == report.updated == report.removed == []
    assert report.chunks_added == report.chunks_embedded == 0
    assert not report.changed
    assert snapshot(chunk_store) == before


def test_five_reruns_never_duplicate(docs, chunk_store, hash_embedder):
    sync(docs, chunk_store, hash_embedder)
    count, before = chunk_store.count(), snapshot(chunk_store)
    for _ in range(5):
        assert sync(docs, chunk_store, hash_embedder).unchanged == 3
    assert chunk_store.count() == count
    assert snapshot(chunk_store) == before


def test_missing_folder_raises_rag_error_with_path(tmp_path, chunk_store, hash_embedder):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(RagError, match="no-such-folder"):
        sync(missing, chunk_store, hash_embedder)


def test_a_file_instead_of_a_folder_raises_rag_error(docs, chunk_store, hash_embedder):
    with pytest.raises(RagError, match=r"cats\.txt"):
        sync(docs / "cats.txt", chunk_store, hash_embedder)


def test_empty_folder_syncs_to_nothing(tmp_path, chunk_store, hash_embedder):
    (tmp_path / "empty").mkdir()
    report = sync(tmp_path / "empty", chunk_store, hash_embedder)
    assert not report.changed
    assert chunk_store.count() == 0


# -- edits and deletions ---------------------------------------------------------------------


def test_editing_a_file_replaces_its_chunks(docs, chunk_store, hash_embedder):
    sync(docs, chunk_store, hash_embedder)
    (docs / "cats.txt").write_text(sentences("dogs", 4), encoding="utf-8")

    report = sync(docs, chunk_store, hash_embedder)

    assert report.updated == ["cats.txt"]
    assert report.unchanged == 2
    stored = texts_of(chunk_store, "cats.txt")
    assert stored == [c.text for c in expected_chunks(docs, "cats.txt")]
    assert not any("cats" in t for t in stored)
    assert chunk_store.manifest(source_key(docs))["cats.txt"] == {file_sha256(docs / "cats.txt")}


def test_editing_to_fewer_chunks_leaves_no_old_chunk(docs, chunk_store, hash_embedder):
    sync(docs, chunk_store, hash_embedder)
    total_before = chunk_store.count()
    (docs / "cats.txt").write_text("Only one short sentence remains.", encoding="utf-8")

    sync(docs, chunk_store, hash_embedder)

    assert texts_of(chunk_store, "cats.txt") == ["Only one short sentence remains."]
    assert chunk_store.count() == total_before - 4 + 1
    assert not any("cats" in c.text for c in chunk_store.chunks())


def test_editing_to_more_chunks(docs, chunk_store, hash_embedder):
    sync(docs, chunk_store, hash_embedder)
    (docs / "sub" / "bread.txt").write_text(sentences("bread", 6), encoding="utf-8")
    sync(docs, chunk_store, hash_embedder)
    assert texts_of(chunk_store, "sub/bread.txt") == [c.text for c in expected_chunks(docs, "sub/bread.txt")]
    assert len(texts_of(chunk_store, "sub/bread.txt")) == 6


def test_deleting_a_file_removes_its_chunks(docs, chunk_store, hash_embedder):
    sync(docs, chunk_store, hash_embedder)
    (docs / "volcano.md").unlink()
    report = sync(docs, chunk_store, hash_embedder)
    assert report.removed == ["volcano.md"]
    assert texts_of(chunk_store, "volcano.md") == []
    assert "volcano.md" not in chunk_store.manifest(source_key(docs))
    assert {c.doc_path for c in chunk_store.chunks()} == {"cats.txt", "sub/bread.txt"}


def test_deleting_every_file_empties_the_store(docs, chunk_store, hash_embedder):
    sync(docs, chunk_store, hash_embedder)
    for path in list(docs.rglob("*.*")):
        path.unlink()
    sync(docs, chunk_store, hash_embedder)
    assert chunk_store.count() == 0


# -- broken files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [("binary.txt", b"\x00\x01\x02PK\x03\x04" * 50), ("empty.txt", b""), ("blank.md", b"  \n\n \t\n")],
)
def test_broken_file_is_skipped_with_a_warning_and_others_indexed(
    docs, chunk_store, hash_embedder, caplog, name, content
):
    (docs / name).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="rag.ingest"):
        report = sync(docs, chunk_store, hash_embedder)
    assert list(report.skipped) == [name]
    assert name in report.skipped[name]
    assert any(name in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)
    assert sorted(report.added) == ["cats.txt", "sub/bread.txt", "volcano.md"]
    assert name not in {c.doc_path for c in chunk_store.chunks()}


def test_indexed_file_that_becomes_binary_loses_its_chunks(docs, chunk_store, hash_embedder, caplog):
    sync(docs, chunk_store, hash_embedder)
    (docs / "cats.txt").write_bytes(b"\x00\xff\x00\xfe" * 100)
    with caplog.at_level(logging.WARNING, logger="rag.ingest"):
        report = sync(docs, chunk_store, hash_embedder)
    assert "cats.txt" in report.skipped
    assert report.removed == ["cats.txt"]
    assert texts_of(chunk_store, "cats.txt") == []
    assert "cats.txt" in caplog.text


def test_indexed_file_that_cannot_be_opened_loses_its_chunks(docs, chunk_store, hash_embedder, caplog):
    # a dangling symlink is unreadable even for root (chmod 000 is not)
    sync(docs, chunk_store, hash_embedder)
    (docs / "cats.txt").unlink()
    os.symlink(docs / "gone.txt", docs / "cats.txt")
    with caplog.at_level(logging.WARNING, logger="rag.ingest"):
        report = sync(docs, chunk_store, hash_embedder)
    assert "cats.txt" in report.skipped
    assert "cats.txt" in caplog.text
    assert texts_of(chunk_store, "cats.txt") == []
    assert report.removed == ["cats.txt"]
    assert "cats.txt" not in chunk_store.manifest(source_key(docs))


def test_skipped_broken_file_is_retried_once_fixed(docs, chunk_store, hash_embedder):
    (docs / "later.txt").write_bytes(b"")
    sync(docs, chunk_store, hash_embedder)
    (docs / "later.txt").write_text("Now it has some words.", encoding="utf-8")
    report = sync(docs, chunk_store, hash_embedder)
    assert report.added == ["later.txt"]
    assert texts_of(chunk_store, "later.txt") == ["Now it has some words."]


# -- embedding reuse -------------------------------------------------------------------------


def test_identical_chunk_texts_in_two_files_are_embedded_once(tmp_path, chunk_store, counting_embedder):
    folder = tmp_path / "dup"
    folder.mkdir()
    shared = "This boilerplate paragraph is shared by both files."
    (folder / "one.txt").write_text(shared, encoding="utf-8")
    (folder / "two.txt").write_text(shared, encoding="utf-8")
    report = sync(folder, chunk_store, counting_embedder)
    assert counting_embedder.embedded == [shared]
    assert report.chunks_embedded == 1
    assert chunk_store.count() == report.chunks_added == 2


def test_identical_texts_across_flushes_are_embedded_once(tmp_path, chunk_store, counting_embedder):
    folder = tmp_path / "dup"
    folder.mkdir()
    shared = "This boilerplate paragraph is shared by all files."
    for name in ("a.txt", "b.txt", "c.txt"):
        (folder / name).write_text(shared, encoding="utf-8")
    sync_folder(folder, chunk_store, counting_embedder, chunk_tokens=TOKENS, flush_chunks=1)
    assert counting_embedder.embedded == [shared]
    assert chunk_store.count() == 3


def test_reingest_of_edited_doc_embeds_only_changed_texts(docs, chunk_store, counting_embedder):
    sync(docs, chunk_store, counting_embedder)
    old = texts_of(chunk_store, "cats.txt")
    counting_embedder.embedded.clear()
    new_sentence = "A brand new sentence about giraffes."
    (docs / "cats.txt").write_text(" ".join([*old[:2], new_sentence, *old[2:]]), encoding="utf-8")

    report = sync(docs, chunk_store, counting_embedder)

    assert counting_embedder.embedded == [new_sentence]
    assert report.chunks_embedded == 1
    assert texts_of(chunk_store, "cats.txt") == [*old[:2], new_sentence, *old[2:]]


def test_reingest_after_an_append_upserts_only_the_new_chunk(docs, chunk_store, hash_embedder, monkeypatch):
    sync(docs, chunk_store, hash_embedder)
    upserted: list[str] = []
    real_upsert = chunk_store.collection.upsert

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        upserted.extend(kwargs["ids"])
        return real_upsert(**kwargs)

    monkeypatch.setattr(chunk_store.collection, "upsert", spy)
    (docs / "cats.txt").write_text(sentences("cats", 4) + " One more sentence.", encoding="utf-8")

    sync(docs, chunk_store, hash_embedder)

    want = expected_chunks(docs, "cats.txt")
    assert upserted == [want[-1].id]  # the 4 unchanged texts only had their version relabelled
    assert [c for c in chunk_store.chunks() if c.doc_path == "cats.txt"] == want


def test_reused_vectors_equal_fresh_ones(docs, chunk_store, hash_embedder):
    sync(docs, chunk_store, hash_embedder)
    (docs / "cats.txt").write_text(sentences("cats", 4) + " One more line.", encoding="utf-8")
    sync(docs, chunk_store, hash_embedder)
    for chunk in chunk_store.chunks():
        (_, sim), *_ = chunk_store.query(hash_embedder.embed_passages([chunk.text])[0], 1)
        assert sim == pytest.approx(1.0, abs=1e-4)


# -- several sources, crashes, locking -------------------------------------------------------


def test_two_source_folders_do_not_delete_each_other(tmp_path, chunk_store, hash_embedder):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "same-name.txt").write_text("Apples grow on trees in orchards.", encoding="utf-8")
    (second / "same-name.txt").write_text("Submarines dive under the ocean.", encoding="utf-8")
    (second / "only-second.txt").write_text("Lighthouses guide ships at night.", encoding="utf-8")

    sync(first, chunk_store, hash_embedder)
    report = sync(second, chunk_store, hash_embedder)
    assert report.removed == []
    assert sync(first, chunk_store, hash_embedder).removed == []

    assert chunk_store.count() == 3
    assert chunk_store.manifest(source_key(first)) == {"same-name.txt": {file_sha256(first / "same-name.txt")}}
    assert set(chunk_store.manifest(source_key(second))) == {"same-name.txt", "only-second.txt"}

    (second / "same-name.txt").unlink()
    sync(second, chunk_store, hash_embedder)
    assert [c.text for c in chunk_store.chunks({"source": source_key(first)})] == ["Apples grow on trees in orchards."]


def test_crash_between_upsert_and_delete_is_repaired(tmp_path, docs, chunk_store, hash_embedder, make_chunk_store):
    sync(docs, chunk_store, hash_embedder)
    (docs / "cats.txt").write_text(sentences("dogs", 2), encoding="utf-8")  # 4 chunks -> 2

    # the crash: the new version's chunks are written, the old version's leftovers are not deleted
    new_chunks = expected_chunks(docs, "cats.txt")
    chunk_store.upsert(new_chunks, hash_embedder.embed_passages([c.text for c in new_chunks]))
    assert len(chunk_store.manifest(source_key(docs))["cats.txt"]) == 2
    assert len(texts_of(chunk_store, "cats.txt")) == 4  # 2 new + 2 stale

    report = sync(docs, chunk_store, hash_embedder)
    assert report.updated == ["cats.txt"]

    clean = make_chunk_store(collection="clean")
    sync(docs, clean, hash_embedder)
    assert snapshot(chunk_store) == snapshot(clean)
    assert chunk_store.count() == clean.count()


def test_crash_between_two_write_batches_of_a_document_is_repaired(
    docs, chunk_store, hash_embedder, make_chunk_store, monkeypatch
):
    sync_killed_after(2, docs, chunk_store, hash_embedder, monkeypatch)

    # cats.txt, 4 chunks, has 2 written with its current sha256: it must not look current
    assert chunk_store.manifest(source_key(docs)) == {"cats.txt": {PARTIAL + file_sha256(docs / "cats.txt")}}
    report = sync(docs, chunk_store, hash_embedder)
    assert report.updated == ["cats.txt"]
    assert sorted(report.added) == ["sub/bread.txt", "volcano.md"]
    clean = make_chunk_store(collection="clean")
    sync(docs, clean, hash_embedder)
    assert snapshot(chunk_store) == snapshot(clean)


def test_sync_after_a_killed_writer_redoes_documents_with_unsearchable_chunks(
    docs, chunk_store, hash_embedder, make_chunk_store, monkeypatch
):
    sync(docs, chunk_store, hash_embedder)
    lost = expected_chunks(docs, "cats.txt")[2].id
    real_query = chunk_store.collection.query

    def without_lost(**kwargs):  # type: ignore[no-untyped-def]
        result = real_query(**kwargs)
        if lost in result["ids"][0]:
            result["ids"][0].remove(lost)  # as if the killed writer's HNSW save lost it
        return result

    monkeypatch.setattr(chunk_store.collection, "query", without_lost)
    assert sync(docs, chunk_store, hash_embedder).unchanged == 3  # no crash recorded: not checked

    (chunk_store.path / ".write.lock").write_text("4242")  # a writer killed while holding the lock
    report = sync(docs, chunk_store, hash_embedder)

    assert report.updated == ["cats.txt"]
    clean = make_chunk_store(collection="clean")
    sync(docs, clean, hash_embedder)
    assert snapshot(chunk_store) == snapshot(clean)


def test_sync_refuses_while_another_writer_holds_the_lock(docs, chunk_store, hash_embedder):
    with WriteLock(chunk_store.path), pytest.raises(IndexLockedError, match=str(os.getpid())):
        sync(docs, chunk_store, hash_embedder)
    assert chunk_store.count() == 0
    sync(docs, chunk_store, hash_embedder)  # released: works
    assert chunk_store.count() > 0


def test_progress_callback_counts_files_to_do(docs, chunk_store, hash_embedder):
    calls: list[tuple[int, int, str]] = []
    sync_folder(docs, chunk_store, hash_embedder, chunk_tokens=TOKENS, progress=lambda *a: calls.append(a))
    assert [(done, total) for done, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]


def test_progress_counts_a_skipped_file_as_read(docs, chunk_store, hash_embedder, caplog):
    (docs / "broken.pdf").write_bytes(b"\x00\x01 not a pdf")
    calls: list[tuple[int, int, str]] = []
    with caplog.at_level(logging.WARNING):
        report = sync_folder(docs, chunk_store, hash_embedder, chunk_tokens=TOKENS, progress=lambda *a: calls.append(a))
    assert list(report.skipped) == ["broken.pdf"]
    assert [(done, total) for done, total, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert "broken.pdf" in {path for *_, path in calls}


# -- window vectors ------------------------------------------------------------------------


def test_a_windowed_chunk_is_stored_with_the_mean_of_its_text_and_window_vectors(tmp_path, chunk_store, hash_embedder):
    import numpy as np

    from rag.store import vector_sha

    folder = tmp_path / "w"
    folder.mkdir()
    text = "Volcanoes erupt burning lava. Villages evacuate quickly. Farmers harvest grapes."
    (folder / "a.txt").write_text(text, encoding="utf-8")
    sync_folder(folder, chunk_store, hash_embedder, chunk_tokens=TOKENS, window_tokens=2 * TOKENS)
    from dataclasses import replace

    doc = replace(load_file(folder / "a.txt", folder), source=source_key(folder), sha256=file_sha256(folder / "a.txt"))
    windowed = [c for c in chunk_document(doc, TOKENS, 2 * TOKENS) if c.context]
    assert windowed
    for chunk in windowed:
        stored = chunk_store.embeddings_by_text([vector_sha(chunk)])[vector_sha(chunk)]
        own, window = hash_embedder.embed_passages([chunk.text, chunk.context])
        np.testing.assert_allclose(stored, (own + window) / 2, atol=1e-6)
        assert not np.allclose(stored, own)


def test_editing_a_neighbour_re_embeds_the_unchanged_chunk_of_its_window_only(tmp_path, chunk_store, counting_embedder):
    folder = tmp_path / "w"
    folder.mkdir()
    parts = [f"Sentence {i} tells something about lava number {i}." for i in range(4)]
    (folder / "a.txt").write_text(" ".join(parts), encoding="utf-8")
    sync_folder(folder, chunk_store, counting_embedder, chunk_tokens=TOKENS, window_tokens=2 * TOKENS)
    before = {c.position: c for c in chunk_store.chunks()}
    vectors_before = chunk_store.collection.get(include=["embeddings"])
    parts[3] = "Sentence 3 now says something else entirely about lava."
    (folder / "a.txt").write_text(" ".join(parts), encoding="utf-8")
    counting_embedder.embedded.clear()
    report = sync_folder(folder, chunk_store, counting_embedder, chunk_tokens=TOKENS, window_tokens=2 * TOKENS)
    after = {c.position: c for c in chunk_store.chunks()}
    assert [after[p].text for p in (0, 1, 2)] == [before[p].text for p in (0, 1, 2)]
    # windows are (0, 1) and (2, 3): chunk 2's own text is unchanged but its window is not
    assert report.chunks_embedded == 2
    embedded = " ".join(counting_embedder.embedded)
    assert parts[0] not in embedded and parts[1] not in embedded and parts[3] in embedded
    vectors_after = chunk_store.collection.get(include=["embeddings"])
    old = dict(zip(vectors_before["ids"], vectors_before["embeddings"], strict=True))
    new = dict(zip(vectors_after["ids"], vectors_after["embeddings"], strict=True))
    first = [c.id for c in chunk_store.chunks() if c.position in (0, 1)]
    third = next(c.id for c in chunk_store.chunks() if c.position == 2)
    assert all(list(old[i]) == list(new[i]) for i in first)
    assert list(old[third]) != list(new[third])


# -- the name of the store's contents -----------------------------------------------------------


def test_a_sync_names_the_contents_and_keeps_the_name_while_nothing_changes(docs, chunk_store, hash_embedder):
    assert chunk_store.version() == ""  # never synced: no name
    sync(docs, chunk_store, hash_embedder)
    first = chunk_store.version()
    assert len(first) == 32
    sync(docs, chunk_store, hash_embedder)
    assert chunk_store.version() == first  # unchanged folder: the same name
    (docs / "cats.txt").write_text(sentences("dogs", 2), encoding="utf-8")
    sync(docs, chunk_store, hash_embedder)
    second = chunk_store.version()
    assert second not in ("", first)
    (docs / "volcano.md").unlink()
    sync(docs, chunk_store, hash_embedder)
    assert chunk_store.version() not in ("", first, second)


def test_a_write_cut_short_leaves_the_contents_without_a_name_until_a_sync(
    docs, chunk_store, hash_embedder, monkeypatch
):
    sync(docs, chunk_store, hash_embedder)
    named = chunk_store.version()
    (docs / "cats.txt").write_text(sentences("dogs", 3), encoding="utf-8")
    sync_killed_after(1, docs, chunk_store, hash_embedder, monkeypatch)
    assert chunk_store.version() == ""  # what a reader finds after the crash: no name to trust
    reopened = ChunkStore(chunk_store.name, path=chunk_store.path, embedder_name=chunk_store.embedder_name)
    assert reopened.version() == ""
    sync(docs, reopened, hash_embedder)
    assert reopened.version() not in ("", named)


def test_a_chroma_server_s_contents_have_no_name(chunk_store):
    chunk_store.path = None  # as for an HttpClient store
    chunk_store.settle()
    assert chunk_store.version() == ""


def test_a_sync_takes_what_is_indexed_from_the_chunks_known_under_the_current_name(
    docs, chunk_store, hash_embedder, monkeypatch
):
    sync(docs, chunk_store, hash_embedder)
    named = (chunk_store.version(), chunk_store.chunks())
    reads: list[str] = []
    manifest = chunk_store.manifest

    def counting(source=None):  # type: ignore[no-untyped-def]
        reads.append(source)
        return manifest(source)

    monkeypatch.setattr(chunk_store, "manifest", counting)
    assert chunk_store.manifest_of(named, source_key(docs)) == manifest(source_key(docs))
    assert chunk_store.manifest_of(named, "/elsewhere") == {}
    report = sync_folder(docs, chunk_store, hash_embedder, chunk_tokens=TOKENS, known=named)
    assert report.unchanged == 3 and not report.changed and reads == []  # nothing read from the store
    (docs / "cats.txt").write_text(sentences("dogs", 2), encoding="utf-8")
    report = sync_folder(docs, chunk_store, hash_embedder, chunk_tokens=TOKENS, known=named)
    assert report.updated == ["cats.txt"] and reads == []
    # the store has another name now: the chunks known under the old one are not trusted
    (docs / "cats.txt").write_text(sentences("birds", 2), encoding="utf-8")
    report = sync_folder(docs, chunk_store, hash_embedder, chunk_tokens=TOKENS, known=named)
    assert report.updated == ["cats.txt"] and reads == [source_key(docs)]
    assert snapshot(chunk_store) == {
        c.id: (c.source, c.doc_path, c.text, c.position, c.doc_sha256)
        for c in [
            *expected_chunks(docs, "cats.txt"),
            *expected_chunks(docs, "volcano.md"),
            *expected_chunks(docs, "sub/bread.txt"),
        ]
    }
