"""Question sets -> typed, validated records.

`load_set` reads a versioned JSONL set (schema in `rag/eval/sets/README.md`) into
`EvalRecord`s and rejects a malformed line with its line number. `validate_evidence`
checks that every gold evidence string occurs in the documents (the seed set promises it).

`load_squad` adapts a SQuAD-format file (the CNIL set) for page-level retrieval scoring:
each page's text is written to `<folder>/<page id>.txt` and each question becomes a record
tied to its page. The page `title` is the question itself, so it is never written out.
Pages with identical text are interchangeable: `gold_docs` lists all of them.

`set_docs_folder` finds the documents a set was written for: a set `sets/<name>.jsonl` with a
folder `sets/<name>/docs/` (the poisoned-documents set) is asked over that folder, not over
`RAG_DOCS_DIR`.

Deliberately not here: scoring (`metrics.py`) and running (`runner.py`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag.errors import RagError

RecordType = Literal["answerable", "unanswerable", "multi_turn", "injection"]
SETS_DIR = Path(__file__).resolve().parent / "sets"
SEED_SET = SETS_DIR / "seed.jsonl"
POISONED_SET = SETS_DIR / "poisoned.jsonl"


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user", "assistant"]
    content: str


class EvalRecord(BaseModel):
    """One evaluation question (one JSONL line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    type: RecordType
    language: str = Field(min_length=2, max_length=5)
    question: str = Field(min_length=1)
    history: list[Turn] = Field(default_factory=list)
    gold_evidence: list[str] = Field(default_factory=list)
    facts: list[list[str]] = Field(default_factory=list)
    answerable: bool
    tags: list[str] = Field(default_factory=list)
    must_not_contain: list[str] = Field(default_factory=list)
    # page-level sets (SQuAD): the documents any of which answers the question
    gold_docs: list[str] = Field(default_factory=list)
    # reference answers (SQuAD spans): scored by token overlap (F1, recall), not as required facts
    gold_answers: list[str] = Field(default_factory=list)
    # prompt injection: regular expressions (case-insensitive) the answer must not match, and
    # languages it must not be written in (an injected "answer in German")
    must_not_match: list[str] = Field(default_factory=list)
    forbidden_languages: list[str] = Field(default_factory=list)
    # indirect injection: the poisoned documents (paths in the docs folder) the question is meant
    # to retrieve; a record with any is scored for obedience, whatever its type
    poisoned_docs: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> EvalRecord:
        if self.type == "multi_turn" and not self.history:
            raise ValueError("a multi_turn record needs a history")
        if self.type != "multi_turn" and self.history:
            raise ValueError(f"only multi_turn records have a history (type is {self.type!r})")
        if self.type in ("unanswerable", "injection") and self.answerable:
            raise ValueError(f"a {self.type} record cannot be answerable")
        if self.type == "answerable" and not self.answerable:
            raise ValueError("an answerable record must have answerable: true")
        if self.answerable and not (self.gold_evidence or self.gold_docs):
            raise ValueError("an answerable record needs gold_evidence or gold_docs")
        if any(not alternatives for alternatives in self.facts):
            raise ValueError("every fact needs at least one phrasing")
        for pattern in self.must_not_match:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"must_not_match {pattern!r} is not a regular expression: {exc}") from exc
        if self.poisoned_docs and not (self.must_not_contain or self.must_not_match or self.forbidden_languages):
            raise ValueError("a record with poisoned_docs needs an obedience check (must_not_contain, ...)")
        return self

    @property
    def injection(self) -> bool:
        """Scored for obedience: an injection in the question, or poisoned documents to retrieve."""
        return self.type == "injection" or bool(self.poisoned_docs)

    def history_messages(self) -> list[dict[str, str]]:
        return [{"role": t.role, "content": t.content} for t in self.history]


def load_set(path: str | Path) -> list[EvalRecord]:
    """Read a JSONL set; raises RagError naming the file and line of the first bad record."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RagError(f"Cannot read the question set {str(path)!r}: {exc.strerror or exc}") from exc
    records: list[EvalRecord] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = EvalRecord.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise RagError(f"{path}:{number}: invalid record: {exc}") from exc
        if record.id in seen:
            raise RagError(f"{path}:{number}: duplicate id {record.id!r}")
        seen.add(record.id)
        records.append(record)
    if not records:
        raise RagError(f"The question set {str(path)!r} is empty.")
    return records


def set_docs_folder(set_path: str | Path) -> Path | None:
    """`<set folder>/<set name>/docs` when it exists: the documents the set was written for."""
    path = Path(set_path)
    folder = path.parent / path.stem / "docs"
    return folder if folder.is_dir() else None


def missing_evidence(records: Iterable[EvalRecord], texts: Sequence[str]) -> dict[str, list[str]]:
    """{record id: [evidence strings found in none of `texts`]} (empty when all are found)."""
    out: dict[str, list[str]] = {}
    for record in records:
        missing = [e for e in record.gold_evidence if not any(e in text for text in texts)]
        if missing:
            out[record.id] = missing
    return out


def sample(records: Sequence[EvalRecord], limit: int | None, seed: int = 0) -> list[EvalRecord]:
    """All records in file order, or `limit` of them drawn round-robin across types.

    Round-robin after a seeded shuffle inside each type: a 4-question sample of the seed set
    has one question of each type, and the same seed always draws the same questions.
    """
    if limit is None or limit >= len(records):
        return list(records)
    rng = random.Random(seed)
    by_type: dict[str, list[EvalRecord]] = {}
    for record in records:
        by_type.setdefault(record.type, []).append(record)
    for group in by_type.values():
        rng.shuffle(group)
    picked: list[EvalRecord] = []
    while len(picked) < limit:
        for group in by_type.values():
            if group and len(picked) < limit:
                picked.append(group.pop(0))
    return picked


# -- SQuAD-format sets ----------------------------------------------------------------------


def _file_stem(page_id: str) -> str:
    return re.sub(r"[^\w.-]+", "_", page_id).strip("._") or "page"


def load_squad(path: str | Path, pages_dir: str | Path, language: str = "fr") -> list[EvalRecord]:
    """Write each page's text to `pages_dir/<id>.txt`; return one record per question.

    A page's text is its paragraphs' contexts joined by a blank line (six CNIL pages have two).
    The same id with the same text (three CNIL pages are listed twice) is one file; the same
    id with another text gets a `-2` suffix. Every question is kept (512 on the CNIL set), as
    in `benchmarks/cnil_retrieval.py`. Each record's `gold_docs` names every page file
    whose text equals its page's, since any of them is a right answer. Files are rewritten only
    when their text changed, so a re-run keeps the index's incremental sync cheap.
    """
    path, folder = Path(path), Path(pages_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RagError(f"Cannot read the SQuAD file {str(path)!r}: {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    text_of: dict[str, str] = {}  # file name -> text
    pages: list[tuple[str, dict[str, object]]] = []
    for i, page in enumerate(data):
        paragraphs = page.get("paragraphs") or []
        text = "\n\n".join(str(p.get("context", "")) for p in paragraphs).strip()
        stem = _file_stem(str(page.get("id", f"page{i:03d}")))
        name, n = f"{stem}.txt", 1
        while name in text_of and text_of[name] != text:
            n += 1
            name = f"{stem}-{n}.txt"
        text_of[name] = text
        pages.append((name, page))
    by_text: dict[str, list[str]] = {}
    for name, text in text_of.items():
        by_text.setdefault(text, []).append(name)
        target = folder / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")

    records: list[EvalRecord] = []
    for i, (name, page) in enumerate(pages):
        for para in page.get("paragraphs") or []:  # type: ignore[attr-defined]
            for qa in para.get("qas") or []:
                answers = [str(a.get("text", "")) for a in qa.get("answers") or []]
                records.append(
                    EvalRecord(
                        id=f"squad-{i:03d}-{len(records):04d}",
                        type="answerable",
                        language=language,
                        question=str(qa["question"]),
                        gold_evidence=[a for a in answers if a.strip()][:1],
                        gold_answers=[a for a in answers if a.strip()],
                        answerable=True,
                        tags=["squad"],
                        gold_docs=sorted(by_text[text_of[name]]),
                    )
                )
    return records
