"""Fast tests of the Gradio chat UI with a fake assistant (no models, no server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
import pytest

from rag import ui
from rag.errors import LLMError
from rag.types import Answer, Citation, Status, Token

EVIL = "<script>alert(1)</script> ![x](http://evil.example/x.png)"


def cite(number: int = 1, text: str = "Parler dropped its lawsuit against Amazon.", **kw: Any) -> Citation:
    fields: dict[str, Any] = {
        "doc_path": "parler.txt",
        "title": "Parler drops suit",
        "date": "2021-03",
        "start": 0,
        "end": len(text),
        "chunk_id": f"parler.txt#{number}",
    }
    fields.update(kw)
    return Citation(number=number, text=text, **fields)


def answer(**kw: Any) -> Answer:
    fields: dict[str, Any] = {
        "question": "Why did Parler drop its suit?",
        "text": "Parler dropped the federal suit to pursue it in state court [1].",
        "citations": [cite()],
        "abstained": False,
        "timings": {"retrieval_s": 0.12, "first_token_s": 0.8, "total_s": 2.5},
    }
    fields.update(kw)
    return Answer(**fields)


class FakeAssistant:
    def __init__(self, final: Answer | None = None, error: Exception | None = None) -> None:
        self.final = final or answer()
        self.error = error
        self.calls: list[tuple[str, list[dict[str, str]] | None]] = []

    def stream(self, question: str, history: list[dict[str, str]] | None = None) -> Iterator[Token | Status | Answer]:
        self.calls.append((question, history))
        yield Status("retrieving")
        for piece in ["Parler ", "dropped ", "the suit [1]."]:
            yield Token(piece)
        if self.error is not None:
            raise self.error
        yield Status("checking citations")
        yield self.final

    def describe(self) -> dict[str, str]:
        return {"llm": "fake <b>model</b>", "documents": "1"}


def run(handler: ui.ChatHandler, message: str, chat: Any = None, history: Any = None) -> list[Any]:
    return list(handler(message, chat or [], history or []))


# --- format_answer -----------------------------------------------------------------


def test_format_answer_shows_markers_and_sources() -> None:
    out = ui.format_answer(answer())
    assert "state court [1]." in out
    assert "[1] Parler drops suit" in out
    assert "[1] Parler drops suit &#40;2021-03&#41;" in out  # "(2021-03)", parentheses encoded
    assert "Parler dropped its lawsuit against Amazon" in out
    assert "<small>retrieval 0.12 s · first token 0.80 s · total 2.50 s</small>" in out
    assert "Removed" not in out


def test_format_answer_escapes_untrusted_text() -> None:
    evil = answer(
        text=f"Bad model output {EVIL} [1].",
        citations=[cite(text=f"passage {EVIL}", title=f"title {EVIL}", date="<img src=x>")],
        unsupported=[f"unsupported {EVIL}"],
    )
    out = ui.format_answer(evil)
    assert "<script" not in out.lower()
    assert "<img" not in out.lower()
    assert "&lt;script&gt;" in out
    # no Markdown image or link syntax survives, and no live URL
    assert "![" not in out
    assert "](" not in out
    assert "://" not in out  # not even an autolink
    assert "&#33;&#91;x&#93;&#40;http&#58;//evil.example/x.png&#41;" in out
    assert "[1]" in out  # citation markers stay readable


def test_escape_text_is_complete() -> None:
    assert ui.escape_text("<a href='x'>&</a>") == "&lt;a href=&#x27;x&#x27;&gt;&amp;&lt;/a&gt;"
    assert ui.escape_text("$$x$$ `code` *em* a_b ~s~ | t") == (
        "&#36;&#36;x&#36;&#36; &#96;code&#96; &#42;em&#42; a&#95;b &#126;s&#126; &#124; t"
    )
    # block syntax at line start: heading, list items, setext underline
    assert ui.escape_text("# h\n - a\n+ b\n1. c\n===\nx # y - z 2. w") == (
        "&#35; h\n &#45; a\n&#43; b\n1&#46; c\n&#61;==\nx # y - z 2. w"
    )
    assert ui.escape_text("see www.evil.example or https://evil.example") == (
        "see www&#46;evil.example or https&#58;//evil.example"
    )
    assert ui.escape_answer_text("a [1][2] b [x]") == "a [1][2] b &#91;x&#93;"


def test_format_answer_abstained_is_distinct() -> None:
    out = ui.format_answer(answer(text="The documents do not say.", citations=[], abstained=True, timings={}))
    assert out.startswith("ℹ️ <em>The documents do not say.</em>")
    assert "Sources" not in out
    assert "<small>" not in out


def test_format_answer_marks_unsupported() -> None:
    out = ui.format_answer(answer(unsupported=["Parler moved to Mars [1]."]))
    assert "⚠️ <strong>Removed (not supported by the sources):</strong>" in out
    assert "<del>Parler moved to Mars [1].</del>" in out
    # the removed sentence is not part of the answer text itself
    assert out.index("state court [1]") < out.index("Removed")


# --- the app and its chat handler --------------------------------------------------


def test_create_app_builds() -> None:
    app = ui.create_app(FakeAssistant())
    assert isinstance(app, gr.Blocks)
    assert app.analytics_enabled is False
    chatbots = [b for b in app.blocks.values() if isinstance(b, gr.Chatbot)]
    assert len(chatbots) == 1 and chatbots[0].sanitize_html is True
    config = str(app.get_config_file())
    for question in ui.EXAMPLES:
        assert question in config
    assert "fake &lt;b&gt;model&lt;/b&gt;" in config  # settings panel, escaped


def test_theme_uses_no_remote_fonts() -> None:
    css = ui.THEME._get_theme_css()
    assert "googleapis" not in css
    assert "@import" not in css and "@font-face" not in css
    assert ui.THEME._stylesheets == []


def test_handler_streams_tokens_then_final_answer() -> None:
    fake = FakeAssistant()
    handler = ui.make_chat_handler(fake)
    updates = run(handler, "Why did Parler drop its suit?")
    shown = [chat[-1]["content"] for chat, _ in updates]
    assert updates[0][0][0] == {"role": "user", "content": "Why did Parler drop its suit?"}
    assert any("Retrieving" in s for s in shown)
    # the raw tokens appear one by one while streaming
    drafts = [s.split("\n\n")[0] for s in shown[:-2] if s.startswith("Parler")]
    assert drafts == ["Parler", "Parler dropped", "Parler dropped the suit [1]."], shown
    assert shown[-2].endswith("<small><em>Checking citations…</em></small>")
    final_chat, final_history = updates[-1]
    assert final_chat[-1]["content"] == ui.format_answer(fake.final)
    assert final_history == [
        {"role": "user", "content": "Why did Parler drop its suit?"},
        {"role": "assistant", "content": fake.final.text},
    ]
    # every intermediate update leaves the history untouched
    assert all(history == [] for _, history in updates[:-1])


def test_handler_passes_plain_history_for_follow_ups() -> None:
    fake = FakeAssistant()
    handler = ui.make_chat_handler(fake)
    chat, history = run(handler, "Why did Parler drop its suit?")[-1]
    chat, history = run(handler, "And then?", chat, history)[-1]
    assert fake.calls[1] == (
        "And then?",
        [
            {"role": "user", "content": "Why did Parler drop its suit?"},
            {"role": "assistant", "content": fake.final.text},
        ],
    )
    assert "Sources" not in str(fake.calls[1][1])
    assert len(chat) == 4 and len(history) == 4


def test_handler_shows_rag_error_as_friendly_message() -> None:
    handler = ui.make_chat_handler(FakeAssistant(error=LLMError("The LLM server is not responding.")))
    chat, history = run(handler, "Why?")[-1]
    assert chat[-1] == {"role": "assistant", "content": "⚠️ The LLM server is not responding."}
    assert "Traceback" not in chat[-1]["content"]
    assert history == []  # failed turns are not sent as context later


def test_handler_hides_unexpected_errors(caplog: pytest.LogCaptureFixture) -> None:
    handler = ui.make_chat_handler(FakeAssistant(error=ValueError("secret internal detail")))
    chat, _ = run(handler, "Why?")[-1]
    assert chat[-1]["content"] == ui.format_error(ui.GENERIC_ERROR)
    assert "secret" not in chat[-1]["content"]
    assert "secret internal detail" in caplog.text  # logged for the operator


def test_handler_ignores_empty_question() -> None:
    fake = FakeAssistant()
    updates = run(ui.make_chat_handler(fake), "   ")
    assert updates == [([], [])]
    assert fake.calls == []


def test_handler_escapes_user_question() -> None:
    chat, _ = run(ui.make_chat_handler(FakeAssistant()), EVIL)[-1]
    assert "<script" not in chat[0]["content"]
    assert "![" not in chat[0]["content"]


def test_handler_reports_a_stream_without_answer() -> None:
    class NoAnswer(FakeAssistant):
        def stream(
            self, question: str, history: list[dict[str, str]] | None = None
        ) -> Iterator[Token | Status | Answer]:
            yield Token("half an answer")

    chat, history = run(ui.make_chat_handler(NoAnswer()), "Why?")[-1]
    assert chat[-1]["content"] == ui.format_error(ui.NO_ANSWER_ERROR)
    assert history == []


def test_passage_layout_cannot_break_out() -> None:
    # blank lines would end the HTML block and let the rest be parsed as Markdown
    out = ui.format_sources([cite(text="a\n\n# b\r\n\n  c", title="two\n\nlines", date="")])
    assert "\n\n" not in out.split("**Sources**\n\n", 1)[1]
    assert "<summary>[1] two lines</summary>" in out
    assert "<blockquote>a<br><br>&#35; b<br><br>  c</blockquote>" in out


def test_launch_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.config import Settings

    calls: dict[str, Any] = {}

    class Queued:
        def launch(self, **kwargs: Any) -> None:
            calls["launch"] = kwargs

    app = ui.create_app(FakeAssistant())

    def queue(**kwargs: Any) -> Queued:
        calls["queue"] = kwargs
        return Queued()

    monkeypatch.setattr(app, "queue", queue)
    ui.launch(app, Settings(ui_host="127.0.0.1", ui_port=7999, ui_auth="me:pa:ss"))
    assert calls["queue"] == {"default_concurrency_limit": 1, "max_size": 32}
    kw = calls["launch"]
    assert (kw["server_name"], kw["server_port"], kw["share"]) == ("127.0.0.1", 7999, False)
    assert kw["auth"] == ("me", "pa:ss")
    assert "api" not in kw["footer_links"] and kw["run_history"] is False
    assert kw["theme"] is ui.THEME

    ui.launch(app, Settings(ui_auth=""))
    assert calls["launch"]["auth"] is None
