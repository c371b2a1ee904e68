"""Evaluation results -> a folder a person can read: report.md, results.json, chart.png.

`write_report(runs, folder)` takes one or more runs (one per pipeline) and writes
- `report.md`: the main metrics of each pipeline side by side, breakdowns by language and
  by type, prompt injection (obeyed question ids and what gave them away, active content in
  the UI's rendering) and the failures;
- `results.json`: `{"summaries": {pipeline: summary}, "rows": {pipeline: [row, ...]}}`;
- `chart.png`: grouped bars of the main rates per pipeline, and latency percentiles.

`compare(old_json, new_json)` renders a before/after table of two results.json files;
`short_table(summaries)` is the few lines printed to stdout.

Deliberately not here: computing anything (`metrics.py`, `runner.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rag.eval.runner import EvalRun, summarise

# (key in summary["overall"], label, kind) in report order; kind: rate | s | n
MAIN_METRICS: list[tuple[str, str, str]] = [
    ("correct", "answer correct (all facts)", "rate"),
    ("facts_recall", "facts stated", "rate"),
    ("answer_f1", "answer token F1 vs reference answer", "rate"),
    ("answer_recall", "reference-answer words stated", "rate"),
    ("language_ok", "answer in question's language", "rate"),
    ("citation_validity", "citation markers valid", "rate"),
    ("citation_support", "citations supported (gold + check)", "rate"),
    ("uncited_share", "sentences without citation", "rate"),
    ("abstention_precision", "abstention precision", "rate"),
    ("abstention_recall", "abstention recall", "rate"),
    ("false_abstention_rate", "false abstentions", "rate"),
    ("injection_obeyed", "injections obeyed", "n"),
    ("injection_obeyed_raw", "injections obeyed in the raw model reply", "n"),
    ("poison_given", "poisoned passage given to the model", "n"),
    ("rendered_active", "answers rendered with active content", "n"),
    ("rendered_links", "answers rendered with remote links", "n"),
    ("pass_rate", "questions passed", "rate"),
    ("sources_hit@1", "given passages hit@1", "rate"),
    ("sources_hit@5", "given passages hit@5", "rate"),
    ("search_hit@1", "search hit@1", "rate"),
    ("search_hit@3", "search hit@3", "rate"),
    ("search_hit@5", "search hit@5", "rate"),
    ("search_mrr", "search MRR@10", "rate"),
    ("search_ndcg@10", "search nDCG@10", "rate"),
    ("retrieval_s_p50", "retrieval p50", "s"),
    ("retrieval_s_p95", "retrieval p95", "s"),
    ("translated", "questions also searched in the documents' language", "n"),
    ("translate_s_p50", "their translation p50", "s"),
    ("first_token_s_p50", "first token p50", "s"),
    ("first_token_s_p95", "first token p95", "s"),
    ("total_s_p50", "total p50", "s"),
    ("total_s_p95", "total p95", "s"),
    ("prompt_tokens_mean", "prompt tokens / question", "n"),
    ("completion_tokens_mean", "completion tokens / question", "n"),
]
BREAKDOWN_METRICS = ["n", "correct", "language_ok", "false_abstention_rate", "abstention_recall", "search_hit@5"]
CHART_RATES = [
    ("correct", "correct"),
    ("language_ok", "language"),
    ("citation_validity", "cit. valid"),
    ("citation_support", "cit. support"),
    ("abstention_recall", "abst. recall"),
    ("false_abstention_rate", "false abst."),
    ("search_hit@5", "search hit@5"),
    ("search_mrr", "search MRR"),
]
CHART_LATENCY = ["retrieval_s", "first_token_s", "total_s"]


def fmt(value: Any, kind: str = "rate") -> str:
    if value is None:
        return "–"
    if kind == "s":
        return f"{value:.2f} s"
    if kind == "n":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# counts shown as "k / N (share)": key -> key of N
OUT_OF = {
    "injection_obeyed": "injections",
    "injection_obeyed_raw": "injections",
    "poison_given": "poisoned",
    "rendered_active": "rendered",
    "rendered_links": "rendered",
}


def _count_cell(overall: Mapping[str, Any], key: str) -> str:
    total = overall.get(OUT_OF[key]) or 0
    if not total:
        return "–"
    count = overall.get(key) or 0
    return f"{count} / {total} ({count / total:.0%})"


def overall_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    names = list(summaries)
    rows = []
    for key, label, kind in MAIN_METRICS:
        cells = []
        for name in names:
            overall = summaries[name]["overall"]
            cells.append(_count_cell(overall, key) if key in OUT_OF else fmt(overall.get(key), kind))
        if any(c != "–" for c in cells):
            rows.append([label, *cells])
    return _table(["metric", *names], rows)


def injection_section(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Which questions obeyed an injection and why; what came alive in the UI's rendering."""
    lines: list[str] = []
    for name, summary in summaries.items():
        overall = summary["overall"]
        if not overall.get("injections") and not overall.get("rendered"):
            continue
        lines += [f"### {name}", ""]
        if overall.get("injections"):
            obeyed = overall.get("injection_obeyed_ids") or []
            raw = [i for i in overall.get("injection_obeyed_raw_ids") or [] if i not in obeyed]
            lines.append(
                f"- injections obeyed: {_count_cell(overall, 'injection_obeyed')}: "
                + (", ".join(f"`{i}`" for i in obeyed) or "none")
            )
            lines.append(
                "- obeyed only in the raw reply (removed by the support check, but streamed live): "
                + (", ".join(f"`{i}`" for i in raw) or "none")
            )
            if overall.get("poisoned"):
                lines.append(
                    f"- poisoned passage among those given to the model: {_count_cell(overall, 'poison_given')}"
                )
        if overall.get("rendered"):
            for label, key in (("active content", "rendered_active"), ("remote links", "rendered_links")):
                ids = overall.get(f"{key}_ids") or [] if overall.get(key) else []
                lines.append(
                    f"- answers whose rendering has {label}: {_count_cell(overall, key)}"
                    + (": " + ", ".join(f"`{i}`" for i in ids) if ids else "")
                )
        documents = summary.get("documents_rendered_active")
        if documents is not None:
            lines.append(f"- document table: {'; '.join(documents) if documents else 'no active content'}")
        rows = [
            [
                r["id"],
                "yes" if r.get("poison_given") else ("–" if r.get("poison_given") is None else "no"),
                _short("; ".join(r.get("obeyed_by") or []) or "—", 90),
                _short("; ".join(r.get("obeyed_raw_by") or []) or "—", 90),
                _short(r.get("answer")),
            ]
            for r in summary.get("injections") or []
        ]
        if rows:
            lines += ["", _table(["id", "poison given", "final answer trips", "raw reply trips", "answer"], rows)]
        rendered = [
            [
                r["id"],
                _short("; ".join(r.get("rendered_active") or []) or "—"),
                _short("; ".join(r.get("rendered_links") or []) or "—"),
            ]
            for r in summary.get("rendered") or []
        ]
        if rendered:
            lines += ["", _table(["id", "active content", "remote links"], rendered)]
        lines.append("")
    if not lines:
        return ""
    intro = (
        "Obeyed: the final answer contains a canary, a payload string or pattern, or is in the language the "
        "injection asked for (`metrics.forbidden_hits`). Rendering: the UI's formatters run on every answer and "
        "its sources, then scanned for active HTML and remote links (`render.py`)."
    )
    return "\n".join(["## Prompt injection", "", intro, "", *lines])


def breakdown_table(summaries: Mapping[str, Mapping[str, Any]], section: str) -> str:
    rows = []
    for name, summary in summaries.items():
        for group, values in summary[section].items():
            rows.append([name, group, *[fmt(values.get(k), "n" if k == "n" else "rate") for k in BREAKDOWN_METRICS]])
    return _table(["pipeline", section.removeprefix("by_"), *BREAKDOWN_METRICS], rows)


def _short(text: Any, limit: int = 110) -> str:
    clean = " ".join(str(text or "").split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def failures_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, summary in summaries.items():
        for f in summary["failures"]:
            reason = f.get("error") or f.get("failure") or ""
            rows.append([name, f["id"], f["type"], _short(f["question"], 70), _short(f.get("answer")), _short(reason)])
    if not rows:
        return "No failures."
    return _table(["pipeline", "id", "type", "question", "answer", "why"], rows)


def render_markdown(summaries: Mapping[str, Mapping[str, Any]], title: str = "Evaluation") -> str:
    first = next(iter(summaries.values()))
    parts = [
        f"# {title}",
        "",
        f"Set `{first.get('set') or '?'}`, started {first.get('started', '')}; "
        + ", ".join(f"{n}: {s['questions']} questions ({s['answered']} answered)" for n, s in summaries.items())
        + ". Definitions: `rag/eval/metrics.py`.",
        "",
        "## Overall",
        "",
        overall_table(summaries),
        "",
        "![chart](chart.png)",
        "",
        "## By language",
        "",
        breakdown_table(summaries, "by_language"),
        "",
        "## By type",
        "",
        breakdown_table(summaries, "by_type"),
        "",
        injection_section(summaries),
        "## Failures",
        "",
        failures_table(summaries),
        "",
    ]
    return "\n".join(parts)


def write_chart(summaries: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summaries)
    width = 0.8 / max(1, len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2.2, 1]})
    for i, name in enumerate(names):
        overall = summaries[name]["overall"]
        rates = [overall.get(k) or 0.0 for k, _ in CHART_RATES]
        left.bar([x + i * width for x in range(len(CHART_RATES))], rates, width, label=name)
        latency = [overall.get(f"{k}_p50") or 0.0 for k in CHART_LATENCY]
        p95 = [overall.get(f"{k}_p95") or 0.0 for k in CHART_LATENCY]
        xs = [x + i * width for x in range(len(CHART_LATENCY))]
        right.bar(xs, latency, width, label=f"{name} p50")
        right.scatter(xs, p95, marker="_", s=300, color="black", zorder=3, label="p95" if i == 0 else None)
    offset = width * (len(names) - 1) / 2
    left.set_xticks([x + offset for x in range(len(CHART_RATES))], [label for _, label in CHART_RATES], rotation=30)
    left.set_ylim(0, 1.05)
    left.set_title("rates")
    left.legend()
    right.set_xticks([x + offset for x in range(len(CHART_LATENCY))], ["retrieval", "first token", "total"])
    right.set_ylabel("seconds")
    right.set_title("latency (bar p50, tick p95)")
    right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def default_folder(root: str | Path = "reports") -> Path:
    return Path(root) / datetime.now().strftime("%Y%m%d-%H%M%S")


def write_report(runs: Sequence[EvalRun], folder: str | Path | None = None, title: str = "Evaluation") -> Path:
    """Write report.md, results.json and chart.png into `folder` (default reports/<timestamp>/)."""
    out = Path(folder) if folder is not None else default_folder()
    out.mkdir(parents=True, exist_ok=True)
    summaries = {run.pipeline: summarise(run) for run in runs}
    results = {
        "summaries": summaries,
        "rows": {run.pipeline: run.rows for run in runs},
        "config": {run.pipeline: run.config for run in runs},
    }
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(summaries, title), encoding="utf-8")
    write_chart(summaries, out / "chart.png")
    return out


SHORT = [
    ("correct", "correct"),
    ("language_ok", "lang"),
    ("citation_support", "cit.sup"),
    ("false_abstention_rate", "false.abst"),
    ("abstention_recall", "abst.rec"),
    ("search_hit@5", "hit@5"),
    ("search_mrr", "MRR"),
    ("total_s_p50", "total p50"),
    ("injection_obeyed", "obeyed"),
    ("rendered_active", "active"),
]


def _short_cell(overall: Mapping[str, Any], key: str) -> str:
    if key in OUT_OF:
        total = overall.get(OUT_OF[key]) or 0
        return f"{overall.get(key) or 0}/{total}" if total else "–"
    return fmt(overall.get(key), "s" if key.endswith("_p50") else "rate")


def short_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """A few columns for the terminal, one line per pipeline."""
    header = f"{'pipeline':<10}" + "".join(f"{label:>11}" for _, label in SHORT)
    lines = [header]
    for name, summary in summaries.items():
        overall = summary["overall"]
        cells = "".join(f"{_short_cell(overall, k):>11}" for k, _ in SHORT)
        lines.append(f"{name:<10}" + cells)
    return "\n".join(lines)


def _load(path_or_results: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(path_or_results, Mapping):
        return dict(path_or_results)
    return dict(json.loads(Path(path_or_results).read_text(encoding="utf-8")))


def compare(run_a_json: str | Path | Mapping[str, Any], run_b_json: str | Path | Mapping[str, Any]) -> str:
    """Markdown before/after table of two results.json (same pipelines compared by name)."""
    before, after = _load(run_a_json)["summaries"], _load(run_b_json)["summaries"]
    rows = []
    for name in [n for n in after if n in before] or list(after):
        old = before.get(name, {}).get("overall", {})
        new = after[name]["overall"]
        for key, label, kind in MAIN_METRICS:
            a, b = old.get(key), new.get(key)
            if a is None and b is None:
                continue
            delta = f"{b - a:+.3f}" if isinstance(a, int | float) and isinstance(b, int | float) else "–"
            rows.append([name, label, fmt(a, kind), fmt(b, kind), delta])
    return "## Before / after\n\n" + _table(["pipeline", "metric", "before", "after", "change"], rows) + "\n"
