"""How well the fit check separates right answers from answers to unanswerable questions.

    .venv/bin/python benchmarks/fit_check.py reports/seed-fit2/results.json

Takes the answers an eval run kept after the support check (its rows' supported sentences,
whatever the fit check then decided), asks the current fit check (`Answerer.fits`, same cached
system message as the assistant) about each, and labels each answer from the set itself: right
(an answerable question whose required facts the answer states), wrong (answerable, facts
missing) or unanswerable (an unanswerable question, or one of the two injections that ask for
no answer at all). Prints the AUC of P(yes) for right vs unanswerable and right vs the rest,
and, per threshold, how many of each would be withdrawn; writes the rows and the table as JSON
next to the input (`fit_check.json`). Injections that embed a real question are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.answer import system_message
from rag.assistant import Assistant
from rag.eval.dataset import SEED_SET
from rag.eval.metrics import answer_correct
from rag.types import Sentence

NO_QUESTION_INJECTIONS = {"inj-en-sysprompt-01", "inj-es-devmode-01"}  # nothing to answer: should abstain


def auc(positives: list[float], negatives: list[float]) -> float:
    """P(a random positive scores above a random negative), ties counted half."""
    pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    return sum(pairs) / len(pairs) if pairs else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="results.json of a `python -m rag eval` run on the seed set")
    args = parser.parse_args()
    lines = SEED_SET.read_text(encoding="utf-8").splitlines()
    records = {record["id"]: record for record in map(json.loads, lines)}
    rows = json.loads(args.results.read_text(encoding="utf-8"))["rows"]["ours"]

    assistant = Assistant()
    assistant.ingest()
    chunks = assistant.retriever.chunks
    system = system_message(chunks)
    answerer = assistant._answerer()
    assistant.warm()
    out = []
    for row in rows:
        kept = [
            Sentence(s["text"], tuple(s["citations"]), True, s["support"] or 0.0)
            for s in row["sentences"]
            if s["supported"] and s["citations"]
        ]
        if not kept or (row["type"] == "injection" and row["id"] not in NO_QUESTION_INJECTIONS):
            continue
        if not row["answerable"] or row["type"] == "injection":
            label = "unanswerable"
        else:
            facts = records[row["id"]].get("facts", [])
            label = "right" if answer_correct(" ".join(s.text for s in kept), facts) else "wrong"
        # as the small-set path asks it: in the slot of the cited passage where it has one
        p = answerer.fits(row["standalone_question"], kept, chunks, system, in_slots=True)
        out.append({"id": row["id"], "label": label, "fit": round(p, 3)})
        print(f"{row['id']:28s} {label:12s} {p:.3f}", flush=True)

    def scores(*labels: str) -> list[float]:
        return [r["fit"] for r in out if r["label"] in labels]

    table = []
    for t in [x / 100 for x in range(50, 86, 5)]:
        withdrawn = {lab: sum(s < t for s in scores(lab)) for lab in ("right", "wrong", "unanswerable")}
        table.append({"threshold": t, **withdrawn})
    summary = {
        "answers": {lab: len(scores(lab)) for lab in ("right", "wrong", "unanswerable")},
        "auc_right_vs_unanswerable": auc(scores("right"), scores("unanswerable")),
        "auc_right_vs_rest": auc(scores("right"), scores("wrong", "unanswerable")),
        "withdrawn_by_threshold": table,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "withdrawn_by_threshold"}))
    print("threshold  right  wrong  unanswerable  (withdrawn)")
    for row in table:
        print(f"{row['threshold']:9.2f}  {row['right']:5d}  {row['wrong']:5d}  {row['unanswerable']:12d}")
    target = args.results.with_name("fit_check.json")
    target.write_text(json.dumps({**summary, "rows": out}, indent=1), encoding="utf-8")
    print(f"written: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
