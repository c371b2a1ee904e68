"""Dense (e5 in Chroma) + BM25 (bm25s) retrieval, fused by their scores (or their ranks).

All are llama-index `BaseRetriever`s: `DenseRetriever` queries the Chroma store with our
embedder, `BM25Retriever` (llama-index-retrievers-bm25, on bm25s) is built from the stored
chunks with a stemmer and stop words for the corpus language (French stemming lifts BM25 a lot
on French pages; see the CNIL figures in the README), saved under a hash of those chunks and
read back by the next start-up over the same ones, and two fusions merge them:

- `ScoreFusionRetriever` (the default, `fusion="score"`): the union of both retrievers'
  candidates, each scored by *both* (a candidate one retriever did not return is scored
  exactly, not guessed), each retriever's scores min-max normalised over the union, then
  summed with the weights (dense 1.0, BM25 0.25: 0.8 / 0.2). On CNIL this beat rank fusion
  (page hit@5 0.855 -> 0.879, MRR 0.687 -> 0.708): a rank throws away how far ahead the
  first candidates are.
- `RankFusionRetriever` (`fusion="rrf"`): weighted reciprocal rank fusion,
  score = sum_r w_r / (60 + rank_r).

Dense weighs more than BM25 by default: BM25 is weaker on CNIL and cannot match an English
question to French text at all.

A question may come with its translation into the documents' language (`search(query, k,
translation)`; the assistant asks the LLM for it on large sets): BM25 then scores the question
and its translation together, and the dense query vector is the question's plus
`TRANSLATION_WEIGHT` times the translation's (a sum of inner products; llama-index's
`QueryBundle.custom_embedding_strs` carries both texts). CNIL questions put into English: page
hit@5 0.764 -> 0.789, hit@1 0.484 -> 0.527 (`benchmarks/cnil_crosslingual.py`).

`Retriever` is the project-level facade: it returns `Hit`s, never llama-index types. It holds
every stored chunk in memory; over an embedded store whose contents have a name (see
`ChunkStore.version`) it keeps a copy of them under that name in `chunks_dir` and reads that
instead of Chroma while the name stands (Chroma gives back 62,220 chunks in ~4 s, the copy in
well under one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, TextNode

from rag.embeddings import Embedder
from rag.store import ChunkStore, chunk_metadata, write_whole
from rag.types import Chunk, Hit

log = logging.getLogger(__name__)

RRF_K = 60
TRANSLATION_WEIGHT = 0.5  # of the translation's vector beside the question's (CNIL in English: 0.5 > 1.0)
FUSIONS = ("score", "rrf")
STEMMERS = {
    "fr": "french",
    "en": "english",
    "de": "german",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "tr": "turkish",
    "ru": "russian",
    "ar": "arabic",
}
# Languages bm25s has a stop-word list for (it raises ValueError on any other). Documents in
# another language (Japanese, Arabic, Ukrainian, Polish) get the English list, which removes
# nothing in another script and only a few shared function words ("a", "i", "to") in Polish.
BM25_STOPWORDS = frozenset({"en", "de", "nl", "fr", "es", "pt", "it", "ru", "sv", "no", "zh", "tr", "ko", "da"})
# BM25 tokens. Chinese and Japanese are written without spaces between words, so bm25s's
# default pattern (`\b\w\w+\b`) made each unspaced run one token and a question could match
# no document word. Here Han, kana and Hangul runs become overlapping character bigrams (as
# Lucene's CJK analyzer does; a lone character stays a unigram), and every other word is what
# the default pattern gives (the same tokens on all 512 CNIL pages). The lookahead makes the
# matches overlap; `findall` returns the group. It is ~3x slower than the default pattern
# (1.5 s against 0.5 s on 31,000 chunks), so documents without a CJK character are indexed with
# the default; questions are always split with TOKEN_PATTERN (the same tokens on such text, and
# "Parler为什么撤诉" still gives "parler").
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_C, _W = f"[{_CJK}]", rf"[^\W{_CJK}]"  # kana, Han (ext. A, unified, compatibility), Hangul
TOKEN_PATTERN = f"(?u)(?=({_C}{_C}|(?<!{_C}){_C}(?!{_C})|(?<!{_W}){_W}{{2,}}(?!{_W})))"
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's
_HAS_CJK = re.compile(_C)


def _node(chunk: Chunk, score: float) -> NodeWithScore:
    return NodeWithScore(node=TextNode(id_=chunk.id, text=chunk.text), score=score)


def bundle_of(query: str, translation: str = "") -> QueryBundle:
    """The question as llama-index passes it on: with a translation, BM25 reads both texts
    (`query_str`) and the dense vector is built from both (`custom_embedding_strs`)."""
    if not translation:
        return QueryBundle(query_str=query)
    return QueryBundle(query_str=f"{query}\n{translation}", custom_embedding_strs=[query, translation])


def query_vector(embedder: Embedder, bundle: QueryBundle) -> np.ndarray:
    """The question's e5 query vector, plus `TRANSLATION_WEIGHT` times its translation's."""
    texts = bundle.custom_embedding_strs or [bundle.query_str]
    vector = embedder.embed_query(texts[0])
    for text in texts[1:]:
        vector = vector + TRANSLATION_WEIGHT * embedder.embed_query(text)
    return vector


class DenseRetriever(BaseRetriever):
    def __init__(self, store: ChunkStore, embedder: Embedder, top_k: int) -> None:
        super().__init__()
        self._store = store
        self._embedder = embedder
        self.top_k = top_k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        vector = query_vector(self._embedder, query_bundle)
        return [_node(chunk, score) for chunk, score in self._store.query(vector, self.top_k)]


class RankFusionRetriever(BaseRetriever):
    """Weighted reciprocal rank fusion of several retrievers' rankings."""

    def __init__(self, retrievers: dict[str, tuple[BaseRetriever, float]], top_k: int) -> None:
        super().__init__()
        self._retrievers = retrievers
        self.top_k = top_k
        self.last_ranks: dict[str, dict[str, int]] = {}

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        scores: dict[str, float] = {}
        nodes: dict[str, NodeWithScore] = {}
        ranks: dict[str, dict[str, int]] = {}
        for name, (retriever, weight) in self._retrievers.items():
            if weight <= 0:
                continue
            for rank, hit in enumerate(retriever.retrieve(query_bundle), 1):
                node_id = hit.node.node_id
                scores[node_id] = scores.get(node_id, 0.0) + weight / (RRF_K + rank)
                nodes.setdefault(node_id, hit)
                ranks.setdefault(node_id, {})[name] = rank
        best = sorted(scores, key=lambda i: scores[i], reverse=True)[: self.top_k]
        self.last_ranks = {i: ranks[i] for i in best}
        return [NodeWithScore(node=nodes[i].node, score=scores[i]) for i in best]


class BM25Scores:
    """Exact BM25 scores of every chunk for a query, from the llama-index retriever's bm25s
    index (its query tokenisation, so the scores are the ones its `retrieve` ranks by)."""

    def __init__(self, retriever: Any, ids: Sequence[str]) -> None:
        self.retriever = retriever
        self.ids = list(ids)  # bm25s indexes the nodes in the order they were given
        self.position = {cid: i for i, cid in enumerate(self.ids)}

    def __call__(self, query: str) -> np.ndarray:
        import bm25s

        r = self.retriever
        tokens = bm25s.tokenize(
            query,
            stemmer=r.stemmer if not r.skip_stemming else None,
            token_pattern=TOKEN_PATTERN,
            return_ids=False,
            show_progress=False,
        )[0]
        known = [t for t in tokens if t in r.bm25.vocab_dict]
        if not known:
            return np.zeros(len(self.ids))
        return np.asarray(r.bm25.get_scores(known), dtype=np.float64)


def _min_max(scores: dict[str, float]) -> dict[str, float]:
    low, high = min(scores.values()), max(scores.values())
    if high <= low:
        return {i: 1.0 if high > 0 else 0.0 for i in scores}
    return {i: (v - low) / (high - low) for i, v in scores.items()}


class ScoreFusionRetriever(BaseRetriever):
    """Weighted sum of min-max normalised dense and BM25 scores over both retrievers' candidates."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        bm25: BM25Scores | None,
        candidates: int,
        dense_weight: float,
        bm25_weight: float,
        top_k: int,
    ) -> None:
        super().__init__()
        self._store = store
        self._embedder = embedder
        self._bm25 = bm25 if bm25_weight > 0 else None
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.top_k = top_k
        self.bm25_weight = bm25_weight if self._bm25 is not None else 0.0
        self.last_ranks: dict[str, dict[str, int]] = {}

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        ranks: dict[str, dict[str, int]] = {}
        dense: dict[str, float] = {}
        bm25: dict[str, float] = {}
        vector = None
        if self.dense_weight > 0:
            vector = query_vector(self._embedder, query_bundle)
            for rank, (chunk, score) in enumerate(self._store.query(vector, self.candidates), 1):
                dense[chunk.id] = score
                ranks.setdefault(chunk.id, {})["dense"] = rank
        if self._bm25 is not None:
            all_scores = self._bm25(query)
            n = min(self.candidates, len(all_scores))
            pool = np.argpartition(-all_scores, n - 1)[:n] if n < len(all_scores) else np.arange(n)
            top = sorted((int(i) for i in pool if all_scores[i] > 0), key=lambda i: (-all_scores[i], i))
            for rank, i in enumerate(top, 1):
                ranks.setdefault(self._bm25.ids[i], {})["bm25"] = rank
            # every candidate gets its BM25 score, returned by BM25 or not (0 for no shared word)
            position = self._bm25.position
            bm25 = {cid: float(all_scores[position[cid]]) if cid in position else 0.0 for cid in ranks}
            if vector is not None:
                dense.update(self._store.similarities(vector, [i for i in ranks if i not in dense]))
        if not ranks:
            return []
        parts = [(w, _min_max(s)) for w, s in ((self.dense_weight, dense), (self.bm25_weight, bm25)) if w > 0 and s]
        total = sum(w for w, _ in parts) or 1.0
        fused = {i: sum(w * s.get(i, 0.0) for w, s in parts) / total for i in ranks}
        best = sorted(fused, key=lambda i: (-fused[i], min(ranks[i].values())))[: self.top_k]
        self.last_ranks = {i: ranks[i] for i in best}
        return [NodeWithScore(node=TextNode(id_=i, text=""), score=fused[i]) for i in best]


def corpus_language(chunks: Sequence[Chunk]) -> str:
    from rag.language import detect

    sample = " ".join(c.text for c in chunks[:: max(1, len(chunks) // 40)][:40])
    return detect(sample[:4000], default="en")


class Retriever:
    """Search over one store; rebuilds its BM25 index when `refresh()` is called (or reads it back
    from `bm25_dir`, where each one built is saved under the hash of the chunks it indexes)."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        candidates: int = 30,
        dense_weight: float = 1.0,
        bm25_weight: float = 0.25,
        fusion: str = "score",
        bm25_dir: Path | None = None,
        chunks_dir: Path | None = None,
    ) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r} (one of {', '.join(FUSIONS)})")
        self.bm25_dir = bm25_dir  # where built BM25 indexes are saved and read back (None: never)
        self.chunks_dir = chunks_dir  # where copies of the stored chunks are kept (None: never)
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.bm25_weight = bm25_weight
        self.fusion = fusion
        self.chunks: list[Chunk] = []
        self.version = ""
        self.language = "en"
        self._by_id: dict[str, Chunk] = {}
        self._bm25: Any = None
        self._bm25_scores: BM25Scores | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        chunks, version = stored_chunks(self.store, self.chunks_dir)
        language = corpus_language(chunks) if chunks else "en"
        bm25 = _bm25_retriever(chunks, language, self.candidates, self.bm25_dir) if chunks else None
        with self._lock:
            self.chunks = chunks
            self.version = version  # the name of the store's contents these chunks are ("" if unknown)
            self._by_id = {c.id: c for c in chunks}
            self._bm25 = bm25
            self._bm25_scores = BM25Scores(bm25, [c.id for c in chunks]) if bm25 is not None else None
            self.language = language

    def known(self) -> tuple[str, list[Chunk]]:
        """The name of the store's contents the chunks held are of ("" if unknown), and those chunks."""
        with self._lock:
            return self.version, self.chunks

    @property
    def total_tokens(self) -> int:
        return sum(c.tokens for c in self.chunks)

    def relevance(self, query: str) -> float:
        """Best dense score between the query and any stored chunk (e5 cosine; with windows, the
        mean of the chunk's and its window's cosines); 0 if empty."""
        if not self._by_id:
            return 0.0
        best = self.store.query(self.embedder.embed_query(query), 1)
        return best[0][1] if best else 0.0

    def search(self, query: str, k: int, translation: str = "") -> list[Hit]:
        """The `k` best chunks for `query`; `translation` (the query in the documents' language, if
        it is in another) is searched with it."""
        with self._lock:
            by_id, bm25, bm25_scores = self._by_id, self._bm25, self._bm25_scores
        if not by_id:
            return []
        fusion: ScoreFusionRetriever | RankFusionRetriever
        if self.fusion == "score":
            fusion = ScoreFusionRetriever(
                self.store, self.embedder, bm25_scores, self.candidates, self.dense_weight, self.bm25_weight, k
            )
        else:
            retrievers: dict[str, tuple[BaseRetriever, float]] = {
                "dense": (DenseRetriever(self.store, self.embedder, self.candidates), self.dense_weight)
            }
            if bm25 is not None:
                retrievers["bm25"] = (bm25, self.bm25_weight)
            fusion = RankFusionRetriever(retrievers, top_k=k)
        results = fusion.retrieve(bundle_of(query, translation))
        hits = []
        for result in results:
            chunk = by_id.get(result.node.node_id)
            if chunk is not None:  # a chunk written by another process since the last refresh() is skipped
                hits.append(Hit(chunk, float(result.score or 0.0), fusion.last_ranks.get(chunk.id, {})))
        return hits


def _quiet_bm25s_corpus(record: logging.LogRecord) -> bool:
    """False for bm25s's corpus reader's INFO lines, logged straight on the root logger."""
    return record.levelno > logging.INFO or "bm25s" not in Path(record.pathname).parts


def _bm25_retriever(chunks: Sequence[Chunk], language: str, top_k: int, folder: Path | None) -> BaseRetriever:
    """llama-index's BM25 retriever over `chunks`: read back from `folder` if an index of exactly
    these chunks (ids and texts) and options was saved there, else built, then saved there."""
    import bm25s
    import Stemmer
    from llama_index.retrievers.bm25 import BM25Retriever

    # bm25s sets its own logger to DEBUG on import, so "Building index from IDs objects" reached
    # every root handler (the CLI printed it above each answer). Its warnings still pass. Its
    # corpus reader logs on the root logger itself ("Opened file and mmap objects", at INFO).
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    if _quiet_bm25s_corpus not in logging.getLogger().filters:
        logging.getLogger().addFilter(_quiet_bm25s_corpus)
    stopwords = language if language in BM25_STOPWORDS else "en"
    pattern = TOKEN_PATTERN if any(_HAS_CJK.search(c.text) for c in chunks) else DEFAULT_TOKEN_PATTERN
    stemmer = STEMMERS.get(language, "english")
    options: dict[str, Any] = {
        "stemmer": Stemmer.Stemmer(stemmer),
        "token_pattern": pattern,
        "similarity_top_k": min(top_k, len(chunks)),
    }
    saved = folder / _bm25_key(chunks, (bm25s.__version__, stopwords, stemmer, pattern)) if folder else None
    if saved is not None and (saved / BM25_DONE).exists():
        try:
            bm25 = bm25s.BM25.load(str(saved), load_corpus=False, show_progress=False)
            bm25.corpus = bm25s.utils.corpus.JsonlCorpus(saved / "corpus.jsonl", show_progress=False)
            retriever = BM25Retriever(existing_bm25=bm25, **options)
            os.utime(saved)  # recently used: kept when older ones are removed
            log.debug("BM25 over %d chunks read back from %s", len(chunks), saved)
            return retriever
        except Exception as exc:  # a damaged cache is rebuilt, never fatal
            log.warning("The saved BM25 index %s could not be read (%s); building it again.", saved, exc)
            shutil.rmtree(saved, ignore_errors=True)
    nodes: list[BaseNode] = [TextNode(id_=c.id, text=c.text, metadata={"doc_path": c.doc_path}) for c in chunks]
    log.debug("BM25 over %d chunks, language %s", len(nodes), language)
    retriever = BM25Retriever(nodes=nodes, language=stopwords, **options)
    if saved is not None:
        _save_bm25(retriever, saved)
    return retriever


CHUNKS_FORMAT = "v1"  # of a copy of the stored chunks: rows of the first 11 `Chunk` fields
CHUNKS_KEPT = 2  # copies of the stored chunks kept (the most recently used)
_VERSION = re.compile(r"[0-9a-f]{32}")  # a name `ChunkStore.settle` gives


def stored_chunks(store: ChunkStore, folder: Path | None) -> tuple[list[Chunk], str]:
    """Every stored chunk, and the name of the contents they are ("" if unknown): from the copy in
    `folder` named for the store's contents if there is one, else from the store (then copied
    there if the contents kept their name meanwhile). A copy that cannot be read is removed with
    a warning; one that cannot be written only costs the next start-up a read from the store."""
    version = store.version()
    if not _VERSION.fullmatch(version):
        return store.chunks(), ""
    saved = folder / f"{version}-{CHUNKS_FORMAT}.json" if folder is not None else None
    if saved is not None and saved.exists():
        try:
            with saved.open(encoding="utf-8") as src:
                rows = json.load(src)
            if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 11 for r in rows):
                raise ValueError("not rows of 11 fields")
            chunks = [Chunk(*row) for row in rows]
            os.utime(saved)  # recently used: kept when older ones are removed
            log.debug("%d chunks read back from %s", len(chunks), saved)
            return chunks, version
        except Exception as exc:  # a damaged copy is read again from the store, never fatal
            log.warning("The copy of the stored chunks %s could not be read (%s); reading the index.", saved, exc)
            saved.unlink(missing_ok=True)
    chunks = store.chunks()
    if store.version() != version:  # written meanwhile: these chunks are of no named contents
        return chunks, ""
    if saved is not None:
        rows = [[getattr(c, f.name) for f in fields(Chunk)[:11]] for c in chunks]
        _save_whole(saved, json.dumps(rows, ensure_ascii=False), CHUNKS_KEPT)
    return chunks, version


def _save_whole(path: Path, text: str, kept: int) -> None:
    """Write `path` whole or not at all (`write_whole`), then remove all but the `kept` most
    recently used of its folder's files. Never raises."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, text)
        copies = sorted(
            (p for p in path.parent.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime
        )
        for old in copies[:-kept]:
            old.unlink(missing_ok=True)
    except Exception as exc:  # a cache: never fatal
        log.warning("%s could not be saved (%s); the next start-up will read the index instead.", path, exc)


BM25_DONE = "complete"  # written last into a saved BM25 index's folder
BM25_KEPT = 4  # saved BM25 indexes kept (the most recently used); each is ~1.4 KB a chunk


def _bm25_key(chunks: Sequence[Chunk], options: Sequence[str]) -> str:
    """A name for the BM25 index of exactly these chunks, in this order, with these options."""
    digest = hashlib.sha256("\0".join(options).encode("utf-8"))
    for chunk in chunks:
        digest.update(f"\n{chunk.id}\0{chunk.text}".encode("utf-8", errors="surrogatepass"))
    return digest.hexdigest()[:32]


def _save_bm25(retriever: Any, saved: Path) -> None:
    """Write the index into a fresh folder, then rename it to `saved`, so that a folder named for
    an index is complete or absent (a crash leaves only a temporary folder, removed next time).
    The oldest saved indexes beyond `BM25_KEPT` are removed. A failure only costs the next
    start-up a rebuild: it is logged, never raised."""
    import bm25s

    folder = saved.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-*"):
            if time.time() - stale.stat().st_mtime > 3600:  # an interrupted save, not one in progress
                shutil.rmtree(stale, ignore_errors=True)
        temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
        retriever.bm25.save(
            str(temporary), corpus=retriever.corpus, show_progress=False, raise_on_serialization_error=True
        )
        bm25s.utils.corpus.JsonlCorpus(temporary / "corpus.jsonl", show_progress=False).close()  # its line index
        (temporary / BM25_DONE).write_text("")
        try:
            temporary.rename(saved)
        except OSError:  # another process saved the same index first: this one's corpus stays in memory
            shutil.rmtree(temporary, ignore_errors=True)
            return
        # the saved corpus (node texts, for llama-index's own retrieve) is read from disk when needed
        retriever.bm25.corpus = retriever.corpus = bm25s.utils.corpus.JsonlCorpus(
            saved / "corpus.jsonl", show_progress=False
        )
        indexes = sorted((p for p in folder.iterdir() if (p / BM25_DONE).exists()), key=lambda p: p.stat().st_mtime)
        for old in indexes[:-BM25_KEPT]:
            shutil.rmtree(old, ignore_errors=True)
    except Exception as exc:  # a cache: never fatal
        log.warning("The BM25 index could not be saved in %s (%s); the next start-up will build it again.", folder, exc)


__all__ = ["BM25Scores", "DenseRetriever", "RankFusionRetriever", "Retriever", "ScoreFusionRetriever", "chunk_metadata"]
