"""Build the pipelines to compare and run a whole evaluation: `evaluate(...)`.

`evaluate` is what `python -m rag eval` calls: load the set (JSONL, or a SQuAD file whose
pages are written to a cache folder and indexed in their own collection), build our
Assistant and/or the llama-index baseline over the same documents, embedder and LLM, run,
write the report folder, and optionally compare with an earlier results.json.

Documents: a set is asked over `docs` when given (`--docs`), else over the folder the set was
written for (`sets/<name>/docs/`, e.g. the poisoned corpus), else over `RAG_DOCS_DIR`. Another
folder than `RAG_DOCS_DIR` gets its own index under the cache (`docs_settings`), so the user's
index is never touched and a re-run embeds nothing new.

On a SQuAD set every question is searched (page-level retrieval metrics) but only a
sample of `limit` questions (default `SQUAD_ANSWERS`) is answered: answering all 512 with
the embedded 1.5B model would take hours on 2 cores.

`rescore_results` applies a set's current obedience checks to the answers stored in an
earlier results.json, without asking the model again (`python -m rag eval --rescore`).

`build_assistant` is the one place an Assistant is made; tests replace it with fakes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from rag.config import Settings
from rag.errors import RagError
from rag.eval.dataset import SEED_SET, EvalRecord, load_set, load_squad, sample, set_docs_folder
from rag.eval.report import compare, default_folder, short_table, write_report
from rag.eval.runner import EvalRun, Pipeline, rescore, run_eval, summarise

if TYPE_CHECKING:
    from rag.assistant import Assistant

PipelineChoice = Literal["ours", "baseline", "both"]
SQUAD_ANSWERS = 10
SQUAD_COLLECTION = "cnil"
DOCS_COLLECTION = "eval-docs"


@dataclass
class Evaluation:
    folder: Path | None
    runs: list[EvalRun]
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison: str = ""
    skipped: str = ""  # why nothing was run (e.g. the SQuAD file is absent)


def build_assistant(settings: Settings) -> Assistant:
    from rag.assistant import Assistant

    return Assistant(settings)


def build_baseline(assistant: Assistant, folder: Path) -> Pipeline:
    from rag.eval.baseline import BaselinePipeline

    return BaselinePipeline(folder, assistant.embedder, assistant.llm, context_window=assistant.settings.llm_ctx)


def _index_folder(settings: Settings) -> str:
    """One cached index per window size: vectors of two window sizes never share a collection."""
    return f"index-window{settings.window_tokens}" if settings.window_tokens else "index"


def squad_settings(squad: Path, base: Settings | None = None) -> tuple[Settings, Path]:
    """Settings for a SQuAD set's own index (cached, so a re-run embeds nothing new)."""
    base = base or Settings()
    root = base.cache_dir / "eval" / squad.stem
    pages = root / "pages"
    index = root / _index_folder(base)
    settings = base.model_copy(update={"index_dir": index, "docs_dir": pages, "collection": SQUAD_COLLECTION})
    return settings, pages


def docs_settings(docs: Path, base: Settings | None = None) -> Settings:
    """Settings to ask over another folder, with its own cached index (one per folder)."""
    base = base or Settings()
    resolved = docs.expanduser().resolve()
    stem = re.sub(r"[^\w.-]+", "_", f"{resolved.parent.name}-{resolved.name}").strip("._") or "docs"
    key = hashlib.sha1(str(resolved).encode("utf-8")).hexdigest()[:8]
    root = base.cache_dir / "eval" / f"docs-{stem}-{key}"
    index = root / _index_folder(base)
    return base.model_copy(update={"index_dir": index, "docs_dir": resolved, "collection": DOCS_COLLECTION})


def evaluate(
    set_path: str | Path | None = None,
    squad: str | Path | None = None,
    docs: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    pipeline: PipelineChoice = "ours",
    out: str | Path | None = None,
    compare_to: str | Path | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    log: TextIO | None = None,
    only: Sequence[str] = (),
) -> Evaluation:
    """Run the evaluation and write its report folder; see the module docstring. `only`: keep the
    questions whose type, language or one of whose tags is in it (e.g. ["multi_turn", "de"])."""
    if pipeline not in ("ours", "baseline", "both"):
        raise RagError(f"Unknown pipeline {pipeline!r}: use ours, baseline or both.")
    if squad is not None and docs is not None:
        raise RagError("A SQuAD set brings its own pages: give either --squad or --docs, not both.")
    answer_ids: set[str] | None = None
    if squad is not None:
        squad = Path(squad)
        if not squad.is_file():
            return Evaluation(None, [], skipped=f"{squad} is absent; nothing to evaluate.")
        settings, pages = squad_settings(squad, settings)
        records: Sequence[EvalRecord] = load_squad(squad, pages)
        answer_ids = {r.id for r in sample(records, limit or SQUAD_ANSWERS, seed)}
        set_name, run_limit = squad.name, None
    else:
        path = Path(set_path) if set_path is not None else SEED_SET
        records = load_set(path)
        settings = settings or Settings()
        docs_folder = Path(docs) if docs is not None else set_docs_folder(path)
        if docs_folder is not None:
            if not docs_folder.is_dir():
                raise RagError(f"The documents folder {str(docs_folder)!r} does not exist.")
            if docs_folder.resolve() != settings.docs_dir.expanduser().resolve():
                settings = docs_settings(docs_folder, settings)
        set_name, run_limit = path.name, limit
    if only:
        records = select(records, only)

    assistant = build_assistant(settings)
    report = assistant.ingest(settings.docs_dir, show_bar=progress)
    if log is not None:
        log.write(f"documents: {settings.docs_dir}\n")
        if report.changed:
            log.write(f"indexed {len(report.added) + len(report.updated)} documents from {settings.docs_dir}\n")
    runs: list[EvalRun] = []
    if pipeline in ("ours", "both"):
        assistant.warm()  # as the UI and `serve` do at start: the first question is not a cold-cache outlier
        runs.append(run_eval(assistant, records, "ours", run_limit, seed, progress, answer_ids, set_name))
    if pipeline in ("baseline", "both"):
        baseline = build_baseline(assistant, settings.docs_dir)
        runs.append(run_eval(baseline, records, "baseline", run_limit, seed, progress, answer_ids, set_name))

    return _finish(runs, out, f"Evaluation: {set_name}", compare_to, log)


def select(records: Sequence[EvalRecord], only: Sequence[str]) -> list[EvalRecord]:
    """The records whose type, language or one of whose tags is in `only`; RagError if none is."""
    wanted = set(only)
    kept = [r for r in records if r.type in wanted or r.language in wanted or wanted & set(r.tags)]
    if not kept:
        raise RagError(f"No question of the set has a type, language or tag among {', '.join(sorted(wanted))}.")
    return kept


def _finish(
    runs: list[EvalRun], out: str | Path | None, title: str, compare_to: str | Path | None, log: TextIO | None
) -> Evaluation:
    """Write the report folder (and compare.md against `compare_to`), log the short table, return it all."""
    folder = write_report(runs, out if out is not None else default_folder(), title=title)
    summaries = {run.pipeline: summarise(run) for run in runs}
    comparison = compare(compare_to, folder / "results.json") if compare_to is not None else ""
    if comparison:
        (folder / "compare.md").write_text(comparison, encoding="utf-8")
    if log is not None:
        log.write(short_table(summaries) + "\n")
        if comparison:
            log.write("\n" + comparison)
        log.write(f"\nreport: {folder / 'report.md'}\n")
    return Evaluation(folder, runs, summaries, comparison)


def rescore_results(
    results: str | Path,
    set_path: str | Path | None = None,
    out: str | Path | None = None,
    compare_to_old: bool = True,
    log: TextIO | None = None,
) -> Evaluation:
    """Re-apply the set's obedience checks and verdicts to an earlier run's stored answers.

    Writes a new report folder (default reports/<timestamp>) with a before/after table. Use it
    when a check was added or fixed: the 1.5B model need not answer again.
    """
    results = Path(results)
    try:
        data = json.loads(results.read_text(encoding="utf-8"))
        summaries, all_rows = data["summaries"], data["rows"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RagError(f"Cannot read the results file {str(results)!r}: {exc}") from exc
    path = Path(set_path) if set_path is not None else SEED_SET
    records = load_set(path)
    runs = []
    for name, rows in all_rows.items():
        summary = summaries.get(name, {})
        old = EvalRun(
            pipeline=name,
            set_name=str(summary.get("set") or path.name),
            rows=list(rows),
            started=str(summary.get("started") or ""),
            seconds=float(summary.get("seconds") or 0.0),
            config=dict((data.get("config") or {}).get(name) or {}),
            checks={k: summary.get(k) for k in ("documents_rendered_active", "documents_rendered_links")},
        )
        runs.append(rescore(old, records))
    title = f"Evaluation: {runs[0].set_name if runs else path.name} (rescored from {results})"
    return _finish(runs, out, title, results if compare_to_old else None, log)
