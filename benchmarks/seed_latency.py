"""Time to first token and total time for the seed question, median of N runs.

    .venv/bin/python benchmarks/seed_latency.py [--runs 5] [--question "..."]

Uses the real embedded stack (e5 + bundled Qwen on llama.cpp) and a temporary index of
seeds/. The LLM is started and warmed first (start-up is reported separately), so the
runs measure a question asked of a running assistant, as in the chat UI.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag import Assistant, Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--question", default="Why did Parler drop its suit?")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        assistant = Assistant(Settings(index_dir=Path(tmp) / "index"))
        report = assistant.ingest()
        t1 = time.perf_counter()
        assistant.warm()
        t2 = time.perf_counter()
        first, total, answers = [], [], []
        for _ in range(args.runs):
            answer = assistant.ask(args.question)
            first.append(answer.timings["first_token_s"])
            total.append(answer.timings["total_s"])
            answers.append(answer)
    print(
        f"ingest {report.chunks_added} chunks: {t1 - t0:.1f} s (incl. model load); LLM start + warm-up: {t2 - t1:.1f} s"
    )
    print(f"question: {args.question!r}, {args.runs} runs")
    print(f"first token: median {statistics.median(first):.2f} s  (all: {', '.join(f'{x:.2f}' for x in first)})")
    print(f"total:       median {statistics.median(total):.2f} s  (all: {', '.join(f'{x:.2f}' for x in total)})")
    print(f"answer: {answers[-1].text}")
    print(f"prompt tokens {answers[-1].usage.get('prompt_tokens')}, cached {answers[-1].usage.get('cached_tokens')}")


if __name__ == "__main__":
    main()
