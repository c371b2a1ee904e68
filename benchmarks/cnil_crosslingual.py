"""Cross-lingual retrieval on the French CNIL pages: English questions, searched as asked and
searched with their translation back into French (the assistant's `translate_query`).

The CNIL set has French questions only. Each is put into English by the bundled LLM (the
project's `TRANSLATE` prompt): a stand-in for a reader asking in English, and a lossy one
(the small model drops details, or keeps French words as names), so the French questions'
own scores are the ceiling, not the target. Then, through the real code:
- `Assistant.search_translation(english)`: the LLM's translation into the documents' language;
- `Retriever.search(english, k)` against `Retriever.search(english, k, translation)`.

Scored at page level as `cnil_retrieval.py` does (hit@1/3/5, MRR over the first 10 pages),
with the questions each variant gains and loses against searching the English as asked, and
the translation's time per question. The index is built as `cnil_retrieval.py` builds it
(default chunking and windows; e5 vectors from its cache). The English questions are cached
in `.cache/bench/cnil_questions_en.json` (a first run asks the LLM ~500 times, ~6 min here);
the translations back are always asked again, since they are what is measured. Usage:

    .venv/bin/python benchmarks/cnil_crosslingual.py [--limit N] [--out reports/cnil_crosslingual.json]

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
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported anywhere
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cnil_retrieval import DATA, DEPTH, build_index, gold_ranks, load_dataset, page_ranking, rank_metrics  # noqa: E402
from embed_cache import CachedE5  # noqa: E402

from rag import prompts  # noqa: E402
from rag.assistant import Assistant  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.llm import Message  # noqa: E402


def versus(r: list[int], base: list[int], cut: int) -> dict[str, int]:
    hit = lambda x: 0 < x <= cut  # noqa: E731
    return {
        "gained": sum(1 for a, b in zip(r, base, strict=True) if hit(a) and not hit(b)),
        "lost": sum(1 for a, b in zip(r, base, strict=True) if hit(b) and not hit(a)),
    }


def english_questions(assistant: Assistant, questions: list[str], cache: Path) -> dict[str, str]:
    known: dict[str, str] = json.loads(cache.read_text(encoding="utf-8")) if cache.exists() else {}
    missing = [q for q in dict.fromkeys(questions) if q not in known]
    for i, question in enumerate(missing, 1):
        text = prompts.TRANSLATE.format(language="English", text=question)
        messages: list[Message] = [{"role": "user", "content": text}]
        known[question] = assistant.llm.complete(messages, 80).text.strip().splitlines()[0].strip()
        if i % 25 == 0 or i == len(missing):
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known, ensure_ascii=False, indent=0), encoding="utf-8")
            print(f"  {i} / {len(missing)} questions put into English", flush=True)
    return known


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (0 = all 512)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "cnil_crosslingual.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.data.is_file():
        print(f"CNIL cross-lingual benchmark skipped: {args.data} not found.")
        return 0

    ds = load_dataset(args.data)
    if args.limit:
        ds.questions = ds.questions[: args.limit]
    settings = Settings()
    embedder = CachedE5(args.cache_dir / "e5")
    with tempfile.TemporaryDirectory(prefix="cnil-xl-") as tmp:
        built = build_index(
            ds, Path(tmp), settings.chunk_tokens, embedder, cold=False, window_tokens=settings.window_tokens
        )
        settings = Settings(index_dir=Path(tmp) / "unused", data_dir=Path(tmp) / "data", full_context_tokens=0)
        assistant = Assistant(settings, embedder=embedder, store=built.store)
        retriever = assistant.retriever
        print(
            f"{len(ds.pages)} pages, {built.chunks} chunks (documents' language: {retriever.language}), "
            f"{len(ds.questions)} questions",
            flush=True,
        )

        french = [q for q, _ in ds.questions]
        english = english_questions(assistant, french, args.cache_dir / "cnil_questions_en.json")
        asked = [english[q] for q in french]
        translations, seconds = [], []
        for i, question in enumerate(asked, 1):
            t = time.perf_counter()
            translations.append(assistant.search_translation(question))
            seconds.append(time.perf_counter() - t)
            if i % 50 == 0:
                print(f"  {i} / {len(asked)} translated back", flush=True)

        def pages(queries: Sequence[str], with_translation: Sequence[str] | None = None) -> list[list[str]]:
            out = []
            for i, query in enumerate(queries):
                hits = retriever.search(query, DEPTH, with_translation[i] if with_translation else "")
                out.append(page_ranking(h.chunk.doc_path for h in hits))
            return out

        runs = {
            "French, as in the set (the ceiling)": gold_ranks(pages(french), ds),
            "English, as asked (translate_query off)": gold_ranks(pages(asked), ds),
            "English + its French translation (default)": gold_ranks(pages(asked, translations), ds),
            "the French translation alone": gold_ranks(
                pages([t or a for t, a in zip(translations, asked, strict=True)]), ds
            ),
        }
        embedder.save()

    base = runs["English, as asked (translate_query off)"]
    results = {
        name: {**rank_metrics(r), "vs_english_hit@1": versus(r, base, 1), "vs_english_hit@5": versus(r, base, 5)}
        for name, r in runs.items()
    }
    out = {
        "dataset": {"path": str(args.data), "pages": len(ds.pages), "questions": len(ds.questions)},
        "results": results,
        "translation_s": {"median": statistics.median(seconds), "p95": sorted(seconds)[int(0.95 * (len(seconds) - 1))]},
        "unusable_translations": sum(1 for t in translations if not t),
        "examples": [
            {"french": f, "english": a, "back": t}
            for f, a, t in list(zip(french, asked, translations, strict=True))[:10]
        ],
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")

    print(f"\n## CNIL pages, questions in English ({len(ds.questions)} questions)\n")
    print("| questions searched | hit@1 | hit@3 | hit@5 | MRR | hit@5 gained / lost vs English as asked |")
    print("|---|---|---|---|---|---|")
    for name, m in results.items():
        g = m["vs_english_hit@5"]
        scores = " | ".join(f"{m[k]:.3f}" for k in ("hit@1", "hit@3", "hit@5", "mrr"))
        print(f"| {name} | {scores} | +{g['gained']} / -{g['lost']} |")
    ts = out["translation_s"]
    print(
        f"\nTranslation back: median {ts['median']:.2f} s, p95 {ts['p95']:.2f} s; "
        f"{out['unusable_translations']} unusable (searched without). Written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
