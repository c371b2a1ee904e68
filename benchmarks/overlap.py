"""Questions answered while documents are being indexed, against each alone.

In one process, as in the UI when a user uploads files and asks meanwhile: an Assistant over
the first `--base-pages` Service-Public pages (the retrieval path) answers `--questions`
questions alone; then indexes `--pages` more pages alone; then removes them again (syncing
the emptied folder, so that no vector of theirs is kept) and indexes the same pages once more
in a second thread while it answers the same questions one after the other: the indexing starts
first and the questions come one second later.

Reported: each question's retrieval, first-token and total time, alone and during the
indexing; the indexing's wall time alone and during the questions, with the chunks it embedded
(the same both times, else the comparison says so). Run it on an otherwise idle machine.

    .venv/bin/python benchmarks/overlap.py [--base-pages 200] [--pages 150] [--out reports/overlap.json]

Exits 0 with a message when the Service-Public zip is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy, as rag/__init__.py does

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.assistant import Assistant  # noqa: E402
from rag.bench import SP_ZIP, extract_pages  # noqa: E402
from rag.config import Settings  # noqa: E402

QUESTIONS = [
    "Comment obtenir une carte grise ?",
    "Quels sont les droits d'un locataire en cas de travaux ?",
    "Who can get housing benefit?",
    "Comment déclarer une naissance ?",
]
KEYS = ("retrieval_s", "first_token_s", "total_s")


def ask_all(assistant: Assistant, questions: list[str]) -> list[dict[str, float]]:
    rows = []
    for question in questions:
        timings = assistant.ask(question).timings
        rows.append({k: round(float(timings[k]), 3) for k in KEYS if k in timings})
        print(f"  {question}: {rows[-1]}", flush=True)
    return rows


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    return {
        **{f"{k}_p50": round(statistics.median(r[k] for r in rows), 3) for k in KEYS},
        "total_s_sum": round(sum(r["total_s"] for r in rows), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=SP_ZIP)
    parser.add_argument("--base-pages", type=int, default=200)
    parser.add_argument("--pages", type=int, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "overlap.json")
    args = parser.parse_args(argv)
    if not args.zip.is_file():
        print(f"Overlap benchmark skipped: {args.zip} not found.")
        return 0

    work = Path(tempfile.mkdtemp(prefix="rag-overlap-"))
    try:
        pages = work / "pages"
        extract_pages(args.zip, pages, args.base_pages + args.pages)
        files = sorted(pages.iterdir())
        base, extra, parked = work / "base", work / "extra", work / "parked"
        for folder, chosen in ((base, files[: args.base_pages]), (extra, files[args.base_pages :])):
            folder.mkdir()
            for f in chosen:
                f.rename(folder / f.name)
        parked.mkdir()
        settings = Settings(docs_dir=base, index_dir=work / "index", data_dir=work / "data", cache_dir=ROOT / ".cache")
        assistant = Assistant(settings)
        started = time.perf_counter()
        assistant.ingest()
        print(f"{args.base_pages} base pages indexed in {time.perf_counter() - started:.1f} s", flush=True)
        assistant.ask(QUESTIONS[0])  # starts the model; not counted

        print("questions alone:", flush=True)
        alone = ask_all(assistant, QUESTIONS)
        started = time.perf_counter()
        first = assistant.ingest(extra)
        index_alone = time.perf_counter() - started
        print(f"{args.pages} pages indexed alone in {index_alone:.1f} s ({first.chunks_embedded} chunks embedded)")

        for f in extra.iterdir():  # sync the emptied folder: its documents and their vectors go
            f.rename(parked / f.name)
        assistant.ingest(extra)
        for f in parked.iterdir():
            f.rename(extra / f.name)

        during: dict[str, Any] = {}

        def index() -> None:
            t0 = time.perf_counter()
            during["report"] = assistant.ingest(extra)
            during["s"] = time.perf_counter() - t0

        worker = threading.Thread(target=index, name="indexing")
        worker.start()
        time.sleep(1.0)
        print("questions during the indexing:", flush=True)
        overlapped = ask_all(assistant, QUESTIONS)
        worker.join()
        second = during["report"]
        print(
            f"{args.pages} pages indexed during the questions in {during['s']:.1f} s ({second.chunks_embedded} chunks)"
        )

        result = {
            "base_pages": args.base_pages,
            "pages": args.pages,
            "questions": QUESTIONS,
            "alone": {"rows": alone, **summary(alone)},
            "during_indexing": {"rows": overlapped, **summary(overlapped)},
            "indexing_alone_s": round(index_alone, 2),
            "indexing_during_questions_s": round(during["s"], 2),
            "chunks_embedded": [first.chunks_embedded, second.chunks_embedded],
            "same_work": first.chunks_embedded == second.chunks_embedded,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(json.dumps({k: v for k, v in result.items() if k not in ("questions",)}, indent=2))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
