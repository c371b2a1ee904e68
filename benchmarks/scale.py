"""How search and start-up scale with the number of chunks: tens of thousands, not just thousands.

    .venv/bin/python benchmarks/scale.py [--copies 1,5,10] [--queries 100] [--out reports/scale.json]

The Service-Public pages (../shared/bench/service_public_fiches_txt.zip, 3,589 French pages;
skips when absent) are chunked as the assistant does (160 tokens), then stored `copies` times
over, each copy's chunks made distinct by a leading "Copie k." (so nothing is deduplicated),
in a fresh Chroma collection in a temporary folder. Vectors are hashed word vectors
(`HashEmbedder`, 384 dimensions), not e5: embedding 60,000 chunks with e5 would take an hour,
and what is measured here does not depend on what the vectors mean. An e5 query embedding
adds ~15 ms to each search (see the bench's search rows).

For each size, in this process: the time to open the store and build the retriever, four ways:
with the BM25 index built in memory only (what every start-up paid before the index was saved),
built and then saved (what the first start-up and every change of the documents pay), and read
back from the saved index with all chunks read back from Chroma, and with both read back from
their copies (what a restart pays since the chunks are copied, see `rag.retrieve.stored_chunks`);
the time to read the sync manifest (every chunk's metadata); the saved index's size on disk; the
hybrid search latency (p50 / p95 over the CNIL questions, score fusion, top 5) on the retriever
read back; and the process's peak RSS. Writes JSON to --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.chunking import chunk_document
from rag.embeddings import HashEmbedder
from rag.retrieve import Retriever
from rag.store import ChunkStore
from rag.tokens import count_tokens
from rag.types import Chunk, Document

BENCH = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
SP_ZIP = BENCH / "service_public_fiches_txt.zip"
CNIL = BENCH / "cnil_squad.json"


def sp_chunks() -> list[Chunk]:
    chunks: list[Chunk] = []
    with zipfile.ZipFile(SP_ZIP) as archive:
        for name in sorted(n for n in archive.namelist() if n.endswith(".txt")):
            text = archive.read(name).decode("utf-8", errors="replace")
            if text.strip():
                doc = Document(path=name, title=name, text=text, sha256=name, source="/sp")
                chunks.extend(chunk_document(doc, 160))
    return chunks


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def copy_of(chunks: list[Chunk], k: int) -> list[Chunk]:
    if k == 0:
        return chunks
    out = []
    for c in chunks:
        text = f"Copie {k}. {c.text}"
        out.append(
            replace(c, id=f"{c.id}-copy{k}", doc_path=f"copy{k}/{c.doc_path}", text=text, tokens=count_tokens(text))
        )
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", default="1,5,10", help="sizes to measure, in copies of the Service-Public set")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("reports/scale.json"))
    args = parser.parse_args()
    if not SP_ZIP.exists() or not CNIL.exists():
        print(f"skipped: {SP_ZIP} or {CNIL} is absent")
        return 0
    sizes = sorted(int(x) for x in args.copies.split(","))
    questions = [
        qa["question"]
        for article in json.loads(CNIL.read_text(encoding="utf-8"))["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ][: args.queries]
    started = time.perf_counter()
    base = sp_chunks()
    print(f"{len(base)} Service-Public chunks in {time.perf_counter() - started:.0f} s", flush=True)
    embedder = HashEmbedder(dim=384)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = ChunkStore("scale", path=Path(tmp), embedder_name=embedder.name)

        def open_retriever(bm25_dir: Path | None = None, chunks_dir: Path | None = None) -> Retriever:
            """What a start-up does: the store opened afresh, the retriever built over it."""
            reopened = ChunkStore("scale", path=Path(tmp), embedder_name=embedder.name)
            return Retriever(
                reopened,
                embedder,
                candidates=30,
                dense_weight=1.0,
                bm25_weight=0.25,
                bm25_dir=bm25_dir,
                chunks_dir=chunks_dir,
            )

        stored = 0
        for copies in sizes:
            t0 = time.perf_counter()
            for k in range(stored, copies):
                chunks = copy_of(base, k)
                store.upsert(chunks, embedder.embed_passages([c.text for c in chunks]))
            store.settle()  # as a sync does once the store is whole: its contents get a name
            stored = copies
            write_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            unsaved = open_retriever()
            unsaved_s = time.perf_counter() - t0
            del unsaved
            gc.collect()
            bm25_dir = Path(tmp) / f"bm25-{copies}"
            t0 = time.perf_counter()
            open_retriever(bm25_dir)
            saving_s = time.perf_counter() - t0
            gc.collect()
            t0 = time.perf_counter()
            open_retriever(bm25_dir)
            saved_s = time.perf_counter() - t0
            gc.collect()
            chunks_dir = Path(tmp) / f"chunks-{copies}"
            open_retriever(bm25_dir, chunks_dir)  # reads the store, keeps a copy of the chunks
            gc.collect()
            t0 = time.perf_counter()
            retriever = open_retriever(bm25_dir, chunks_dir)
            copy_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            store.manifest()
            manifest_s = time.perf_counter() - t0
            latencies = []
            for question in questions:
                t0 = time.perf_counter()
                hits = retriever.search(question, 5)
                latencies.append(time.perf_counter() - t0)
                assert hits, "a search found nothing"
            row = {
                "chunks": len(retriever.chunks),
                "copies": copies,
                "write_s": round(write_s, 1),
                "open_and_build_s": round(unsaved_s, 2),  # no saved BM25 index: built in memory only
                "open_build_and_save_s": round(saving_s, 2),  # built, then saved into bm25_dir
                "open_saved_s": round(saved_s, 2),  # the saved BM25 index read back, the chunks from Chroma
                "open_saved_copy_s": round(copy_s, 2),  # a restart: both read back from their copies
                "bm25_saved_mb": round(folder_mb(bm25_dir)),
                "chunks_copy_mb": round(folder_mb(chunks_dir)),
                "manifest_s": round(manifest_s, 2),  # what a sync reads first: every chunk's metadata
                "search_p50_ms": round(1000 * statistics.median(latencies), 1),
                "search_p95_ms": round(1000 * sorted(latencies)[int(0.95 * (len(latencies) - 1))], 1),
                "peak_rss_mb": round(peak_rss_mb()),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"embedder": "hash-384", "queries": len(questions), "rows": results}, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
