"""Dense (e5 in Chroma) + BM25 (bm25s) retrieval, fused by weighted reciprocal rank fusion.

All three are llama-index `BaseRetriever`s: `DenseRetriever` queries the Chroma store with
our embedder, `BM25Retriever` (llama-index-retrievers-bm25, on bm25s) is built in memory
from the stored chunks with a stemmer and stop words for the corpus language (French
stemming lifts BM25 a lot on French pages; see the CNIL figures in the README), and
`RankFusionRetriever` merges their rankings: score = sum_r w_r / (60 + rank_r).

Dense ranks weigh more than BM25 ranks by default: measured on the CNIL set, equal-weight
RRF fell *below* e5 alone at hit@5, because BM25 is weaker there and cannot match an
English question to French text at all.

`Retriever` is the project-level facade: it returns `Hit`s, never llama-index types.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, TextNode

from rag.embeddings import Embedder
from rag.store import ChunkStore, chunk_metadata
from rag.types import Chunk, Hit

log = logging.getLogger(__name__)

RRF_K = 60
STEMMERS = {
    "fr": "french",
    "en": "english",
    "de": "german",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
}


def _node(chunk: Chunk, score: float) -> NodeWithScore:
    return NodeWithScore(node=TextNode(id_=chunk.id, text=chunk.text), score=score)


class DenseRetriever(BaseRetriever):
    def __init__(self, store: ChunkStore, embedder: Embedder, top_k: int) -> None:
        super().__init__()
        self._store = store
        self._embedder = embedder
        self.top_k = top_k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        vector = self._embedder.embed_query(query_bundle.query_str)
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


def corpus_language(chunks: Sequence[Chunk]) -> str:
    from rag.language import detect

    sample = " ".join(c.text for c in chunks[:: max(1, len(chunks) // 40)][:40])
    return detect(sample[:4000], default="en")


class Retriever:
    """Search over one store; rebuilds its in-memory BM25 index when `refresh()` is called."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        candidates: int = 30,
        dense_weight: float = 1.0,
        bm25_weight: float = 0.3,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.bm25_weight = bm25_weight
        self.chunks: list[Chunk] = []
        self.language = "en"
        self._by_id: dict[str, Chunk] = {}
        self._bm25: Any = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        chunks = self.store.chunks()
        bm25 = _build_bm25(chunks, self.candidates) if chunks else None
        language = corpus_language(chunks) if chunks else "en"
        with self._lock:
            self.chunks = chunks
            self._by_id = {c.id: c for c in chunks}
            self._bm25 = bm25
            self.language = language

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

    def search(self, query: str, k: int) -> list[Hit]:
        with self._lock:
            by_id, bm25 = self._by_id, self._bm25
        if not by_id:
            return []
        retrievers: dict[str, tuple[BaseRetriever, float]] = {
            "dense": (DenseRetriever(self.store, self.embedder, self.candidates), self.dense_weight)
        }
        if bm25 is not None:
            retrievers["bm25"] = (bm25, self.bm25_weight)
        fusion = RankFusionRetriever(retrievers, top_k=k)
        results = fusion.retrieve(query)
        hits = []
        for result in results:
            chunk = by_id.get(result.node.node_id)
            if chunk is not None:  # a chunk written by another process since the last refresh() is skipped
                hits.append(Hit(chunk, float(result.score or 0.0), fusion.last_ranks.get(chunk.id, {})))
        return hits


def _build_bm25(chunks: Sequence[Chunk], top_k: int) -> BaseRetriever:
    import Stemmer
    from llama_index.retrievers.bm25 import BM25Retriever

    language = corpus_language(chunks)
    nodes: list[BaseNode] = [TextNode(id_=c.id, text=c.text, metadata={"doc_path": c.doc_path}) for c in chunks]
    log.debug("BM25 over %d chunks, language %s", len(nodes), language)
    return BM25Retriever(
        nodes=nodes,
        stemmer=Stemmer.Stemmer(STEMMERS.get(language, "english")),
        language=language,
        similarity_top_k=min(top_k, len(nodes)),
    )


__all__ = ["DenseRetriever", "RankFusionRetriever", "Retriever", "chunk_metadata"]
