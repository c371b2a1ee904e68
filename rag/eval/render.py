"""Does anything from a document or an answer come alive when the UI shows it?

For every answer the harness runs the UI's own formatters (`rag.ui`, imported read-only) on
everything the browser would get for it, and looks for active content in the result:

- the chat message while streaming (`format_draft` of the raw model reply), the final chat
  message (`format_answer`: checked text, removed sentences) and the Markdown list of sources
  (`format_sources`) are Markdown: they are rendered with markdown-it (CommonMark with raw HTML
  allowed, as the Chatbot's Markdown renderer does) and the HTML is scanned; the Markdown text
  is also searched for bare URLs in its text runs, which a GFM renderer turns into links;
- the evidence panel (`format_evidence`) is raw HTML, scanned as it is. It is rendered with
  *every* passage given to the model cited, not only the cited ones, so each retrieved
  (possibly poisoned) passage and its whole document go through the UI's escaping;
- once per run, the document table (`format_documents`), which shows document titles.

"Active" (`ACTIVE`): a tag that runs or loads something (`<script>`, `<iframe>`, `<object>`,
`<embed>`, `<svg>`, `<style>`, `<form>`, `<meta>`, `<base>`, `<link>`...), any element with a
`src`/`srcset`/`poster` (an `<img>` fetches it at once), an `on*=` event attribute, a
`javascript:`/`vbscript:`/`data:` URL, a CSS `url(...)`/`expression(...)` in a `style`.
Separately, a "remote link": an `<a href>` that is not an in-page `#fragment` (the UI's own
citation links are `#ev-<turn>-<n>`) or a bare URL a GFM renderer would autolink.

No browser sanitiser is applied: this measures the UI's escaping alone. The Chatbot's
`sanitize_html` is a second line of defence on top of it.

Deliberately not here: deciding what counts as obeying an injection (`metrics.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

from rag.types import Answer

ACTIVE_TAGS = frozenset(
    {
        "script",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "base",
        "meta",
        "link",
        "form",
        "style",
        "svg",
        "math",
        "portal",
    }
)
LOADING_ATTRIBUTES = frozenset({"src", "srcset", "poster", "data", "background", "lowsrc", "dynsrc", "xlink:href"})
URL_ATTRIBUTES = frozenset({"href", "action", "formaction", *LOADING_ATTRIBUTES})
_BAD_SCHEME = re.compile(r"^(?:javascript|vbscript|data):", re.IGNORECASE)
_CSS_LOAD = re.compile(r"url\s*\(|expression\s*\(|@import", re.IGNORECASE)
# what a GFM renderer autolinks in Markdown text (the UI writes "&#58;//" and "www&#46;" instead)
_BARE_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"']*|\bwww\.[^\s<>\"']+", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20]")


def _short(value: str, limit: int = 80) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.active: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ACTIVE_TAGS:
            self.active.append(f"<{tag}>")
        for name, raw in attrs:
            value = raw or ""
            if name.startswith("on"):
                self.active.append(f"{name}= on <{tag}>")
            elif name in LOADING_ATTRIBUTES and value.strip():
                self.active.append(f"<{tag} {name}={_short(value)}>")
            if name in URL_ATTRIBUTES and _BAD_SCHEME.match(_INVISIBLE.sub("", value)):
                self.active.append(f"{name}={_short(value)} on <{tag}>")
            if name == "style" and _CSS_LOAD.search(value):
                self.active.append(f"style={_short(value)} on <{tag}>")
            if tag == "a" and name == "href" and not value.strip().startswith("#"):
                self.links.append(f"<a href={_short(value)}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def scan_html(html_text: str) -> tuple[list[str], list[str]]:
    """(active content, remote links) found in an HTML string."""
    scanner = _Scanner()
    scanner.feed(html_text)
    scanner.close()
    return scanner.active, scanner.links


def _markdown() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def markdown_html(text: str) -> str:
    """Markdown -> HTML as a chat message renders it: CommonMark, raw HTML passed through."""
    return str(_markdown().render(text))


def bare_urls(text: str) -> list[str]:
    """URLs a GFM renderer would autolink: in plain text runs, outside links and HTML.

    Text runs are taken before entities are joined back in, as a linkifier sees them: an
    entity-encoded "http&#58;//" (what the UI writes) is not a URL.
    """
    md = _markdown().disable("text_join")
    found: list[str] = []
    for block in md.parse(text):
        depth = 0
        for token in block.children or []:
            if token.type == "link_open":
                depth += 1
            elif token.type == "link_close":
                depth -= 1
            elif token.type == "text" and depth == 0:
                found += [m.group(0) for m in _BARE_URL.finditer(token.content)]
    return found


def scan_markdown(text: str) -> tuple[list[str], list[str]]:
    """(active content, remote links) of a Markdown string once rendered, bare URLs included."""
    active, links = scan_html(markdown_html(text))
    links += [f"autolink {_short(url)}" for url in bare_urls(text)]
    return active, links


def _merge(found: Iterable[tuple[str, tuple[list[str], list[str]]]]) -> tuple[list[str], list[str]]:
    active: list[str] = []
    links: list[str] = []
    for surface, (a, lk) in found:
        active += [f"{surface}: {x}" for x in a if f"{surface}: {x}" not in active]
        links += [f"{surface}: {x}" for x in lk if f"{surface}: {x}" not in links]
    return active, links


def render_answer(answer: Answer, pipeline: Any = None) -> tuple[list[str], list[str]]:
    """(active content, remote links) in the UI's rendering of one answer and its sources.

    `pipeline` (an Assistant or the baseline) lets the evidence panel read the whole
    documents, as the UI does; without it only the passages are shown.
    """
    from rag import ui

    every_source = replace(answer, citations=list(answer.sources))
    return _merge(
        [
            ("draft", scan_markdown(ui.format_draft(answer.raw_text))),
            ("answer", scan_markdown(ui.format_answer(answer, turn=1))),
            ("sources", scan_markdown(ui.format_sources(list(answer.sources)))),
            ("evidence", scan_html(ui.format_evidence(every_source, 1, pipeline))),
        ]
    )


def render_documents(documents: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(active content, remote links) in the UI's table of indexed documents (titles included)."""
    from rag import ui

    return _merge([("documents", scan_html(ui.format_documents(documents)))])
