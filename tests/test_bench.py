"""`rag.bench` on fakes: helpers, the ingestion measurement, the report writer and `python -m rag bench`."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rag import bench, cli
from rag.config import Settings
from rag.types import Chunk


def test_summary_percentiles() -> None:
    s = bench.summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["n"] == 5 and s["p50"] == 3.0 and s["p95"] == pytest.approx(4.8)
    assert s["min"] == 1.0 and s["max"] == 5.0 and s["mean"] == 3.0
    assert s["values"] == [5.0, 1.0, 3.0, 2.0, 4.0]
    assert bench.summary([7.0])["p95"] == 7.0
    empty = bench.summary([])
    assert empty["n"] == 0 and empty["p50"] is None and empty["p95"] is None


def test_tokens_per_s_uses_generation_end() -> None:
    row = {"first_token_s": 1.0, "total_s": 9.0, "completion_tokens": 20, "timings": {"generation_s": 5.0}}
    assert bench.tokens_per_s(row) == 5.0  # 20 tokens in 4 s, the support check after it excluded
    assert bench.tokens_per_s({"first_token_s": 1.0, "total_s": 3.0, "completion_tokens": 10}) == 5.0
    assert bench.tokens_per_s({"first_token_s": 1.0, "total_s": 1.0, "completion_tokens": 10}) is None
    assert bench.tokens_per_s({"first_token_s": 1.0, "total_s": 2.0, "completion_tokens": 0}) is None


def test_pick_queries_first_sentences_then_questions() -> None:
    def chunk(doc: str, text: str, position: int = 0) -> Chunk:
        return Chunk(
            id=f"{doc}{position}", doc_path=doc, title="", date="", text=text, start=0, end=len(text), position=position
        )

    chunks = [
        chunk("a.txt", "Ok.\nLa carte grise se demande en ligne. Ensuite on attend."),
        chunk("a.txt", "Not a first chunk at all.", 1),
        chunk("b.txt", "Le RSA est versé chaque mois par la CAF."),
    ]
    queries = bench.pick_queries(chunks, ["q1?", "q2?"], n=5)
    assert sorted(queries[:2]) == ["La carte grise se demande en ligne.", "Le RSA est versé chaque mois par la CAF."]
    assert queries[2:] == ["q1?", "q2?", "q1?"]


def test_measure_ingestion_on_a_tiny_folder(tmp_path: Path, make_chunk_store, counting_embedder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    folder.mkdir()
    text = "Les démarches se font en ligne sur le site du service public.\n\nLa carte grise coûte selon le véhicule."
    (folder / "a.txt").write_text(text, encoding="utf-8")
    (folder / "b.txt").write_text(text, encoding="utf-8")  # a copy: its passages are embedded once
    (folder / "c.md").write_text("# RSA\n\nLe RSA est versé chaque mois par la caisse.", encoding="utf-8")
    store = make_chunk_store(index="bench-index")

    result = bench.measure_ingestion(folder, store, counting_embedder, chunk_tokens=160, runs=3)

    assert result["files"] == 3 and result["skipped"] == 0
    assert result["chunks"] >= 3
    assert result["chunks_embedded"] == result["distinct_chunks"] == len(set(counting_embedder.embedded))
    assert result["distinct_chunks"] < result["chunks"]  # the shared passage
    assert result["tokens_embedded"] > 0 and result["tokens"] >= result["tokens_embedded"]
    assert result["seconds"] > 0 and result["chunks_per_s"] > 0 and result["tokens_per_s"] > 0
    assert 0 < result["embed_seconds"] <= result["seconds"]
    assert result["index_bytes"] > 0 and result["index_mb"] == result["index_bytes"] / 2**20
    assert result["unchanged_s"]["n"] == 3 and result["unchanged_s"]["p95"] >= result["unchanged_s"]["p50"] > 0
    assert result["unchanged_chunks_embedded"] == 0


def test_measure_retrieval_counts_queries() -> None:
    calls: list[tuple[str, int]] = []
    result = bench.measure_retrieval(lambda q, k: calls.append((q, k)), ["a", "b", "c"], 5)
    assert result["queries"] == 3 and result["k"] == 5 and result["ms"]["n"] == 3
    assert calls[0] == ("a", 5) and len(calls) == 4  # one warm-up query
    assert bench.measure_retrieval(lambda q, k: None, [], 5) == {"skipped": "no queries"}


def test_time_to_ready_polls_a_server(tmp_path: Path) -> None:
    port = bench.free_port()
    server = (
        "import http.server, os, time; time.sleep(0.2); "
        "http.server.HTTPServer(('127.0.0.1', int(os.environ['RAG_UI_PORT'])), "
        "http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    result = bench.time_to_ready(
        [sys.executable, "-c", server],
        f"http://127.0.0.1:{port}/",
        {**bench._child_env({}), "RAG_UI_PORT": str(port)},
        tmp_path / "server.log",
        timeout=20,
    )
    assert 0.2 <= result["ready_s"] < 20
    assert result["vm_hwm_mb"] is not None and result["vm_hwm_mb"] > 1


def test_time_to_ready_reports_a_crash(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with 3"):
        bench.time_to_ready(
            [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
            f"http://127.0.0.1:{bench.free_port()}/",
            bench._child_env({}),
            tmp_path / "crash.log",
            timeout=20,
        )


def _results() -> dict[str, Any]:
    def s(*values: float) -> dict[str, Any]:
        return bench.summary(values)

    return {
        "meta": {"started": "2025-01-01T00:00:00", "cpus": 2, "load_avg_at_start": 0.5, "embedder": "e5", "notes": []},
        "startup": {
            "ui_ready_s": s(4.0, 5.0, 6.0),
            "model_load_s": s(1.0, 1.5),
            "first_token_s": s(9.0, 10.0),
            "first_answer_s": s(12.0),
            "process_to_answer_s": s(20.0),
            "assistant_init_s": s(2.0),
        },
        "ingestion": {
            "seeds": {"files": 1, "chunks": 8, "chunks_embedded": 8, "seconds": 2.0, "tokens_per_s": 600.0},
            "seeds_baseline": {"chunks": 2, "seconds": 1.0},
            "service_public": {"skipped": "--skip-sp"},
        },
        "retrieval": {"seeds": {"chunks": 8, "ours": {"ms": s(20.0, 30.0)}, "baseline": {"ms": s(10.0, 12.0)}}},
        "questions": {
            "ours": {"first_token_s": s(0.5, 0.7), "total_s": s(6.0), "tokens_per_s": s(14.0), "correct": 0.9},
            "baseline": {"first_token_s": s(5.0, 7.0), "total_s": s(12.0), "tokens_per_s": s(13.0), "correct": 0.6},
        },
        "memory": {"ui_process_peak_rss_mb": 1800.0, "bench_process_peak_rss_mb": 2500.0},
    }


def test_report_writer_writes_table_json_and_chart(tmp_path: Path) -> None:
    folder = bench.write_bench_report(_results(), tmp_path / "bench-x")
    assert {p.name for p in folder.iterdir()} == {"bench.md", "bench.json", "bench.png"}
    data = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    assert set(data) == {"meta", "startup", "ingestion", "retrieval", "questions", "memory"}
    assert (folder / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (folder / "bench.md").read_text(encoding="utf-8")
    assert "| group | figure | ours | baseline | ours/baseline |" in md
    assert "| per question | time to first token p50 | 0.60 s | 6.00 s | 0.10× |" in md
    assert "| start-up (existing index) | process start → UI ready p50 | 5.00 s | – | – |" in md
    assert "| ingestion: document folder | total time | 2.00 s | 1.00 s | 2.00× |" in md
    assert "| peak RSS | UI process (VmHWM) | 1,800 MB | – | – |" in md
    assert "ingestion service_public: skipped (--skip-sp)" in md
    assert "Service-Public | chunks" not in md  # skipped sections have no rows


def test_ratios() -> None:
    r = bench.ratios({"a": {"p50": 1.0}, "b": {"p50": 2.0}}, {"a": {"p50": 4.0}, "b": {"p50": 0}}, ["a.p50", "b.p50"])
    assert r == {"a.p50": 0.25, "b.p50": None}


# -- the command ----------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(["bench", "--quiet", *argv], out=out)
    return code, out.getvalue()


def test_cli_bench_tiny_ingestion_only(fake_pipelines: list[Settings], tmp_path: Path) -> None:
    out = tmp_path / "b1"
    code, text = run("--skip-startup", "--skip-sp", "--questions", "0", "--runs", "2", "--out", str(out))
    assert code == 0
    assert "| ingestion: document folder | files | 1 |" in text and f"report: {out / 'bench.md'}" in text
    assert fake_pipelines[0].index_dir != Settings().index_dir  # a temporary index, never the user's
    assert not fake_pipelines[0].index_dir.exists()  # removed afterwards
    data = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    seeds = data["ingestion"]["seeds"]
    assert seeds["chunks"] > 0 and seeds["unchanged_s"]["n"] == 2 and seeds["unchanged_chunks_embedded"] == 0
    assert data["startup"] == {"skipped": "--skip-startup"} and data["questions"] == {"skipped": "--questions 0"}
    assert data["ingestion"]["service_public"] == {"skipped": "--skip-sp"}
    assert data["retrieval"]["seeds"]["ours"]["queries"] == bench.RETRIEVAL_QUERIES
    assert data["memory"]["bench_process_peak_rss_mb"] > 0
    assert data["meta"]["options"]["runs"] == 2
    assert (out / "bench.png").is_file() and (out / "bench.md").is_file()


def test_cli_bench_questions_and_a_small_service_public_zip(fake_pipelines: list[Settings], tmp_path: Path) -> None:
    archive = tmp_path / "sp.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("flat_txts/", "")
        for i, text in enumerate(["Le RSA est versé par la CAF.", "La carte grise se demande en ligne.", "Hors."]):
            z.writestr(f"flat_txts/F{i}.txt", f"{text} Les conditions dépendent de votre situation.")
    out = tmp_path / "b2"
    code, _ = run(
        "--skip-startup",
        "--questions",
        "2",
        "--runs",
        "1",
        "--sp-zip",
        str(archive),
        "--sp-limit",
        "2",
        "--out",
        str(out),
    )
    assert code == 0
    data = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    sp = data["ingestion"]["service_public"]
    assert sp["files"] == 2 and sp["pages_in_zip_used"] == 2 and sp["unchanged_chunks_embedded"] == 0
    assert data["retrieval"]["service_public"]["ours"]["ms"]["p95"] is not None
    q = data["questions"]
    assert q["ours"]["questions"] == q["baseline"]["questions"] == 2
    assert set(q["ratio"]) == set(bench.RATIO_KEYS) and q["ratio"]["first_token_s.p50"] is not None
    assert {r["pipeline"] for r in q["rows"]} == {"ours", "baseline"}
    assert data["ingestion"]["seeds_baseline"]["chunks"] >= 1
    assert data["retrieval"]["seeds"]["baseline"]["ms"]["n"] == bench.RETRIEVAL_QUERIES
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert "| per question | time to first token p50 |" in md and "| retrieval: Service-Public |" in md


def test_cli_bench_sp_absent_is_skipped_with_a_note(fake_pipelines: list[Settings], tmp_path: Path) -> None:
    out = tmp_path / "b3"
    missing = tmp_path / "nope.zip"
    code, _ = run("--skip-startup", "--questions", "0", "--runs", "1", "--sp-zip", str(missing), "--out", str(out))
    assert code == 0
    data = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert data["ingestion"]["service_public"] == {"skipped": f"{missing} is absent"}
    assert f"Service-Public set skipped: {missing} is absent." in (out / "bench.md").read_text(encoding="utf-8")


def test_cli_bench_parses_its_options() -> None:
    args = cli.build_parser().parse_args(
        ["bench", "--runs", "3", "--questions", "7", "--sp-limit", "50", "--skip-startup", "--skip-sp", "--out", "x"]
    )
    assert (args.runs, args.questions, args.sp_limit, args.skip_startup, args.skip_sp, args.out) == (
        3,
        7,
        50,
        True,
        True,
        "x",
    )
    assert args.func is cli.cmd_bench
    defaults = cli.build_parser().parse_args(["bench"])
    assert (defaults.runs, defaults.questions, defaults.sp_limit, defaults.skip_startup) == (5, None, None, False)


def test_a_failing_startup_is_recorded_and_the_report_still_written(
    fake_pipelines: list[Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("app.py exited with 1")

    monkeypatch.setattr(bench, "measure_startup", fail)
    out = tmp_path / "b4"
    code, _ = run("--skip-sp", "--questions", "0", "--runs", "1", "--out", str(out))
    assert code == 0
    data = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert data["startup"] == {"error": "RuntimeError: app.py exited with 1"}
    assert data["ingestion"]["seeds"]["chunks"] > 0
    assert "startup: error (RuntimeError: app.py exited with 1)" in (out / "bench.md").read_text(encoding="utf-8")
