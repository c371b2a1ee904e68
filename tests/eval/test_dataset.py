"""The seed set loads and is valid; the SQuAD adapter writes pages and ties questions to them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.eval.dataset import SEED_SET, EvalRecord, load_set, load_squad, missing_evidence, sample
from rag.loaders import load_file

SEED_DOC = Path(__file__).resolve().parents[2] / "seeds" / "000_1d7c1f8b7bb62d9d.txt"


@pytest.fixture(scope="module")
def seed_records() -> list[EvalRecord]:
    return load_set(SEED_SET)


def test_seed_set_loads_with_unique_ids(seed_records: list[EvalRecord]) -> None:
    assert len({r.id for r in seed_records}) == len(seed_records) >= 90


def test_seed_set_minimum_counts_by_type(seed_records: list[EvalRecord]) -> None:
    counts = Counter(r.type for r in seed_records)
    assert counts["answerable"] >= 40
    assert counts["unanswerable"] >= 15
    assert counts["multi_turn"] >= 8
    assert counts["injection"] >= 6
    assert len({r.language for r in seed_records}) >= 6


def test_every_gold_evidence_string_is_in_the_seed_article_body(seed_records: list[EvalRecord]) -> None:
    body = load_file(SEED_DOC).text  # the header line is metadata, not body
    assert missing_evidence(seed_records, [body]) == {}


def test_answerable_records_have_facts_and_evidence(seed_records: list[EvalRecord]) -> None:
    for record in seed_records:
        assert bool(record.facts) == record.answerable == bool(record.gold_evidence), record.id
        assert all(p == p.lower() for alts in record.facts for p in alts), record.id


def test_missing_evidence_reports_absent_strings() -> None:
    record = EvalRecord(id="x", type="answerable", language="en", question="q", gold_evidence=["abc"], answerable=True)
    assert missing_evidence([record], ["xyz"]) == {"x": ["abc"]}


def _write(tmp_path: Path, lines: list[dict[str, object]]) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), encoding="utf-8")
    return path


GOOD = {"id": "a", "type": "unanswerable", "language": "en", "question": "q?", "answerable": False}


def test_load_set_names_the_bad_line(tmp_path: Path) -> None:
    path = _write(tmp_path, [GOOD, {**GOOD, "id": "b", "type": "nonsense"}])
    with pytest.raises(RagError, match=r"set\.jsonl:2"):
        load_set(path)


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD, "answerable": True},  # unanswerable type marked answerable
        {**GOOD, "type": "multi_turn"},  # multi_turn without history
        {**GOOD, "history": [{"role": "user", "content": "hi"}]},  # history on a single question
        {**GOOD, "extra_field": 1},
        {**GOOD, "type": "answerable", "answerable": True},  # answerable without evidence
    ],
)
def test_invalid_records_are_rejected(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(RagError):
        load_set(_write(tmp_path, [bad]))


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(RagError, match="duplicate"):
        load_set(_write(tmp_path, [GOOD, GOOD]))


def test_sample_is_seeded_and_spreads_types(seed_records: list[EvalRecord]) -> None:
    four = sample(seed_records, 4, seed=1)
    assert {r.type for r in four} == {"answerable", "unanswerable", "multi_turn", "injection"}
    assert [r.id for r in four] == [r.id for r in sample(seed_records, 4, seed=1)]
    assert sample(seed_records, None) == seed_records


SQUAD = {
    "data": [
        {"id": "1", "title": "Q one?", "paragraphs": [{"context": "Page one text.", "qas": [{"question": "Q one?"}]}]},
        {
            "id": "2",
            "title": "Q two?",
            "paragraphs": [
                {"context": "Page two text.", "qas": [{"question": "Q two?", "answers": [{"text": "two"}]}]},
                {"context": "More.", "qas": [{"question": "Q two b?"}]},
            ],
        },
        {"id": "3", "title": "Q three?", "paragraphs": [{"context": "Page one text.", "qas": [{"question": "Q3?"}]}]},
        {"id": "1", "title": "Q dup", "paragraphs": [{"context": "Other text.", "qas": [{"question": "Q dup?"}]}]},
    ]
}


def test_load_squad_writes_pages_without_titles(tmp_path: Path) -> None:
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(SQUAD), encoding="utf-8")
    records = load_squad(squad, tmp_path / "pages")
    files = sorted(p.name for p in (tmp_path / "pages").iterdir())
    assert files == ["1-2.txt", "1.txt", "2.txt", "3.txt"]
    assert (tmp_path / "pages" / "2.txt").read_text(encoding="utf-8") == "Page two text.\n\nMore."
    assert not any("Q one" in p.read_text(encoding="utf-8") for p in (tmp_path / "pages").iterdir())
    assert [r.question for r in records] == ["Q one?", "Q two?", "Q two b?", "Q3?", "Q dup?"]
    assert records[0].gold_docs == ["1.txt", "3.txt"]  # identical texts: either is right
    assert records[1].gold_docs == ["2.txt"] and records[1].gold_evidence == ["two"]
    assert records[1].gold_answers == ["two"] and records[0].gold_answers == []
    assert records[4].gold_docs == ["1-2.txt"]
    assert len({r.id for r in records}) == len(records)


def test_load_squad_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RagError, match="Cannot read"):
        load_squad(tmp_path / "absent.json", tmp_path / "pages")
