"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURE_DOCS_DIR = Path(__file__).parent / "fixtures" / "docs"


@pytest.fixture(scope="session")
def fixture_docs_dir() -> Path:
    """The folder of tiny committed documents (tests/fixtures/docs)."""
    return FIXTURE_DOCS_DIR


SEED_DIR = Path(__file__).resolve().parent.parent / "seeds"


@pytest.fixture
def make_assistant(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Build an Assistant on fakes (hash embedder, scripted LLM) with its index in tmp_path."""
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.embeddings import HashEmbedder
    from rag.llm import ScriptedLLM

    def build(llm: ScriptedLLM | None = None, **settings: object) -> Assistant:
        config = Settings(index_dir=tmp_path / "index", data_dir=tmp_path / "data", docs_dir=SEED_DIR, **settings)  # type: ignore[arg-type]
        return Assistant(config, llm=llm or ScriptedLLM(), embedder=HashEmbedder())

    return build


# --- store / ingest / retrieve fixtures (fake embedder, throwaway Chroma index) ------------


def _counting_embedder_class():  # type: ignore[no-untyped-def]
    from rag.embeddings import HashEmbedder

    class _Counting(HashEmbedder):
        """HashEmbedder that records every text actually sent to the model (`_embed`)."""

        def __init__(self) -> None:
            super().__init__()
            self.embedded: list[str] = []

        def _embed(self, texts, is_query):  # type: ignore[no-untyped-def]
            if not is_query:
                self.embedded.extend(texts)
            return super()._embed(texts, is_query)

    return _Counting


@pytest.fixture
def hash_embedder():  # type: ignore[no-untyped-def]
    """The deterministic fake embedder (shared words -> similar vectors)."""
    from rag.embeddings import HashEmbedder

    return HashEmbedder()


@pytest.fixture
def counting_embedder():  # type: ignore[no-untyped-def]
    """A HashEmbedder whose `.embedded` lists every passage text it embedded, in order."""
    return _counting_embedder_class()()


@pytest.fixture
def make_chunk_store(tmp_path):  # type: ignore[no-untyped-def]
    """Factory: ChunkStore(collection, tmp_path/<index>, embedder_name) in a fresh temp folder."""
    from rag.embeddings import HashEmbedder
    from rag.store import ChunkStore

    def make(index: str = "index", collection: str = "test", embedder_name: str = HashEmbedder.name) -> ChunkStore:
        return ChunkStore(collection=collection, path=tmp_path / index, embedder_name=embedder_name)

    return make


@pytest.fixture
def chunk_store(make_chunk_store):  # type: ignore[no-untyped-def]
    """An empty ChunkStore in tmp_path/index, named for the HashEmbedder."""
    return make_chunk_store()
