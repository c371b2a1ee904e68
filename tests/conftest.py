"""Shared pytest fixtures."""

from __future__ import annotations

import re
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
        folders = {"index_dir": tmp_path / "index", "data_dir": tmp_path / "data", "cache_dir": tmp_path / "cache"}
        config = Settings(docs_dir=SEED_DIR, **(folders | settings))  # type: ignore[arg-type]
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


@pytest.fixture(scope="session")
def shared_chroma_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One Chroma folder for the session: opening a new PersistentClient costs ~0.15 s, a collection ~0.02 s."""
    return tmp_path_factory.mktemp("chroma")


@pytest.fixture
def make_chunk_store(tmp_path, shared_chroma_dir):  # type: ignore[no-untyped-def]
    """Factory for ChunkStores private to the test.

    By default the store lives in the session's shared Chroma folder under a collection name
    unique to this test (same `collection` argument -> same store, so reopening works);
    `index="name"` instead opens a fresh Chroma folder tmp_path/name.
    """
    import uuid

    from rag.embeddings import HashEmbedder
    from rag.store import ChunkStore

    prefix = f"t{uuid.uuid4().hex[:12]}"

    def make(collection: str = "test", index: str | None = None, embedder_name: str = HashEmbedder.name) -> ChunkStore:
        path = shared_chroma_dir if index is None else tmp_path / index
        return ChunkStore(collection=f"{prefix}-{collection}", path=path, embedder_name=embedder_name)

    return make


@pytest.fixture
def chunk_store(make_chunk_store):  # type: ignore[no-untyped-def]
    """An empty ChunkStore private to the test, named for the HashEmbedder."""
    return make_chunk_store()


def _number(system: str, needle: str) -> int:
    found = re.findall(rf"^\[(\d+)\] .*{needle}", system, re.MULTILINE)
    return int(found[-1]) if found else 1


def seed_reply(messages: list[dict[str, str]]) -> str:
    """Answers as a good model would: from the sources, with the right [n]; NOT_FOUND otherwise."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if "Rewritten question:" in user:
        return "Why did Parler drop its lawsuit against Amazon?"
    question = user.lower()
    if "host" in question:
        return f"Parler moved to another host, Epik [{_number(system, 'Epik')}]."
    if "lawsuit" in question or "drop" in question:
        reply = "The lawsuit had become moot since Parler was back online, and its victory was uncertain"
        return f"{reply} [{_number(system, 'sans objet')}]."
    return "NOT_FOUND"


@pytest.fixture
def fake_pipelines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list:  # type: ignore[type-arg]
    """Every Assistant that rag.eval.pipelines builds runs on fakes (hash embedder, `seed_reply`),
    never on the user's own index; returns the list of settings it was built with."""
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.embeddings import HashEmbedder
    from rag.eval import pipelines
    from rag.llm import ScriptedLLM

    built: list[Settings] = []
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))

    def build(settings: Settings) -> Assistant:
        built.append(settings)
        if settings.index_dir == Settings().index_dir:  # never the user's own index
            settings = settings.model_copy(update={"index_dir": tmp_path / "index"})
        # English answers to French sources: the scripted judge matches words, so the check is off
        settings = settings.model_copy(update={"verify": False})
        return Assistant(settings, llm=ScriptedLLM(reply_fn=seed_reply), embedder=HashEmbedder())

    monkeypatch.setattr(pipelines, "build_assistant", build)
    return built
