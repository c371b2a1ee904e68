"""`python -m rag eval` in-process, with the assistant factory replaced by fakes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rag.cli import main
from rag.config import Settings


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["eval", "--quiet", *argv], out=out)
    return code, out.getvalue()


def test_eval_both_pipelines_writes_the_report(fake_pipelines: list[Settings], tmp_path: Path) -> None:
    code, text = run("--limit", "4", "--pipeline", "both", "--out", str(tmp_path / "r1"))
    assert code == 0
    assert "ours" in text and "baseline" in text and "report:" in text
    results = json.loads((tmp_path / "r1" / "results.json").read_text(encoding="utf-8"))
    assert set(results["summaries"]) == {"ours", "baseline"}
    assert results["summaries"]["ours"]["questions"] == 4
    assert (tmp_path / "r1" / "report.md").is_file() and (tmp_path / "r1" / "chart.png").is_file()


def test_eval_compare_with_an_earlier_run(fake_pipelines: list[Settings], tmp_path: Path) -> None:
    assert run("--limit", "2", "--out", str(tmp_path / "old"))[0] == 0
    code, text = run("--limit", "2", "--out", str(tmp_path / "new"), "--compare", str(tmp_path / "old/results.json"))
    assert code == 0 and "Before / after" in text
    assert (tmp_path / "new" / "compare.md").read_text(encoding="utf-8").startswith("## Before / after")


def test_eval_squad_absent_is_skipped(fake_pipelines: list[Settings], tmp_path: Path) -> None:
    code, text = run("--squad", str(tmp_path / "absent.json"))
    assert code == 0 and "Skipped" in text
    assert fake_pipelines == []


def test_eval_squad_page_level(fake_pipelines: list[Settings], tmp_path: Path) -> None:
    pages = [
        ("10", "Le fichier des empreintes digitales est tenu par la police.", "Qui tient le fichier des empreintes ?"),
        ("11", "La vidéosurveillance au travail doit être signalée aux salariés.", "Faut-il signaler les caméras ?"),
        ("12", "Le droit d'accès permet d'obtenir une copie de ses données.", "Comment obtenir ses données ?"),
    ]
    data = {
        "data": [
            {"id": i, "title": q, "paragraphs": [{"context": c, "qas": [{"question": q, "answers": []}]}]}
            for i, c, q in pages
        ]
    }
    squad = tmp_path / "mini_squad.json"
    squad.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    code, _ = run("--squad", str(squad), "--limit", "1", "--out", str(tmp_path / "sq"))
    assert code == 0
    settings = fake_pipelines[0]
    assert settings.collection == "cnil" and settings.docs_dir == tmp_path / "cache/eval/mini_squad/pages"
    assert sorted(p.name for p in settings.docs_dir.iterdir()) == ["10.txt", "11.txt", "12.txt"]
    results = json.loads((tmp_path / "sq" / "results.json").read_text(encoding="utf-8"))
    summary = results["summaries"]["ours"]
    assert summary["questions"] == 3 and summary["answered"] == 1
    assert summary["overall"]["search_hit@5"] == 1.0  # three pages: the right one is always in the top 5


def test_eval_bad_set_is_an_error(
    fake_pipelines: list[Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    code, _ = run("--set", str(bad))
    assert code == 1
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_cached_eval_indexes_are_kept_apart_per_window_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rag.config import Settings
    from rag.eval.pipelines import docs_settings, squad_settings

    plain = Settings(cache_dir=tmp_path, window_tokens=0)
    windowed = Settings(cache_dir=tmp_path, window_tokens=320)
    squad = tmp_path / "cnil_squad.json"
    assert squad_settings(squad, plain)[0].index_dir == tmp_path / "eval" / "cnil_squad" / "index"
    assert squad_settings(squad, windowed)[0].index_dir == tmp_path / "eval" / "cnil_squad" / "index-window320"
    assert docs_settings(tmp_path, plain).index_dir.name == "index"
    assert docs_settings(tmp_path, windowed).index_dir.name == "index-window320"
    assert docs_settings(tmp_path, plain).index_dir.parent == docs_settings(tmp_path, windowed).index_dir.parent


def test_eval_only_runs_the_questions_of_a_type_or_language(fake_pipelines: list[Settings], tmp_path: Path) -> None:
    code, _ = run("--only", "multi_turn", "--out", str(tmp_path / "mt"))
    assert code == 0
    rows = json.loads((tmp_path / "mt" / "results.json").read_text(encoding="utf-8"))["rows"]["ours"]
    assert len(rows) == 10 and {r["type"] for r in rows} == {"multi_turn"}
    code, _ = run("--only", "de, it", "--out", str(tmp_path / "de-it"))
    rows = json.loads((tmp_path / "de-it" / "results.json").read_text(encoding="utf-8"))["rows"]["ours"]
    assert code == 0 and rows and {r["language"] for r in rows} == {"de", "it"}


def test_eval_only_matching_nothing_is_a_clear_error(
    fake_pipelines: list[Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run("--only", "klingon", "--out", str(tmp_path / "none"))
    assert code != 0 and not (tmp_path / "none").exists()
    assert "No question of the set has a type, language or tag among klingon" in capsys.readouterr().err
