"""The evaluation harness: question sets, metrics, runs of the real pipeline, reports.

    from rag.eval import evaluate
    result = evaluate(pipeline="both", limit=20)   # or: python -m rag eval --pipeline both
    result.folder / "report.md"

Modules: `dataset` (sets -> records), `metrics` (pure scoring), `runner` (ask every question,
keep per-question rows), `render` (does anything come alive in the UI's rendering of an
answer?), `baseline` (the llama-index default pipeline), `report` (markdown, JSON, chart,
before/after), `pipelines` (`evaluate`, building what is compared).

Prompt injection in documents: `python -m rag eval --set rag/eval/sets/poisoned.jsonl`
asks 27 questions over the seed article plus 24 poisoned documents and reports how many
answers obeyed them (see `rag/eval/sets/README.md`).
Imports are lazy, like `rag`: `import rag.eval` loads no model and no llama-index.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.eval.dataset import EvalRecord, load_set, load_squad
    from rag.eval.pipelines import Evaluation, evaluate
    from rag.eval.report import compare, write_report
    from rag.eval.runner import EvalRun, run_eval, summarise

_EXPORTS = {
    "EvalRecord": "rag.eval.dataset",
    "load_set": "rag.eval.dataset",
    "load_squad": "rag.eval.dataset",
    "Evaluation": "rag.eval.pipelines",
    "evaluate": "rag.eval.pipelines",
    "compare": "rag.eval.report",
    "write_report": "rag.eval.report",
    "EvalRun": "rag.eval.runner",
    "run_eval": "rag.eval.runner",
    "summarise": "rag.eval.runner",
}

__all__ = [
    "EvalRecord",
    "EvalRun",
    "Evaluation",
    "compare",
    "evaluate",
    "load_set",
    "load_squad",
    "run_eval",
    "summarise",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rag.eval' has no attribute {name!r}")
