"""Chroma, embedded (PersistentClient under `index/`) or a server (HttpClient).

The store holds one collection per document set. Each record is one chunk: its id, its
embedding (computed by us: Chroma's default embedding function downloads a model and
fails offline), its text, and flat metadata (document path, title, date, char span,
position, the document's sha256 and the chunk text's sha256).

The store is also the sync manifest: `manifest()` reads back {path: {sha256, ...}} from
the chunk metadata, so the record of what is indexed can never disagree with what is
indexed, even after a crash between two writes.

The collection records which embedding model filled it; opening it with another model
raises a StoreError instead of mixing vectors of different spaces.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexLockedError, StoreError
from rag.types import Chunk

log = logging.getLogger(__name__)

# Chroma's own telemetry must stay off: no network, and nothing leaves the machine.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

_GET_PAGE = 5000  # records per `get` page: bounded memory on large collections


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_metadata(chunk: Chunk) -> dict[str, Any]:
    return {
        "doc_path": chunk.doc_path,
        "title": chunk.title,
        "date": chunk.date,
        "start": chunk.start,
        "end": chunk.end,
        "position": chunk.position,
        "doc_sha256": chunk.doc_sha256,
        "text_sha256": text_sha(chunk.text),
        "tokens": chunk.tokens,
        "source": chunk.source,
    }


def chunk_from_record(chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
    return Chunk(
        id=chunk_id,
        doc_path=str(meta.get("doc_path", "")),
        title=str(meta.get("title", "")),
        date=str(meta.get("date", "")),
        text=text,
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", len(text))),
        position=int(meta.get("position", 0)),
        doc_sha256=str(meta.get("doc_sha256", "")),
        tokens=int(meta.get("tokens", 0)),
        source=str(meta.get("source", "")),
    )


class ChunkStore:
    """One Chroma collection of chunks."""

    def __init__(
        self,
        collection: str = "documents",
        path: Path | None = None,
        url: str = "",
        auth_token: str = "",
        embedder_name: str = "",
    ) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        try:
            if url:
                from urllib.parse import urlparse

                parsed = urlparse(url if "://" in url else f"http://{url}")
                headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else None
                self.client = chromadb.HttpClient(
                    host=parsed.hostname or "localhost",
                    port=parsed.port or 8000,
                    ssl=parsed.scheme == "https",
                    headers=headers,
                    settings=chroma_settings,
                )
                self.location = url
            else:
                if path is None:
                    raise StoreError("No index folder given for the embedded store (RAG_INDEX_DIR).")
                path.mkdir(parents=True, exist_ok=True)
                self.client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
                self.location = str(path)
        except StoreError:
            raise
        except Exception as exc:
            where = url or str(path)
            raise StoreError(f"Cannot open the Chroma store at {where!r}: {exc}") from exc
        self.path = path
        self.name = collection
        self.embedder_name = embedder_name
        meta = {"hnsw:space": "cosine", "embedder": embedder_name} if embedder_name else {"hnsw:space": "cosine"}
        try:
            self.collection = self.client.get_or_create_collection(collection, metadata=meta, embedding_function=None)
        except Exception as exc:  # e.g. a RAG_COLLECTION name Chroma refuses ("t", "a b")
            raise StoreError(f"Cannot open the collection {collection!r} in {self.location!r}: {exc}") from exc
        stored = (self.collection.metadata or {}).get("embedder", "")
        if embedder_name and stored and stored != embedder_name:
            raise StoreError(
                f"The collection {collection!r} was built with the embedder {stored!r}, not {embedder_name!r}. "
                "Use another collection (RAG_COLLECTION) or re-ingest into an empty index."
            )

    # -- reads ---------------------------------------------------------------------------

    def count(self) -> int:
        return int(self.collection.count())

    def _pages(self, include: list[str], where: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self.collection.get(include=include, where=where, limit=_GET_PAGE, offset=offset)  # type: ignore[arg-type]
            if not page["ids"]:
                return
            yield dict(page)
            offset += len(page["ids"])

    def manifest(self, source: str | None = None) -> dict[str, set[str]]:
        """{document path: set of document sha256 found among its chunks}, for one source folder."""
        out: dict[str, set[str]] = {}
        where = {"source": source} if source is not None else None
        for page in self._pages(["metadatas"], where):
            for meta in page["metadatas"]:
                out.setdefault(str(meta["doc_path"]), set()).add(str(meta.get("doc_sha256", "")))
        return out

    def chunks(self, where: dict[str, Any] | None = None) -> list[Chunk]:
        """Every chunk (or those matching `where`), ordered by document path and position."""
        out = []
        for page in self._pages(["documents", "metadatas"], where):
            for cid, text, meta in zip(page["ids"], page["documents"], page["metadatas"], strict=True):
                out.append(chunk_from_record(cid, text or "", dict(meta)))
        out.sort(key=lambda c: (c.doc_path, c.position))
        return out

    def embeddings_by_text(self, shas: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of chunks whose text has one of these sha256: re-embedding is skipped."""
        found: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(shas))
        for i in range(0, len(wanted), 500):
            where: Any = {"text_sha256": {"$in": wanted[i : i + 500]}}
            page = self.collection.get(where=where, include=["embeddings", "metadatas"])
            for emb, meta in zip(page["embeddings"], page["metadatas"], strict=True):  # type: ignore[arg-type]
                found[str(meta["text_sha256"])] = np.asarray(emb, dtype=np.float32)
        return found

    def query(self, embedding: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
        n = self.count()
        if n == 0:
            return []
        res = self.collection.query(
            query_embeddings=[embedding.tolist()], n_results=min(k, n), include=["documents", "metadatas", "distances"]
        )
        out = []
        for cid, text, meta, dist in zip(
            res["ids"][0],
            res["documents"][0],  # type: ignore[index]
            res["metadatas"][0],  # type: ignore[index]
            res["distances"][0],  # type: ignore[index]
            strict=True,
        ):
            out.append((chunk_from_record(cid, text or "", dict(meta)), 1.0 - float(dist)))
        return out

    # -- writes (idempotent: any of them can be repeated after a crash) -------------------

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray, batch: int = 1000) -> None:
        for i in range(0, len(chunks), batch):
            part = chunks[i : i + batch]
            self.collection.upsert(
                ids=[c.id for c in part],
                documents=[c.text for c in part],
                metadatas=[chunk_metadata(c) for c in part],
                embeddings=embeddings[i : i + batch].tolist(),
            )

    def delete_document(self, source: str, doc_path: str, keep_sha256: str | None = None) -> None:
        """Remove a document's chunks (all, or only those not of version `keep_sha256`)."""
        terms: list[dict[str, Any]] = [{"source": source}, {"doc_path": doc_path}]
        if keep_sha256 is not None:
            terms.append({"doc_sha256": {"$ne": keep_sha256}})
        where: dict[str, Any] = {"$and": terms}
        self.collection.delete(where=where)


class WriteLock:
    """An exclusive lock file beside the index: one writing process at a time.

    A second writer fails at once with the holder's pid instead of hanging on Chroma's
    own database locks. Readers never take it.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".write.lock"
        self._fd: int | None = None

    def __enter__(self) -> WriteLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise IndexLockedError(
                f"The index at {str(self.path.parent)!r} is being written by another process (pid {holder}). "
                "Wait for it to finish, or stop it."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
