"""The speed benchmark (issue 5): start-up, ingestion, retrieval, per-question latency, memory.

Run it with the real embedded stack (e5 + bundled Qwen on llama.cpp), on an otherwise idle
machine (every figure is wall-clock time on 2 cores):

    make bench                                   # = .venv/bin/python -m rag bench
    .venv/bin/python -m rag bench --runs 5 --questions 20 --sp-limit 500
    .venv/bin/python -m rag bench --skip-startup --skip-sp --questions 10 --out reports/bench-quick

Options: `--runs N` repetitions of the start-up and unchanged re-ingest measurements (default 5);
`--questions N` eval-set questions answered by each pipeline (default all, 0 = skip);
`--sp-limit N` ingest only the first N Service-Public pages; `--skip-startup`, `--skip-sp`;
`--sp-zip PATH` (default ../shared/bench/service_public_fiches_txt.zip); `--out DIR`
(default reports/bench-<timestamp>/). It writes `bench.md` (the table), `bench.json`
(everything, including per-run values and per-question rows) and `bench.png` (one small
panel per key figure, ours vs baseline where both exist), and prints the table.

What is measured (all indexes are built from scratch in a temporary folder; the user's
`index/` is never touched):

- **Ingestion** of `RAG_DOCS_DIR` (default seeds/) and of the Service-Public zip (extracted to
  the temporary folder first, not timed): `sync_folder` into an empty Chroma index with the
  configured embedder. Files, chunks, distinct chunk texts, chunks embedded (report field),
  tiktoken tokens of the embedded texts, total seconds, chunks/s and tokens/s end to end
  (loading, chunking, embedding, Chroma writes), tokens/s of the embedder alone (time inside
  `Embedder._embed`), index size on disk (du of the index folder), then `--runs` syncs of the
  unchanged folder (seconds; chunks embedded must be 0). For the seed set the llama-index
  baseline's in-memory `VectorStoreIndex` build time is its ingestion figure.
- **Retrieval latency** at each size: `Retriever.search(q, top_k)` over ~100 queries (first
  sentences of random pages, topped up with eval-set questions), query embedding included,
  after one warm-up query; the baseline's `retriever.search` on the seed set.
- **Start-up with an existing index** (the seed index built above), `--runs` times each:
  (a) `python app.py` spawned with RAG_UI_PORT=<free port>, polled at http://127.0.0.1:<port>/
  until HTTP 200 (process start to UI ready), its VmHWM read from /proc before it is
  terminated (on the first run after waiting for the background model warm-up to settle);
  (b)+(c) a fresh `python -c` process that builds an Assistant (e5, Chroma, BM25), syncs the
  unchanged folder, touches `Assistant.llm` (model load: the embedded llama.cpp server start),
  calls `Assistant.warm()` as app.py does (the prefix and passage slots: restored from the states
  an earlier run saved, else read) and asks one question: model load and warm-up seconds, first
  token and total of that first answer, process start to first answer, and its peak RSS.
- **Per question** over the eval set (rag/eval/sets/seed.jsonl) with `rag.eval.runner.run_eval`,
  ours (after `Assistant.warm()`, as app.py does at start-up) then the llama-index default
  baseline on the same embedder and LLM server: time to first token, total time, prompt and
  completion tokens, and tokens/s = completion tokens / (generation end - first token)
  (generation end = `timings["generation_s"]`, which excludes our support check; the
  baseline has no check, so its total time is used). Each as p50/p95, with ours/baseline.
- **Peak RSS**: the UI process (VmHWM), the first-answer process (ru_maxrss) and this
  benchmark process (ru_maxrss: e5, Chroma, llama.cpp server and both pipelines in-process).

Deliberately not here: correctness scoring (`rag/eval`), beyond the pass rate the runner gives.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from rag.config import PROJECT_ROOT, Settings
from rag.embeddings import Embedder
from rag.eval.metrics import percentile
from rag.tokens import count_tokens

SP_ZIP = PROJECT_ROOT.parent / "shared" / "bench" / "service_public_fiches_txt.zip"
RETRIEVAL_QUERIES = 100
UI_TIMEOUT_S = 180.0
ANSWER_TIMEOUT_S = 600.0
RESULT_PREFIX = "BENCH-RESULT "
DEFAULT_QUESTION = "Why did Parler drop its lawsuit against Amazon?"


# -- small helpers ---------------------------------------------------------------------------


def summary(values: Iterable[float]) -> dict[str, Any]:
    """n, p50, p95, min, max, mean and the values themselves; the statistics are None if empty."""
    data = [float(v) for v in values]
    return {
        "n": len(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "min": min(data) if data else None,
        "max": max(data) if data else None,
        "mean": sum(data) / len(data) if data else None,
        "values": data,
    }


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under `path`, as `du` counts them (blocks, not file sizes)."""
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in [".", *filenames]:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def peak_rss_mb() -> float:
    """This process's peak RSS (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_hwm_mb(pid: int) -> float | None:
    """Peak RSS of another live process, from /proc/<pid>/status (None if unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(path: Mapping[str, Any], dotted: str) -> Any:
    value: Any = path
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


class TimedEmbedder(Embedder):
    """Delegates to another embedder and adds up the seconds spent embedding passages, and the
    passages' tokens (chunk texts and window texts alike)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.batch_size = inner.batch_size
        self.seconds = 0.0
        self.tokens = 0

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.inner._embed(texts, is_query)
        finally:
            if not is_query:
                self.seconds += time.perf_counter() - started
                self.tokens += sum(count_tokens(t) for t in texts)


# -- ingestion and retrieval -----------------------------------------------------------------


def measure_ingestion(
    folder: Path, store: Any, embedder: Embedder, chunk_tokens: int, runs: int, window_tokens: int = 0
) -> dict[str, Any]:
    """A first sync of `folder` into `store` (expected empty), then `runs` syncs of the unchanged
    folder, given the chunks stored as the assistant's syncs are (`sync_folder`'s `known`)."""
    from rag.ingest import sync_folder

    timed = TimedEmbedder(embedder)
    report = sync_folder(folder, store, timed, chunk_tokens, window_tokens=window_tokens)
    chunks = store.chunks()
    distinct: dict[str, int] = {}
    for chunk in chunks:
        distinct.setdefault(chunk.text, chunk.tokens)
    tokens_embedded = timed.tokens
    seconds = report.seconds
    again = []
    embedded_again = 0
    for _ in range(max(1, runs)):
        known = (store.version(), chunks)
        rerun = sync_folder(folder, store, embedder, chunk_tokens, window_tokens=window_tokens, known=known)
        again.append(rerun.seconds)
        embedded_again += rerun.chunks_embedded
    index_bytes = disk_usage(store.path) if store.path is not None else None
    return {
        "folder": str(folder),
        "files": len(report.added) + len(report.updated) + report.unchanged,
        "skipped": len(report.skipped),
        "chunks": len(chunks),
        "distinct_chunks": len(distinct),
        "chunks_embedded": report.chunks_embedded,
        "tokens": sum(c.tokens for c in chunks),
        "tokens_embedded": tokens_embedded,
        "seconds": seconds,
        "embed_seconds": timed.seconds,
        "chunks_per_s": len(chunks) / seconds if seconds else None,
        "tokens_per_s": tokens_embedded / seconds if tokens_embedded and seconds else None,
        "embed_tokens_per_s": tokens_embedded / timed.seconds if tokens_embedded and timed.seconds else None,
        "index_bytes": index_bytes,
        "index_mb": index_bytes / 2**20 if index_bytes is not None else None,
        "unchanged_s": summary(again),
        "unchanged_chunks_embedded": embedded_again,
    }


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def pick_queries(
    chunks: Sequence[Any], questions: Sequence[str], n: int = RETRIEVAL_QUERIES, seed: int = 0
) -> list[str]:
    """First sentences of `n` random documents, topped up with `questions` (cycled) to n queries."""
    firsts: dict[str, str] = {}
    for chunk in chunks:
        if chunk.position == 0 and chunk.doc_path not in firsts:
            sentence = next((s.strip() for s in _SENTENCE_END.split(chunk.text) if len(s.strip()) >= 15), "")
            if sentence:
                firsts[chunk.doc_path] = sentence[:300]
    pool = sorted(firsts.values())
    random.Random(seed).shuffle(pool)
    queries = pool[:n]
    i = 0
    while len(queries) < n and questions:
        queries.append(questions[i % len(questions)])
        i += 1
    return queries


def measure_retrieval(search: Callable[[str, int], Any], queries: Sequence[str], k: int) -> dict[str, Any]:
    """Milliseconds per `search(query, k)` (query embedding included), after one warm-up query."""
    if not queries:
        return {"skipped": "no queries"}
    search(queries[0], k)
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query, k)
        times.append((time.perf_counter() - started) * 1000)
    return {"queries": len(times), "k": k, "ms": summary(times)}


def extract_pages(zip_path: Path, dest: Path, limit: int | None = None) -> int:
    """Extract the .txt pages of the zip (sorted by name, the first `limit`) flat into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".txt") and not n.endswith("/"))
        if limit is not None:
            names = names[:limit]
        for name in names:
            (dest / Path(name).name).write_bytes(archive.read(name))
    return len(names)


# -- start-up (subprocesses) -----------------------------------------------------------------


def _child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(overrides)
    return env


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def time_to_ready(
    command: Sequence[str],
    url: str,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float = UI_TIMEOUT_S,
    settle: float = 0.0,
) -> dict[str, Any]:
    """Spawn `command`, poll `url` until HTTP 200; seconds from spawn, and the process's VmHWM.

    With `settle` > 0, after the page is up wait until VmHWM has not grown for `settle`
    seconds (e.g. the model warm-up in app.py's background thread), up to `timeout`.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(list(command), env=dict(env), cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready: float | None = None
            while time.perf_counter() - started < timeout:
                if proc.poll() is not None:
                    raise RuntimeError(f"{command[-1]} exited with {proc.returncode}:\n{_tail(log_path)}")
                try:
                    with opener.open(url, timeout=2) as response:
                        if response.status == 200:
                            ready = time.perf_counter() - started
                            break
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.05)
            if ready is None:
                raise RuntimeError(f"{url} not ready after {timeout:.0f} s:\n{_tail(log_path)}")
            hwm_at_ready = vm_hwm_mb(proc.pid)
            hwm, still = hwm_at_ready, time.perf_counter()
            deadline = time.perf_counter() + (timeout if settle > 0 else 0)
            while settle > 0 and time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(0.25)
                now = vm_hwm_mb(proc.pid)
                if now is not None and (hwm is None or now > hwm + 1):
                    hwm, still = now, time.perf_counter()
                elif time.perf_counter() - still >= settle:
                    break
            return {"ready_s": ready, "vm_hwm_at_ready_mb": hwm_at_ready, "vm_hwm_mb": hwm}
        finally:
            _stop(proc)


_ANSWER_CHILD = """
import sys
from rag.bench import answer_child
sys.exit(answer_child(sys.argv[1]))
"""


def answer_child(question: str) -> int:
    """In a fresh process: build an Assistant on the existing index, load the model, answer once.

    Prints one line `BENCH-RESULT {json}` with the in-process timings and peak RSS.
    """
    started = time.perf_counter()
    from rag.assistant import Assistant

    imported = time.perf_counter()
    assistant = Assistant(Settings())
    assistant.ingest()  # as app.py does: the folder is unchanged, nothing is embedded
    ready = time.perf_counter()
    _ = assistant.llm  # the embedded llama.cpp server starts here (model file checked, mapped)
    loaded = time.perf_counter()
    assistant.warm()  # as app.py does once its page is up
    warmed = time.perf_counter()
    answer = assistant.ask(question)
    answered = time.perf_counter()
    result = {
        "import_s": imported - started,
        "assistant_init_s": ready - imported,
        "model_load_s": loaded - ready,
        "warm_s": warmed - loaded,
        "first_token_s": answer.timings.get("first_token_s"),
        "first_answer_s": answered - warmed,
        "prompt_tokens": answer.usage.get("prompt_tokens"),
        "peak_rss_mb": peak_rss_mb(),
    }
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def run_answer_child(env: Mapping[str, str], question: str, log_path: Path) -> dict[str, Any]:
    """Spawn `answer_child`; adds `process_to_answer_s`: spawn to the result line."""
    started = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _ANSWER_CHILD, question],
            env=dict(env),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                if line.startswith(RESULT_PREFIX):
                    result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
                    result["process_to_answer_s"] = time.perf_counter() - started
                    return result
            proc.wait(timeout=ANSWER_TIMEOUT_S)
            raise RuntimeError(f"the first-answer process exited with {proc.returncode}:\n{_tail(log_path)}")
        finally:
            _stop(proc)


def measure_startup(settings: Settings, runs: int, workdir: Path, question: str, log: TextIO | None) -> dict[str, Any]:
    """UI ready and first answer after start, `runs` times each, on the index in settings.index_dir."""
    env = _child_env(
        {
            "RAG_INDEX_DIR": str(settings.index_dir),
            "RAG_DATA_DIR": str(settings.data_dir),
            "RAG_DOCS_DIR": str(settings.docs_dir),
            "RAG_COLLECTION": settings.collection,
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
    )
    ui: list[dict[str, Any]] = []
    for i in range(runs):
        port = free_port()
        _say(log, f"start-up {i + 1}/{runs}: app.py until http://127.0.0.1:{port}/ answers")
        ui.append(
            time_to_ready(
                [sys.executable, str(PROJECT_ROOT / "app.py")],
                f"http://127.0.0.1:{port}/",
                {**env, "RAG_UI_PORT": str(port)},
                workdir / f"app-{i}.log",
                settle=5.0 if i == 0 else 0.0,
            )
        )
    answers: list[dict[str, Any]] = []
    for i in range(runs):
        _say(log, f"start-up {i + 1}/{runs}: fresh process, model load and first answer")
        answers.append(run_answer_child(env, question, workdir / f"answer-{i}.log"))
    out: dict[str, Any] = {"runs": runs, "question": question, "ui_ready_s": summary(r["ready_s"] for r in ui)}
    hwm = [r["vm_hwm_mb"] for r in ui if r["vm_hwm_mb"] is not None]
    out["ui_peak_rss_mb"] = max(hwm) if hwm else None
    out["ui_runs"] = ui
    for key in ("assistant_init_s", "model_load_s", "warm_s", "first_token_s", "first_answer_s", "process_to_answer_s"):
        out[key] = summary(r[key] for r in answers if r.get(key) is not None)
    out["answer_peak_rss_mb"] = max(r["peak_rss_mb"] for r in answers) if answers else None
    out["answer_runs"] = answers
    return out


# -- per question ----------------------------------------------------------------------------


def tokens_per_s(row: Mapping[str, Any]) -> float | None:
    """Completion tokens / (generation end - first token); None when undefined."""
    timings = row.get("timings") or {}
    end = timings.get("generation_s", row.get("total_s"))
    first, tokens = row.get("first_token_s"), row.get("completion_tokens")
    if end is None or first is None or not tokens or end <= first:
        return None
    return float(tokens) / (float(end) - float(first))


def question_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """p50/p95 (and values) of each per-question figure over the rows that were answered."""
    answered = [r for r in rows if r.get("total_s") is not None]

    def values(key: str) -> list[float]:
        return [float(r[key]) for r in answered if r.get(key) is not None]

    return {
        "questions": len(rows),
        "answered": len(answered),
        "errors": sum(1 for r in rows if r.get("error")),
        "first_token_s": summary(values("first_token_s")),
        "total_s": summary(values("total_s")),
        "prompt_tokens": summary(values("prompt_tokens")),
        "completion_tokens": summary(values("completion_tokens")),
        "tokens_per_s": summary(v for v in (tokens_per_s(r) for r in answered) if v is not None),
    }


RATIO_KEYS = [
    f"{key}.{stat}"
    for key in ("first_token_s", "total_s", "prompt_tokens", "completion_tokens", "tokens_per_s")
    for stat in ("p50", "p95")
]


def ratios(ours: Mapping[str, Any], baseline: Mapping[str, Any], keys: Sequence[str] = RATIO_KEYS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        a, b = _get(ours, key), _get(baseline, key)
        out[key] = a / b if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    return out


def _slim(row: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("id", "pipeline", "type", "language", "first_token_s", "total_s", "prompt_tokens", "completion_tokens")
    out = {k: row.get(k) for k in keep}
    out.update(
        generation_s=(row.get("timings") or {}).get("generation_s"),
        cached_tokens=row.get("cached_tokens"),
        tokens_per_s=tokens_per_s(row),
        passed=row.get("passed"),
        error=row.get("error") or "",
    )
    return out


# -- the whole run ---------------------------------------------------------------------------


def measure_service_public(
    zip_path: Path,
    limit: int | None,
    workdir: Path,
    embedder: Embedder,
    settings: Settings,
    runs: int,
    questions: Sequence[str],
    log: TextIO | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Extract the pages (not timed), ingest them into a fresh index, then time retrieval at that size."""
    from rag.retrieve import Retriever
    from rag.store import ChunkStore, index_name

    pages = workdir / "sp-pages"
    count = extract_pages(zip_path, pages, limit)
    _say(log, f"ingesting {count} Service-Public pages into a fresh index")
    name = index_name(embedder.name, settings.window_tokens)
    store = ChunkStore(collection="bench-sp", path=workdir / "sp-index", embedder_name=name)
    ingestion = measure_ingestion(pages, store, embedder, settings.chunk_tokens, runs, settings.window_tokens)
    ingestion["pages_in_zip_used"] = count
    retriever = Retriever(
        store, embedder, settings.candidates, settings.dense_weight, settings.bm25_weight, settings.fusion
    )
    _say(log, f"retrieval latency over {len(retriever.chunks)} chunks")
    retrieval = {
        "chunks": len(retriever.chunks),
        "ours": measure_retrieval(retriever.search, pick_queries(retriever.chunks, questions), settings.top_k),
    }
    return ingestion, retrieval


@dataclass
class BenchOptions:
    runs: int = 5
    questions: int | None = None  # None = the whole set, 0 = skip
    sp_limit: int | None = None
    skip_startup: bool = False
    skip_sp: bool = False
    sp_zip: Path = SP_ZIP
    out: Path | None = None
    progress: bool = True
    question: str = DEFAULT_QUESTION
    notes: list[str] = field(default_factory=list)


def _say(log: TextIO | None, text: str) -> None:
    if log is not None:
        log.write(text + "\n")
        log.flush()


def run_bench(options: BenchOptions, settings: Settings | None = None, log: TextIO | None = None) -> dict[str, Any]:
    """Run every measurement of the module docstring, write the report folder, return the results."""
    from rag.eval import pipelines
    from rag.eval.dataset import SEED_SET, load_set, sample
    from rag.eval.runner import run_eval, summarise

    base = settings or Settings()
    runs = max(1, options.runs)
    notes = list(options.notes)
    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    seed_settings = base.model_copy(update={"index_dir": workdir / "seed-index", "data_dir": workdir / "data"})
    results: dict[str, Any] = {
        "meta": {
            "started": datetime.now().isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg()[0],
            "python": sys.version.split()[0],
            "options": {
                "runs": runs,
                "questions": options.questions,
                "sp_limit": options.sp_limit,
                "skip_startup": options.skip_startup,
                "skip_sp": options.skip_sp,
            },
            "settings": {
                k: str(getattr(base, k))
                for k in ("docs_dir", "chunk_tokens", "top_k", "candidates", "full_context_tokens", "llm_ctx")
            },
        },
        "startup": {},
        "ingestion": {},
        "retrieval": {},
        "questions": {},
        "memory": {},
    }
    records = load_set(SEED_SET)
    questions = [r.question for r in records]
    try:
        # ingestion + retrieval on the document folder (its index is the start-up index)
        assistant = pipelines.build_assistant(seed_settings)
        results["meta"]["embedder"] = assistant.embedder.name
        _say(log, f"ingesting {seed_settings.docs_dir} into a fresh index")
        results["ingestion"]["seeds"] = measure_ingestion(
            seed_settings.docs_dir,
            assistant.store,
            assistant.embedder,
            seed_settings.chunk_tokens,
            runs,
            seed_settings.window_tokens,
        )
        assistant.retriever.refresh()
        queries = pick_queries(assistant.retriever.chunks, questions)
        results["retrieval"]["seeds"] = {
            "chunks": len(assistant.retriever.chunks),
            "ours": measure_retrieval(assistant.retriever.search, queries, seed_settings.top_k),
        }

        # Service-Public pages
        if options.skip_sp:
            results["ingestion"]["service_public"] = {"skipped": "--skip-sp"}
        elif not options.sp_zip.is_file():
            results["ingestion"]["service_public"] = {"skipped": f"{options.sp_zip} is absent"}
            notes.append(f"Service-Public set skipped: {options.sp_zip} is absent.")
        else:
            try:
                sp, sp_retrieval = measure_service_public(
                    options.sp_zip, options.sp_limit, workdir, assistant.embedder, seed_settings, runs, questions, log
                )
                results["ingestion"]["service_public"] = sp
                results["retrieval"]["service_public"] = sp_retrieval
            except Exception as exc:  # recorded, so that the other measurements still reach the report
                results["ingestion"]["service_public"] = {"error": f"{type(exc).__name__}: {exc}"}

        # start-up from the existing seed index, in fresh processes
        if options.skip_startup:
            results["startup"] = {"skipped": "--skip-startup"}
        else:
            try:
                results["startup"] = measure_startup(seed_settings, runs, workdir, options.question, log)
            except Exception as exc:
                results["startup"] = {"error": f"{type(exc).__name__}: {exc}"}

        # per question, ours then the llama-index baseline, same embedder and LLM
        if options.questions == 0:
            results["questions"] = {"skipped": "--questions 0"}
        else:
            chosen = sample(records, options.questions)
            _say(log, f"answering {len(chosen)} questions with ours, then the baseline")
            assistant.warm()
            ours = run_eval(assistant, chosen, "ours", progress=options.progress, set_name=SEED_SET.name)
            t0 = time.perf_counter()
            baseline_pipeline = pipelines.build_baseline(assistant, seed_settings.docs_dir)
            built_s = time.perf_counter() - t0
            baseline_chunks = list(baseline_pipeline.retriever.chunks)
            results["ingestion"]["seeds_baseline"] = {
                "chunks": len(baseline_chunks),
                "seconds": getattr(baseline_pipeline, "index_s", built_s),
            }
            results["retrieval"]["seeds"]["baseline"] = measure_retrieval(
                baseline_pipeline.retriever.search, queries, seed_settings.top_k
            )
            base_run = run_eval(baseline_pipeline, chosen, "baseline", progress=options.progress)
            figures = {run.pipeline: question_figures(run.rows) for run in (ours, base_run)}
            for run in (ours, base_run):
                overall = summarise(run)["overall"]
                figures[run.pipeline]["correct"] = overall.get("correct")
                figures[run.pipeline]["pass_rate"] = overall.get("pass_rate")
            results["questions"] = {
                "set": SEED_SET.name,
                **figures,
                "ratio": ratios(figures["ours"], figures["baseline"]),
                "rows": [_slim(r) for r in (*ours.rows, *base_run.rows)],
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    results["memory"] = {
        "ui_process_peak_rss_mb": results["startup"].get("ui_peak_rss_mb"),
        "answer_process_peak_rss_mb": results["startup"].get("answer_peak_rss_mb"),
        "bench_process_peak_rss_mb": peak_rss_mb(),
    }
    results["meta"]["load_avg_at_end"] = os.getloadavg()[0]
    results["meta"]["notes"] = notes
    folder = write_bench_report(results, options.out if options.out is not None else default_folder())
    results["meta"]["folder"] = str(folder)
    _say(log, "\n" + render_table(results) + f"\n\nreport: {folder / 'bench.md'}")
    return results


# -- report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    group: str
    label: str
    unit: str  # s | ms | MB | n | /s | rate
    ours: str  # dotted path into the results
    baseline: str | None = None
    chart: bool = False
    ratio: bool = True  # False where ours/baseline means nothing (counts of different things)


def _ingestion_figures(key: str, name: str, baseline: bool = False) -> list[Figure]:
    g, p = f"ingestion: {name}", f"ingestion.{key}"
    b = f"ingestion.{key}_baseline" if baseline else None
    return [
        Figure(g, "files", "n", f"{p}.files"),
        Figure(g, "chunks", "n", f"{p}.chunks", f"{b}.chunks" if b else None, ratio=False),
        Figure(g, "distinct chunk texts", "n", f"{p}.distinct_chunks"),
        Figure(g, "chunks embedded", "n", f"{p}.chunks_embedded"),
        Figure(g, "tokens embedded", "n", f"{p}.tokens_embedded"),
        Figure(g, "total time", "s", f"{p}.seconds", f"{b}.seconds" if b else None, chart=key != "seeds"),
        Figure(g, "chunks/s", "/s", f"{p}.chunks_per_s"),
        Figure(g, "tokens/s (end to end)", "/s", f"{p}.tokens_per_s", chart=key != "seeds"),
        Figure(g, "tokens/s (embedder only)", "/s", f"{p}.embed_tokens_per_s", chart=key != "seeds"),
        Figure(g, "index size on disk", "MB", f"{p}.index_mb"),
        Figure(g, "unchanged re-run p50", "s", f"{p}.unchanged_s.p50", chart=key != "seeds"),
        Figure(g, "unchanged re-run p95", "s", f"{p}.unchanged_s.p95"),
        Figure(g, "chunks embedded by the re-runs", "n", f"{p}.unchanged_chunks_embedded"),
    ]


def _retrieval_figures(key: str, name: str, baseline: bool = False) -> list[Figure]:
    g, p = f"retrieval: {name}", f"retrieval.{key}"
    return [
        Figure(g, "chunks searched", "n", f"{p}.chunks"),
        Figure(
            g,
            "search p50 (incl. query embedding)",
            "ms",
            f"{p}.ours.ms.p50",
            f"{p}.baseline.ms.p50" if baseline else None,
        ),
        Figure(
            g,
            "search p95 (incl. query embedding)",
            "ms",
            f"{p}.ours.ms.p95",
            f"{p}.baseline.ms.p95" if baseline else None,
            chart=True,
        ),
    ]


def _question_figures() -> list[Figure]:
    out = []
    for key, label, unit in (
        ("first_token_s", "time to first token", "s"),
        ("total_s", "total time", "s"),
        ("prompt_tokens", "prompt tokens", "n"),
        ("completion_tokens", "completion tokens", "n"),
        ("tokens_per_s", "tokens/s (generation)", "/s"),
    ):
        for stat in ("p50", "p95"):
            chart = stat == "p50" and key in ("first_token_s", "total_s", "prompt_tokens", "tokens_per_s")
            out.append(
                Figure(
                    "per question", f"{label} {stat}", unit, f"questions.ours.{key}.{stat}",
                    f"questions.baseline.{key}.{stat}", chart,
                )
            )  # fmt: skip
    out.append(
        Figure("per question", "answered", "n", "questions.ours.answered", "questions.baseline.answered", ratio=False)
    )
    out.append(
        Figure("per question", "correct (all facts)", "rate", "questions.ours.correct", "questions.baseline.correct")
    )
    out.append(Figure("per question", "pass rate", "rate", "questions.ours.pass_rate", "questions.baseline.pass_rate"))
    return out


FIGURES: list[Figure] = [
    Figure("start-up (existing index)", "process start → UI ready p50", "s", "startup.ui_ready_s.p50", chart=True),
    Figure("start-up (existing index)", "process start → UI ready p95", "s", "startup.ui_ready_s.p95"),
    Figure("start-up (existing index)", "Assistant init (e5, Chroma, BM25) p50", "s", "startup.assistant_init_s.p50"),
    Figure(
        "start-up (existing index)", "model load (LLM server start) p50", "s", "startup.model_load_s.p50", chart=True
    ),
    Figure("start-up (existing index)", "model load (LLM server start) p95", "s", "startup.model_load_s.p95"),
    Figure("start-up (existing index)", "warm-up (prefix and passage slots) p50", "s", "startup.warm_s.p50"),
    Figure("start-up (existing index)", "first answer: first token p50", "s", "startup.first_token_s.p50", chart=True),
    Figure("start-up (existing index)", "first answer: first token p95", "s", "startup.first_token_s.p95"),
    Figure("start-up (existing index)", "first answer: total p50", "s", "startup.first_answer_s.p50"),
    Figure("start-up (existing index)", "process start → first answer p50", "s", "startup.process_to_answer_s.p50"),
    Figure("start-up (existing index)", "process start → first answer p95", "s", "startup.process_to_answer_s.p95"),
    *_ingestion_figures("seeds", "document folder", baseline=True),
    *_ingestion_figures("service_public", "Service-Public"),
    *_retrieval_figures("seeds", "document folder", baseline=True),
    *_retrieval_figures("service_public", "Service-Public"),
    *_question_figures(),
    Figure("peak RSS", "UI process (VmHWM)", "MB", "memory.ui_process_peak_rss_mb", chart=True),
    Figure("peak RSS", "first-answer process", "MB", "memory.answer_process_peak_rss_mb"),
    Figure("peak RSS", "benchmark process (everything in-process)", "MB", "memory.bench_process_peak_rss_mb"),
]


def fmt_value(value: Any, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:,.0f} MB" if value >= 10 else f"{value:.2f} MB"
    if unit == "/s":
        return f"{value:,.0f}/s" if value >= 100 else f"{value:.1f}/s"
    if unit == "rate":
        return f"{value:.3f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def table_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """[group, figure, ours, baseline, ours/baseline] for every figure that has a value."""
    rows = []
    for f in FIGURES:
        ours = _get(results, f.ours)
        base = _get(results, f.baseline) if f.baseline else None
        if ours is None and base is None:
            continue
        numbers = isinstance(ours, int | float) and isinstance(base, int | float) and base
        ratio = ours / base if f.ratio and numbers else None
        rows.append(
            [f.group, f.label, fmt_value(ours, f.unit), fmt_value(base, f.unit), f"{ratio:.2f}×" if ratio else "–"]
        )
    return rows


def render_table(results: Mapping[str, Any]) -> str:
    header = ["group", "figure", "ours", "baseline", "ours/baseline"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def _skips(results: Mapping[str, Any]) -> list[str]:
    out = []
    for section in ("startup", "questions"):
        value = results.get(section)
        if isinstance(value, Mapping):
            out += [f"{section}: {kind} ({value[kind]})" for kind in ("skipped", "error") if value.get(kind)]
    for name, value in (results.get("ingestion") or {}).items():
        if isinstance(value, Mapping):
            out += [f"ingestion {name}: {kind} ({value[kind]})" for kind in ("skipped", "error") if value.get(kind)]
    return out


def render_markdown(results: Mapping[str, Any]) -> str:
    meta = results.get("meta") or {}
    load = [meta.get("load_avg_at_start"), meta.get("load_avg_at_end")]
    head = [
        "# Benchmark",
        "",
        f"Started {meta.get('started', '?')} on {meta.get('cpus', '?')} CPUs (1-min load average "
        + " → ".join(f"{x:.2f}" for x in load if isinstance(x, int | float))
        + f"); embedder {meta.get('embedder', '?')}; options {json.dumps(meta.get('options', {}))}. "
        "Definitions: `rag/bench.py`. Ratios are ours/baseline (below 1 is faster for times).",
        "",
        render_table(results),
        "",
        "![bench](bench.png)",
        "",
    ]
    notes = [*_skips(results), *(meta.get("notes") or [])]
    if notes:
        head += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(head)


def write_chart(results: Mapping[str, Any], path: Path) -> Path:
    """One small panel per key figure (units differ): a bar for ours, one for the baseline if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for f in FIGURES:
        if not f.chart:
            continue
        ours, base = _get(results, f.ours), _get(results, f.baseline) if f.baseline else None
        if isinstance(ours, int | float) or isinstance(base, int | float):
            panels.append((f, ours, base))
    cols = 4
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (f, ours, base) in zip(axes.flat, panels, strict=False):
        names, values, colors = ["ours"], [float(ours or 0.0)], ["tab:blue"]
        if f.baseline:
            names.append("baseline")
            values.append(float(base or 0.0))
            colors.append("tab:orange")
        ax.bar(names, values, color=colors)
        ax.set_title(f"{f.group}\n{f.label}", fontsize=8)
        ax.set_ylabel(f.unit, fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if not panels:
        axes.flat[0].text(0.5, 0.5, "nothing measured", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def default_folder(root: str | Path = "reports") -> Path:
    return Path(root) / f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def write_bench_report(results: Mapping[str, Any], folder: str | Path) -> Path:
    """Write bench.md, bench.json and bench.png into `folder`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    (out / "bench.md").write_text(render_markdown(results), encoding="utf-8")
    write_chart(results, out / "bench.png")
    return out
