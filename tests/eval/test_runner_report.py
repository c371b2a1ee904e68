"""A 4-question run through a fake assistant: complete rows, summary and report files."""

from __future__ import annotations

import json
from pathlib import Path

from rag.eval.baseline import BaselinePipeline, says_cannot_answer
from rag.eval.dataset import EvalRecord
from rag.eval.report import compare, short_table, write_report
from rag.eval.runner import run_eval, summarise

PNG = b"\x89PNG\r\n\x1a\n"


def test_run_scores_every_question(seed_assistant, four_records: list[EvalRecord]) -> None:  # type: ignore[no-untyped-def]
    run = run_eval(seed_assistant, four_records, "ours", progress=False, set_name="seed.jsonl")
    rows = {r["id"]: r for r in run.rows}
    assert list(rows) == [r.id for r in four_records]

    host = rows["en-host-01"]
    assert not host["abstained"] and host["correct"] and host["passed"]
    assert host["citations_valid"] == host["citations_total"] == 1
    assert host["support_good"] == host["support_total"] == 1
    assert host["search_hit@5"] == 1.0 and host["sources_hit@5"] == 1.0
    assert host["language_ok"] and host["total_s"] is not None

    assert rows["en-unans-damages-01"]["abstained"] and rows["en-unans-damages-01"]["passed"]
    assert rows["mt-en-why-01"]["standalone_question"] == "Why did Parler drop its lawsuit against Amazon?"
    assert rows["mt-en-why-01"]["correct"]
    assert rows["inj-en-link-01"]["injection_obeyed"] is False

    summary = summarise(run)
    overall = summary["overall"]
    assert summary["questions"] == summary["answered"] == 4
    assert overall["correct"] == 1.0 and overall["pass_rate"] == 1.0
    assert overall["abstention_recall"] == 1.0 and overall["false_abstention_rate"] == 0.0
    assert overall["citation_validity"] == 1.0 and overall["citation_support"] == 1.0
    assert overall["total_s_p50"] is not None and overall["prompt_tokens_mean"] > 0
    assert set(summary["by_type"]) == {"answerable", "unanswerable", "multi_turn", "injection"}
    assert set(summary["by_language"]) == {"en"}
    assert summary["failures"] == []


def test_retrieval_only_rows_for_questions_not_asked(seed_assistant, four_records) -> None:  # type: ignore[no-untyped-def]
    run = run_eval(seed_assistant, four_records, progress=False, answer_ids={"en-host-01"})
    asked = [r for r in run.rows if "abstained" in r]
    assert [r["id"] for r in asked] == ["en-host-01"]
    assert all("search" in r for r in run.rows)
    assert summarise(run)["answered"] == 1


def test_reference_answers_are_scored_by_token_overlap(seed_assistant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # SQuAD-format records carry reference answers instead of required facts
    reference = "Parler moved to Epik, another host"
    doc = seed_assistant.retriever.chunks[0].doc_path
    asked = {"host": "Who hosts Parler now?", "none": "What is the CEO's salary?"}
    records = [
        EvalRecord(
            id=key,
            type="answerable",
            language="en",
            question=question,
            answerable=True,
            gold_docs=[doc],
            gold_answers=[reference],
        )
        for key, question in asked.items()
    ]
    run = run_eval(seed_assistant, records, "ours", progress=False, set_name="squad.json")
    rows = {r["id"]: r for r in run.rows}
    # "Parler moved to another host, Epik [n]." states all 5 reference words (moved to another host epik parler)
    assert rows["host"]["answer_recall"] == 1.0 and 0.9 < rows["host"]["answer_f1"] <= 1.0
    assert rows["none"]["abstained"] and rows["none"]["answer_f1"] == rows["none"]["answer_recall"] == 0.0
    assert "correct" not in rows["host"]  # no facts: nothing to call correct
    overall = summarise(run)["overall"]
    assert overall["answer_recall"] == 0.5 and overall["correct"] is None
    markdown = (write_report([run], tmp_path / "report") / "report.md").read_text(encoding="utf-8")
    assert "| answer token F1 vs reference answer |" in markdown and "| answer correct (all facts) |" not in markdown


def test_report_files_are_complete(seed_assistant, four_records, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ours = run_eval(seed_assistant, four_records, "ours", progress=False, set_name="seed.jsonl")
    baseline = BaselinePipeline(seed_assistant.settings.docs_dir, seed_assistant.embedder, seed_assistant.llm)
    theirs = run_eval(baseline, four_records, "baseline", progress=False, set_name="seed.jsonl")
    assert all("answer" in r for r in theirs.rows) and all(r["cited"] == [] for r in theirs.rows)

    folder = write_report([ours, theirs], tmp_path / "report")
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    for heading in ("# Evaluation", "## Overall", "## By language", "## By type", "## Failures"):
        assert heading in markdown
    assert "| metric | ours | baseline |" in markdown
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert set(results) == {"summaries", "rows", "config"}
    assert set(results["summaries"]) == {"ours", "baseline"}
    assert set(results["summaries"]["ours"]) >= {"overall", "by_language", "by_type", "failures", "questions"}
    assert len(results["rows"]["ours"]) == 4
    assert (folder / "chart.png").read_bytes().startswith(PNG)

    table = short_table(results["summaries"])
    assert table.splitlines()[1].startswith("ours") and table.splitlines()[2].startswith("baseline")
    diff = compare(folder / "results.json", results)
    assert "## Before / after" in diff and "+0.000" in diff


def test_baseline_abstention_heuristic() -> None:
    assert says_cannot_answer("The context does not provide information about the judge.")
    assert says_cannot_answer("Les documents ne le disent pas.")
    assert says_cannot_answer("NOT_FOUND")
    assert says_cannot_answer("Não_FOUND")
    assert not says_cannot_answer("Parler moved to Epik.")


def test_the_search_scored_is_the_one_the_answer_used(make_assistant, four_records, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rag.llm import ScriptedLLM

    def reply(messages: list[dict[str, str]]) -> str:
        if messages[-1]["content"].startswith("Translate this sentence into French."):
            return "Quel hébergeur accueille Parler ?"
        return "NOT_FOUND"

    assistant = make_assistant(ScriptedLLM(reply_fn=reply), full_context_tokens=0)  # the retrieval path
    assistant.ingest()
    searched: list[tuple[str, str]] = []
    search = assistant.retriever.search
    monkeypatch.setattr(assistant.retriever, "search", lambda q, k, t="": searched.append((q, t)) or search(q, k, t))
    run = run_eval(assistant, four_records[:1], progress=False)
    row = run.rows[0]
    assert row["search_translation"] == "Quel hébergeur accueille Parler ?"
    # the answer's search, then the runner's: both with the question's translation
    assert searched == [(four_records[0].question, "Quel hébergeur accueille Parler ?")] * 2
    overall = summarise(run)["overall"]
    assert overall["translated"] == 1 and overall["translate_s_p50"] == row["translate_s"] >= 0
