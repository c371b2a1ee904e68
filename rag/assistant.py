"""The facade: ingest a folder, then ask, stream or chat. The UI, CLI and eval use only this.

Which passages the model sees:
- small document sets (all chunks fit in `full_context_tokens`): every chunk, in a fixed
  order. The system message is then identical for every question, so the llama.cpp
  server reuses its KV cache and each question pays only for its own tokens
  (cache-augmented generation). An off-topic question is still caught by the relevance
  gate below.
- larger sets: the `top_k` passages of hybrid retrieval (dense + BM25, fused). A question in
  another language than the documents' is searched together with its translation into
  theirs, asked of the LLM (`translate_query`).

Abstention has four independent gates, since the 1.5B model alone almost never abstains:
relevance (the best e5 similarity is below `min_relevance`), the model's own NOT_FOUND,
the per-sentence support check and the whole-answer fit check in `answer.py`.

Collaborators are optional (`llm=None, embedder=None, store=None`) and built from
settings when missing; the embedded LLM server starts only when the first question needs it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rag import prompts
from rag.answer import AnswerConfig, Answerer
from rag.config import Settings
from rag.cores import CoreShare
from rag.embeddings import E5Embedder, Embedder, OpenAIEmbedder
from rag.errors import EmptyIndexError, QuestionError, RagError
from rag.ingest import sync_folder
from rag.language import detect
from rag.llm import LLM, Message, default_llm
from rag.loaders import LoadError, load_file
from rag.retrieve import Retriever
from rag.store import ChunkStore, index_name
from rag.tokens import count_tokens
from rag.types import Answer, Chunk, IngestReport, Status, Token

log = logging.getLogger(__name__)

Event = Token | Status | Answer
History = Sequence[dict[str, Any]]
MAX_HISTORY_TURNS = 6

# terminal escape sequences (colours, cursor moves, window titles): removed whole, not just their ESC
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_KEEP_FORMAT = frozenset("\u200c\u200d")  # zero-width (non-)joiners: Persian and Indic words, emoji sequences


def clean_text(text: str) -> str:
    """User text made safe to search, embed, prompt with and send as JSON.

    Terminal escape sequences are removed; line endings become "\n"; other control
    characters become a space (tab and newline are kept); invisible format characters
    (bidi overrides such as U+202E, zero-width spaces, soft hyphens, BOMs), lone surrogates,
    private-use and unassigned code points are removed; Unicode spaces and line separators
    become " " and "\n". The result is NFC-normalised (an NFD "é" matches an NFC one) and stripped.
    """
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    if not text.isprintable():
        out = []
        for ch in text:
            if ch.isprintable() or ch in "\n\t" or ch in _KEEP_FORMAT:
                out.append(ch)
                continue
            category = unicodedata.category(ch)
            if category in ("Cc", "Zs"):
                out.append(" ")
            elif category in ("Zl", "Zp"):
                out.append("\n")
            # Cf (format), Cs (surrogates), Co (private use), Cn (unassigned): dropped
        text = "".join(out)
    return unicodedata.normalize("NFC", text).strip()


def default_embedder(settings: Settings) -> Embedder:
    """The embeddings server of RAG_EMBED_BASE_URL if set, else the bundled model of RAG_EMBEDDER in this process."""
    s = settings
    if s.embed_base_url:
        return OpenAIEmbedder(
            s.embed_base_url,
            s.embed_model,
            s.embed_api_key,
            s.embed_e5_prefixes,
            s.embed_batch,
            s.llm_timeout,
            s.llm_retries,
            s.llm_deadline,
        )
    if s.embedder == "use":
        from rag.embeddings import USEEmbedder

        return USEEmbedder(num_threads=s.embed_threads, batch_size=s.embed_batch)
    return E5Embedder(num_threads=s.embed_threads, batch_size=s.embed_batch)


class Assistant:
    def __init__(
        self,
        settings: Settings | None = None,
        llm: LLM | None = None,
        embedder: Embedder | None = None,
        store: ChunkStore | None = None,
    ) -> None:
        self.settings = settings or Settings()
        s = self.settings
        self.embedder = embedder or default_embedder(s)
        self.store = store or ChunkStore(
            collection=s.collection,
            path=s.index_dir,
            url=s.chroma_url,
            auth_token=s.chroma_auth_token,
            embedder_name=index_name(self.embedder.name, s.window_tokens),
        )
        self._llm = llm
        self.embedder.before_run = self._settle_llm  # e5 and the local LLM share the cores
        self.cores = CoreShare()
        if not s.llm_base_url and not isinstance(self.embedder, OpenAIEmbedder):
            # both engines run here: indexing waits while a question is answered (rag/cores.py)
            self.embedder.before_batch = self.cores.wait_turn
        self._answerer_obj: Answerer | None = None
        self._warm_lock = threading.Lock()
        self._warmed: str | None = None  # the system message whose prefix the LLM holds
        self._ingest_lock = threading.Lock()  # one sync at a time in this process (the index's lock is per process)
        self.indexing: tuple[int, int] | None = None  # (files read, files to index) while a sync runs
        self.retriever = Retriever(
            self.store,
            self.embedder,
            s.candidates,
            s.dense_weight,
            s.bm25_weight,
            s.fusion,
            bm25_dir=s.cache_dir / "bm25",
            chunks_dir=s.cache_dir / "chunks",
        )

    # -- collaborators -------------------------------------------------------------------

    def _settle_llm(self) -> None:
        """Before e5 runs: let the LLM server finish a reply cut short (`LLM.settle`), if it was started."""
        if self._llm is not None:
            self._llm.settle()

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            self._llm = default_llm(self.settings)
        return self._llm

    def _answerer(self) -> Answerer:
        if self._answerer_obj is None:  # kept: it caches the sentence vectors of the sources
            s = self.settings
            config = AnswerConfig(
                max_tokens=s.max_answer_tokens,
                verify=s.verify,
                support_threshold=s.support_threshold,
                excerpts=s.excerpts,
                excerpt_style=s.excerpt_style,
                translate_retry=s.translate_retry,
                retry_passages=s.retry_passages,
                fit_threshold=s.fit_threshold,
                max_sentences=s.max_sentences,
            )
            self._answerer_obj = Answerer(self.llm, self.embedder, config)
        return self._answerer_obj

    # -- documents -----------------------------------------------------------------------

    def ingest(
        self,
        folder: str | Path | None = None,
        progress: Callable[[int, int, str], None] | None = None,
        show_bar: bool = False,
    ) -> IngestReport:
        """Sync a folder (default: settings.docs_dir) into the index; returns what changed. Syncs
        from several threads run one after the other; questions meanwhile are answered from the
        documents indexed before (`indexing` tells how far a sync has gone)."""
        path = Path(folder).expanduser() if folder is not None else self.settings.docs_dir
        s = self.settings

        def step(done: int, total: int, name: str) -> None:
            self.indexing = (done, total)
            if progress is not None:
                progress(done, total, name)

        with self._ingest_lock, self.cores.background():
            self.indexing = (0, 0)
            try:
                report = sync_folder(
                    path,
                    self.store,
                    self.embedder,
                    s.chunk_tokens,
                    step,
                    show_bar,
                    window_tokens=s.window_tokens,
                    known=self.retriever.known(),
                )
                if report.changed or not self.retriever.chunks:
                    self.retriever.refresh()
            finally:
                self.indexing = None
        return report

    def documents(self) -> list[dict[str, Any]]:
        """One entry per indexed document: path, title, date, chunk count."""
        docs: dict[tuple[str, str], dict[str, Any]] = {}
        for chunk in self.retriever.chunks:
            entry = docs.setdefault(
                (chunk.source, chunk.doc_path),
                {"path": chunk.doc_path, "source": chunk.source, "title": chunk.title, "date": chunk.date, "chunks": 0},
            )
            entry["chunks"] += 1
        return list(docs.values())

    def document_text(self, doc_path: str, source: str | None = None) -> str:
        """Full text of an indexed document (only indexed documents can be read this way)."""
        for doc in self.documents():
            if doc["path"] == doc_path and (source is None or doc["source"] == source):
                try:
                    return load_file(Path(doc["source"]) / doc_path, Path(doc["source"])).text
                except LoadError as exc:
                    raise RagError(str(exc)) from exc
        raise RagError(f"{doc_path!r} is not an indexed document.")

    def describe(self) -> dict[str, str]:
        s = self.settings
        server = f"{s.llm_base_url} (remote)" if s.llm_base_url else "embedded llama.cpp (loopback)"
        mode = (
            "all passages in a cached prefix"
            if self._full_context()
            else f"hybrid retrieval, top {s.top_k} passages (dense e5 + BM25, fused)"
        )
        return {
            "llm": s.llm_model or ("qwen2.5-coder-1.5b-instruct (bundled)" if not s.llm_base_url else "default"),
            "llm_server": server,
            "embedder": self.embedder.name,
            "store": f"Chroma {'server ' + s.chroma_url if s.chroma_url else 'at ' + str(s.index_dir)}",
            "documents": str(len(self.documents())),
            "passages": str(len(self.retriever.chunks)),
            "mode": mode,
        }

    # -- questions -----------------------------------------------------------------------

    def ask(self, question: str, history: History | None = None) -> Answer:
        answer = None
        for event in self.stream(question, history):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None  # stream always ends with an Answer
        return answer

    def chat(self, question: str, history: History | None = None) -> Answer:
        """A turn of a conversation: `history` is [{"role": "user"|"assistant", "content": str}, ...]."""
        return self.ask(question, history)

    def stream(self, question: str, history: History | None = None) -> Iterator[Event]:
        """Yield Status and Token events as work progresses, then exactly one Answer."""
        with self.cores.answering():
            yield from self._stream(question, history)

    def _stream(self, question: str, history: History | None) -> Iterator[Event]:
        started = time.perf_counter()
        question = self._validate(question)
        history = self._clean_history(history)
        if not self.retriever.chunks:
            if self.indexing is not None:
                done, total = self.indexing
                raise EmptyIndexError(
                    f"The documents are being indexed ({done} of {total} files read); ask again when it is finished."
                    if total
                    else "The documents are being indexed; ask again when it is finished."
                )
            raise EmptyIndexError("Nothing is indexed yet. Add documents to the folder and run `python -m rag ingest`.")
        language = detect(question, default=self._history_language(history))
        standalone = question
        timings: dict[str, float] = {}
        if history:
            yield Status("Understanding the follow-up")
            standalone = self.rewrite(question, history)
            timings["rewrite_s"] = time.perf_counter() - started

        translation = ""
        if self._translates(language):
            yield Status(f"Translating the question into {prompts.LANGUAGE_NAMES[self.retriever.language]}")
            t0 = time.perf_counter()
            translation = self.search_translation(standalone)
            timings["translate_s"] = time.perf_counter() - t0
        yield Status("Searching the documents")
        t0 = time.perf_counter()
        relevance = self.retriever.relevance(standalone)
        sources = self._sources(standalone, translation)
        timings["retrieval_s"] = time.perf_counter() - t0

        if relevance < self.settings.min_relevance:
            answer = self._answerer().check(standalone, "", [], language, "")
            answer.abstain_reason = f"no passage is relevant enough (best similarity {relevance:.3f})"
            events: Iterator[Event] = iter([answer])
        else:
            if self._full_context() and self._warmed != self._prefix():
                yield Status("Reading the documents into the model")
                self.warm(only_if_cold=True)
            focused = not self._full_context() and self.settings.focus_tokens > 0
            if focused:
                sources = self._answerer().focus(standalone, sources, self.settings.focus_tokens)
            events = self._answerer().stream(standalone, sources, language, started, quote=not focused)
        for event in events:
            if isinstance(event, Answer):
                event.question = question
                event.standalone_question = standalone
                event.search_translation = translation
                event.relevance = relevance
                event.timings.update(timings)
                event.timings.setdefault("total_s", time.perf_counter() - started)
                event.timings.setdefault("first_token_s", event.timings["total_s"])
            yield event

    def rewrite(self, question: str, history: History) -> str:
        """Turn a follow-up into a standalone question using the conversation."""
        lines = []
        for turn in list(history)[-MAX_HISTORY_TURNS:]:
            role = "User" if turn.get("role") == "user" else "Assistant"
            content = " ".join(str(turn.get("content", "")).split())[:400]
            lines.append(f"{role}: {content}")
        prompt = prompts.REWRITE.format(history="\n".join(lines), question=question)
        messages: list[Message] = [{"role": "user", "content": prompt}]
        rewritten = self.llm.complete(messages, max_tokens=60).text.strip().strip('"').splitlines()
        candidate = rewritten[0].strip() if rewritten else ""
        return candidate if 3 <= len(candidate) <= 2 * len(question) + 200 else question

    def search_translation(self, question: str) -> str:
        """`question` translated by the LLM into the documents' language, for searching a large set
        in it too (BM25 cannot match an English question to French text; e5 can, less well): ""
        if the reply is unusable or the LLM fails (the search then goes on without it)."""
        name = prompts.LANGUAGE_NAMES[self.retriever.language]
        messages: list[Message] = [{"role": "user", "content": prompts.TRANSLATE.format(language=name, text=question)}]
        try:
            reply = self.llm.complete(messages, max_tokens=min(256, 2 * count_tokens(question) + 20)).text
        except RagError as exc:
            log.warning("searching without a translation of the question: %s", exc)
            return ""
        lines = reply.strip().splitlines()
        candidate = lines[0].strip().strip('"') if lines else ""
        usable = 3 <= len(candidate) <= 2 * len(question) + 200 and candidate != question
        return candidate if usable else ""

    def warm(self, only_if_cold: bool = False) -> None:
        """Read the fixed prefix (instructions + all sources) into the LLM's KV cache now. With the
        "passage" excerpt style, slot k of the LLM server then gets a copy of that prefix and reads
        passage k's quoted block after it, for as many passages as there are slots beyond slot 0:
        a question whose key passage is k is sent to slot k and pays only for its own words.

        The first question over a small set calls it (`only_if_cold`: unless these documents'
        prefix is already warm in this process); the UI and `serve` call it at start-up and after
        the documents change, so that no question waits for it."""
        from rag.answer import passage_message

        with self._warm_lock:
            if not self._full_context():
                return
            system = self._prefix()
            if only_if_cold and self._warmed == system:
                return
            chunks = self.retriever.chunks
            prefix: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": "Hi"}]
            self.llm.hold(prefix)
            if self.settings.excerpt_style == "passage" and self.settings.excerpts:
                for number, chunk in enumerate(chunks[: self.llm.slots - 1], 1):
                    user = passage_message(number, chunk, "Hi", "English")
                    self.llm.hold([prefix[0], {"role": "user", "content": user}], number, after=prefix)
            self._warmed = system

    def _prefix(self) -> str:
        """The system message of a small set: every passage, in a fixed order."""
        from rag.answer import system_message

        return system_message(self.retriever.chunks)

    # -- helpers -------------------------------------------------------------------------

    def _full_context(self) -> bool:
        return 0 < self.retriever.total_tokens <= self.settings.full_context_tokens

    def _translates(self, language: str) -> bool:
        """Whether a question in `language` is also searched in the documents' language: only on
        the retrieval path (a small set gives the model every passage anyway)."""
        corpus = self.retriever.language
        return (
            self.settings.translate_query
            and language != corpus
            and corpus in prompts.LANGUAGE_NAMES
            and not self._full_context()
        )

    def _sources(self, question: str, translation: str = "") -> list[Chunk]:
        if self._full_context():
            return list(self.retriever.chunks)
        return [hit.chunk for hit in self.retriever.search(question, self.settings.top_k, translation)]

    def _validate(self, question: str) -> str:
        """The question, cleaned (see `clean_text`); QuestionError if it is not text, empty, wordless or too long."""
        if not isinstance(question, str):
            raise QuestionError(f"The question must be text, not {type(question).__name__}.")
        limit = self.settings.max_question_chars
        # a huge paste is refused on its raw length, before any work on it
        cleaned = clean_text(question) if len(question) <= 4 * limit else question
        if len(cleaned) > limit:
            raise QuestionError(
                f"The question is {len(cleaned)} characters long; the limit is {limit} (RAG_MAX_QUESTION_CHARS). "
                "Shorten it."
            )
        if not cleaned:
            raise QuestionError("The question is empty. Type a question about your documents.")
        if not any(ch.isalnum() for ch in cleaned):
            raise QuestionError(
                "The question has no words, only punctuation or symbols. Type a question about your documents."
            )
        return cleaned

    @staticmethod
    def _clean_history(history: History | None) -> list[dict[str, Any]] | None:
        """History turns with their content cleaned like a question (it reaches the rewrite prompt)."""
        if not history:
            return None
        if isinstance(history, str | bytes) or not all(isinstance(turn, dict) for turn in history):
            raise QuestionError('The history must be a list of {"role": ..., "content": ...} messages.')
        return [{**turn, "content": clean_text(str(turn.get("content") or ""))} for turn in history]

    @staticmethod
    def _history_language(history: History | None) -> str:
        for turn in reversed(list(history or [])):
            if turn.get("role") == "user":
                return detect(str(turn.get("content", "")), default="en")
        return "en"
