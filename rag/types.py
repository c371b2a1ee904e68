"""Typed records passed between the pipeline's stages.

Data flows one way: Document -> Chunk -> Hit -> Citation -> Answer. These are plain
dataclasses with no behaviour beyond small derived properties; llama-index and Chroma
types never leave `embeddings`, `store` and `retrieve`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """One file of the document set, loaded as text.

    `path` is relative to the folder it was ingested from (stable across machines);
    `sha256` is the hash of the raw file bytes, used for incremental sync.
    """

    path: str
    title: str
    text: str
    sha256: str
    date: str = ""  # "YYYY-MM" or "YYYY-MM-DD" when the file says so
    lead: str = ""  # the lead sentence from a metadata header, if any
    source: str = ""  # absolute folder the path is relative to

    @property
    def doc_id(self) -> str:
        return self.path


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: `text == document.text[start:end]`."""

    id: str
    doc_path: str
    title: str
    date: str
    text: str
    start: int
    end: int
    position: int  # 0-based index of the chunk within its document
    doc_sha256: str = ""
    tokens: int = 0
    source: str = ""  # the folder the document was ingested from
    # the text of the window of neighbouring chunks this chunk's retrieval vector also embeds
    # ("" = the chunk alone); set at ingest, not stored (see rag/chunking.py `with_windows`)
    context: str = ""


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and per-retriever ranks."""

    chunk: Chunk
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Citation:
    """A source the answer cites: `[number]` in `Answer.text` refers to it."""

    number: int
    text: str
    doc_path: str
    title: str
    date: str
    start: int
    end: int
    chunk_id: str
    supported: bool = True  # every sentence citing it passed the support check

    @property
    def document(self) -> dict[str, str]:
        return {"path": self.doc_path, "title": self.title, "date": self.date}

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


@dataclass(frozen=True)
class Sentence:
    """One sentence of the answer, with the sources it cites and its check result."""

    text: str
    citations: tuple[int, ...]
    supported: bool
    support: float = 1.0  # P("Yes") of the support check (0 when a figure was invented)


@dataclass
class Answer:
    """The final answer to one question.

    `text` holds only grounded sentences, each with its [n] markers; sentences whose
    support check failed are kept apart in `unsupported` and never appear in `text`.
    """

    question: str
    text: str
    citations: list[Citation]
    abstained: bool
    language: str = "en"
    sentences: list[Sentence] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    # sentences each supported by its source but withdrawn because, together, they did not give
    # what the question asks for (the fit check); only set when the answer abstained for that
    withdrawn: list[str] = field(default_factory=list)
    raw_text: str = ""  # what the model wrote, before checks
    standalone_question: str = ""  # the question after follow-up rewriting
    search_translation: str = ""  # the question in the documents' language, searched with it (large sets)
    sources: list[Citation] = field(default_factory=list)  # every passage shown to the model
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    abstain_reason: str = ""
    relevance: float = 0.0  # best e5 similarity of any passage to the question
    fit: float | None = None  # P(yes) that the checked answer gives what the question asks for, if asked
    key_passages: list[int] = field(default_factory=list)  # the passages quoted before the question, in the order tried

    def to_dict(self) -> dict[str, Any]:
        def cite(c: Citation) -> dict[str, Any]:
            return {
                "number": c.number,
                "text": c.text,
                "document": c.document,
                "start": c.start,
                "end": c.end,
                "chunk_id": c.chunk_id,
                "supported": c.supported,
            }

        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "search_translation": self.search_translation,
            "text": self.text,
            "abstained": self.abstained,
            "abstain_reason": self.abstain_reason,
            "relevance": self.relevance,
            "fit": self.fit,
            "key_passages": list(self.key_passages),
            "language": self.language,
            "citations": [cite(c) for c in self.citations],
            "unsupported": list(self.unsupported),
            "withdrawn": list(self.withdrawn),
            "sentences": [
                {"text": x.text, "citations": list(x.citations), "supported": x.supported, "support": x.support}
                for x in self.sentences
            ],
            "raw_text": self.raw_text,
            "timings": dict(self.timings),
            "usage": dict(self.usage),
        }


@dataclass(frozen=True)
class Token:
    """A streamed piece of the answer as the model writes it (before checks)."""

    text: str


@dataclass(frozen=True)
class Status:
    """A progress message while answering (e.g. "retrieving", "checking citations")."""

    text: str


@dataclass
class IngestReport:
    """What one sync of a folder did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    chunks_added: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        """One line: how many files were added, updated, removed, unchanged, skipped, and the chunks."""
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, removed {len(self.removed)}, "
            f"unchanged {self.unchanged}, skipped {len(self.skipped)}; "
            f"{self.chunks_added} chunks written, {self.chunks_embedded} embedded, in {self.seconds:.1f} s"
        )
