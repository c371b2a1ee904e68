"""Chroma, embedded (PersistentClient under `index/`) or a server (HttpClient).

The store holds one collection per document set. Each record is one chunk: its id, its
embedding (computed by us: Chroma's default embedding function downloads a model and
fails offline), its text, and flat metadata (document path, title, date, char span,
position, the document's sha256 and the sha256 of what its vector embeds: the chunk text, and
its window's text when it has one, see `vector_sha`).

The store is also the sync manifest: `manifest()` reads back {path: {sha256, ...}} from
the chunk metadata, so the record of what is indexed can never disagree with what is
indexed, even after a crash between two writes. Each chunk also records how many chunks
its document version has, so a version cut short by a crash between two write batches is
reported as partial, never as current.

Writes touch only what changed (`write`): re-upserting an unchanged chunk would append a
full record (vector, text, metadata) to Chroma's log and full-text index each time. New
collections save their vector index every 100 records, which bounds that log (see
`_SYNC_THRESHOLD`); an index re-ingested unchanged does not grow by a byte.

The collection records which embedding model filled it, and the window size (`index_name`);
opening it with another model or window size raises a StoreError instead of mixing vectors
of different spaces.

An embedded store names its contents (`version`): a file beside the index holds a fresh name
after each sync that leaves it whole (`settle`), and is emptied before the first write that
changes it, so a crash midway leaves no name. A reader can then keep a copy of what it read
under that name (the retriever keeps the chunks, see `rag.retrieve`) and trust it for as long
as the name stands. Only this class writes the collection; a tool that writes it otherwise
must delete that file. A Chroma server's store has no name: it is read every time.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexLockedError, StoreError
from rag.types import Chunk

log = logging.getLogger(__name__)

# Chroma's own telemetry must stay off: no network, and nothing leaves the machine.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

_GET_PAGE = 5000  # records per `get` page: bounded memory on large collections
_BATCH = 1000  # records per write call
# Chroma keeps each written record (vector and text included) in a log inside its sqlite file
# until the next HNSW save, every `sync_threshold` records: 1000 by default, which lets a
# 2.6 MB index grow past 5 MB while it edits. Saving every 100 costs no measurable ingest time.
_SYNC_THRESHOLD = 100

PARTIAL = "partial:"  # manifest prefix of a document version some of whose chunks are missing
VERSION_FILE = "rag-version"  # beside an embedded index: the name of its contents (see `ChunkStore.version`)


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def vector_sha(chunk: Chunk) -> str:
    """sha256 of what a chunk's vector embeds: its text, and its window's text if it has one
    (a chunk whose neighbour changed needs a new vector even if its own text did not)."""
    return text_sha(chunk.text if not chunk.context else f"{chunk.text}\x00{chunk.context}")


def index_name(embedder_name: str, window_tokens: int = 0) -> str:
    """What the collection records as its vector space: the embedder, and the window size when
    chunk vectors also embed their window (vectors of another window size do not mix)."""
    return f"{embedder_name}+window{window_tokens}" if embedder_name and window_tokens > 0 else embedder_name


def _version(chunk: Chunk) -> tuple[str, str, str]:
    return (chunk.source, chunk.doc_path, chunk.doc_sha256)


def chunk_metadata(chunk: Chunk, doc_chunks: int = 0) -> dict[str, Any]:
    """Flat Chroma metadata of a chunk; `doc_chunks`: how many chunks its document version has."""
    return {
        "doc_path": chunk.doc_path,
        "title": chunk.title,
        "date": chunk.date,
        "start": chunk.start,
        "end": chunk.end,
        "position": chunk.position,
        "doc_sha256": chunk.doc_sha256,
        "doc_chunks": doc_chunks,
        "text_sha256": vector_sha(chunk),  # the key for reusing its vector: see `vector_sha`
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
        self._unnamed = False  # this store emptied the version file and has not named its contents since
        # inner product: a chunk's vector is the mean of two unit vectors (its own text's and its
        # window's, see rag/ingest.py), whose dot product with a unit query is the mean of the two
        # cosines; cosine space would renormalise it and favour chunks of long documents. Unit
        # vectors score the same in both. A collection created before keeps its space.
        meta: dict[str, Any] = {"hnsw:space": "ip", "hnsw:sync_threshold": _SYNC_THRESHOLD}
        if embedder_name:
            meta["embedder"] = embedder_name
        try:
            self.collection = self.client.get_or_create_collection(collection, metadata=meta, embedding_function=None)
        except Exception as exc:  # e.g. a RAG_COLLECTION name Chroma refuses ("t", "a b")
            raise StoreError(f"Cannot open the collection {collection!r} in {self.location!r}: {exc}") from exc
        stored = (self.collection.metadata or {}).get("embedder", "")
        if embedder_name and stored and stored != embedder_name:
            raise StoreError(
                f"The collection {collection!r} was built with the embedder {stored!r}, not {embedder_name!r}. "
                "Use another collection (RAG_COLLECTION) or re-ingest into an empty index "
                f"(RAG_INDEX_DIR, or delete this one: {self.location})"
                + (
                    ", or set RAG_WINDOW_TOKENS to the window size it was built with (0 for none)."
                    if stored.split("+window")[0] == embedder_name.split("+window")[0]
                    else "."
                )
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
        """{document path: set of document sha256 found among its chunks}, for one source folder.

        A version with fewer chunks than it recorded (a crash between two write batches) shows as
        PARTIAL + sha256: it never looks current, so the next sync redoes it.
        """
        found: Counter[tuple[str, str, str]] = Counter()
        sizes: dict[tuple[str, str, str], set[int]] = {}
        where = {"source": source} if source is not None else None
        for page in self._pages(["metadatas"], where):
            for meta in page["metadatas"]:
                key = (str(meta.get("source", "")), str(meta["doc_path"]), str(meta.get("doc_sha256", "")))
                found[key] += 1
                sizes.setdefault(key, set()).add(int(meta.get("doc_chunks", 0)))
        out: dict[str, set[str]] = {}
        for key, n in found.items():
            _, path, sha = key
            whole = sizes[key] in ({n}, {0})  # 0: written before chunk counts were recorded
            out.setdefault(path, set()).add(sha if whole else PARTIAL + sha)
        return out

    def manifest_of(self, known: tuple[str, Sequence[Chunk]] | None, source: str) -> dict[str, set[str]]:
        """`manifest(source)`, taken from `known` (a name of the contents, and every chunk they
        hold) while the store's contents still have that name (named contents are whole: no
        partial versions), else read from the store."""
        if known is None or not known[0] or self.version() != known[0]:
            return self.manifest(source)
        out: dict[str, set[str]] = {}
        for chunk in known[1]:
            if chunk.source == source:
                out.setdefault(chunk.doc_path, set()).add(chunk.doc_sha256)
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
        """Stored vectors of chunks whose `vector_sha` is one of these: re-embedding is skipped."""
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

    def similarities(self, embedding: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        """The score `query` would give each of `ids` (a stored chunk not among its results has
        one too): inner product, cosine or 1 - squared L2, by the collection's space."""
        if not ids:
            return {}
        got = self.collection.get(ids=list(ids), include=["embeddings"])
        space = (self.collection.metadata or {}).get("hnsw:space", "l2")
        query = np.asarray(embedding, dtype=np.float64)
        out: dict[str, float] = {}
        for cid, emb in zip(got["ids"], got["embeddings"], strict=True):  # type: ignore[arg-type]
            vector = np.asarray(emb, dtype=np.float64)
            if space == "ip":
                out[cid] = float(query @ vector)
            elif space == "cosine":
                norms = float(np.linalg.norm(query) * np.linalg.norm(vector))
                out[cid] = float(query @ vector) / norms if norms else 0.0
            else:
                out[cid] = 1.0 - float(np.sum((query - vector) ** 2))
        return out

    # -- the name of the contents ----------------------------------------------------------

    def _version_file(self) -> Path | None:
        return self.path / f"{VERSION_FILE}-{self.name}" if self.path is not None else None

    def version(self) -> str:
        """A name for the chunks stored now, new after each change; "" where there is none: a
        Chroma server, a write under way or cut short, an index not synced since versions were kept."""
        file = self._version_file()
        if file is None:
            return ""
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def settle(self) -> None:
        """Name the contents anew, if this store changed them or they have no name. Call it only
        when they are whole (a sync done), holding the write lock."""
        file = self._version_file()
        if file is not None and (self._unnamed or not self.version()):
            try:
                write_whole(file, uuid.uuid4().hex)
            except OSError as exc:  # only costs readers their copies
                log.warning("Could not name the index's contents in %s (%s); it will be read whole.", file, exc)
                return
            self._unnamed = False

    def _unname(self) -> None:
        """Before a write: the contents lose their name until `settle`."""
        file = self._version_file()
        if file is not None and not self._unnamed:
            write_whole(file, "")
            self._unnamed = True

    # -- writes (idempotent: any of them can be repeated after a crash) -------------------

    def _metadata_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), _BATCH):
            page = self.collection.get(ids=list(ids[i : i + _BATCH]), include=["metadatas"])
            for cid, meta in zip(page["ids"], page["metadatas"] or [], strict=True):
                found[cid] = dict(meta)
        return found

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray, batch: int = _BATCH) -> None:
        """Write chunks with their vectors; each document version's chunk count is counted in `chunks`."""
        sizes = Counter(_version(c) for c in chunks)
        self._upsert(chunks, embeddings, [chunk_metadata(c, sizes[_version(c)]) for c in chunks], batch)

    def _upsert(
        self, chunks: Sequence[Chunk], embeddings: np.ndarray, metas: Sequence[dict[str, Any]], batch: int
    ) -> None:
        self._unname()
        for i in range(0, len(chunks), batch):
            part = chunks[i : i + batch]
            self.collection.upsert(
                ids=[c.id for c in part],
                documents=[c.text for c in part],
                metadatas=list(metas[i : i + batch]),
                embeddings=embeddings[i : i + batch].tolist(),
            )

    def write(
        self, chunks: Sequence[Chunk], vectors: Callable[[list[Chunk]], np.ndarray], batch: int = _BATCH
    ) -> list[Chunk]:
        """Store whole document versions, writing only what differs from the stored chunks.

        A chunk stored exactly so is skipped; one whose text is unchanged only gets its changed
        metadata (new document version, shifted span: no vector, no text, no full-text entry);
        the rest are written with `vectors(rest)`, which this returns. Old versions' leftover
        chunks stay (see `delete_document`): until they are gone the manifest shows two versions,
        or a partial one, so a crash anywhere in between leaves the document to be redone.
        """
        sizes = Counter(_version(c) for c in chunks)
        stored = self._metadata_by_id([c.id for c in chunks])
        fresh: list[tuple[Chunk, dict[str, Any]]] = []
        moved: list[tuple[str, dict[str, Any]]] = []  # (id, the metadata that changed)
        for chunk in chunks:
            meta, old = chunk_metadata(chunk, sizes[_version(chunk)]), stored.get(chunk.id)
            if old is not None and old.get("text_sha256") == meta["text_sha256"]:
                changed = {k: v for k, v in meta.items() if old.get(k) != v}
                if changed:
                    moved.append((chunk.id, changed))
            else:
                fresh.append((chunk, meta))
        if fresh:
            todo = [c for c, _ in fresh]
            vecs = vectors(todo)  # before the deletes below: a moved text reuses its stored vector
            # a new vector under a stored id is deleted then added, never updated in place: in-place
            # HNSW updates left 18 of 845 chunks unreachable by any search after 15 rounds of edits
            # (hash embedder), this way none (the symptom of chroma-core/chroma#3113)
            replaced = [c.id for c in todo if c.id in stored]
            self._unname()
            for i in range(0, len(replaced), batch):
                self.collection.delete(ids=replaced[i : i + batch])
            self._upsert(todo, vecs, [m for _, m in fresh], batch)
        for i in range(0, len(moved), batch):
            self._unname()
            ids, metas = zip(*moved[i : i + batch], strict=True)
            self.collection.update(ids=list(ids), metadatas=list(metas))
        return [c for c, _ in fresh]

    def delete_document(self, source: str, doc_path: str, keep_sha256: str | None = None) -> None:
        """Remove a document's chunks (all, or only those not of version `keep_sha256`)."""
        terms: list[dict[str, Any]] = [{"source": source}, {"doc_path": doc_path}]
        if keep_sha256 is not None:
            terms.append({"doc_sha256": {"$ne": keep_sha256}})
        where: dict[str, Any] = {"$and": terms}
        self._unname()
        self.collection.delete(where=where)

    def drop_unsearchable(self, probe: np.ndarray) -> list[str]:
        """Delete the chunks that sqlite holds but the vector index (HNSW) does not return; their ids.

        Chroma rewrites its HNSW files in place, apart from its sqlite database: a process
        killed while saving them can leave chunks that are stored, listed and counted, but
        never found by a search. A search for `probe` (any query vector) asking for as many
        results as there are chunks shows them; once deleted, their documents look partial in
        `manifest` and the next sync writes them again. (An outlier no neighbour links back to
        is unreachable even in a clean index: it gets written again too.) Costs one such
        search: run it after a crash.
        """
        ids = [cid for page in self._pages([]) for cid in page["ids"]]
        if not ids:
            return []
        found = self.collection.query(query_embeddings=[probe.tolist()], n_results=len(ids), include=[])["ids"][0]
        missing = sorted(set(ids) - set(found))
        if missing:
            self._unname()
        for i in range(0, len(missing), _BATCH):
            self.collection.delete(ids=missing[i : i + _BATCH])
        return missing


def write_whole(path: Path, text: str) -> None:
    """Write `path` whole or not at all: a temporary file, synced, renamed over it, and the rename
    synced too (the version file, emptied before a write, must not come back after a power cut
    that the write itself survived: sqlite syncs its own file)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class WriteLock:
    """An exclusive lock file beside the index: one writing process at a time.

    A second writer fails at once with the holder's pid instead of hanging on Chroma's
    own database locks. Readers never take it. The file holds the writer's pid while it
    writes and is emptied on release, so a pid found on entry names a writer that died
    holding the lock (SIGKILL, power loss): `interrupted` is then that pid. The kernel
    released its flock with the process, so a stale file never blocks.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".write.lock"
        self.interrupted = ""
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
        self.interrupted = os.read(fd, 64).decode(errors="replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # released: nothing to recover
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
