"""Fast tests of the Gradio chat UI with a fake assistant (no models, no server)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest

from rag import ui
from rag.errors import LLMError, RagError
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
    settings: Any = None

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


def run(handler: ui.ChatHandler, message: str, chat: Any = None, history: Any = None, turns: Any = None) -> list[Any]:
    """The handler's updates as (messages, history) pairs; `run_full` keeps turns and evidence."""
    return [(c, h) for c, h, _, _ in run_full(handler, message, chat, history, turns)]


def run_full(handler: ui.ChatHandler, message: str, chat: Any = None, history: Any = None, turns: Any = None) -> Any:
    return list(handler(message, chat or [], history or [], turns or []))


# --- format_answer -----------------------------------------------------------------


def test_format_answer_shows_markers_and_small_print() -> None:
    out = ui.format_answer(answer())
    assert "state court [1]." in out
    assert "Sources [1]: see the evidence panel." in out
    assert '<small class="small-print">retrieval 0.12 s · first token 0.80 s · total 2.50 s</small>' in out
    assert "Removed" not in out
    out = ui.format_answer(answer(), turn=3, model="qwen via embedded · embedder e5")
    assert 'state court <a class="cite" href="#ev-3-1" title="Parler drops suit: Parler dropped its lawsuit' in out
    assert "total 2.50 s · qwen via embedded · embedder e5</small>" in out


def test_markers_link_only_to_real_citations() -> None:
    out = ui.escape_answer_text("a [1] b [2] c [x]", turn=2, citations=[cite(2)])
    assert out.startswith('a [1] b <a class="cite" href="#ev-2-2"')
    assert out.endswith(">[2]</a> c &#91;x&#93;")


def test_format_sources_markdown_listing() -> None:
    out = ui.format_sources([cite()])
    assert "[1] Parler drops suit &#40;2021-03&#41;" in out  # "(2021-03)", parentheses encoded
    assert "Parler dropped its lawsuit against Amazon" in out


def test_format_answer_escapes_untrusted_text() -> None:
    evil = answer(
        text=f"Bad model output {EVIL} [1].",
        citations=[cite(text=f"passage {EVIL}", title=f"title {EVIL}", date="<img src=x>")],
        unsupported=[f"unsupported {EVIL}"],
    )
    out = ui.format_answer(evil, turn=1) + ui.format_sources(evil.citations)
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
    assert out.startswith('<div class="abstain">ℹ️ <em>The documents do not say.</em></div>')
    assert "Sources" not in out and "cite" not in out
    assert "<small" not in out
    panel = ui.format_evidence(answer(text="The documents do not say.", citations=[], abstained=True), 1)
    assert "do not answer this question" in panel and "ev-item" not in panel


def test_format_answer_marks_unsupported() -> None:
    out = ui.format_answer(answer(unsupported=["Parler moved to Mars [1]."]))
    assert "⚠️ <strong>Removed (not supported by the sources):</strong>" in out
    assert "<del>Parler moved to Mars [1].</del>" in out
    # the removed sentence is not part of the answer text itself
    assert out.index("state court [1]") < out.index("Removed")


def test_an_answer_withdrawn_by_the_fit_check_shows_its_sentences_struck_through_and_escaped() -> None:
    withdrawn = answer(
        text="The documents do not say.", citations=[], abstained=True, withdrawn=[f"Parler is popular <b>{EVIL}</b>."]
    )
    for out in (ui.format_answer(withdrawn), ui.format_evidence(withdrawn, 1)):
        assert "Withdrawn (true of the sources, but judged not to answer the question)" in out
        assert "<del>Parler is popular &lt;b&gt;" in out and "<b>" not in out and "<script" not in out
    assert ui.format_answer(withdrawn).startswith('<div class="abstain">')  # still an abstention first
    assert "Withdrawn" not in ui.format_answer(answer())


# --- the app and its chat handler --------------------------------------------------


def test_create_app_builds() -> None:
    assistant = FakeAssistant()
    assistant.settings = SimpleNamespace(docs_dir=ui.SEED_DIR, data_dir=Path("data"))
    app = ui.create_app(assistant)
    assert isinstance(app, gr.Blocks)
    assert app.analytics_enabled is False
    chatbots = [b for b in app.blocks.values() if isinstance(b, gr.Chatbot)]
    assert len(chatbots) == 1 and chatbots[0].sanitize_html is True
    config = str(app.get_config_file())
    for question in ui.EXAMPLES:
        assert question in config
    assert "fake &lt;b&gt;model&lt;/b&gt;" in config  # settings panel, escaped


def test_the_seed_examples_are_shown_only_over_the_seed_folder(tmp_path: Path) -> None:
    assistant = FakeAssistant()
    assistant.settings = SimpleNamespace(docs_dir=tmp_path / "my-docs", data_dir=tmp_path / "data")
    assert ui.examples_for(assistant) == []
    config = str(ui.create_app(assistant).get_config_file())
    assert ui.EXAMPLES[0] not in config and "Examples" not in config
    assistant.settings.docs_dir = ui.SEED_DIR / ".." / "seeds"  # the same folder, spelled otherwise
    assert ui.examples_for(assistant) == ui.EXAMPLES


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
    assert final_chat[-1]["content"] == ui.format_answer(fake.final, 1)
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
    assert run_full(ui.make_chat_handler(fake), "") == [([], [], [], ui.EVIDENCE_PLACEHOLDER)]
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
    # bounded, and no REST route around it (api_open=False)
    assert calls["queue"] == {"default_concurrency_limit": 1, "max_size": ui.QUEUE_SIZE, "api_open": False}
    assert ui.QUEUE_SIZE == 32
    kw = calls["launch"]
    assert (kw["server_name"], kw["server_port"], kw["share"]) == ("127.0.0.1", 7999, False)
    assert kw["auth"] == ("me", "pa:ss")
    assert "api" not in kw["footer_links"] and kw["run_history"] is False
    assert kw["theme"] is ui.THEME

    ui.launch(app, Settings(ui_auth=""))
    assert calls["launch"]["auth"] is None

    ui.launch(app, Settings(), queue_size=3)
    assert calls["queue"]["max_size"] == 3

    class WithQueueSize(Settings):  # a `ui_queue_size` setting, once config has one, is used
        ui_queue_size: int = 7

    ui.launch(app, WithQueueSize())
    assert calls["queue"]["max_size"] == 7
    with pytest.raises(ValueError, match="at least 1"):
        ui.launch(app, Settings(), queue_size=0)


# --- the public /ask endpoint ------------------------------------------------------


def test_ask_is_the_only_public_endpoint_and_shares_the_assistant_queue() -> None:
    app = ui.create_app(FakeAssistant())
    public = [f for f in app.fns.values() if f.api_visibility == "public"]
    assert [f.api_name for f in public] == [ui.ASK_API_NAME]
    assert {f.api_visibility for f in app.fns.values() if f.api_name == "chat"} == {"private"}
    # the events that ask the LLM are queued in one group limited to 1 (the chat, /ask); upload and
    # removal in another, so that a question is answered while an upload is indexed
    groups = {"assistant": ["ask", "chat"], "indexing": ["add", "drop"]}
    for group, names in groups.items():
        assert sorted(str(f.api_name) for f in app.fns.values() if f.concurrency_id == group) == names
        assert all(f.queue and f.concurrency_limit == 1 for f in app.fns.values() if f.concurrency_id == group)
    info = app.get_api_info()
    assert info is not None
    params = info["named_endpoints"]["/ask"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["question", "history"]
    assert params[1]["parameter_has_default"] is True


def test_ask_handler_returns_checked_text_and_sources() -> None:
    fake = FakeAssistant(final=answer(unsupported=["Parler moved to Mars [1]."]))
    ask = ui.make_ask_handler(fake)
    history = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello [1]."}]
    text, details = ask("Why did Parler drop its suit?", history)
    assert text == fake.final.text  # plain text: the checked answer, not the streamed tokens
    assert fake.calls == [("Why did Parler drop its suit?", history)]
    assert details["abstained"] is False and details["unsupported"] == ["Parler moved to Mars [1]."]
    [source] = details["sources"]
    assert source["number"] == 1 and source["doc_path"] == "parler.txt" and source["date"] == "2021-03"
    assert source["text"] == "Parler dropped its lawsuit against Amazon." and source["supported"] is True
    # Gradio takes any {"path": str} dict for a file to serve or download: none may be returned
    assert "'path'" not in repr(details)
    assert ask("Why?")[0] == fake.final.text and fake.calls[-1] == ("Why?", [])


@pytest.mark.parametrize(
    "history",
    ["not a list", [{"role": "system", "content": "x"}], [{"role": "user", "content": 3}], ["user: hi"]],
)
def test_ask_handler_refuses_malformed_history(history: Any) -> None:
    fake = FakeAssistant()
    with pytest.raises(gr.Error, match="history must be a list"):
        ui.make_ask_handler(fake)("Why?", history)
    assert fake.calls == []


def test_ask_handler_errors_are_readable_and_hide_internals(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(gr.Error, match="The question is empty"):
        ui.make_ask_handler(FakeAssistant())("   ")
    with pytest.raises(gr.Error, match="The LLM server is not responding"):
        ui.make_ask_handler(FakeAssistant(error=LLMError("The LLM server is not responding.")))("Why?")
    with pytest.raises(gr.Error) as hidden:
        ui.make_ask_handler(FakeAssistant(error=ValueError("secret internal detail")))("Why?")
    assert hidden.value.message == ui.GENERIC_ERROR
    assert "secret internal detail" in caplog.text  # logged for the operator

    class NoAnswer(FakeAssistant):
        def stream(
            self, question: str, history: list[dict[str, str]] | None = None
        ) -> Iterator[Token | Status | Answer]:
            yield Token("half an answer")

    with pytest.raises(gr.Error, match="stopped without an answer"):
        ui.make_ask_handler(NoAnswer())("Why?")


# --- evidence panel ----------------------------------------------------------------


class DocsAssistant(FakeAssistant):
    """A fake that also serves one indexed document."""

    def __init__(self, text: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.text = text
        self.read: list[tuple[str, str | None]] = []

    def documents(self) -> list[dict[str, Any]]:
        return [{"path": "parler.txt", "source": "/docs", "title": "Parler drops suit", "date": "2021-03", "chunks": 1}]

    def document_text(self, doc_path: str, source: str | None = None) -> str:
        self.read.append((doc_path, source))
        if doc_path != "parler.txt":
            raise RagError(f"{doc_path!r} is not an indexed document.")
        return self.text


def test_highlight_marks_the_span_in_its_context() -> None:
    text = "x" * 500 + " before words. CITED <b>span</b>. after words " + "y" * 500
    start = text.index("CITED")
    end = text.index(". after")
    out = ui.highlight(text, start, end, context=20)
    assert "<mark>CITED &lt;b&gt;span&lt;/b&gt;</mark>" in out
    assert out.startswith("…") and out.endswith("…")
    assert "before words. " in out and ". after words" in out
    assert ui.highlight("abc", 0, 3) == "<mark>abc</mark>"


def test_evidence_shows_title_date_and_highlighted_passage_in_context() -> None:
    passage = "Parler dropped its lawsuit against Amazon."
    text = f"Intro sentence. {passage} Later sentence."
    fake = DocsAssistant(text)
    c = cite(text=passage, start=text.index(passage), end=text.index(passage) + len(passage))
    out = ui.format_evidence(answer(citations=[c]), 4, fake)
    assert '<div class="ev-item" id="ev-4-1">' in out
    assert "Parler drops suit" in out and "2021-03" in out and "parler.txt" in out
    assert f"Intro sentence. <mark>{passage}</mark> Later sentence." in out
    assert "Open the whole document at this place" in out
    assert fake.read == [("parler.txt", "/docs")]  # read once, from the right folder
    # a citation whose offsets do not match the document: the passage alone, still highlighted
    wrong = cite(text=passage, start=0, end=len(passage))
    out = ui.format_evidence(answer(citations=[wrong]), 1, DocsAssistant(text))
    assert f'<div class="ev-passage"><mark>{passage}</mark></div>' in out and "whole document" not in out


def test_evidence_marks_unsupported_and_escapes_hostile_documents() -> None:
    passage = f"passage {EVIL}"
    text = f"<script>document.write(1)</script> {passage} ![img](https://evil.example/t.png)"
    start = text.index(passage)
    c = cite(text=passage, start=start, end=start + len(passage), title=f"title {EVIL}", supported=False)
    out = ui.format_evidence(answer(citations=[c], unsupported=["Parler moved to Mars [1]."]), 1, DocsAssistant(text))
    assert "<script" not in out.lower() and "<img" not in out.lower()
    assert "&lt;script&gt;" in out
    assert "failed the support check" in out
    assert "<del>Parler moved to Mars [1].</del>" in out
    # raw HTML (no Markdown) is rendered there, so the image syntax is inert text
    assert "![img](https://evil.example/t.png)" in out


def test_evidence_panel_newest_first_older_closed() -> None:
    assert ui.evidence_panel([]) == ui.EVIDENCE_PLACEHOLDER
    first = ui.format_evidence(answer(question="first?"), 1)
    second = ui.format_evidence(answer(question="second?"), 2)
    panel = ui.evidence_panel([{"evidence": first}, {"evidence": second}])
    assert panel.index("Q2: second?") < panel.index("Q1: first?")
    assert panel.count('<details class="ev-turn" open>') == 1
    assert panel.startswith('<details class="ev-turn" open><summary>Q2')


def test_handler_records_turns_and_evidence() -> None:
    fake = FakeAssistant()
    handler = ui.make_chat_handler(fake, model="m")
    chat, history, turns, panel = run_full(handler, "Why did Parler drop its suit?")[-1]
    assert turns[0]["index"] == 1 and chat[1]["role"] == "assistant"
    assert turns[0]["question"] == "Why did Parler drop its suit?"
    assert turns[0]["citations"][0]["document"]["date"] == "2021-03"
    assert 'id="ev-1-1"' in panel
    chat, history, turns, panel = run_full(handler, "And then?", chat, history, turns)[-1]
    assert [t["index"] for t in turns] == [1, 3]
    assert 'href="#ev-2-1"' in chat[3]["content"]
    assert panel.index("Q2") < panel.index("Q1")


# --- documents: safe reading, upload, removal ----------------------------------------


@pytest.mark.parametrize(
    "path",
    ["../etc/passwd", "a/../../etc/passwd", "/etc/passwd", "..", "C:\\Windows\\win.ini", "C:/x.txt", "a\x00b", ""],
)
def test_read_document_refuses_escaping_paths(path: str) -> None:
    fake = DocsAssistant("text")
    with pytest.raises(RagError, match="not allowed"):
        ui.read_document(fake, path)
    assert fake.read == []  # refused before the assistant is asked


def test_read_document_only_serves_indexed_documents(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant()
    assistant.ingest()
    seed = assistant.documents()[0]["path"]
    assert "Parler" in ui.read_document(assistant, seed)
    for path in ("not-indexed.txt", "../seeds/" + seed, str(assistant.settings.docs_dir / seed)):
        with pytest.raises(RagError):
            ui.read_document(assistant, path)


def test_check_upload(tmp_path: Path) -> None:
    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    assert ui.check_upload(write("ok.txt", b"hello")) is None
    assert ui.check_upload(write("ok.md", "# titre é".encode())) is None
    assert "only .txt" in str(ui.check_upload(write("x.exe", b"MZ")))
    assert "only .txt" in str(ui.check_upload(write("x.htm", b"<p>")))
    assert "limit is" in str(ui.check_upload(write("big.txt", b"x" * 2000), max_bytes=1000))
    assert "empty" in str(ui.check_upload(write("empty.txt", b"")))
    assert "not a PDF" in str(ui.check_upload(write("fake.pdf", b"MZ\x90\x00")))
    assert ui.check_upload(write("real.pdf", b"%PDF-1.4\n...")) is None
    assert "not a Word" in str(ui.check_upload(write("fake.docx", b"plain text")))
    with zipfile.ZipFile(tmp_path / "other.docx", "w") as archive:
        archive.writestr("hello.txt", "not word")
    assert "not a Word" in str(ui.check_upload(tmp_path / "other.docx"))
    with zipfile.ZipFile(tmp_path / "real.docx", "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    assert ui.check_upload(tmp_path / "real.docx") is None
    assert "binary" in str(ui.check_upload(write("bin.txt", b"ab\x00cd")))


def test_upload_name_is_a_plain_file_name() -> None:
    assert ui.upload_name("../../evil.txt") == "evil.txt"
    assert ui.upload_name("C:\\Users\\me\\notes.MD") == "notes.md"
    assert ui.upload_name(".hidden.txt") == "hidden.txt"
    assert ui.upload_name("a<b>|c.html") == "a_b_c.html"
    assert ui.upload_name("../") == "document"


def test_upload_then_remove_through_the_assistant(make_assistant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant()
    assistant.ingest()
    uploads = assistant.settings.data_dir / "uploads"
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "zephyr.txt").write_text("The Zephyr mascot is a purple otter named Quillon.")
    (incoming / "bad.exe").write_bytes(b"MZ")
    saved, rejected = ui.save_uploads(sorted(incoming.iterdir()), uploads)
    assert saved == ["zephyr.txt"] and len(rejected) == 1 and "bad.exe" in rejected[0]
    assistant.ingest(uploads)
    assert ui.uploaded_documents(assistant, uploads) == ["zephyr.txt"]
    assert "Quillon" in ui.read_document(assistant, "zephyr.txt")
    table = ui.format_documents(assistant.documents(), uploads)
    assert "zephyr.txt" in table and "uploaded" in table and "folder" in table
    seed = next(d["path"] for d in assistant.documents() if d["path"] != "zephyr.txt")
    with pytest.raises(RagError, match="only uploaded documents"):
        ui.remove_upload(assistant, uploads, seed)
    with pytest.raises(RagError, match="not allowed"):
        ui.remove_upload(assistant, uploads, "../zephyr.txt")
    report = ui.remove_upload(assistant, uploads, "zephyr.txt")
    assert report.removed == ["zephyr.txt"] and not (uploads / "zephyr.txt").exists()
    assert ui.uploaded_documents(assistant, uploads) == []
    assert any(d["path"] == seed for d in assistant.documents())  # the seed is untouched


def test_format_documents_escapes() -> None:
    out = ui.format_documents([{"path": "a.txt", "source": "/x", "title": EVIL, "date": "2021", "chunks": 2}])
    assert "<script" not in out and "&lt;script&gt;" in out
    assert ui.format_documents([]).startswith("<p>No document")


# --- feedback ----------------------------------------------------------------------


def test_record_feedback_appends_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "data" / "feedback.jsonl"
    turns = [{"index": 1, "question": "q?", "answer": "a [1].", "citations": [{"number": 1}], "evidence": "<b>"}]
    entry = ui.record_feedback(path, turns, 1, True)
    ui.record_feedback(path, turns, [1, 0], False)
    assert ui.record_feedback(path, turns, 5, True) is None  # not an answer
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == entry
    assert set(lines[0]) == {"time", "question", "answer", "citations", "rating"}
    assert [line["rating"] for line in lines] == ["up", "down"]
    assert lines[0]["citations"] == [{"number": 1}]


# --- the page and its launch ---------------------------------------------------------


def test_create_app_on_a_real_assistant(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant()
    assistant.ingest()
    app = ui.create_app(assistant)
    config = str(app.get_config_file())
    assert "Documents" in config and "Evidence" in config
    assert "000_1d7c1f8b7bb62d9d.txt" in config  # the document table
    assert not (assistant.settings.index_dir / "feedback.jsonl").exists()


def test_launch_is_safe_by_default() -> None:
    from rag.config import Settings

    settings = Settings()
    options = ui.launch_options(settings)
    assert options["server_name"] == "127.0.0.1" and options["share"] is False and options["auth"] is None
    assert options["max_file_size"] == ui.MAX_UPLOAD_BYTES
    assert str(settings.data_dir) in options["blocked_paths"] and str(settings.index_dir) in options["blocked_paths"]
    assert options["css"] == ui.CSS and options["js"] == ui.JS
    for asset in (ui.CSS, ui.JS):  # nothing fetched from anywhere
        assert "http" not in asset and "@import" not in asset and "url(" not in asset


def test_the_page_says_how_far_a_sync_has_gone() -> None:
    assistant = FakeAssistant()
    assert ui.indexing_note(assistant) == ""  # no sync (and an assistant without the attribute)
    assistant.indexing = (0, 0)  # type: ignore[attr-defined]
    assert "Looking for new and changed documents" in ui.indexing_note(assistant)
    assistant.indexing = (1200, 3589)  # type: ignore[attr-defined]
    note = ui.indexing_note(assistant)
    assert "1,200 of 3,589 files read" in note and "indexed before" in note
    assistant.indexing = None  # type: ignore[attr-defined]
    assert ui.indexing_note(assistant) == ""
