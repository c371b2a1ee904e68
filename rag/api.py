"""The assistant as an OpenAI-compatible HTTP API (`python -m rag serve`).

Endpoints (FastAPI, served by uvicorn):

    GET  /v1/models             one model, "rag-assistant"
    POST /v1/chat/completions   non-streaming and streaming (`"stream": true`, server-sent events)
    GET  /health                {"status": "ok"}, without a key (for load balancers)

Any OpenAI client can chat with the documents. The last message must be the user's
question; earlier user/assistant messages are the conversation history (a follow-up is
rewritten into a standalone question, as in the UI). System messages and sampling
parameters (temperature, max_tokens, ...) are ignored: the assistant's own prompts and
checks decide. Any `model` name is accepted.

Where the sources travel (extra fields, ignored by clients that do not know them):

- Non-streaming: `message.content` is the checked answer (`Answer.text`, with its [n]
  markers), and the response has three extra top-level fields:
  `sources`: [{number, text, document: {path, title, date}, start, end, chunk_id, supported}]
  (the passages the [n] markers point to; `start/end` are character offsets in the document),
  `abstained` (bool), `unsupported` (sentences removed by the support check) and `withdrawn`
  (sentences true of their sources but withdrawn, with the whole answer, by the fit check:
  they did not give what the question asks for).
- Streaming: the content deltas are the model's tokens live, as it writes them (before the
  checks; after an abstention on a small set, the reply with the next key passage follows, after
  a blank line if the first one was shown). The final chunk before `data: [DONE]` has
  `finish_reason: "stop"` and the extra top-level fields `rag_answer` (the checked answer: what
  to display once the stream ends, since sentences may have been removed or the answer turned
  into an abstention), `sources`,
  `abstained`, `unsupported` and `withdrawn`. With `--stream-mode checked` the server instead waits for
  the checks and streams only the checked answer as content (for chat tools that only show
  content); the final chunk is the same.

With the openai package: `completion.sources` / `completion.model_extra["sources"]`, and in a
stream `chunk.model_extra.get("sources")` on the last chunk.

Errors use OpenAI's format `{"error": {"message", "type", "param", "code"}}`: a bad request
(a body that is not UTF-8 JSON, a question that is empty, too long or has no words, last
message not from the user) is 400, a missing or wrong key 401, an unavailable backend (LLM,
embeddings or Chroma server down, nothing indexed) 503. Questions are cleaned as in
`Assistant.stream` (control characters, bidi overrides, lone surrogates: see `assistant.clean_text`).
An error after a stream has started is sent as a last `data: {"error": {...}}` event.

One Assistant per process (`create_app` also takes a factory, called on the first request;
`python -m rag serve` builds it, and syncs RAG_DOCS_DIR, before listening).
Requests run in worker threads; a single-slot LLM server (the embedded llama.cpp) queues them.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import ConfigError, EmptyIndexError, LLMError, ModelError, QuestionError, RagError, StoreError
from rag.types import Answer, Token

if TYPE_CHECKING:
    from rag.assistant import Assistant

MODEL_ID = "rag-assistant"
StreamMode = Literal["live", "checked"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens, ...: accepted and ignored

    model: str = MODEL_ID
    messages: list[ChatMessage]
    stream: bool = False


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def from_rag_error(exc: RagError) -> APIError:
    """400 for what the client can fix, 503 for a backend that is down or not ready."""
    if isinstance(exc, LLMError | StoreError | ModelError | EmptyIndexError):
        return APIError(503, str(exc), "service_unavailable")
    if isinstance(exc, QuestionError | ConfigError):
        return APIError(400, str(exc), "invalid_request_error")
    return APIError(400, str(exc), "invalid_request_error")


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return " ".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    return content or ""


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """(question, history): the last message is the question, earlier user/assistant turns the history."""
    turns = [m for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or messages[-1].role != "user":
        raise APIError(400, "The last message must be the user's question.", "invalid_request_error")
    history = [{"role": m.role, "content": _text(m.content)} for m in turns[:-1]]
    return _text(turns[-1].content), history


def sources_fields(answer: Answer) -> dict[str, Any]:
    """The documented extra fields: sources, abstained, unsupported, withdrawn."""
    return {
        "sources": answer.to_dict()["citations"],
        "abstained": answer.abstained,
        "unsupported": list(answer.unsupported),
        "withdrawn": list(answer.withdrawn),
    }


def _usage(answer: Answer) -> dict[str, int]:
    prompt = int(answer.usage.get("prompt_tokens", 0))
    completion = int(answer.usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(answer: Answer, completion_id: str, created: int) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(answer),
        **sources_fields(answer),
    }


def _chunk(completion_id: str, created: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


class _Lazy:
    """Builds the one Assistant of the process on first use (thread-safe)."""

    def __init__(self, factory: Callable[[], Assistant]) -> None:
        self._factory = factory
        self._assistant: Assistant | None = None
        self._lock = threading.Lock()

    def get(self) -> Assistant:
        if self._assistant is None:
            with self._lock:
                if self._assistant is None:
                    self._assistant = self._factory()
        return self._assistant


def create_app(
    assistant: Assistant | Callable[[], Assistant],
    api_key: str = "",
    stream_mode: StreamMode = "live",
) -> FastAPI:
    """The API over one Assistant (or a factory that builds it on first request)."""
    from rag.assistant import Assistant

    lazy = _Lazy((lambda: assistant) if isinstance(assistant, Assistant) else assistant)
    # no /docs, /redoc or /openapi.json: the docs pages would load their scripts from a CDN
    app = FastAPI(title="rag", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(APIError)
    def _api_error(request: Request, exc: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.message, exc.kind, exc.code), status_code=exc.status, headers=headers)

    @app.exception_handler(RagError)
    def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        return _api_error(request, from_rag_error(exc))

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own errors in OpenAI's format too: a body that is not UTF-8 JSON (400), 404, 405
        message = str(exc.detail)
        if exc.status_code == 400:
            message = f"Invalid request body (it must be UTF-8 JSON): {message}."
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(error_body(message, kind), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"Invalid request: {where}: {first.get('msg', 'bad value')}" if where else "Invalid request body."
        return JSONResponse(error_body(message, "invalid_request_error"), status_code=400)

    def require_key(request: Request) -> None:
        if not api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(
                401,
                "Missing or wrong API key (Authorization: Bearer <key>).",
                "invalid_request_error",
                "invalid_api_key",
            )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "rag"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)], response_model=None)
    def chat_completions(body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        question, history = split_messages(body.messages)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        events = lazy.get().stream(question, history or None)
        if not body.stream:
            answer = None
            for event in events:
                if isinstance(event, Answer):
                    answer = event
            assert answer is not None
            return completion_body(answer, completion_id, created)
        # run the stream up to its first event here, so a bad question or an empty index
        # is a proper 400/503 response rather than an error inside a 200 stream
        first = next(events)
        return StreamingResponse(
            _stream(first, events, completion_id, created, stream_mode),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def _stream(first: Any, events: Iterator[Any], completion_id: str, created: int, mode: StreamMode) -> Iterator[str]:
    """SSE lines: role, content deltas, the final chunk with the sources, [DONE]."""
    yield _sse(_chunk(completion_id, created, {"role": "assistant", "content": ""}))
    try:
        for event in _chain(first, events):
            if isinstance(event, Token) and mode == "live" and event.text:
                yield _sse(_chunk(completion_id, created, {"content": event.text}))
            elif isinstance(event, Answer):
                if mode == "checked":
                    yield _sse(_chunk(completion_id, created, {"content": event.text}))
                final = _chunk(completion_id, created, {}, finish="stop")
                final.update({"rag_answer": event.text, **sources_fields(event), "usage": _usage(event)})
                yield _sse(final)
    except RagError as exc:
        error = from_rag_error(exc)
        yield _sse(error_body(error.message, error.kind, error.code))
    yield _sse("[DONE]")


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
