"""The CLI runs in-process over an Assistant built on fakes."""

from __future__ import annotations

import io

import pytest

from rag import cli
from rag.llm import ScriptedLLM


@pytest.fixture
def fake_cli(make_assistant, monkeypatch):  # type: ignore[no-untyped-def]
    llm = ScriptedLLM()
    assistant = make_assistant(llm)
    monkeypatch.setattr(cli, "_assistant", lambda args: assistant)
    return assistant, llm


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def test_ingest_reports_counts(fake_cli) -> None:  # type: ignore[no-untyped-def]
    code, out = run("ingest", "--quiet")
    assert code == 0
    assert "added 1" in out and "chunks written" in out
    code, out = run("ingest", "--quiet")
    assert "added 0" in out and "unchanged 1" in out


def test_ask_prints_answer_and_sources(fake_cli) -> None:  # type: ignore[no-untyped-def]
    _, llm = fake_cli
    llm.enqueue("Parler a abandonné sa plainte contre Amazon [1].")
    code, out = run("ask", "Why did Parler drop its suit?")
    assert code == 0
    assert "[1]" in out and "Sources:" in out and "(2021-03)" in out
    assert "first token" in out
    # the small set's prefix was read into the LLM before the question, as the UI does at start-up
    assert llm.held[0][:2] == (0, "Hi")
    assert llm.held_messages[0][0] == llm.calls[0][0]  # the question's prompt starts with the warmed prefix


def test_ask_json(fake_cli) -> None:  # type: ignore[no-untyped-def]
    import json

    code, out = run("ask", "--json", "How much were the damages?")
    assert code == 0
    data = json.loads(out)
    assert data["abstained"] is True and data["citations"] == []


def test_chat_loop_keeps_history(fake_cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, llm = fake_cli
    llm.enqueue("Parler a abandonné sa plainte contre Amazon [1].", "When did Parler file its suit?", "NOT_FOUND")
    out = io.StringIO()
    stdin = io.StringIO("Why did Parler drop its suit?\nAnd when did it file it?\n\n")
    args = cli.build_parser().parse_args(["chat"])
    assert cli.cmd_chat(args, out, stdin) == 0
    text = out.getvalue()
    assert "Sources:" in text and "The documents do not say." in text
    assert [slot for slot, _, _ in llm.held] == [0]  # warmed once, before the first question
    rewrites = [c[0]["content"] for c in llm.calls if c[0]["content"].startswith("Rewrite the last question")]
    assert len(rewrites) == 1 and "Why did Parler drop its suit?" in rewrites[0]  # the rewrite saw the history


def test_errors_are_one_line_messages(fake_cli, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _ = run("ask", "   ")
    assert code == 1
    assert capsys.readouterr().err.startswith("Error: The question is empty")


def test_print_answer_lists_sentences_the_fit_check_withdrew() -> None:
    import io

    from rag.cli import print_answer
    from rag.types import Answer

    out = io.StringIO()
    withdrawn = Answer(
        question="Who is Parler popular with?",
        text="The documents do not say.",
        citations=[],
        abstained=True,
        withdrawn=["Parler is popular with the far right."],
    )
    print_answer(withdrawn, out)
    printed = out.getvalue()
    assert printed.startswith("The documents do not say.\n")
    assert "Withdrawn (true of the sources, but judged not to answer the question):\n" in printed
    assert "  - Parler is popular with the far right.\n" in printed


def test_print_answer_shows_the_translation_the_search_used() -> None:
    import io

    from rag.cli import print_answer
    from rag.types import Answer

    answer = Answer(question="Who hosts Parler?", text="The documents do not say.", citations=[], abstained=True)
    plain = io.StringIO()
    print_answer(answer, plain)
    assert "Also searched" not in plain.getvalue() and "translation" not in plain.getvalue()
    answer.search_translation = "Qui héberge Parler ?"
    answer.timings = {"translate_s": 0.94, "retrieval_s": 0.02, "first_token_s": 4.1, "total_s": 9.0}
    out = io.StringIO()
    print_answer(answer, out)
    assert "\nAlso searched in the documents' language as: Qui héberge Parler ?\n" in out.getvalue()
    assert "(translation 0.94 s, retrieval 0.02 s, first token 4.10 s, total 9.00 s)" in out.getvalue()
