"""The llama-index default pipeline, as a yardstick for ours.

`VectorStoreIndex.from_documents(docs, embed_model=<our e5>)` with llama-index's default
splitter (`SentenceSplitter()`: 1,024 tokens, 200 overlap) and
`index.as_query_engine(llm=..., streaming=True)` with every other option at its default
(top 2 nodes, "compact" synthesis, the stock QA prompt). Streaming changes nothing in the
answer; it only lets us time the first token.

The LLM is `AssistantLLM`, a minimal llama-index `CustomLLM` over our `rag.llm.LLM`, so both
pipelines talk to the same OpenAI-compatible server (`OpenAILike` is not installed).
llama-index's global `Settings` are never touched: embedder, splitter and LLM are passed in.

`BaselinePipeline` exposes what the runner uses of `Assistant` (`ask`, `retriever.search`,
`retriever.chunks`, `documents`, `document_text`) and returns our own `Answer`: no citations
(the default engine has none), `sources` = the retrieved nodes, `abstained` when the reply says
it cannot answer. The default engine ignores chat history: follow-ups are asked as they are.

Deliberately not here: any tuning. This is the pipeline a user gets out of the box.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core import Document as LIDocument
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, NodeWithScore
from pydantic import PrivateAttr

from rag.answer import citation_for
from rag.embeddings import Embedder
from rag.errors import RagError
from rag.language import detect
from rag.llm import LLM, Completion, Message
from rag.loaders import load_folder
from rag.prompts import CANNOT_ANSWER_PHRASES, says_not_found
from rag.types import Answer, Chunk, Hit

_NEGATION = re.compile(r"\b(not|no|cannot|can't|doesn't|does not|isn't|unable|ne|pas|nicht|kein)\b", re.I)
_CONTEXT = re.compile(
    r"\b(context|information|contexte|informations?|kontext|informationen|contexto|información)\b", re.I
)


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


def says_cannot_answer(text: str) -> bool:
    """The reply declines: a shared "cannot answer" phrase, NOT_FOUND, or a negation next to
    "context"/"information" ("The context does not provide information about ...")."""
    clean = " ".join(text.split())
    if not clean or says_not_found(clean) or clean in CANNOT_ANSWER_PHRASES:
        return True
    return bool(_NEGATION.search(clean) and _CONTEXT.search(clean))


class AssistantLLM(CustomLLM):
    """llama-index LLM over a `rag.llm.LLM` (one user message; usage kept for the report)."""

    context_window: int = 8192
    num_output: int = 256
    model_name: str = "rag-llm"
    _llm: LLM = PrivateAttr()
    _last: Completion = PrivateAttr(default_factory=Completion)

    def __init__(self, llm: LLM, context_window: int = 8192, num_output: int = 256, **kwargs: Any) -> None:
        super().__init__(context_window=context_window, num_output=num_output, model_name=llm.name, **kwargs)
        self._llm = llm

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=self.num_output, model_name=self.model_name)

    @property
    def last_completion(self) -> Completion:
        return self._last

    def _messages(self, prompt: str) -> list[Message]:
        return [{"role": "user", "content": prompt}]

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._last = self._llm.complete(self._messages(prompt), self.num_output)
        return CompletionResponse(text=self._last.text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        result = Completion()
        self._last = result

        def gen() -> CompletionResponseGen:
            for piece in self._llm.stream(self._messages(prompt), self.num_output, result):
                yield CompletionResponse(text=result.text, delta=piece)

        return gen()


def _chunk(node: BaseNode, position: int = 0) -> Chunk:
    meta = node.metadata or {}
    text = node.get_content()
    start = getattr(node, "start_char_idx", None)
    end = getattr(node, "end_char_idx", None)
    return Chunk(
        id=node.node_id,
        doc_path=str(meta.get("doc_path", "")),
        title=str(meta.get("title", "")),
        date=str(meta.get("date", "")),
        text=text,
        start=int(start) if start is not None else -1,
        end=int(end) if end is not None else -1,
        position=position,
    )


class _BaselineRetriever:
    """`search(q, k)` and `chunks`, the two things the runner reads from a retriever."""

    def __init__(self, index: VectorStoreIndex) -> None:
        self._index = index
        nodes = list(index.docstore.docs.values())
        self.chunks = [_chunk(node, i) for i, node in enumerate(nodes)]

    def search(self, query: str, k: int, translation: str = "") -> list[Hit]:
        """The llama-index default retriever on `query` (`translation` is ours, not the baseline's: unused)."""
        results: list[NodeWithScore] = self._index.as_retriever(similarity_top_k=k).retrieve(query)
        return [Hit(_chunk(r.node), float(r.score or 0.0)) for r in results]


class BaselinePipeline:
    """llama-index defaults over the same documents, embedder and LLM server as an Assistant."""

    name = "baseline"

    def __init__(self, folder: str | Path, embedder: Embedder, llm: LLM, context_window: int = 8192) -> None:
        self.folder = Path(folder)
        docs, _ = load_folder(self.folder)
        if not docs:
            raise RagError(f"No readable documents in {str(self.folder)!r} for the baseline.")
        self._texts = {d.path: d.text for d in docs}
        li_docs = [
            LIDocument(
                text=d.text,
                id_=d.path,
                metadata={"doc_path": d.path, "title": d.title, "date": d.date},
                excluded_embed_metadata_keys=["doc_path", "title", "date"],
                excluded_llm_metadata_keys=["doc_path", "date"],
            )
            for d in docs
        ]
        self.llm = AssistantLLM(llm, context_window=context_window)
        started = time.perf_counter()
        self.index = VectorStoreIndex.from_documents(
            li_docs, embed_model=LlamaIndexEmbedding(embedder), transformations=[SentenceSplitter()]
        )
        self.index_s = time.perf_counter() - started
        self.engine = self.index.as_query_engine(llm=self.llm, streaming=True)
        self.retriever = _BaselineRetriever(self.index)

    def documents(self) -> list[dict[str, Any]]:
        return [{"path": path, "source": str(self.folder)} for path in self._texts]

    def document_text(self, doc_path: str, source: str | None = None) -> str:
        return self._texts[doc_path]

    def ask(self, question: str, history: Sequence[dict[str, Any]] | None = None) -> Answer:
        started = time.perf_counter()
        response: Any = self.engine.query(question)
        retrieved = time.perf_counter() - started  # the stream starts after retrieval
        first: float | None = None
        pieces: list[str] = []
        for piece in response.response_gen:
            if first is None:
                first = time.perf_counter() - started
            pieces.append(piece)
        total = time.perf_counter() - started
        first = first if first is not None else total
        text = "".join(pieces).strip()
        nodes: list[NodeWithScore] = list(response.source_nodes or [])
        sources = [citation_for(i, _chunk(n.node), supported=False) for i, n in enumerate(nodes, 1)]
        completion = self.llm.last_completion
        return Answer(
            question=question,
            text=text,
            citations=[],
            abstained=says_cannot_answer(text),
            language=detect(question),
            raw_text=text,
            standalone_question=question,
            sources=sources,
            timings={
                "retrieval_s": retrieved,
                "first_token_s": first,
                "total_s": total,
            },
            usage={
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "cached_tokens": completion.cached_tokens,
            },
        )
