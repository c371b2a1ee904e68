"""The Gradio chat UI: a thin adapter over `Assistant.stream`.

Everything that comes from the model or from the documents is untrusted. It is shown
through `escape_text`, which HTML-escapes it (`html.escape`) *and* turns every Markdown
control character into an HTML entity, so neither tags (`<script>`) nor Markdown
(`![x](http://...)` images, links, headings, LaTeX, code fences) can come alive. Only the
`[n]` citation markers are put back as plain text. The Chatbot's own `sanitize_html`
stays on as a second line of defence.

While the model writes, the raw tokens are shown (escaped); when the final `Answer`
arrives they are replaced by its checked text plus the cited sources (`format_answer`).
Earlier turns are passed to the assistant as plain history: the user's question and the
answer text only, never the source listing.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry

import gradio as gr

from rag.errors import RagError
from rag.types import Answer, Citation, Status, Token

if TYPE_CHECKING:
    from rag.config import Settings

logger = logging.getLogger(__name__)

EXAMPLES = [
    "Why did Parler drop its suit?",
    "Pourquoi Parler a-t-il abandonné sa plainte ?",
    "Which company hosted Parler after Amazon dropped it?",
    "Quand Parler est-il revenu en ligne ?",
]

GENERIC_ERROR = "Something went wrong while answering. Please try again; if it keeps happening, see the logs."
NO_ANSWER_ERROR = "The assistant stopped without an answer. Please try again."

# Local/system fonts only: the page must not fetch anything from the internet.
THEME = gr.themes.Default(
    font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"],
)

# Markdown inline syntax (emphasis, code, links/images, tables, LaTeX) as numeric entities:
# they render as themselves but are never parsed as syntax. Block syntax (headings,
# lists, rules) only matters at the start of a line and is handled there, and bare URLs
# are kept from becoming autolinks, so ordinary text such as dates and hyphens stays readable.
_MARKDOWN_CHARS = "\\`*_[]()!|~$"
_ESCAPES: dict[int, str] = {ord(c): f"&#{ord(c)};" for c in _MARKDOWN_CHARS}
_ESCAPES.update({ord(c): html.escape(c, quote=True) for c in "&<>\"'"})
_LINE_START = re.compile(r"^([ \t]*)(?:([#+\-=])|(\d+)\.)", re.MULTILINE)
_AUTOLINK = re.compile(r"://|\b(www)\.", re.IGNORECASE)
_MARKER = re.compile(r"&#91;(\d{1,3})&#93;")

History = list[dict[str, str]]
Messages = list[dict[str, Any]]


def _line_start(match: re.Match[str]) -> str:
    indent, char, number = match.groups()
    return f"{indent}&#{ord(char)};" if char else f"{indent}{number}&#46;"


def _autolink(match: re.Match[str]) -> str:
    return f"{match.group(1)}&#46;" if match.group(1) else "&#58;//"


def escape_text(text: str) -> str:
    """Untrusted text -> inert Markdown/HTML that displays exactly `text`.

    `html.escape` plus entity-encoding of Markdown syntax: no tag, image, link, code
    span, heading, list or formula can be formed from `text`.
    """
    escaped = text.translate(_ESCAPES)
    escaped = _LINE_START.sub(_line_start, escaped)
    return _AUTOLINK.sub(_autolink, escaped)


def escape_answer_text(text: str) -> str:
    """Like `escape_text`, but keeps the `[n]` citation markers readable as `[n]`."""
    return _MARKER.sub(r"[\1]", escape_text(text))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fmt_seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def format_timings(timings: dict[str, float]) -> str:
    names = {"retrieval_s": "retrieval", "first_token_s": "first token", "total_s": "total"}
    parts = [f"{label} {_fmt_seconds(timings[key])}" for key, label in names.items() if key in timings]
    return " · ".join(parts)


def format_sources(citations: list[Citation]) -> str:
    """The cited passages: "[n] title (date)" and the passage text, all escaped."""
    if not citations:
        return ""
    blocks = ["**Sources**"]
    for c in citations:
        heading = f"[{c.number}] {escape_text(_one_line(c.title or c.doc_path))}"
        if c.date.strip():
            heading += f" &#40;{escape_text(_one_line(c.date))}&#41;"
        passage = "<br>".join(escape_text(c.text.strip()).splitlines())
        blocks.append(f"<details open><summary>{heading}</summary>\n<blockquote>{passage}</blockquote>\n</details>")
    return "\n\n".join(blocks)


def format_answer(answer: Answer) -> str:
    """The final chat message for an answer: text, sources, removed sentences, timings."""
    text = escape_answer_text(answer.text.strip())
    if answer.abstained:
        parts = [f"ℹ️ <em>{_one_line(text)}</em>"]
    else:
        parts = [text]
        sources = format_sources(answer.citations)
        if sources:
            parts.append(sources)
    if answer.unsupported:
        removed = "<br>".join(f"<del>{_one_line(escape_answer_text(s))}</del>" for s in answer.unsupported)
        parts.append(f"⚠️ <strong>Removed (not supported by the sources):</strong><br>{removed}")
    timings = format_timings(answer.timings)
    if timings:
        parts.append(f"<small>{timings}</small>")
    return "\n\n".join(parts)


def format_draft(raw: str, status: str = "") -> str:
    """What is shown while streaming: the raw tokens so far and the latest status."""
    parts = [escape_answer_text(raw.strip())] if raw.strip() else []
    if status:
        parts.append(f"<small><em>{escape_text(status)}…</em></small>")
    return "\n\n".join(parts) or "<small><em>…</em></small>"


def format_error(message: str) -> str:
    return f"⚠️ {escape_text(message)}"


def format_settings(assistant: Any) -> str:
    try:
        info = assistant.describe()
    except Exception:
        logger.exception("assistant.describe() failed")
        return "_Settings unavailable._"
    rows = [f"- **{escape_text(str(k))}**: {escape_text(str(v))}" for k, v in info.items()]
    return "\n".join(rows) or "_No settings to show._"


ChatHandler = Callable[[str, Messages, History], Iterator[tuple[Messages, History]]]


def make_chat_handler(assistant: Any) -> ChatHandler:
    """The streaming chat function: (question, shown messages, plain history) -> updates.

    Yields `(messages for the Chatbot, plain history)` pairs. The plain history holds
    only questions and checked answer texts; it is what the assistant receives.
    """

    def respond(message: str, chat: Messages, history: History) -> Iterator[tuple[Messages, History]]:
        question = (message or "").strip()
        shown = [*(chat or []), {"role": "user", "content": escape_text(question)}]
        history = list(history or [])
        if not question:
            yield list(chat or []), history
            return

        def show(content: str) -> Messages:  # a fresh list per update
            return [*shown, {"role": "assistant", "content": content}]

        yield show(format_draft("", "Thinking")), history
        raw, status = "", ""
        answer: Answer | None = None
        try:
            for event in assistant.stream(question, history=list(history)):
                if isinstance(event, Answer):
                    answer = event  # the last event; keep draining so the stream can finish
                    continue
                if isinstance(event, Token):
                    raw, status = raw + event.text, ""
                elif isinstance(event, Status):
                    status = event.text[:1].upper() + event.text[1:]
                else:
                    continue
                yield show(format_draft(raw, status)), history
        except RagError as error:
            logger.warning("question failed: %s", error)
            yield show(format_error(str(error) or GENERIC_ERROR)), history
            return
        except Exception:
            logger.exception("unexpected error while answering %r", question)
            yield show(format_error(GENERIC_ERROR)), history
            return
        if answer is None:
            logger.error("assistant.stream ended without an Answer for %r", question)
            yield show(format_error(NO_ANSWER_ERROR)), history
            return
        history = [
            *history,
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer.text},
        ]
        yield show(format_answer(answer)), history

    return respond


def create_app(assistant: Any) -> gr.Blocks:
    """The chat page. Theme and CSS are given at `launch` (Gradio 6 moved them there)."""
    respond = make_chat_handler(assistant)

    with gr.Blocks(title="Document assistant", analytics_enabled=False) as app:
        gr.Markdown("## Document assistant\nAnswers come only from your documents, with [n] citations.")
        history = gr.State([])
        pending = gr.State("")
        chatbot = gr.Chatbot(
            label="Conversation",
            height=560,
            sanitize_html=True,
            render_markdown=True,
            latex_delimiters=[],
            allow_tags=False,
            buttons=["copy"],
            feedback_options=None,
            placeholder="Ask a question about the documents.",
        )
        with gr.Row():
            textbox = gr.Textbox(
                placeholder="Ask a question…",
                show_label=False,
                lines=1,
                max_lines=6,
                scale=8,
                autofocus=True,
            )
            send = gr.Button("Send", variant="primary", scale=1, min_width=80)
        new = gr.Button("New conversation", variant="secondary", size="sm")
        gr.Examples(examples=[[q] for q in EXAMPLES], inputs=[textbox], label="Examples")
        with gr.Accordion("Settings", open=False):
            gr.Markdown(format_settings(assistant))

        def take(message: str) -> tuple[str, str]:
            return message, ""

        asked = gr.on(
            [textbox.submit, send.click], take, [textbox], [pending, textbox], queue=False, api_visibility="private"
        )
        # The question travels through a State, so the endpoint is no use as an HTTP API: private.
        answering = asked.then(
            respond, [pending, chatbot, history], [chatbot, history], api_name="chat", api_visibility="private"
        )

        def reset() -> tuple[Messages, History, str]:
            return [], [], ""

        quiet: dict[str, Any] = {"queue": False, "api_visibility": "private"}
        new.click(reset, None, [chatbot, history, textbox], cancels=[answering], **quiet)
        chatbot.clear(lambda: [], None, [history], cancels=[answering], **quiet)
    return app


def launch(app: gr.Blocks, settings: Settings) -> None:
    auth: tuple[str, str] | None = None
    if settings.ui_auth:
        user, _, password = settings.ui_auth.partition(":")
        auth = (user, password)
    app.queue(default_concurrency_limit=1, max_size=32).launch(
        server_name=settings.ui_host,
        server_port=settings.ui_port,
        share=False,
        auth=auth,
        footer_links=["gradio", "settings"],  # v6 replacement for show_api=False: no "api" link
        run_history=False,  # v6 records runs in the browser and offers a Hugging Face upload
        ssr_mode=False,
        theme=THEME,
    )
