"""On the retrieval path, does the evidence survive the choice of passages given to the model?

    .venv/bin/python benchmarks/focus_evidence.py        # the seed set's questions over the poisoned folder
    .venv/bin/python benchmarks/focus_evidence.py --squad ../shared/bench/cnil_squad.json --questions 200

No answer is written. For each answerable question, the search the assistant runs (a follow-up
rewritten and a question in another language than the documents' translated by the bundled LLM
first, as `Assistant.stream` does), then the passages the model would be given, chosen several
ways: the first five trimmed to their sentences closest to the question within a budget of 160,
240 or 320 tokens (`RAG_FOCUS_TOKENS`; 160 is the default), or the first 1, 2, 3 or 5 passages
whole. Reports, per way, the share of questions with gold evidence among the passages given and
the tokens given (p50). Gold evidence: the set's `gold_evidence` strings (as the eval scores
"given passages hit"); for a SQuAD set, the right page, and the reference answer's first eight
words (its answers are long spans, median 41 words). The seed set's folder is the article among
24 poisoned documents (`rag/eval/sets/poisoned/docs`), so it takes the retrieval path; it uses
the same cached index as `python -m rag eval --docs`. Skips cleanly when a SQuAD file is absent.
Writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.assistant import Assistant
from rag.eval.dataset import EvalRecord, load_set, load_squad, sample
from rag.eval.metrics import normalise, passage_relevant
from rag.eval.pipelines import docs_settings, squad_settings
from rag.tokens import count_tokens
from rag.types import Chunk

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = (160, 240, 320)
WHOLE = (1, 2, 3, 5)


def choices(assistant: Assistant) -> dict[str, Callable[[str, list[Chunk]], list[Chunk]]]:
    answerer = assistant._answerer()
    out: dict[str, Callable[[str, list[Chunk]], list[Chunk]]] = {}
    for budget in BUDGETS:
        out[f"focus {budget}"] = lambda q, hits, b=budget: answerer.focus(q, hits[:5], b)  # type: ignore[misc]
    for n in WHOLE:
        out[f"whole {n}"] = lambda q, hits, n=n: hits[:n]  # type: ignore[misc]
    return out


def search_query(assistant: Assistant, record: EvalRecord) -> tuple[str, str]:
    """The question the assistant searches for, and its translation into the documents' language."""
    from rag.language import detect

    history = [turn.model_dump() for turn in record.history]
    question = assistant.rewrite(record.question, history) if history else record.question
    language = detect(record.question, default=record.language)
    translation = assistant.search_translation(question) if assistant._translates(language) else ""
    return question, translation


def gold_given(record: EvalRecord, given: Sequence[Chunk], squad: bool) -> dict[str, bool]:
    if not squad:
        return {"evidence": any(passage_relevant(c.text, record.gold_evidence) for c in given)}
    start = " ".join(normalise(record.gold_evidence[0]).split()[:8])
    return {
        "page": any(c.doc_path in record.gold_docs for c in given),
        "answer start": start in " ".join(normalise(c.text) for c in given),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=ROOT / "rag/eval/sets/seed.jsonl")
    parser.add_argument("--docs", type=Path, default=ROOT / "rag/eval/sets/poisoned/docs")
    parser.add_argument("--squad", type=Path, help="a SQuAD file instead of --set/--docs")
    parser.add_argument("--questions", type=int, help="a sample of this many (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/focus_evidence.json")
    args = parser.parse_args()
    if args.squad:
        if not args.squad.is_file():
            print(f"{args.squad} is absent: skipped")
            return 0
        settings, pages = squad_settings(args.squad)
        records = load_squad(args.squad, pages)
    else:
        settings, records = docs_settings(args.docs), load_set(args.set)
    records = sample([r for r in records if r.answerable and (r.gold_evidence or r.gold_docs)], args.questions)
    assistant = Assistant(settings)
    assistant.ingest()
    ways = choices(assistant)
    hits: dict[str, dict[str, list[bool]]] = {name: {} for name in ways}
    tokens: dict[str, list[int]] = {name: [] for name in ways}
    for i, record in enumerate(records, 1):
        question, translation = search_query(assistant, record)
        found = [h.chunk for h in assistant.retriever.search(question, 5, translation)]
        for name, choose in ways.items():
            given = choose(question, found)
            for kind, ok in gold_given(record, given, bool(args.squad)).items():
                hits[name].setdefault(kind, []).append(ok)
            tokens[name].append(sum(count_tokens(c.text) for c in given))
        print(f"\r{i}/{len(records)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    rows = []
    for name in ways:
        row = {"choice": name, "tokens_p50": statistics.median(tokens[name])}
        row |= {f"{kind} given": round(sum(v) / len(v), 3) for kind, v in hits[name].items()}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False))
    source = str(args.squad) if args.squad else f"{args.set} over {args.docs}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"set": source, "questions": len(records), "rows": rows}, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
