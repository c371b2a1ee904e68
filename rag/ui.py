"""The Gradio chat UI: a thin adapter over `Assistant` (stream, ingest, documents, document_text, describe).

Layout: a Chat tab (conversation on the left, evidence panel on the right) and a Documents
tab (indexed documents, upload, removal, a viewer). Nothing here answers questions or
indexes files itself; it formats what the assistant returns and passes user actions on.

Everything that comes from the model or from the documents is untrusted:
- in chat messages (Markdown) it goes through `escape_text`, which HTML-escapes it
  (`html.escape`) *and* turns every Markdown control character into an HTML entity, so
  neither tags (`<script>`) nor Markdown (`![x](http://...)` images, links, headings,
  LaTeX, code fences) can come alive. Only the `[n]` citation markers are put back, as
  links to the evidence panel. The Chatbot's own `sanitize_html` stays on as a second line
  of defence;
- in the evidence panel and document viewer (raw HTML, no Markdown) it goes through
  `html.escape`; the only tags are the ones written here (`<mark>`, `<details>`, ...).

While the model writes, the raw tokens are shown (escaped); when the final `Answer`
arrives they are replaced by its checked text (`format_answer`) and its evidence is put on
top of the evidence panel (`format_evidence`). Earlier turns are passed to the assistant as
plain history: the user's question and the answer text only.

Documents are read only through `read_document`, which refuses absolute paths and `..`
before asking the assistant, which itself serves only indexed documents. Uploads are
checked (suffix, size, content type) and saved under `settings.data_dir/uploads`, a folder
the assistant then syncs like any other. Feedback goes to `settings.data_dir/feedback.jsonl`.

Programmatic chat: one public endpoint, `/ask` (`make_ask_handler`), for `gradio_client`:
`Client(url).predict("question", [history], api_name="/ask")` -> `(answer text, {"sources",
"abstained", "unsupported", "withdrawn"})`. The page's own events stay private. The events that ask the assistant (chat,
/ask) share one concurrency group, `"assistant"`, limited to 1 (there is one LLM); upload and
removal share another, `"indexing"`, also limited to 1, so a question is answered while an
upload is indexed (from the documents indexed before; the indexing pauses while it is answered,
see rag/cores.py). All wait behind one queue of at most `QUEUE_SIZE` events; past that a
request is refused at once with "Queue is full" (HTTP 503, `gradio_client` raises
`QueueError`). `launch` turns off the queue-skipping REST routes (`api_open=False`), so no
client can reach the LLM around the queue.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry

import gradio as gr

from rag.config import SEED_DIR
from rag.errors import RagError
from rag.prompts import WITHDRAWN_NOTE
from rag.types import Answer, Citation, Status, Token

if TYPE_CHECKING:
    from rag.config import Settings

logger = logging.getLogger(__name__)

# Example questions about the seed article, shown only while the seed folder is the one indexed
# (a user's own folder gets none: questions about Parler would make no sense there). Among them an
# unanswerable one, to show an abstention.
EXAMPLES = [
    "Why did Parler drop its suit?",
    "Which web host took Parler in?",
    "Pourquoi le choix d'Epik n'est-il pas surprenant ?",
    "¿Qué empresa de alojamiento web acogió a Parler?",
    "Combien d'utilisateurs Parler a-t-il ?",
]

GENERIC_ERROR = "Something went wrong while answering. Please try again; if it keeps happening, see the logs."
NO_ANSWER_ERROR = "The assistant stopped without an answer. Please try again."

UPLOAD_SUFFIXES = (".txt", ".md", ".html", ".pdf", ".docx")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
QUEUE_SIZE = 32  # events that may wait for the assistant; more are refused ("Queue is full")
INDEXING_POLL_S = 2.0  # how often an open page asks whether a sync runs (not queued: never waits for an answer)
ASK_API_NAME = "ask"  # gradio_client: client.predict(question, history, api_name="/ask")
CONTEXT_CHARS = 300  # document text shown on each side of a cited passage
FULL_DOCUMENT_CHARS = 100_000  # longer documents are not embedded whole in the evidence panel

# Local/system fonts only: the page must not fetch anything from the internet.
THEME = gr.themes.Default(
    font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"],
)

CSS = """
.abstain { background: #f3f6fa; border-left: 3px solid #8aa4c2; padding: 6px 10px; border-radius: 4px; color: #38475a; }
.dark .abstain { background: #1f2733; color: #c8d3e0; }
a.cite { text-decoration: none; font-weight: 600; cursor: pointer; }
.small-print { font-size: 0.78em; opacity: 0.75; }
#evidence { max-height: 640px; overflow-y: auto; }
.ev-turn > summary { font-weight: 600; cursor: pointer; margin: 4px 0; }
.ev-item { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 8px 10px; margin: 8px 0; }
.ev-item.flash { outline: 3px solid #f0c000; transition: outline 0.3s; }
.ev-head { font-size: 0.92em; margin-bottom: 4px; }
.ev-meta { opacity: 0.7; font-size: 0.9em; }
.ev-passage, .ev-full { white-space: pre-wrap; font-size: 0.9em; line-height: 1.45; margin: 4px 0; }
.ev-full { max-height: 320px; overflow-y: auto; border-top: 1px dashed var(--border-color-primary); padding-top: 4px; }
.ev-passage mark, .ev-full mark { background: #fff1a8; color: inherit; padding: 0 1px; }
.dark .ev-passage mark, .dark .ev-full mark { background: #6b5a00; }
.ev-warn, .ev-removed { color: #a4471b; font-size: 0.88em; }
.ev-removed del { opacity: 0.8; }
.ev-abstain { color: #38475a; font-style: italic; }
.doc-table { width: 100%; border-collapse: collapse; font-size: 0.92em; }
.doc-table th, .doc-table td { text-align: left; padding: 4px 6px;
  border-bottom: 1px solid var(--border-color-primary); }
"""

# Clicking an [n] marker (or an older turn's marker) scrolls to its evidence and flashes it;
# opening "the whole document" scrolls to the cited span. Runs once on page load.
JS = """
() => {
  if (window.__ragEvidence) return;
  window.__ragEvidence = true;
  const show = (id, tries) => {
    const el = document.getElementById(id);
    if (!el) { if (tries > 0) setTimeout(() => show(id, tries - 1), 150); return; }
    for (let p = el.parentElement; p; p = p.parentElement) { if (p.tagName === 'DETAILS') p.open = true; }
    el.scrollIntoView({block: 'nearest'});
    el.classList.remove('flash'); void el.offsetWidth; el.classList.add('flash');
    setTimeout(() => el.classList.remove('flash'), 1500);
  };
  document.addEventListener('click', (event) => {
    const link = event.target.closest ? event.target.closest('a.cite') : null;
    if (!link) return;
    event.preventDefault();
    const id = (link.getAttribute('href') || '').slice(1);
    if (/^ev-[0-9]+-[0-9]+$/.test(id)) show(id, 10);
  }, true);
  document.addEventListener('toggle', (event) => {
    const box = event.target;
    if (box.classList && box.classList.contains('ev-doc') && box.open) {
      const mark = box.querySelector('mark');
      if (mark) mark.scrollIntoView({block: 'center'});
    }
  }, true);
}
"""

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
Turns = list[dict[str, Any]]  # one record per answered question: index, question, answer, citations, evidence


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


def escape_answer_text(text: str, turn: int | None = None, citations: list[Citation] | None = None) -> str:
    """Like `escape_text`, but keeps the `[n]` citation markers.

    With `turn`, a marker that points to one of `citations` becomes a link to its evidence
    (`#ev-<turn>-<n>`) whose tooltip is the cited passage's title and opening words.
    """
    escaped = escape_text(text)
    if turn is None:
        return _MARKER.sub(r"[\1]", escaped)
    by_number = {c.number: c for c in citations or []}

    def link(match: re.Match[str]) -> str:
        number = int(match.group(1))
        cited = by_number.get(number)
        if cited is None:
            return f"[{number}]"
        tip = escape_text(_one_line(f"{cited.title or cited.doc_path}: {cited.text}")[:240])
        return f'<a class="cite" href="#ev-{turn}-{number}" title="{tip}">[{number}]</a>'

    return _MARKER.sub(link, escaped)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fmt_seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def format_timings(timings: dict[str, float]) -> str:
    names = {"retrieval_s": "retrieval", "first_token_s": "first token", "total_s": "total"}
    parts = [f"{label} {_fmt_seconds(timings[key])}" for key, label in names.items() if key in timings]
    return " · ".join(parts)


def format_sources(citations: list[Citation]) -> str:
    """The cited passages as Markdown: "[n] title (date)" and the passage text, all escaped."""
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


def model_line(info: dict[str, str]) -> str:
    """ "<llm> via <server> · embedder <name>" from `Assistant.describe()`."""
    parts = []
    if info.get("llm"):
        parts.append(f"{info['llm']} via {info['llm_server']}" if info.get("llm_server") else info["llm"])
    if info.get("embedder"):
        parts.append(f"embedder {info['embedder']}")
    return " · ".join(parts)


def format_answer(answer: Answer, turn: int | None = None, model: str = "") -> str:
    """The final chat message for an answer: text with [n] links, removed sentences, small print.

    The cited passages themselves are in the evidence panel (`format_evidence`).
    """
    text = escape_answer_text(answer.text.strip(), turn, answer.citations)
    if answer.abstained:
        parts = [f'<div class="abstain">ℹ️ <em>{_one_line(text)}</em></div>']
    else:
        parts = [text]
        if answer.citations:
            numbers = ", ".join(f"[{c.number}]" for c in answer.citations)
            parts.append(f'<span class="small-print">Sources {numbers}: see the evidence panel.</span>')
    for label, sentences in (
        ("Removed (not supported by the sources)", answer.unsupported),
        (WITHDRAWN_NOTE, answer.withdrawn),
    ):
        if sentences:
            struck = "<br>".join(f"<del>{_one_line(escape_answer_text(s))}</del>" for s in sentences)
            parts.append(f"⚠️ <strong>{label}:</strong><br>{struck}")
    small = " · ".join(p for p in (format_timings(answer.timings), escape_text(model)) if p)
    if small:
        parts.append(f'<small class="small-print">{small}</small>')
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


# --- documents: safe reading ----------------------------------------------------------------


def safe_document_path(path: str) -> str:
    """A relative document path as given by `Assistant.documents()`, or RagError.

    Refuses absolute paths (POSIX or Windows), any `..` part, backslashes and NUL, whatever
    the index holds: the UI never asks for a file outside the indexed folders.
    """
    if not isinstance(path, str) or not path.strip() or "\x00" in path or "\\" in path:
        raise RagError("That document path is not allowed.")
    pure = PurePosixPath(path)
    if pure.is_absolute() or PureWindowsPath(path).is_absolute() or PureWindowsPath(path).drive:
        raise RagError("That document path is not allowed: absolute paths are refused.")
    if ".." in pure.parts:
        raise RagError("That document path is not allowed: '..' is refused.")
    return pure.as_posix()


def read_document(assistant: Any, path: str, source: str | None = None) -> str:
    """Full text of an indexed document; anything else (or a suspicious path) is refused."""
    return str(assistant.document_text(safe_document_path(path), source))


def _document_text_for(assistant: Any, citation: Citation, cache: dict[str, str | None]) -> str | None:
    """The text of the cited document, checked to contain the citation at its offsets."""
    if citation.doc_path not in cache:
        found: str | None = None
        try:
            sources = [d.get("source") for d in assistant.documents() if d.get("path") == citation.doc_path]
            for source in sources or [None]:
                text = read_document(assistant, citation.doc_path, source)
                if text[citation.start : citation.end] == citation.text:
                    found = text
                    break
        except Exception as error:  # the evidence panel then shows the passage alone
            logger.warning("cannot read %r for the evidence panel: %s", citation.doc_path, error)
        cache[citation.doc_path] = found
    return cache[citation.doc_path]


def highlight(text: str, start: int, end: int, context: int = CONTEXT_CHARS) -> str:
    """`text[start:end]` in <mark>, with up to `context` characters either side, escaped.

    The context is cut at a word boundary and marked with "…" where it is truncated.
    """
    lo, hi = max(0, start - context), min(len(text), end + context)
    if lo > 0:
        space = text.find(" ", lo, start)
        lo = space + 1 if space != -1 else lo
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        hi = space if space != -1 else hi
    before, span, after = text[lo:start], text[start:end], text[end:hi]
    return (
        ("…" if lo > 0 else "")
        + html.escape(before)
        + f"<mark>{html.escape(span)}</mark>"
        + html.escape(after)
        + ("…" if hi < len(text) else "")
    )


def format_citation(citation: Citation, turn: int, document: str | None) -> str:
    """One evidence item: title, date, path, the passage in context, the whole document."""
    c = citation
    title = _one_line(c.title or c.doc_path)
    title = html.escape(title if len(title) <= 140 else title[:139].rstrip() + "…")
    meta = " · ".join(html.escape(_one_line(x)) for x in (c.date, c.doc_path) if x.strip())
    parts = [
        f'<div class="ev-item" id="ev-{turn}-{c.number}">',
        f'<div class="ev-head"><strong>[{c.number}]</strong> {title} <span class="ev-meta">{meta}</span></div>',
    ]
    if not c.supported:
        parts.append('<div class="ev-warn">⚠️ A sentence citing this passage failed the support check.</div>')
    if document is not None:
        parts.append(f'<div class="ev-passage">{highlight(document, c.start, c.end)}</div>')
        if len(document) <= FULL_DOCUMENT_CHARS:
            full = highlight(document, c.start, c.end, context=len(document))
            parts.append(
                '<details class="ev-doc"><summary>Open the whole document at this place</summary>'
                f'<div class="ev-full">{full}</div></details>'
            )
    else:
        parts.append(f'<div class="ev-passage"><mark>{html.escape(c.text)}</mark></div>')
    parts.append("</div>")
    return "".join(parts)


def format_evidence(answer: Answer, turn: int, assistant: Any = None) -> str:
    """The evidence panel section of one answer (raw HTML, every untrusted string escaped)."""
    question = html.escape(_one_line(answer.question))[:200]
    body: list[str] = []
    if answer.abstained:
        body.append('<div class="ev-abstain">ℹ️ The documents do not answer this question; nothing is cited.</div>')
    cache: dict[str, str | None] = {}
    for c in answer.citations:
        document = _document_text_for(assistant, c, cache) if assistant is not None else None
        body.append(format_citation(c, turn, document))
    removed_label = "Removed from the answer, because the cited passage did not support them"
    for label, sentences in ((removed_label, answer.unsupported), (WITHDRAWN_NOTE, answer.withdrawn)):
        if sentences:
            struck = "".join(f"<li><del>{html.escape(_one_line(s))}</del></li>" for s in sentences)
            body.append(f'<div class="ev-removed">⚠️ {label}:<ul>{struck}</ul></div>')
    return f'<details class="ev-turn" open><summary>Q{turn}: {question}</summary>{"".join(body)}</details>'


EVIDENCE_PLACEHOLDER = '<p class="ev-meta">The passages each answer cites appear here, newest first.</p>'


def evidence_panel(turns: Turns) -> str:
    """All answers' evidence, newest first; only the newest is open."""
    sections = [t["evidence"] for t in reversed(turns) if t.get("evidence")]
    if not sections:
        return EVIDENCE_PLACEHOLDER
    first, *rest = sections
    return first + "".join(s.replace('<details class="ev-turn" open>', '<details class="ev-turn">', 1) for s in rest)


# --- chat ----------------------------------------------------------------------------------

ChatUpdate = tuple[Messages, History, Turns, str]
ChatHandler = Callable[[str, Messages, History, Turns], Iterator[ChatUpdate]]


def make_chat_handler(assistant: Any, model: str = "") -> ChatHandler:
    """The streaming chat function: (question, shown messages, plain history, turns) -> updates.

    Yields `(messages for the Chatbot, plain history, turns, evidence panel HTML)`. The
    plain history holds only questions and checked answer texts; it is what the assistant
    receives. `turns` has one record per answer (for the evidence panel and feedback).
    """

    def respond(message: str, chat: Messages, history: History, turns: Turns | None = None) -> Iterator[ChatUpdate]:
        question = (message or "").strip()
        turns = list(turns or [])
        panel = evidence_panel(turns)
        shown = [*(chat or []), {"role": "user", "content": escape_text(question)}]
        history = list(history or [])
        if not question:
            yield list(chat or []), history, turns, panel
            return

        def show(content: str) -> Messages:  # a fresh list per update
            return [*shown, {"role": "assistant", "content": content}]

        yield show(format_draft("", "Thinking")), history, turns, panel
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
                yield show(format_draft(raw, status)), history, turns, panel
        except RagError as error:
            logger.warning("question failed: %s", error)
            yield show(format_error(str(error) or GENERIC_ERROR)), history, turns, panel
            return
        except Exception:
            logger.exception("unexpected error while answering %r", question)
            yield show(format_error(GENERIC_ERROR)), history, turns, panel
            return
        if answer is None:
            logger.error("assistant.stream ended without an Answer for %r", question)
            yield show(format_error(NO_ANSWER_ERROR)), history, turns, panel
            return
        turn = len(turns) + 1
        history = [
            *history,
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer.text},
        ]
        try:
            evidence = format_evidence(answer, turn, assistant)
        except Exception:
            logger.exception("cannot build the evidence panel")
            evidence = format_evidence(answer, turn)
        record = {
            "index": len(shown),  # the answer's position in the Chatbot's messages
            "question": question,
            "answer": answer.text,
            "abstained": answer.abstained,
            "citations": answer.to_dict()["citations"],
            "evidence": evidence,
        }
        turns = [*turns, record]
        yield show(format_answer(answer, turn, model)), history, turns, evidence_panel(turns)

    return respond


# --- programmatic chat: the public /ask endpoint -----------------------------------------

AskResult = tuple[str, dict[str, Any]]
AskHandler = Callable[..., AskResult]
HISTORY_ERROR = 'history must be a list of {"role": "user" or "assistant", "content": text} messages.'


def api_history(history: Any) -> History:
    """The `history` argument of /ask, checked: None or a list of user/assistant text messages."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise RagError(HISTORY_ERROR)
    turns: History = []
    for turn in history:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise RagError(HISTORY_ERROR)
        if not isinstance(turn.get("content"), str):
            raise RagError(HISTORY_ERROR)
        turns.append({"role": str(turn["role"]), "content": turn["content"]})
    return turns


def api_source(citation: Citation) -> dict[str, Any]:
    """A cited passage for /ask: number, text, doc_path, title, date, start, end, chunk_id, supported.

    Flat, with `doc_path` rather than the server's `document.path`: Gradio (server and client)
    takes any {"path": str} dict for a file to serve or download.
    """
    return {
        "number": citation.number,
        "text": citation.text,
        "doc_path": citation.doc_path,
        "title": citation.title,
        "date": citation.date,
        "start": citation.start,
        "end": citation.end,
        "chunk_id": citation.chunk_id,
        "supported": citation.supported,
    }


def make_ask_handler(assistant: Any) -> AskHandler:
    """The /ask endpoint: (question, history) -> (checked answer text, {sources, abstained, unsupported, withdrawn}).

    Not streamed: the reply is the final, checked answer. `sources` are `api_source` dicts.
    The text is plain text, not escaped: whoever displays it must escape it. Errors reach the client as
    `gradio_client` `AppError`s with a readable message (a `RagError`'s own, or a generic one).
    """

    def ask(question: str, history: list[dict[str, str]] | None = None) -> AskResult:
        """Answer a question from the indexed documents; `history` is the conversation so far."""
        try:
            if not isinstance(question, str) or not question.strip():
                raise RagError("The question is empty. Type a question about your documents.")
            answer: Answer | None = None
            for event in assistant.stream(question, history=api_history(history)):
                if isinstance(event, Answer):
                    answer = event
        except RagError as error:
            logger.warning("/ask failed: %s", error)
            raise gr.Error(str(error) or GENERIC_ERROR, print_exception=False) from None
        except Exception:
            logger.exception("unexpected error while answering %r through /ask", question)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from None
        if answer is None:
            logger.error("assistant.stream ended without an Answer for %r", question)
            raise gr.Error(NO_ANSWER_ERROR, print_exception=False)
        details = {
            "sources": [api_source(c) for c in answer.citations],
            "abstained": answer.abstained,
            "unsupported": list(answer.unsupported),
            "withdrawn": list(answer.withdrawn),
        }
        return answer.text, details

    # gr.api reads the endpoint's schema from these; this module's annotations are strings
    ask.__annotations__ = {"question": str, "history": list[dict[str, str]] | None, "return": AskResult}
    return ask


# --- feedback ------------------------------------------------------------------------------

_feedback_lock = threading.Lock()


def record_feedback(path: Path, turns: Turns, index: Any, liked: Any) -> dict[str, Any] | None:
    """Append {time, question, answer, citations, rating} for the answer at message `index`."""
    if isinstance(index, (list, tuple)):
        index = index[0]
    turn = next((t for t in turns or [] if t.get("index") == index), None)
    if turn is None:
        return None
    rating = "up" if liked is True else "down" if liked is False else str(liked)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "question": turn["question"],
        "answer": turn["answer"],
        "citations": turn["citations"],
        "rating": rating,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with _feedback_lock, path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return entry


# --- documents: listing, upload, removal ---------------------------------------------------


def format_documents(docs: list[dict[str, Any]], uploads: Path | None = None) -> str:
    """The indexed documents as an HTML table (escaped): name, title, date, chunks, origin."""
    if not docs:
        return "<p>No document is indexed yet. Add one below.</p>"
    upload_source = str(uploads.resolve()) if uploads is not None else None
    rows = []
    for d in sorted(docs, key=lambda d: (str(d.get("title") or d.get("path")).lower(), str(d.get("path")))):
        origin = "uploaded" if upload_source and d.get("source") == upload_source else "folder"
        cells = (d.get("path", ""), d.get("title", ""), d.get("date", ""), d.get("chunks", ""), origin)
        rows.append("<tr>" + "".join(f"<td>{html.escape(_one_line(str(x)))}</td>" for x in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Name", "Title", "Date", "Chunks", "Origin"))
    return f'<table class="doc-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def check_upload(path: Path, max_bytes: int = MAX_UPLOAD_BYTES) -> str | None:
    """Why this file cannot be added (suffix, size, content not of its type), or None."""
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        return f"{name}: only {', '.join(UPLOAD_SUFFIXES)} files can be added."
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return f"{name}: the file could not be read; try uploading it again."
    if size > max_bytes:
        return f"{name}: the file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
    if size == 0:
        return f"{name}: the file is empty."
    if suffix == ".pdf" and not head.startswith(b"%PDF-"):
        return f"{name}: this is not a PDF file."
    if suffix == ".docx":
        try:
            with zipfile.ZipFile(path) as archive:
                if "word/document.xml" not in archive.namelist():
                    return f"{name}: this is not a Word (.docx) document."
        except (zipfile.BadZipFile, OSError):
            return f"{name}: this is not a Word (.docx) document."
    if suffix in (".txt", ".md", ".html") and b"\x00" in head:
        return f"{name}: this looks like a binary file, not text."
    return None


def upload_name(original: str) -> str:
    """A plain file name for an uploaded file: no folders, no hidden files, safe characters."""
    name = PurePosixPath(original.replace("\\", "/")).name
    stem, dot, suffix = name.rpartition(".")
    stem = re.sub(r"[^\w\- ]+", "_", stem if dot else name).strip(" ._") or "document"
    return f"{stem[:120]}.{suffix.lower()}" if dot and suffix else stem[:120]


def save_uploads(files: list[Path], uploads: Path, max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[list[str], list[str]]:
    """Copy the acceptable files into `uploads`; returns (saved names, reasons for rejected ones)."""
    saved, rejected = [], []
    uploads.mkdir(parents=True, exist_ok=True)
    for path in files:
        reason = check_upload(path, max_bytes)
        if reason:
            rejected.append(reason)
            continue
        name = upload_name(path.name)
        shutil.copyfile(path, uploads / name)
        saved.append(name)
    return saved, rejected


def uploaded_documents(assistant: Any, uploads: Path) -> list[str]:
    source = str(uploads.resolve())
    return sorted(d["path"] for d in assistant.documents() if d.get("source") == source)


def remove_upload(assistant: Any, uploads: Path, name: str, progress: Any = None) -> Any:
    """Delete an uploaded document's file and sync the uploads folder (which drops it from the index)."""
    rel = safe_document_path(name)
    if rel not in uploaded_documents(assistant, uploads):
        raise RagError(f"{name!r} is not an uploaded document; only uploaded documents can be removed here.")
    (uploads / rel).unlink(missing_ok=True)
    return assistant.ingest(uploads, progress=progress)


# --- the page ------------------------------------------------------------------------------


def _describe(assistant: Any) -> dict[str, str]:
    try:
        return dict(assistant.describe())
    except Exception:
        logger.exception("assistant.describe() failed")
        return {}


def examples_for(assistant: Any) -> list[str]:
    """EXAMPLES when the assistant's document folder is the seed folder, else none."""
    docs = getattr(getattr(assistant, "settings", None), "docs_dir", None)
    return EXAMPLES if docs is not None and Path(docs).resolve() == SEED_DIR.resolve() else []


def _data_dir(assistant: Any) -> Path:
    settings = getattr(assistant, "settings", None)
    return Path(getattr(settings, "data_dir", "data"))


def indexing_note(assistant: Any) -> str:
    """What the page says while a sync runs (`Assistant.indexing`), else ""."""
    progress = getattr(assistant, "indexing", None)
    if progress is None:
        return ""
    done, total = progress
    if not total:
        return "⏳ Looking for new and changed documents…"
    return (
        f"⏳ Indexing the documents: {done:,} of {total:,} files read. "
        "Until it ends, answers come from the documents indexed before."
    )


def create_app(assistant: Any, on_change: Callable[[], None] | None = None) -> gr.Blocks:
    """The page. Theme, CSS and JS are given at `launch` (Gradio 6 moved them there).
    `on_change` is called after an upload or a removal changed the index (app.py passes a
    background warm-up, see rag/warmup.py)."""
    model = model_line(_describe(assistant))
    respond = make_chat_handler(assistant, model)
    data_dir = _data_dir(assistant)
    uploads = data_dir / "uploads"
    feedback_path = data_dir / "feedback.jsonl"
    serial: dict[str, Any] = {"concurrency_id": "assistant", "concurrency_limit": 1}  # one LLM user at a time
    indexing_only: dict[str, Any] = {"concurrency_id": "indexing", "concurrency_limit": 1}  # beside the questions
    quiet: dict[str, Any] = {"queue": False, "api_visibility": "private"}

    def documents_html() -> str:
        try:
            return format_documents(assistant.documents(), uploads)
        except Exception:
            logger.exception("cannot list the documents")
            return "<p>The document list is unavailable; see the logs.</p>"

    def document_choices() -> list[tuple[str, str]]:
        try:
            docs = assistant.documents()
        except Exception:
            return []
        return sorted({(_one_line(f"{d.get('title') or d['path']} — {d['path']}")[:120], d["path"]) for d in docs})

    with gr.Blocks(title="Document assistant", analytics_enabled=False) as app:
        gr.Markdown("## Document assistant\nAnswers come only from your documents, with [n] citations.")
        indexing = gr.Markdown(indexing_note(assistant), elem_id="indexing")
        was_indexing = gr.State(False)
        history = gr.State([])
        turns = gr.State([])
        pending = gr.State("")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(
                        label="Conversation",
                        elem_id="chat",
                        height=560,
                        sanitize_html=True,
                        render_markdown=True,
                        latex_delimiters=[],
                        allow_tags=False,
                        buttons=["copy"],
                        feedback_options=("Like", "Dislike"),
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
                            elem_id="question",
                        )
                        send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
                    new = gr.Button("New conversation", variant="secondary", size="sm", elem_id="new")
                    examples = examples_for(assistant)
                    if examples:
                        gr.Examples(examples=[[q] for q in examples], inputs=[textbox], label="Examples")
                    feedback_note = gr.Markdown("", elem_id="feedback-note")
                with gr.Column(scale=2):
                    gr.Markdown("### Evidence")
                    evidence = gr.HTML(EVIDENCE_PLACEHOLDER, elem_id="evidence", js_on_load=None, padding=True)
            with gr.Tab("Documents", id="documents"):
                doc_table = gr.HTML(documents_html(), elem_id="documents", js_on_load=None)
                gr.Markdown(
                    f"Add files ({' '.join(UPLOAD_SUFFIXES)}, up to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB each): "
                    "they are indexed at once and can be asked about right away."
                )
                files = gr.File(
                    label="Add documents",
                    file_count="multiple",
                    file_types=list(UPLOAD_SUFFIXES),
                    elem_id="upload",
                )
                upload_status = gr.Markdown("", elem_id="upload-status")
                with gr.Row():
                    removable = gr.Dropdown(
                        choices=[], label="Uploaded document to remove", scale=3, elem_id="remove-choice"
                    )
                    remove = gr.Button("Remove", variant="stop", scale=1, elem_id="remove")
                with gr.Accordion("Read a document", open=False):
                    viewer_choice = gr.Dropdown(choices=[], label="Document", elem_id="viewer-choice")
                    viewer = gr.HTML("", elem_id="viewer", js_on_load=None)
        with gr.Accordion("Settings", open=False):
            settings_md = gr.Markdown(format_settings(assistant))

        # -- chat --
        def take(message: str) -> tuple[str, str]:
            return message, ""

        asked = gr.on(
            [textbox.submit, send.click], take, [textbox], [pending, textbox], queue=False, api_visibility="private"
        )
        # The question travels through a State, so the endpoint is no use as an HTTP API: private.
        answering = asked.then(
            respond,
            [pending, chatbot, history, turns],
            [chatbot, history, turns, evidence],
            api_name="chat",
            api_visibility="private",
            **serial,
        )

        def reset() -> tuple[Messages, History, Turns, str, str, str]:
            return [], [], [], "", EVIDENCE_PLACEHOLDER, ""

        cleared = [chatbot, history, turns, textbox, evidence, feedback_note]
        new.click(reset, None, cleared, cancels=[answering], **quiet)
        chatbot.clear(
            lambda: ([], [], EVIDENCE_PLACEHOLDER), None, [history, turns, evidence], cancels=[answering], **quiet
        )

        def on_like(current: Turns, data: gr.LikeData) -> str:
            try:
                entry = record_feedback(feedback_path, current, data.index, data.liked)
            except OSError:
                logger.exception("cannot write feedback to %s", feedback_path)
                return "⚠️ Your feedback could not be saved; see the logs."
            return "Thanks, your feedback was saved." if entry else ""

        chatbot.like(on_like, [turns], [feedback_note], **quiet)

        # -- documents --
        def refreshed(status: str) -> tuple[str, str, Any, Any, str]:
            names = uploaded_documents(assistant, uploads)
            return (
                status,
                documents_html(),
                gr.Dropdown(choices=names, value=None),
                gr.Dropdown(choices=document_choices(), value=None),
                format_settings(assistant),
            )

        doc_outputs = [upload_status, doc_table, removable, viewer_choice, settings_md]

        def add(paths: list[str] | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
            notes: list[str] = []
            try:
                saved, rejected = save_uploads([Path(p) for p in paths or []], uploads)
                notes += [f"⚠️ {escape_text(r)}" for r in rejected]
                if saved:
                    progress(0, desc="Indexing")

                    def step(done: int, total: int, message: str) -> None:
                        progress((done, total) if total else 0, desc=_one_line(message)[:80] or "Indexing")

                    report = assistant.ingest(uploads, progress=step)
                    if report.changed and on_change is not None:
                        on_change()
                    for name, reason in report.skipped.items():
                        notes.append(f"⚠️ {escape_text(name)} was not indexed: {escape_text(reason)}")
                    ok = [n for n in saved if n not in report.skipped]
                    if ok:
                        added = escape_text(", ".join(ok))
                        notes.insert(0, f"Added and indexed: {added}. You can ask about it now.")
            except RagError as error:
                notes.append(f"⚠️ {escape_text(str(error))}")
            except Exception:
                logger.exception("upload failed")
                notes.append("⚠️ The upload failed; see the logs.")
            return (*refreshed("<br>".join(notes)), None)

        files.upload(add, [files], [*doc_outputs, files], api_visibility="private", **indexing_only)

        def drop(name: str | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
            if not name:
                return refreshed("Choose an uploaded document to remove.")
            try:
                progress(0, desc="Removing")
                if remove_upload(assistant, uploads, name).changed and on_change is not None:
                    on_change()
                status = f"Removed {escape_text(name)}."
            except RagError as error:
                status = f"⚠️ {escape_text(str(error))}"
            except Exception:
                logger.exception("removal failed")
                status = "⚠️ The removal failed; see the logs."
            return refreshed(status)

        remove.click(drop, [removable], doc_outputs, api_visibility="private", **indexing_only)

        def view(path: str | None) -> str:
            if not path:
                return ""
            try:
                return f'<div class="ev-full">{html.escape(read_document(assistant, path))}</div>'
            except RagError as error:
                return f"<p>⚠️ {html.escape(str(error))}</p>"

        viewer_choice.change(view, [viewer_choice], [viewer], **quiet)
        app.load(lambda: refreshed(""), None, doc_outputs, **quiet)

        # -- a sync under way (the start-up's, an upload's): shown, and the lists refreshed when it ends --
        def tick(was: bool) -> tuple[Any, ...]:
            note = indexing_note(assistant)
            if was and not note:
                return (note, False, *refreshed(""))
            return (note, bool(note), *[gr.skip()] * len(doc_outputs))

        gr.Timer(INDEXING_POLL_S).tick(
            tick, [was_indexing], [indexing, was_indexing, *doc_outputs], show_progress="hidden", **quiet
        )

        # -- programmatic chat: the one public endpoint, in the same queue and group as the chat --
        gr.api(
            make_ask_handler(assistant),
            api_name=ASK_API_NAME,
            api_description="Answer a question from the indexed documents. Arguments: question (text), "
            'history (list of {"role": "user"|"assistant", "content": text}, or null). Returns the checked '
            "answer text (plain text) and {sources, abstained, unsupported, withdrawn}.",
            **serial,
        )
    return app


def launch_options(settings: Settings) -> dict[str, Any]:
    """Safe defaults: loopback unless configured, optional login, no share link, no API page."""
    auth: tuple[str, str] | None = None
    if settings.ui_auth:
        user, _, password = settings.ui_auth.partition(":")
        auth = (user, password)
    private = [str(p) for p in (settings.data_dir, settings.index_dir, settings.docs_dir, settings.cache_dir)]
    return {
        "server_name": settings.ui_host,
        "server_port": settings.ui_port,
        "share": False,
        "auth": auth,
        "footer_links": ["gradio", "settings"],  # v6 replacement for show_api=False: no "api" link
        "run_history": False,  # v6 records runs in the browser and offers a Hugging Face upload
        "ssr_mode": False,
        "max_file_size": MAX_UPLOAD_BYTES,
        "blocked_paths": private,  # never served as files, even if a path were guessed
        "theme": THEME,
        "css": CSS,
        "js": JS,
    }


def launch(app: gr.Blocks, settings: Settings, queue_size: int | None = None, **overrides: Any) -> Any:
    """Serve `app` behind a bounded queue: `queue_size` waiting events at most (default: the
    `ui_queue_size` setting if there is one, else `QUEUE_SIZE`); the excess is refused at once.

    `api_open=False`: queued events (chat, /ask, upload, removal) cannot be called through the
    REST routes that skip the queue, so the concurrency limit of 1 holds for every client.
    """
    size = queue_size if queue_size is not None else int(getattr(settings, "ui_queue_size", QUEUE_SIZE))
    if size < 1:
        raise ValueError(f"queue_size must be at least 1, not {size}")
    options = {**launch_options(settings), **overrides}
    return app.queue(default_concurrency_limit=1, max_size=size, api_open=False).launch(**options)
