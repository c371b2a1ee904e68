"""The OpenAI-compatible API (rag/api.py) on fakes, through FastAPI's TestClient and the openai client."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag import cli, prompts
from rag.api import MODEL_ID, create_app
from rag.errors import LLMError
from rag.llm import ScriptedLLM

SEED_ANSWER = "Parler a abandonné sa plainte contre Amazon [1]."
QUESTION = "Why did Parler drop its suit?"
KEY = "test-key"


@pytest.fixture
def make_client(make_assistant):  # type: ignore[no-untyped-def]
    def build(
        *replies: str, api_key: str = "", ingest: bool = True, stream_mode: str = "live", llm: Any = None
    ) -> tuple[TestClient, ScriptedLLM]:
        llm = llm or ScriptedLLM(list(replies))
        assistant = make_assistant(llm)
        if ingest:
            assistant.ingest()
        return TestClient(create_app(assistant, api_key=api_key, stream_mode=stream_mode)), llm  # type: ignore[arg-type]

    return build


def ask(question: str = QUESTION, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL_ID, "messages": [{"role": "user", "content": question}], **extra}


def sse_events(client: TestClient, body: dict[str, Any], **kwargs: Any) -> list[Any]:
    """The decoded `data:` payloads of a streamed response ("[DONE]" kept as a string)."""
    with client.stream("POST", "/v1/chat/completions", json=body, **kwargs) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return [p if p == "[DONE]" else json.loads(p) for p in (line[len("data: ") :] for line in lines)]


def test_models_lists_one_model(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(ingest=False)
    data = client.get("/v1/models").json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == [MODEL_ID]


def test_non_streaming_answer_carries_its_sources(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(SEED_ANSWER)
    response = client.post("/v1/chat/completions", json=ask(temperature=0.2, max_tokens=50))
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    message = data["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"].endswith("[1]")
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["abstained"] is False and data["unsupported"] == [] and data["withdrawn"] == []
    [source] = data["sources"]
    assert source["number"] == 1 and source["supported"] is True
    assert source["document"]["path"] == "000_1d7c1f8b7bb62d9d.txt" and source["document"]["date"] == "2021-03"
    assert source["end"] - source["start"] == len(source["text"])
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]


def test_abstention_has_no_sources(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client("NOT_FOUND")
    data = client.post("/v1/chat/completions", json=ask("How much were the damages?")).json()
    assert data["abstained"] is True and data["sources"] == []
    assert data["choices"][0]["message"]["content"] == prompts.CANNOT_ANSWER["en"]


def test_streaming_tokens_then_a_final_chunk_with_sources_then_done(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(SEED_ANSWER)
    events = sse_events(client, ask(stream=True))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == SEED_ANSWER  # the model's tokens, live
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop" and final["choices"][0]["delta"] == {}
    assert final["rag_answer"].endswith("[1]") and final["abstained"] is False
    assert [s["number"] for s in final["sources"]] == [1] and final["sources"][0]["document"]["date"] == "2021-03"
    assert all("sources" not in c for c in chunks[:-1])


def test_streaming_final_chunk_gives_the_checked_text_when_it_differs(make_client) -> None:  # type: ignore[no-untyped-def]
    invented = SEED_ANSWER + " Parler a obtenu 75 millions de dollars [1]."
    client, _ = make_client(invented)
    chunks = sse_events(client, ask(stream=True))[:-1]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "75 millions" in streamed  # live tokens are the raw reply...
    final = chunks[-1]
    assert "75 millions" not in final["rag_answer"]  # ...the checked answer drops the invented figure
    assert final["unsupported"] == ["Parler a obtenu 75 millions de dollars."]


def test_checked_stream_mode_streams_only_the_checked_answer(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(SEED_ANSWER + " Parler a obtenu 75 millions de dollars [1].", stream_mode="checked")
    chunks = sse_events(client, ask(stream=True))[:-1]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == chunks[-1]["rag_answer"] and "75 millions" not in streamed


def test_history_is_passed_to_the_assistant(make_client) -> None:  # type: ignore[no-untyped-def]
    client, llm = make_client("When did Parler file its suit?", "NOT_FOUND")
    body = {
        "model": MODEL_ID,
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": [{"type": "text", "text": SEED_ANSWER}]},
            {"role": "user", "content": "And when did it file it?"},
        ],
    }
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    rewrite = llm.calls[0][0]["content"]
    assert rewrite.startswith("Rewrite the last question")
    assert QUESTION in rewrite and "abandonné sa plainte" in rewrite and "And when did it file it?" in rewrite
    assert "You are helpful" not in rewrite  # system messages are ignored
    assert "When did Parler file its suit?" in llm.calls[1][-1]["content"]  # the standalone question was answered


def test_api_key_is_required_when_set(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(SEED_ANSWER, api_key=KEY)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = client.post("/v1/chat/completions", json=ask(), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/v1/models", headers=headers).status_code == 401
    assert client.get("/health").status_code == 200  # load balancers probe without the key
    ok = client.post("/v1/chat/completions", json=ask(), headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.json()["sources"]


@pytest.mark.parametrize("stream", [False, True])
def test_errors_map_to_openai_format(make_client, stream: bool) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(SEED_ANSWER)
    response = client.post("/v1/chat/completions", json=ask("   ", stream=stream))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("The question is empty") and error["type"] == "invalid_request_error"

    last_not_user = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    response = client.post("/v1/chat/completions", json={**last_not_user, "stream": stream})
    assert response.status_code == 400 and "last message" in response.json()["error"]["message"]

    response = client.post("/v1/chat/completions", json={"model": MODEL_ID, "stream": stream})
    assert response.status_code == 400 and "messages" in response.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_empty_index_is_503(make_client, stream: bool) -> None:  # type: ignore[no-untyped-def]
    empty, _ = make_client(ingest=False)
    response = empty.post("/v1/chat/completions", json=ask(stream=stream))
    assert response.status_code == 503 and "Nothing is indexed" in response.json()["error"]["message"]


def _failing_llm() -> ScriptedLLM:
    def fail(messages: Any) -> str:
        raise LLMError("The LLM server at http://x/v1 failed: cannot connect")

    return ScriptedLLM(reply_fn=fail)


def test_llm_down_is_503(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(llm=_failing_llm())
    response = client.post("/v1/chat/completions", json=ask())
    assert response.status_code == 503
    assert response.json()["error"] == {
        "message": "The LLM server at http://x/v1 failed: cannot connect",
        "type": "service_unavailable",
        "param": None,
        "code": None,
    }


def test_llm_failure_inside_a_stream_is_an_error_event(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(llm=_failing_llm())
    events = sse_events(client, ask(stream=True))
    assert events[-1] == "[DONE]"
    assert "cannot connect" in events[-2]["error"]["message"]


def test_the_official_openai_client_reads_the_sources(make_client) -> None:  # type: ignore[no-untyped-def]
    from openai import OpenAI

    client, _ = make_client(SEED_ANSWER, SEED_ANSWER, api_key=KEY)
    openai_client = OpenAI(base_url="http://testserver/v1", api_key=KEY, http_client=client)
    assert [m.id for m in openai_client.models.list()] == [MODEL_ID]
    messages: Any = [{"role": "user", "content": QUESTION}]
    completion = openai_client.chat.completions.create(model=MODEL_ID, messages=messages)
    assert completion.choices[0].message.content and completion.choices[0].message.content.endswith("[1]")
    extra = completion.model_extra or {}
    assert extra["sources"][0]["document"]["path"] == "000_1d7c1f8b7bb62d9d.txt" and extra["abstained"] is False

    chunks = list(openai_client.chat.completions.create(model=MODEL_ID, messages=messages, stream=True))
    final = chunks[-1].model_extra or {}
    assert final["sources"][0]["number"] == 1 and final["rag_answer"] == completion.choices[0].message.content
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == SEED_ANSWER


def test_serve_command_builds_the_app_on_loopback(make_assistant, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    llm = ScriptedLLM()
    assistant = make_assistant(llm)
    monkeypatch.setattr(cli, "_assistant", lambda args: assistant)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    out = io.StringIO()
    assert cli.main(["serve", "--port", "8123", "--api-key", KEY], out=out) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert "http://127.0.0.1:8123/v1" in out.getvalue()
    assert assistant.retriever.chunks  # ingested before serving
    deadline = time.monotonic() + 10
    while not llm.held and time.monotonic() < deadline:  # the LLM prefix is warmed in the background
        time.sleep(0.01)
    assert llm.held[0][:2] == (0, "Hi")
    client = TestClient(seen["app"])
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
