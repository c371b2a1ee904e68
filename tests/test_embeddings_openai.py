"""OpenAIEmbedder against a tiny in-thread OpenAI-style /v1/embeddings server (hash vectors)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.embeddings import HashEmbedder, OpenAIEmbedder
from rag.errors import LLMError, StoreError

SEED_DIR = Path(__file__).resolve().parent.parent / "seeds"


class FakeEmbeddingsServer:
    """Records every request; answers with HashEmbedder vectors (x3, so the client must normalise)."""

    def __init__(self, model: str = "fake-e5", strict: bool = False, api_key: str = "") -> None:
        self.requests: list[dict[str, Any]] = []
        self.trickle = False  # answer embedding requests with a byte every 0.2 s, never ending
        self.released = threading.Event()
        self.headers: list[dict[str, str]] = []
        hasher = HashEmbedder(dim=64)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                if api_key and self.headers.get("Authorization") != f"Bearer {api_key}":
                    self._json(401, {"error": {"message": "bad key", "type": "auth", "code": None}})
                    return False
                return True

            def do_GET(self) -> None:
                if self._authorised():
                    self._json(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "x"}]})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(req)
                if outer.trickle:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    while not outer.released.wait(0.2):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    return
                if strict and "input_type" in req:
                    self._json(400, {"error": {"message": "Unrecognized request argument: input_type", "type": "x"}})
                    return
                vectors = hasher._embed(req["input"], req.get("input_type") == "query") * 3.0
                data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
                data.reverse()  # the client must order by index
                self._json(200, {"object": "list", "data": data, "model": model, "usage": {}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeEmbeddingsServer]:
    srv = FakeEmbeddingsServer()
    yield srv
    srv.close()


def test_probe_gives_dim_and_the_servers_model_name(server: FakeEmbeddingsServer) -> None:
    emb = OpenAIEmbedder(server.base_url, model="asked-name")
    assert emb.dim == 64
    assert emb.name == "fake-e5"  # what the server says it ran, not the host or the requested alias
    assert server.requests[0]["model"] == "asked-name"


def test_empty_model_takes_the_first_listed(server: FakeEmbeddingsServer) -> None:
    emb = OpenAIEmbedder(server.base_url)
    assert emb.model == "fake-e5"


def test_input_type_says_query_or_passage_and_rows_are_normalised(server: FakeEmbeddingsServer) -> None:
    emb = OpenAIEmbedder(server.base_url, model="fake-e5", batch_size=2)
    server.requests.clear()
    passages = emb.embed_passages(["Parler est hébergé par Epik.", "Il pleut à Lyon.", "Amazon a coupé Parler."])
    query = emb.embed_query("Qui héberge Parler ?")
    assert [r["input_type"] for r in server.requests] == ["passage", "passage", "query"]
    assert [len(r["input"]) for r in server.requests] == [2, 1, 1]  # batch_size respected
    assert server.requests[0]["input"][0] == "Parler est hébergé par Epik."  # no client-side prefix
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    expected = HashEmbedder(dim=64).embed_passages(["Parler est hébergé par Epik.", "Il pleut à Lyon."])
    assert np.allclose(passages[:2], expected, atol=1e-5)  # order follows `index`, not the reply order
    assert query @ passages[0] > query @ passages[1]


def test_e5_prefixes_client_side_replace_input_type(server: FakeEmbeddingsServer) -> None:
    emb = OpenAIEmbedder(server.base_url, model="fake-e5", e5_prefixes=True)
    server.requests.clear()
    emb.embed_query("Who hosts Parler?")
    emb.embed_passages(["Epik hosts Parler."])
    assert [r["input"] for r in server.requests] == [["query: Who hosts Parler?"], ["passage: Epik hosts Parler."]]
    assert all("input_type" not in r for r in server.requests)  # never prefixed twice


def test_strict_server_refusing_input_type_is_retried_without_it() -> None:
    srv = FakeEmbeddingsServer(strict=True)
    try:
        emb = OpenAIEmbedder(srv.base_url, model="fake-e5")
        emb.embed_query("x y z")
        assert "input_type" in srv.requests[0] and all("input_type" not in r for r in srv.requests[1:])
    finally:
        srv.close()


def test_api_key_is_sent_and_a_wrong_one_is_a_clear_error() -> None:
    srv = FakeEmbeddingsServer(api_key="s3cret")
    try:
        OpenAIEmbedder(srv.base_url, model="fake-e5", api_key="s3cret")
        assert srv.headers[-1]["authorization"] == "Bearer s3cret"
        with pytest.raises(LLMError, match="RAG_EMBED_API_KEY"):
            OpenAIEmbedder(srv.base_url, model="fake-e5", api_key="wrong", retries=0)
    finally:
        srv.close()


def test_a_server_trickling_bytes_is_cut_off_at_the_deadline(server: FakeEmbeddingsServer) -> None:
    emb = OpenAIEmbedder(server.base_url, model="fake-e5", timeout=1, retries=0, deadline=2)
    server.trickle = True  # a byte every 0.2 s: the 1 s read timeout never fires
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"embeddings server at .* took longer than 2 s \(RAG_LLM_DEADLINE\)"):
        emb.embed_query("Qui héberge Parler ?")
    assert 2.0 <= time.monotonic() - started < 4.0


def test_server_down_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LLMError, match=r"embeddings server at .* cannot connect.*RAG_EMBED_BASE_URL"):
        OpenAIEmbedder(f"http://127.0.0.1:{port}/v1", model="m", retries=0, timeout=5)


def test_assistant_uses_the_server_and_the_collection_refuses_another_embedder(
    server: FakeEmbeddingsServer, tmp_path: Path
) -> None:
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.llm import ScriptedLLM

    settings = Settings(index_dir=tmp_path / "index", docs_dir=SEED_DIR, embed_base_url=server.base_url)
    assistant = Assistant(settings, llm=ScriptedLLM())
    assert isinstance(assistant.embedder, OpenAIEmbedder) and assistant.describe()["embedder"] == "fake-e5"
    assert assistant.ingest().chunks_added > 0
    hits = assistant.retriever.search("Epik hébergeur Parler", 3)
    assert any("Epik" in h.chunk.text for h in hits)
    with pytest.raises(
        StoreError, match=r"built with the embedder 'fake-e5\+window320', not 'test/hash-embedder\+window320'"
    ):
        Assistant(settings, llm=ScriptedLLM(), embedder=HashEmbedder())
