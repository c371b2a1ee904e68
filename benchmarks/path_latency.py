"""Warm time to first token of the seed question through each LLM path.

    .venv/bin/python benchmarks/path_latency.py [--runs 3]

Paths: the embedded llama.cpp server in-process; the same GGUF in a separate llama.cpp
process used as a remote OpenAI-compatible server (RAG_LLM_BASE_URL); and `python -m rag serve`
in front of that remote server, called with the `openai` client (streaming). The first run of
each path reads the fixed prefix; the median of the later runs is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Q = "Why did Parler drop its suit?"
LLM_SCRIPT = """
import time
from rag.config import Settings
from rag.llm import EmbeddedServer
from rag.models import gguf_path
s = Settings()
server = EmbeddedServer(gguf_path(s.cache_dir), s.llm_ctx, s.llm_threads).start()
print(server.base_url, server.api_key, flush=True)
while True:
    time.sleep(3600)
"""


def warm(values: list[float]) -> float:
    return statistics.median(values[1:]) if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from rag import Assistant, Settings

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        a = Assistant(Settings(index_dir=index))
        a.ingest()
        results["embedded (in-process llama.cpp)"] = warm([a.ask(Q).timings["first_token_s"] for _ in range(args.runs)])
        from rag.llm import stop_embedded_server

        stop_embedded_server()
        llm = subprocess.Popen([sys.executable, "-c", LLM_SCRIPT], stdout=subprocess.PIPE, text=True)
        procs = [llm]
        try:
            base_url, key = (llm.stdout.readline() if llm.stdout else "").split()
            remote = Assistant(Settings(index_dir=index, llm_base_url=base_url, llm_api_key=key, llm_model="m"))
            results["remote llama.cpp process"] = warm(
                [remote.ask(Q).timings["first_token_s"] for _ in range(args.runs)]
            )
            env = {**os.environ, "RAG_INDEX_DIR": str(index), "RAG_LLM_BASE_URL": base_url, "RAG_LLM_API_KEY": key}
            port = "8766"
            serve = subprocess.Popen(
                [sys.executable, "-m", "rag", "serve", "--port", port], env=env, stderr=subprocess.DEVNULL
            )
            procs.append(serve)
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            from openai import OpenAI

            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=600, max_retries=0)
            firsts = []
            for _ in range(args.runs):
                start = time.perf_counter()
                first = None
                for chunk in client.chat.completions.create(
                    model="rag-assistant", messages=[{"role": "user", "content": Q}], stream=True
                ):
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter() - start
                firsts.append(first or time.perf_counter() - start)
            results["serve -> remote llama.cpp (openai client)"] = warm(firsts)
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=30)
    for path, value in results.items():
        print(f"{path}: warm first token {value:.2f} s")


if __name__ == "__main__":
    main()
