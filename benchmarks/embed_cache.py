"""A disk cache in front of a bundled embedder (e5 or USE), for benchmarks only.

Vectors are keyed by sha256("p:" + passage) / sha256("q:" + query) and kept in
`<folder>/keys.json` + `<folder>/vectors.npy`, so a parameter sweep embeds each distinct
text once across runs and chunk sizes. The real model is loaded lazily, on the first miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: see rag/embeddings.py

import numpy as np

from rag.embeddings import E5Embedder, Embedder, USEEmbedder


def _key(text: str, is_query: bool) -> str:
    return hashlib.sha256((("q:" if is_query else "p:") + text).encode("utf-8")).hexdigest()


class CachedE5(Embedder):
    """E5Embedder (or, with kind="use", USEEmbedder) with a persistent per-text vector cache.

    It has the real embedder's `name`, so stores accept it. Keep one folder per kind.
    """

    def __init__(self, folder: Path, num_threads: int = 2, batch_size: int = 32, kind: str = "e5") -> None:
        if kind not in ("e5", "use"):
            raise ValueError(f"unknown embedder kind {kind!r} (e5 or use)")
        self.kind = kind
        self.name = USEEmbedder.name if kind == "use" else E5Embedder.name
        self.dim = 512 if kind == "use" else 384
        self.folder = folder
        self.num_threads = num_threads
        self.batch_size = batch_size
        self._model: Embedder | None = None
        self.hits = 0
        self.misses = 0
        self.bypass_queries = False  # True: embed queries with the real model (latency runs)
        folder.mkdir(parents=True, exist_ok=True)
        keys_file, vec_file = folder / "keys.json", folder / "vectors.npy"
        if keys_file.exists() and vec_file.exists():
            keys = json.loads(keys_file.read_text())
            vecs = np.load(vec_file)
            n = min(len(keys), len(vecs))  # a crash between the two writes loses the tail only
            self._index = {k: i for i, k in enumerate(keys[:n])}
            self._rows = [vecs[i] for i in range(n)]
        else:
            self._index, self._rows = {}, []

    @property
    def model(self) -> Embedder:
        if self._model is None:
            cls = USEEmbedder if self.kind == "use" else E5Embedder
            self._model = cls(num_threads=self.num_threads, batch_size=self.batch_size)
        return self._model

    def save(self) -> None:
        keys = [None] * len(self._index)
        for k, i in self._index.items():
            keys[i] = k
        tmp = self.folder / "vectors.tmp.npy"
        np.save(tmp, np.vstack(self._rows).astype(np.float32) if self._rows else np.zeros((0, self.dim), np.float32))
        tmp.replace(self.folder / "vectors.npy")
        (self.folder / "keys.tmp.json").write_text(json.dumps(keys))
        (self.folder / "keys.tmp.json").replace(self.folder / "keys.json")

    def has(self, text: str, is_query: bool) -> bool:
        return _key(text, is_query) in self._index

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if is_query and self.bypass_queries:
            return self.model._embed(texts, is_query)
        keys = [_key(t, is_query) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self._index]
        if missing:
            fresh = self.model._embed([texts[i] for i in missing], is_query)
            for i, vec in zip(missing, fresh, strict=True):
                self._index[keys[i]] = len(self._rows)
                self._rows.append(np.asarray(vec, dtype=np.float32))
            self.save()
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        return np.vstack([self._rows[self._index[k]] for k in keys])
