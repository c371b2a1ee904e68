"""Time to first token and total time on the retrieval path (a document set too big for the
cached full-context prefix), with whole passages vs passages trimmed by RAG_FOCUS_TOKENS.

    .venv/bin/python benchmarks/large_path.py --focus 0      # whole passages
    .venv/bin/python benchmarks/large_path.py --focus 150    # passages trimmed to 150 tokens in all

Uses the CNIL SQuAD set (../shared/bench/cnil_squad.json, 506 French pages) in the same cached
index as `python -m rag eval --squad` (built on first use); skips cleanly when it is absent.
The same sampled questions are asked once, on a warm LLM (one untimed question first). One
budget per run, each in its own process: the llama.cpp server keeps earlier prompts' KV cache
(host-memory prompt cache), so a question asked a second time with another budget would reuse
the prefix it shares with the first ask and look faster than it is. Results are merged into
`--out` by budget. Reports per budget: first token and total p50/p95, new prompt tokens, share
answered, and share of answers stating the SQuAD answer.

`--english` asks each sampled question's English version instead (from the cache that
`benchmarks/cnil_crosslingual.py` writes, `.cache/bench/cnil_questions_en.json`), and
`--no-translate-query` turns `RAG_TRANSLATE_QUERY` off, so that the time the translation into
the documents' language adds before the search is measured end to end:

    .venv/bin/python benchmarks/large_path.py --focus 160 --english --questions 16
    .venv/bin/python benchmarks/large_path.py --focus 160 --english --questions 16 --no-translate-query
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.assistant import Assistant
from rag.eval.dataset import load_squad, sample
from rag.eval.metrics import answer_correct, percentile
from rag.eval.pipelines import squad_settings

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "bench" / "cnil_squad.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--focus", type=int, default=0, help="RAG_FOCUS_TOKENS for this run (0 = whole passages)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--squad", type=Path, default=SQUAD)
    parser.add_argument("--out", type=Path, default=Path("reports/large_path.json"))
    parser.add_argument("--english", action="store_true", help="ask the questions' English versions")
    parser.add_argument("--no-translate-query", action="store_true", help="RAG_TRANSLATE_QUERY=0 for this run")
    parser.add_argument("--english-cache", type=Path, default=Path(".cache/bench/cnil_questions_en.json"))
    args = parser.parse_args()
    if not args.squad.is_file():
        print(f"skipped: {args.squad} is absent")
        return 0
    settings, pages = squad_settings(args.squad)
    settings = settings.model_copy(update={"translate_query": not args.no_translate_query})
    records = sample(load_squad(args.squad, pages), args.questions, args.seed)
    if args.english:
        if not args.english_cache.is_file():
            print(f"{args.english_cache} is absent: run benchmarks/cnil_crosslingual.py first")
            return 1
        english = json.loads(args.english_cache.read_text(encoding="utf-8"))
        records = [r.model_copy(update={"question": english[r.question]}) for r in records]
    label = "-english" * args.english + "-no-translate" * args.no_translate_query
    results = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    assistant = Assistant(settings)
    assistant.ingest(pages, show_bar=True)
    assistant.ask("Qu'est-ce que la CNIL ?")  # untimed: starts the LLM and caches the instructions
    for focus in [args.focus]:
        assistant.settings = settings.model_copy(update={"focus_tokens": focus})
        rows: list[dict[str, Any]] = []
        for record in records:
            started = time.perf_counter()
            answer = assistant.ask(record.question)
            rows.append(
                {
                    "question": record.question,
                    "first_token_s": answer.timings.get("first_token_s"),
                    "translate_s": answer.timings.get("translate_s"),
                    "search_translation": answer.search_translation,
                    "total_s": time.perf_counter() - started,
                    "new_prompt_tokens": answer.usage.get("prompt_tokens", 0) - answer.usage.get("cached_tokens", 0),
                    "abstained": answer.abstained,
                    "correct": answer_correct(answer.text, record.facts, answer.abstained),
                }
            )
            print(
                f"focus {focus}: {rows[-1]['first_token_s']:.1f} s first token, {rows[-1]['total_s']:.1f} s", flush=True
            )
        ttft = [r["first_token_s"] for r in rows]
        total = [r["total_s"] for r in rows]
        results[f"{focus}{label}"] = {
            "first_token_p50": statistics.median(ttft),
            "first_token_p95": percentile(ttft, 95),
            "total_p50": statistics.median(total),
            "total_p95": percentile(total, 95),
            "new_prompt_tokens_p50": statistics.median(r["new_prompt_tokens"] for r in rows),
            "answered": sum(not r["abstained"] for r in rows) / len(rows),
            "correct": sum(r["correct"] for r in rows) / len(rows),
            "rows": rows,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    print("| focus tokens | first token p50 / p95 | total p50 / p95 | new prompt tokens p50 | answered | correct |")
    print("|---|---|---|---|---|---|")
    for focus, r in results.items():
        print(
            f"| {focus} | {r['first_token_p50']:.1f} s / {r['first_token_p95']:.1f} s | {r['total_p50']:.1f} s / "
            f"{r['total_p95']:.1f} s | {r['new_prompt_tokens_p50']:.0f} | {r['answered']:.2f} | {r['correct']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
