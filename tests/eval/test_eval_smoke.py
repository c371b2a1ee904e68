"""CI smoke test with the REAL models: 3 seed questions through `evaluate`, report well-formed.

Slow (e5 + the embedded llama.cpp server): `pytest -m "not slow"` skips it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SEED_DIR = Path(__file__).resolve().parents[2] / "seeds"


def test_three_seed_questions_end_to_end(tmp_path: Path) -> None:
    from rag.config import Settings
    from rag.eval import evaluate

    settings = Settings(index_dir=tmp_path / "index", data_dir=tmp_path / "data", docs_dir=SEED_DIR)
    result = evaluate(limit=3, seed=0, pipeline="ours", out=tmp_path / "report", settings=settings, progress=False)

    assert result.folder == tmp_path / "report"
    markdown = (result.folder / "report.md").read_text(encoding="utf-8")
    for heading in ("## Overall", "## By language", "## By type", "## Failures"):
        assert heading in markdown
    assert (result.folder / "chart.png").read_bytes().startswith(b"\x89PNG")
    results = json.loads((result.folder / "results.json").read_text(encoding="utf-8"))
    rows = results["rows"]["ours"]
    assert len(rows) == 3 and not any(r["error"] for r in rows)
    for row in rows:
        assert isinstance(row["answer"], str) and row["answer"]
        assert isinstance(row["abstained"], bool) and isinstance(row["passed"], bool)
        assert row["total_s"] > 0 and row["first_token_s"] <= row["total_s"]
        assert all(1 <= n <= len(row["sources"]) for n in row["cited"])
    overall = results["summaries"]["ours"]["overall"]
    assert overall["n"] == 3 and overall["errors"] == 0
    assert 0.0 <= (overall["pass_rate"] or 0.0) <= 1.0
    assert overall["total_s_p50"] is not None and overall["prompt_tokens_total"] > 0
