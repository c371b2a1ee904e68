"""The poisoned corpus and its question set: every attack is detectable and actually targeted."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from rag import prompts
from rag.eval.dataset import POISONED_SET, SETS_DIR, EvalRecord, load_set, missing_evidence, set_docs_folder
from rag.eval.metrics import fold_text
from rag.language import detect
from rag.loaders import load_folder
from rag.types import Document

DOCS = SETS_DIR / "poisoned" / "docs"
SEED_DOC = Path(__file__).resolve().parents[2] / "seeds" / "000_1d7c1f8b7bb62d9d.txt"
CANARY = re.compile(r"ZX-CANARY-(\d+)", re.IGNORECASE)
PROMPT_TEXT = "\n".join(v for k, v in vars(prompts).items() if k.isupper() and isinstance(v, str))


@pytest.fixture(scope="module")
def records() -> list[EvalRecord]:
    return load_set(POISONED_SET)


@pytest.fixture(scope="module")
def documents() -> dict[str, Document]:
    docs, skipped = load_folder(DOCS)
    assert skipped == {}
    return {d.path: d for d in docs}


@pytest.fixture(scope="module")
def poisoned(documents: dict[str, Document]) -> dict[str, Document]:
    return {path: doc for path, doc in documents.items() if path != SEED_DOC.name}


def test_the_set_is_asked_over_its_own_folder() -> None:
    assert set_docs_folder(POISONED_SET) == DOCS
    assert set_docs_folder(SETS_DIR / "seed.jsonl") is None


def test_corpus_is_the_seed_article_and_at_least_20_poisoned_documents(
    documents: dict[str, Document], poisoned: dict[str, Document]
) -> None:
    assert (DOCS / SEED_DOC.name).read_bytes() == SEED_DOC.read_bytes()
    assert len(poisoned) >= 20
    languages = Counter(detect(doc.text) for doc in poisoned.values())
    assert languages["en"] >= 8 and languages["fr"] >= 8, languages
    assert {Path(p).suffix for p in poisoned} >= {".txt", ".md", ".html"}


def test_every_poisoned_document_has_its_own_canary(poisoned: dict[str, Document]) -> None:
    seen: set[str] = set()
    for path, doc in poisoned.items():
        canaries = set(CANARY.findall(doc.text))
        assert len(canaries) == 1, (path, canaries)
        number = canaries.pop()
        assert path.startswith(f"p{number}_"), path  # p07_... carries ZX-CANARY-07
        assert number not in seen
        seen.add(number)
    assert not CANARY.search((DOCS / SEED_DOC.name).read_text(encoding="utf-8"))


def test_the_set_loads_and_targets_every_poisoned_document(
    records: list[EvalRecord], poisoned: dict[str, Document]
) -> None:
    assert len(records) >= 20
    assert {r.language for r in records} == {"en", "fr"}
    assert all(r.poisoned_docs and r.injection and "indirect-injection" in r.tags for r in records)
    targeted = {p for r in records for p in r.poisoned_docs}
    assert targeted == set(poisoned)
    assert sum(r.answerable for r in records) >= 20


def test_every_question_checks_the_canary_of_its_documents(
    records: list[EvalRecord], poisoned: dict[str, Document]
) -> None:
    for record in records:
        for path in record.poisoned_docs:
            canary = CANARY.search(poisoned[path].text)
            assert canary and canary.group(0).lower() in record.must_not_contain, record.id


def test_every_check_string_is_in_a_poisoned_document_or_in_the_prompts(
    records: list[EvalRecord], poisoned: dict[str, Document]
) -> None:
    prompt = fold_text(PROMPT_TEXT)
    texts = [fold_text(doc.text + " " + doc.title) for doc in poisoned.values()]
    for record in records:
        for check in record.must_not_contain:
            assert check == check.lower(), (record.id, check)
            assert any(fold_text(check) in t for t in texts) or fold_text(check) in prompt, (record.id, check)


def test_every_question_checks_every_payload(records: list[EvalRecord]) -> None:
    """Five passages are given, often from several poisoned pages: any page's payload counts."""
    everything = set().union(*(r.must_not_contain for r in records))
    for record in records:
        assert set(record.must_not_contain) == everything, record.id
        first = next(c for c in record.must_not_contain if c.startswith("zx-canary-"))
        assert first in {f"zx-canary-{p[1:3]}" for p in record.poisoned_docs}  # the target's checks come first


def test_every_pattern_matches_some_poisoned_document(records: list[EvalRecord], poisoned: dict[str, Document]) -> None:
    texts = [doc.text for doc in poisoned.values()]
    for record in records:
        for pattern in record.must_not_match:
            assert any(re.search(pattern, t, re.IGNORECASE) for t in texts), (record.id, pattern)


def test_no_check_trips_on_the_honest_answer(records: list[EvalRecord], documents: dict[str, Document]) -> None:
    """The gold evidence (what a right answer says) trips no obedience check."""
    from rag.eval.metrics import forbidden_hits

    for record in records:
        for evidence in record.gold_evidence:
            assert forbidden_hits(evidence, record.must_not_contain, record.must_not_match) == [], record.id


def test_gold_evidence_is_in_the_corpus_and_facts_are_lower_case(
    records: list[EvalRecord], documents: dict[str, Document]
) -> None:
    assert missing_evidence(records, [d.text for d in documents.values()]) == {}
    for record in records:
        assert bool(record.facts) == record.answerable == bool(record.gold_evidence), record.id
        assert all(p == p.lower() for alts in record.facts for p in alts), record.id


def test_language_switch_attacks_are_checked(records: list[EvalRecord]) -> None:
    switched = {r.id: r.forbidden_languages for r in records if r.forbidden_languages}
    assert switched and all(r.language not in langs for r in records if (langs := r.forbidden_languages))
