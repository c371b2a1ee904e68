"""Page-level retrieval benchmark on the French CNIL QA set (SQuAD format, PIAF).

Runs the real pipeline path: every page's text is written as a .txt file into a temporary
folder, synced into a temporary Chroma index with `sync_folder`, and searched with
`Retriever.search`. Page titles are never indexed (the title *is* the question).

Chunk hits are turned into a page ranking by keeping each page's first occurrence; a
question counts as answered at rank r if the page at rank r has the same text as the
question's page (ten pages duplicate another page's text). Reported: hit@1, hit@3, hit@5
and MRR (over the first 10 distinct pages) for the dense embedder alone (`--embedder e5`, the
default, or `use`: Google USE multilingual v3), BM25 alone and the fused
retriever, ingestion throughput of the first (cold) sync, and fused-search latency.

Vectors are cached on disk by text sha256 (`.cache/bench/e5/`, `.cache/bench/use/`), so `--sweep` over chunk
sizes and fusion weights embeds each distinct text once. Usage:

    .venv/bin/python benchmarks/cnil_retrieval.py [--embedder e5|use] [--chunk-tokens N] [--dense-weight W]
        [--bm25-weight W] [--candidates N] [--sweep] [--out reports/cnil_retrieval.json]

(`--out` defaults to reports/cnil_retrieval.json for e5, reports/cnil_retrieval-use.json for use.)

Exits 0 with a message when the data file is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported anywhere
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from embed_cache import CachedE5  # noqa: E402

from rag.config import Settings  # noqa: E402
from rag.embeddings import Embedder  # noqa: E402
from rag.ingest import sync_folder  # noqa: E402
from rag.retrieve import RRF_K, Retriever  # noqa: E402
from rag.store import ChunkStore, index_name  # noqa: E402

DATA = Path("/work/shared/bench/cnil_squad.json")
DEPTH = 50  # chunks retrieved per question: enough to fill 10 distinct pages
PAGES = 10  # MRR is computed over the first 10 distinct pages
DEEP = 100  # per-retriever depth of the rankings kept for the offline fusion variants

SWEEP_CHUNKS = (160, 250, 100)  # cheapest first: 160 is the main run's index
SWEEP_BM25 = (0.0, 0.3, 0.5, 0.7, 1.0)
SWEEP_CANDIDATES = (30, 50)


# -- data ---------------------------------------------------------------------------------


@dataclass
class Dataset:
    pages: list[tuple[str, str]]  # (file name, text)
    questions: list[tuple[str, str]]  # (question, file name of its page)
    canon: dict[str, str]  # file name -> file name of the first page with the same text

    @property
    def duplicate_pages(self) -> int:
        return sum(1 for name, first in self.canon.items() if name != first)


def load_dataset(path: Path) -> Dataset:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    pages: list[tuple[str, str]] = []
    questions: list[tuple[str, str]] = []
    canon: dict[str, str] = {}
    first_by_text: dict[str, str] = {}
    for i, page in enumerate(data):
        name = f"page{i:03d}.txt"
        # index only the page text: the title is the question itself
        text = "\n\n".join(p["context"] for p in page["paragraphs"])
        pages.append((name, text))
        canon[name] = first_by_text.setdefault(text.strip(), name)
        for para in page["paragraphs"]:
            for qa in para["qas"]:
                questions.append((qa["question"], name))
    return Dataset(pages, questions, canon)


# -- metrics ------------------------------------------------------------------------------


def page_ranking(doc_paths: Iterable[str], limit: int = PAGES) -> list[str]:
    out: list[str] = []
    for path in doc_paths:
        if path not in out:
            out.append(path)
            if len(out) == limit:
                break
    return out


def gold_ranks(rankings: Sequence[list[str]], ds: Dataset) -> list[int]:
    """Per question, the rank of its page in its ranking (0 = not there)."""
    ranks = []
    for ranking, (_, gold) in zip(rankings, ds.questions, strict=True):
        target = ds.canon[gold]
        ranks.append(next((r for r, page in enumerate(ranking, 1) if ds.canon.get(page) == target), 0))
    return ranks


def rank_metrics(ranks: Sequence[int]) -> dict[str, float]:
    n = len(ranks)
    return {
        "hit@1": sum(1 for r in ranks if r == 1) / n,
        "hit@3": sum(1 for r in ranks if 0 < r <= 3) / n,
        "hit@5": sum(1 for r in ranks if 0 < r <= 5) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
    }


def score(rankings: Sequence[list[str]], ds: Dataset) -> dict[str, float]:
    return {
        **rank_metrics(gold_ranks(rankings, ds)),
        "short_lists": sum(1 for ranking in rankings if len(ranking) < PAGES),  # fewer than 10 pages found
    }


# -- index --------------------------------------------------------------------------------


@dataclass
class Built:
    chunk_tokens: int
    store: ChunkStore
    chunks: int
    tokens: int
    seconds: float
    embedded: int  # chunks the sync embedded (the rest were duplicate texts)
    cold: bool  # embedded with the real model, no vector cache


def build_index(
    ds: Dataset, workdir: Path, chunk_tokens: int, embedder: Embedder, cold: bool, window_tokens: int = 0
) -> Built:
    folder = workdir / "pages"
    if not folder.exists():
        folder.mkdir(parents=True)
        for name, text in ds.pages:
            (folder / name).write_text(text, encoding="utf-8")
    store = ChunkStore(
        path=workdir / f"index-{chunk_tokens}-w{window_tokens}", embedder_name=index_name(embedder.name, window_tokens)
    )
    report = sync_folder(folder, store, embedder, chunk_tokens, window_tokens=window_tokens)
    if report.skipped:
        print(f"warning: {len(report.skipped)} pages skipped by the loader: {list(report.skipped)[:3]}")
    chunks = store.chunks()
    return Built(
        chunk_tokens=chunk_tokens,
        store=store,
        chunks=len(chunks),
        tokens=sum(c.tokens for c in chunks),
        seconds=report.seconds,
        embedded=report.chunks_embedded,
        cold=cold,
    )


# -- retrieval ----------------------------------------------------------------------------


@dataclass
class Lists:
    """Per question: the chunk ids of one retriever's ranking, and chunk id -> page."""

    ids: list[list[str]]
    page_of: dict[str, str]


def run_retriever(retriever: Retriever, ds: Dataset, k: int) -> tuple[list[list[str]], list[float], dict[str, str]]:
    """Chunk-id rankings for every question through `Retriever.search`, with per-query ms."""
    ids, times, page_of = [], [], {}
    for question, _ in ds.questions:
        t = time.perf_counter()
        hits = retriever.search(question, k)
        times.append((time.perf_counter() - t) * 1000)
        ids.append([h.chunk.id for h in hits])
        for h in hits:
            page_of[h.chunk.id] = h.chunk.doc_path
    return ids, times, page_of


def pages_of(ids: Sequence[list[str]], page_of: dict[str, str]) -> list[list[str]]:
    return [page_ranking(page_of[i] for i in row) for row in ids]


def fuse(
    dense: list[str], bm25: list[str], candidates: int, dw: float, bw: float, page_of: dict[str, str], mode: str
) -> list[str]:
    """Offline fusion of two deep rankings (truncated to `candidates`), returning pages.

    mode "chunk": Retriever's weighted RRF over chunks, then first occurrence per page
                  (= page score is its best chunk's fused score);
    mode "sum2":  page score = sum of its two best chunks' fused RRF scores;
    mode "page":  each ranking is first reduced to pages (a page's rank = its best chunk's
                  rank in that ranking), then weighted RRF over page ranks.
    """
    runs = [(dense[:candidates], dw), (bm25[:candidates], bw)]
    if mode == "page":
        scores: dict[str, float] = {}
        for ranking, weight in runs:
            if weight <= 0:
                continue
            for rank, page in enumerate(page_ranking((page_of[i] for i in ranking), limit=10**9), 1):
                scores[page] = scores.get(page, 0.0) + weight / (RRF_K + rank)
        return sorted(scores, key=lambda p: scores[p], reverse=True)[:PAGES]
    chunk_scores: dict[str, float] = {}
    for ranking, weight in runs:
        if weight <= 0:
            continue
        for rank, cid in enumerate(ranking, 1):
            chunk_scores[cid] = chunk_scores.get(cid, 0.0) + weight / (RRF_K + rank)
    ordered = sorted(chunk_scores, key=lambda i: chunk_scores[i], reverse=True)[:DEPTH]
    if mode == "chunk":
        return page_ranking(page_of[i] for i in ordered)
    per_page: dict[str, list[float]] = {}
    for cid in ordered:
        per_page.setdefault(page_of[cid], []).append(chunk_scores[cid])
    page_scores = {p: sum(sorted(s, reverse=True)[:2]) for p, s in per_page.items()}
    return sorted(page_scores, key=lambda p: page_scores[p], reverse=True)[:PAGES]


@dataclass
class Deep:
    dense: list[list[str]]
    bm25: list[list[str]]
    page_of: dict[str, str]


def deep_lists(built: Built, embedder: Embedder, ds: Dataset) -> Deep:
    dense_r = Retriever(built.store, embedder, candidates=DEEP, dense_weight=1.0, bm25_weight=0.0)
    bm25_r = Retriever(built.store, embedder, candidates=DEEP, dense_weight=0.0, bm25_weight=1.0)
    dense, _, p1 = run_retriever(dense_r, ds, DEEP)
    bm25, _, p2 = run_retriever(bm25_r, ds, DEEP)
    return Deep(dense, bm25, {**p1, **p2})


def evaluate_config(
    built: Built,
    deep: Deep,
    embedder: Embedder,
    ds: Dataset,
    candidates: int,
    dw: float,
    bw: float,
    fusion: str = "score",
) -> dict:
    """The real fused path, plus the offline rank-fusion variants on the same weights."""
    retriever = Retriever(built.store, embedder, candidates=candidates, dense_weight=dw, bm25_weight=bw, fusion=fusion)
    ids, times, page_of = run_retriever(retriever, ds, DEPTH)
    page_of = {**deep.page_of, **page_of}
    real = pages_of(ids, page_of)
    row: dict = {
        "chunk_tokens": built.chunk_tokens,
        "candidates": candidates,
        "dense_weight": dw,
        "bm25_weight": bw,
        "fusion": fusion,
        **score(real, ds),
        "search_ms_median": statistics.median(times),
    }
    variants = {}
    for mode in ("chunk", "sum2", "page"):
        sim = [fuse(d, b, candidates, dw, bw, page_of, mode) for d, b in zip(deep.dense, deep.bm25, strict=True)]
        variants[mode] = score(sim, ds)
        if mode == "chunk" and fusion == "rrf":  # how well the offline fusion reproduces Retriever.search
            row["offline_agreement"] = sum(a == b for a, b in zip(sim, real, strict=True)) / len(real)
    row["aggregation"] = variants
    return row


def alone(deep: Deep, ds: Dataset, dense_name: str = "e5") -> dict[str, dict]:
    return {
        dense_name: score(pages_of([r[:DEPTH] for r in deep.dense], deep.page_of), ds),
        "bm25": score(pages_of([r[:DEPTH] for r in deep.bm25], deep.page_of), ds),
    }


def latency(
    built: Built, embedder: CachedE5, ds: Dataset, candidates: int, dw: float, bw: float, n: int, fusion: str
) -> dict:
    """Fused `search` per query, with the query embedded by the real model (not the cache)."""
    retriever = Retriever(built.store, embedder, candidates=candidates, dense_weight=dw, bm25_weight=bw, fusion=fusion)
    embedder.bypass_queries = True
    try:
        retriever.search("Quelles sont les obligations d'un responsable de traitement ?", DEPTH)  # warm up
        times = []
        for question, _ in ds.questions[:n]:
            t = time.perf_counter()
            retriever.search(question, DEPTH)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        embedder.bypass_queries = False
    times.sort()
    return {
        "queries": len(times),
        "median_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        "k": DEPTH,
        "includes_query_embedding": True,
    }


# -- reporting ----------------------------------------------------------------------------


def fmt(m: dict) -> str:
    return f"{m['hit@1']:.3f} | {m['hit@3']:.3f} | {m['hit@5']:.3f} | {m['mrr']:.3f}"


def main_table(results: dict) -> str:
    lines = ["| retriever | hit@1 | hit@3 | hit@5 | MRR |", "|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {fmt(m)} |")
    return "\n".join(lines)


def sweep_table(rows: list[dict]) -> str:
    lines = [
        "| chunk | cand | w_dense | w_bm25 | hit@1 | hit@3 | hit@5 | MRR "
        "| hit@5 sum2 | hit@5 page-RRF | MRR page-RRF |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        agg = r.get("aggregation", {})
        extra = (
            f"{agg['sum2']['hit@5']:.3f} | {agg['page']['hit@5']:.3f} | {agg['page']['mrr']:.3f}"
            if agg
            else "- | - | -"
        )
        label = r.get("label", "")
        lines.append(
            f"| {r['chunk_tokens']} | {r.get('candidates', '-')} | {r.get('dense_weight', '-')} | "
            f"{r.get('bm25_weight', '-')}{label} | {fmt(r)} | {extra} |"
        )
    return "\n".join(lines)


def ingest_stats_file(cache: Path, kind: str = "e5") -> Path:
    return cache / ("ingest_stats.json" if kind == "e5" else f"ingest_stats-{kind}.json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--chunk-tokens", type=int, default=160)
    parser.add_argument(
        "--window-tokens",
        type=int,
        default=Settings.model_fields["window_tokens"].default,
        help="RAG_WINDOW_TOKENS: chunk vectors also embed their window of neighbours (0 = off)",
    )
    parser.add_argument("--fusion", choices=["score", "rrf"], default=Settings.model_fields["fusion"].default)
    parser.add_argument("--dense-weight", type=float, default=Settings.model_fields["dense_weight"].default)
    parser.add_argument("--bm25-weight", type=float, default=Settings.model_fields["bm25_weight"].default)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--sweep", action="store_true", help="also sweep chunk sizes, BM25 weights, candidates")
    parser.add_argument(
        "--sweep-chunks", default=",".join(map(str, SWEEP_CHUNKS)), help="chunk sizes to sweep, comma-separated"
    )
    parser.add_argument("--latency-queries", type=int, default=100, help="queries timed with the real model")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "bench")
    parser.add_argument("--embedder", choices=["e5", "use"], default="e5", help="dense model (RAG_EMBEDDER)")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: see the module docstring)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if not args.data.is_file():
        print(f"CNIL benchmark skipped: {args.data} not found.")
        return 0

    ds = load_dataset(args.data)
    print(f"{len(ds.pages)} pages ({ds.duplicate_pages} duplicate texts), {len(ds.questions)} questions")
    kind = args.embedder
    if args.out is None:
        args.out = ROOT / "reports" / ("cnil_retrieval.json" if kind == "e5" else f"cnil_retrieval-{kind}.json")
    embedder = CachedE5(args.cache_dir / kind, kind=kind)
    stats_file = ingest_stats_file(args.cache_dir, kind)
    cold_stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}

    def stats_key(chunk_tokens: int) -> str:
        """First-sync figures are kept per chunk size and window size (windows embed more text)."""
        return f"{chunk_tokens}" if not args.window_tokens else f"{chunk_tokens}+window{args.window_tokens}"

    with tempfile.TemporaryDirectory(prefix="cnil-bench-") as tmp:
        work = Path(tmp)
        builts: dict[int, Built] = {}

        def get_built(n: int) -> Built:
            if n not in builts:
                misses = embedder.misses
                t = time.perf_counter()
                built = build_index(ds, work, n, embedder, cold=False, window_tokens=args.window_tokens)
                fresh = embedder.misses - misses
                # a sync whose every chunk was embedded by the real model is a first (cold) run
                built.cold = fresh > 0 and fresh == built.embedded
                print(
                    f"indexed chunk_tokens={n}: {built.chunks} chunks in {time.perf_counter() - t:.1f}s, "
                    f"{fresh} embedded by {kind}, {built.embedded - fresh} from the vector cache",
                    flush=True,
                )
                if built.cold and stats_key(n) not in cold_stats:
                    cold_stats[stats_key(n)] = {
                        "chunks": built.chunks,
                        "chunks_embedded": built.embedded,
                        "tokens": built.tokens,
                        "seconds": built.seconds,
                        "chunks_per_s": built.chunks / built.seconds,
                        "tokens_per_s": built.tokens / built.seconds,
                        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "load_avg_1min": os.getloadavg()[0],
                    }
                    stats_file.parent.mkdir(parents=True, exist_ok=True)
                    stats_file.write_text(json.dumps(cold_stats, indent=2))
                builts[n] = built
            return builts[n]

        deeps: dict[int, Deep] = {}

        def get_deep(n: int) -> Deep:
            if n not in deeps:
                deeps[n] = deep_lists(get_built(n), embedder, ds)
            return deeps[n]

        # main configuration
        n = args.chunk_tokens
        built = get_built(n)
        deep = get_deep(n)
        fused = evaluate_config(
            built, deep, embedder, ds, args.candidates, args.dense_weight, args.bm25_weight, args.fusion
        )
        results = {**alone(deep, ds, kind), "fused": {k: fused[k] for k in ("hit@1", "hit@3", "hit@5", "mrr")}}
        if args.fusion == "score":  # the same weights, by ranks (offline, as Retriever's rrf)
            results["fused by ranks (RRF)"] = fused["aggregation"]["chunk"]
        for mode, label in (("sum2", "RRF, page = sum of top-2 chunks"), ("page", "RRF, page-level")):
            results[label] = fused["aggregation"][mode]
        lat = latency(
            built, embedder, ds, args.candidates, args.dense_weight, args.bm25_weight, args.latency_queries, args.fusion
        )

        sweep: list[dict] = []
        partial = args.out.with_suffix(".sweep-partial.json")
        if args.sweep:
            partial.parent.mkdir(parents=True, exist_ok=True)
            for size in (int(x) for x in args.sweep_chunks.split(",") if x.strip()):
                d = get_deep(size)
                for name, m in alone(d, ds, kind).items():
                    sweep.append({"chunk_tokens": size, "label": f" ({name} alone, {DEPTH} chunks)", **m})
                for cand in SWEEP_CANDIDATES:
                    for bw in SWEEP_BM25:
                        t = time.perf_counter()
                        row = evaluate_config(get_built(size), d, embedder, ds, cand, 1.0, bw, args.fusion)
                        sweep.append(row)
                        partial.write_text(json.dumps(sweep, indent=2))  # survives an interrupted sweep
                        print(
                            f"  chunk={size} cand={cand} bm25={bw}: hit@1 {row['hit@1']:.3f} "
                            f"hit@5 {row['hit@5']:.3f} mrr {row['mrr']:.3f} ({time.perf_counter() - t:.0f}s)",
                            flush=True,
                        )

    ingest = cold_stats.get(stats_key(n))
    ingest_all = {size: cold_stats[size] for size in sorted(cold_stats)}
    config = {
        "embedder": embedder.name,
        "chunk_tokens": n,
        "window_tokens": args.window_tokens,
        "dense_weight": args.dense_weight,
        "bm25_weight": args.bm25_weight,
        "fusion": args.fusion,
        "candidates": args.candidates,
        "chunks_retrieved": DEPTH,
        "pages_ranked": PAGES,
    }
    out = {
        "dataset": {
            "path": str(args.data),
            "pages": len(ds.pages),
            "questions": len(ds.questions),
            "duplicate_pages": ds.duplicate_pages,
        },
        "config": config,
        "index": {"chunks": built.chunks, "tokens": built.tokens},
        "results": results,
        "fused_detail": fused,
        "ingest_first_run": ingest,
        "ingest_first_run_by_chunk_tokens": ingest_all,
        "latency_fused": lat,
        "sweep": sweep,
        "embedding_cache": {"hits": embedder.hits, "misses": embedder.misses},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False))

    print(
        f"\n## CNIL retrieval (chunk_tokens={n}, candidates={args.candidates}, "
        f"{args.fusion} fusion, weights dense {args.dense_weight} / bm25 {args.bm25_weight}; {built.chunks} chunks)\n"
    )
    print(main_table(results))
    if ingest:
        print(
            f"\nIngestion (first, uncached sync, {stats_key(n)}): {ingest['chunks']} chunks, {ingest['tokens']} tokens "
            f"in {ingest['seconds']:.1f}s = {ingest['chunks_per_s']:.2f} chunks/s, "
            f"{ingest['tokens_per_s']:.0f} tokens/s (load avg {ingest['load_avg_1min']:.1f})"
        )
    for size, st in ingest_all.items():
        if size != stats_key(n):
            print(
                f"  (first sync at {size} tokens: {st['chunks']} chunks, {st['chunks_per_s']:.2f} chunks/s, "
                f"{st['tokens_per_s']:.0f} tokens/s)"
            )
    print(
        f"Fused search latency (real {kind} query embedding, {lat['queries']} queries, k={DEPTH}): "
        f"median {lat['median_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms; "
        f"without query embedding: median {fused['search_ms_median']:.1f} ms"
    )
    if "offline_agreement" in fused:
        print(f"Offline fusion reproduces Retriever.search on {fused['offline_agreement']:.1%} of questions")
    if sweep:
        print("\n## Sweep (dense weight 1.0; page-level hit@k / MRR; sum2 and page-RRF are offline variants)\n")
        print(sweep_table(sweep))
    print(f"\nJSON written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
