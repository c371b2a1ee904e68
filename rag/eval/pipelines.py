"""Build the pipelines to compare and run a whole evaluation: `evaluate(...)`.

`evaluate` is what `python -m rag eval` calls: load the set (JSONL, or a SQuAD file whose
pages are written to a cache folder and indexed in their own collection), build our
Assistant and/or the llama-index baseline over the same documents, embedder and LLM, run,
write the report folder, and optionally compare with an earlier results.json.

On a SQuAD set every question is searched (page-level retrieval metrics) but only a
sample of `limit` questions (default `SQUAD_ANSWERS`) is answered: answering all 512 with
the embedded 1.5B model would take hours on 2 cores.

`build_assistant` is the one place an Assistant is made; tests replace it with fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from rag.config import Settings
from rag.errors import RagError
from rag.eval.dataset import SEED_SET, EvalRecord, load_set, load_squad, sample
from rag.eval.report import compare, default_folder, short_table, write_report
from rag.eval.runner import EvalRun, Pipeline, run_eval, summarise

if TYPE_CHECKING:
    from rag.assistant import Assistant

PipelineChoice = Literal["ours", "baseline", "both"]
SQUAD_ANSWERS = 10
SQUAD_COLLECTION = "cnil"


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


def squad_settings(squad: Path, base: Settings | None = None) -> tuple[Settings, Path]:
    """Settings for a SQuAD set's own index (cached, so a re-run embeds nothing new)."""
    base = base or Settings()
    root = base.cache_dir / "eval" / squad.stem
    pages = root / "pages"
    settings = base.model_copy(update={"index_dir": root / "index", "docs_dir": pages, "collection": SQUAD_COLLECTION})
    return settings, pages


def evaluate(
    set_path: str | Path | None = None,
    squad: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    pipeline: PipelineChoice = "ours",
    out: str | Path | None = None,
    compare_to: str | Path | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    log: TextIO | None = None,
) -> Evaluation:
    """Run the evaluation and write its report folder; see the module docstring."""
    if pipeline not in ("ours", "baseline", "both"):
        raise RagError(f"Unknown pipeline {pipeline!r}: use ours, baseline or both.")
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
        set_name, run_limit = path.name, limit

    assistant = build_assistant(settings)
    report = assistant.ingest(settings.docs_dir, show_bar=progress)
    if log is not None and report.changed:
        log.write(f"indexed {len(report.added) + len(report.updated)} documents from {settings.docs_dir}\n")
    runs: list[EvalRun] = []
    if pipeline in ("ours", "both"):
        runs.append(run_eval(assistant, records, "ours", run_limit, seed, progress, answer_ids, set_name))
    if pipeline in ("baseline", "both"):
        baseline = build_baseline(assistant, settings.docs_dir)
        runs.append(run_eval(baseline, records, "baseline", run_limit, seed, progress, answer_ids, set_name))

    folder = write_report(runs, out if out is not None else default_folder(), title=f"Evaluation: {set_name}")
    summaries = {run.pipeline: summarise(run) for run in runs}
    comparison = ""
    if compare_to is not None:
        comparison = compare(compare_to, folder / "results.json")
        (folder / "compare.md").write_text(comparison, encoding="utf-8")
    if log is not None:
        log.write(short_table(summaries) + "\n")
        if comparison:
            log.write("\n" + comparison)
        log.write(f"\nreport: {folder / 'report.md'}\n")
    return Evaluation(folder, runs, summaries, comparison)
