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
