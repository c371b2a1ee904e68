"""Incremental sync of a folder into the store.

For each supported file, the sha256 of its bytes is compared with the manifest read back
from the store (see `store.py`): unchanged files are not even parsed; new and changed
files are loaded, chunked and embedded; files gone from the folder lose their chunks.

Order of writes, chosen so that a crash at any point leaves a state the next run repairs:
the new version's chunks are written first (ids are stable, so a repeat overwrites; chunks
stored unchanged are skipped or only relabelled, see `ChunkStore.write`), then the old
version's leftover chunks are deleted. A document caught in between shows two sha256, or
a partial one, in the manifest and is simply redone. Nothing is ever duplicated. A writer
killed while Chroma saves its vector index can leave chunks stored but unsearchable: the next
run, finding the dead writer's pid in the lock file, drops them and so redoes their documents.
Killed with SIGKILL at random moments, all this holds: see benchmarks/crash_trials.py.

Identical chunk texts are embedded once per run, and texts already in the store (same
sha256) reuse their stored vectors, so re-ingesting an edited document only embeds what
changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import chunk_document
from rag.embeddings import Embedder
from rag.errors import RagError
from rag.loaders import LoadError, iter_files, load_file
from rag.store import ChunkStore, WriteLock, vector_sha
from rag.types import Chunk, Document, IngestReport

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, message)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def source_key(folder: Path) -> str:
    return str(folder.resolve())


@dataclass
class _Pending:
    """Chunks waiting to be embedded and written, grouped by document."""

    docs: list[tuple[str, str, list[Chunk]]] = field(default_factory=list)  # (path, sha, chunks)

    @property
    def size(self) -> int:
        return sum(len(chunks) for _, _, chunks in self.docs)


def check_folder(folder: Path) -> None:
    """RagError unless `folder` is a folder to sync."""
    if not folder.is_dir():
        raise RagError(f"Document folder {str(folder)!r} does not exist or is not a folder. Check RAG_DOCS_DIR.")


def sync_folder(
    folder: Path,
    store: ChunkStore,
    embedder: Embedder,
    chunk_tokens: int = 160,
    progress: Progress | None = None,
    show_bar: bool = False,
    flush_chunks: int = 256,
    window_tokens: int = 0,
    known: tuple[str, Sequence[Chunk]] | None = None,
) -> IngestReport:
    """Make the store hold exactly the current supported files of `folder`.

    `window_tokens` > 0: each chunk's vector also embeds its window of neighbouring chunks
    (see `rag.chunking.with_windows`); the store must be named for it (`rag.store.index_name`).
    `known`: a name of the store's contents and every chunk they hold (the retriever's), from
    which what is indexed is taken while the store keeps that name (`ChunkStore.manifest_of`)."""
    check_folder(folder)
    started = time.perf_counter()
    source = source_key(folder)
    report = IngestReport()
    lock = WriteLock(store.path) if store.path else None
    with lock or contextlib.nullcontext():
        # the last writer died holding the lock: Chroma's vector index may have lost chunks
        if lock is not None and lock.interrupted and (lost := store.drop_unsearchable(embedder.embed_query("?"))):
            log.warning(
                "an ingest (pid %s) was killed: %d chunks lost from the vector index", lock.interrupted, len(lost)
            )
        indexed = store.manifest_of(known, source)
        files = list(iter_files(folder))
        seen: set[str] = set()
        todo: list[tuple[Path, str, str]] = []  # (file, rel, sha)
        for path in files:
            rel = path.relative_to(folder).as_posix()
            seen.add(rel)
            try:
                sha = file_sha256(path)
            except OSError as exc:
                _skip(report, rel, f"{rel}: cannot read file ({exc.strerror or exc})")
                if rel in indexed:  # indexed before and now unreadable: keep nothing stale
                    store.delete_document(source, rel)
                    report.removed.append(rel)
                continue
            if indexed.get(rel) == {sha}:
                report.unchanged += 1
                continue
            todo.append((path, rel, sha))

        bar = _bar(len(todo), show_bar)
        pending = _Pending()
        for done, (path, rel, sha) in enumerate(todo, 1):
            try:
                doc = load_file(path, folder)
            except LoadError as exc:
                _skip(report, rel, str(exc))
                if rel in indexed:  # it was indexed before and is now unreadable: keep nothing stale
                    store.delete_document(source, rel)
                    report.removed.append(rel)
            else:
                doc = _with_source(doc, source, sha)
                chunks = chunk_document(doc, chunk_tokens, window_tokens)
                (report.updated if rel in indexed else report.added).append(rel)
                pending.docs.append((rel, sha, chunks))
                if pending.size >= flush_chunks:
                    _flush(pending, store, embedder, source, report)
            finally:  # a skipped file counts as read too, so the count reaches the total
                if progress:
                    progress(done, len(todo), rel)
                if bar is not None:
                    bar.update(1)
        _flush(pending, store, embedder, source, report)
        if bar is not None:
            bar.close()

        for rel in sorted(set(indexed) - seen):
            store.delete_document(source, rel)
            report.removed.append(rel)
        store.settle()  # the store is whole again: name its contents (see `ChunkStore.version`)
    report.seconds = time.perf_counter() - started
    return report


def _skip(report: IngestReport, rel: str, reason: str) -> None:
    log.warning("skipped %s", reason)
    report.skipped[rel] = reason


def _with_source(doc: Document, source: str, sha: str) -> Document:
    # keep the hash of the bytes we compared with the manifest, even if the file changed since
    return replace(doc, source=source, sha256=sha)


def _flush(pending: _Pending, store: ChunkStore, embedder: Embedder, source: str, report: IngestReport) -> None:
    chunks = [c for _, _, doc_chunks in pending.docs for c in doc_chunks]
    if chunks:
        store.write(chunks, lambda todo: _vectors(todo, store, embedder, report))
        report.chunks_added += len(chunks)
    for rel, sha, _ in pending.docs:
        store.delete_document(source, rel, keep_sha256=sha)
    pending.docs.clear()


def _vectors(chunks: list[Chunk], store: ChunkStore, embedder: Embedder, report: IngestReport) -> np.ndarray:
    """Vectors of `chunks`: stored ones are reused by `vector_sha`, each new text is embedded once.

    A chunk with a window (`context`) gets the mean of its text's and its window's unit vectors."""
    keys = [vector_sha(c) for c in chunks]
    known = store.embeddings_by_text(keys)
    todo = {k: c for c, k in zip(chunks, keys, strict=True) if k not in known}
    texts = list(dict.fromkeys(t for c in todo.values() for t in (c.text, c.context) if t))
    if texts:
        vecs = dict(zip(texts, embedder.embed_passages(texts), strict=True))
        for key, c in todo.items():
            known[key] = (vecs[c.text] + vecs[c.context]) / 2 if c.context else vecs[c.text]
    report.chunks_embedded += len(todo)
    return np.vstack([known[k] for k in keys])


def _bar(total: int, show: bool) -> Any:
    if not show or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="Indexing")
