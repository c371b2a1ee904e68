"""Requests/s and time to first token through `python -m rag serve` with N concurrent clients.

    .venv/bin/python benchmarks/serve_load.py [--clients 4] [--per-client 2] [--port 8765]

Starts `python -m rag serve` (embedded LLM, index in a temp folder) and drives it with the
official `openai` client, streaming, so the time to the first content chunk is measured too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

QUESTIONS = [
    "Why did Parler drop its suit?",
    "Which company hosted Parler after Amazon?",
    "Pourquoi Parler a-t-il abandonné sa plainte ?",
    "Who reported on the court documents?",
    "When did a court reject Parler's motion?",
    "What did the court say about Parler's evidence?",
    "How much money did Parler seek in damages?",
    "Which app stores removed Parler?",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    from openai import OpenAI

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RAG_INDEX_DIR": str(Path(tmp) / "index"), "RAG_DATA_DIR": str(Path(tmp) / "data")}
        cmd = [sys.executable, "-m", "rag", "serve", "--port", str(args.port), "--api-key", "k"]
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t0 = time.perf_counter()
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{args.port}/health", timeout=2)
                    break
                except OSError:
                    if time.perf_counter() - t0 > 300:
                        raise SystemExit("serve did not start") from None
                    time.sleep(0.5)
            print(f"serve ready in {time.perf_counter() - t0:.1f} s")
            client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="k", timeout=900, max_retries=0)
            client.chat.completions.create(model="rag-assistant", messages=[{"role": "user", "content": "Parler?"}])
            firsts: list[float] = []
            totals: list[float] = []
            with_sources = 0
            lock = threading.Lock()

            def worker(i: int) -> None:
                nonlocal with_sources
                for j in range(args.per_client):
                    q = QUESTIONS[(i * args.per_client + j) % len(QUESTIONS)]
                    start = time.perf_counter()
                    first = None
                    last = None
                    stream = client.chat.completions.create(
                        model="rag-assistant", messages=[{"role": "user", "content": q}], stream=True
                    )
                    for chunk in stream:
                        if first is None and chunk.choices and chunk.choices[0].delta.content:
                            first = time.perf_counter() - start
                        last = chunk
                    total = time.perf_counter() - start
                    extra = (last.model_extra or {}) if last is not None else {}
                    with lock:
                        firsts.append(first if first is not None else total)
                        totals.append(total)
                        with_sources += "sources" in extra

            started = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            n = len(totals)
            print(f"{n} requests from {args.clients} concurrent clients in {wall:.1f} s: {n / wall:.3f} req/s")
            print(f"time to first token p50 {statistics.median(firsts):.1f} s, max {max(firsts):.1f} s")
            print(f"total p50 {statistics.median(totals):.1f} s, max {max(totals):.1f} s")
            print(f"final chunk carried sources: {with_sources}/{n}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
