"""The chat UI under load: N concurrent `gradio_client` sessions through its public `/ask` endpoint.

    .venv/bin/python benchmarks/ui_load.py [--sessions 10] [--questions 100] [--llm fake|embedded]
        [--embedder e5|hash] [--token-delay 0.01] [--queue-size 32] [--burst 64] [--out result.json]

Starts the app (`rag.ui.create_app` + `rag.ui.launch`, the same bounded queue as `app.py`) in a
separate process on a free loopback port, over a throwaway index of the seed documents, so the
server's memory is measured alone. Then:

1. warm-up: every session asks one question (one-time allocations: imports, model, caches);
2. load: `--questions` questions from rag/eval/sets/seed.jsonl (multi-turn ones with their
   history), spread over `--sessions` concurrent sessions, each asking its share one after the
   other; per-question latency, answered / failed / rejected, server RSS before and after
   (sampled every 0.25 s: the peak is reported too);
3. overflow: `--burst` questions (default 2 x queue size) submitted at once; the queue holds
   `--queue-size` of them (plus the one being answered), the rest must be refused at once with
   "Queue is full" (gradio_client `QueueError`), every accepted one answered, and the server
   must answer a question afterwards.

`--llm fake` (default): a scripted model that quotes the most relevant source, `--token-delay`
seconds per word, with real retrieval (`--embedder e5`, the bundled multilingual-e5-small).
`--llm embedded`: the bundled 1.5B model through llama.cpp, 15-30 s per answer on two cores,
so 100 questions take about 40 minutes; use e.g. `--questions 5 --queue-size 2`.

Exit status 1 if a criterion fails: every question answered, no failure, rejections only in the
overflow phase and all clean, RSS growth under `--max-growth` percent (default 10).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SEED_SET = ROOT / "rag" / "eval" / "sets" / "seed.jsonl"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no telemetry from gradio or gradio_client
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


# --- the server (child process) ------------------------------------------------------------


def _words(text: str) -> set[str]:
    from rag.citations import fold

    return {fold(w)[:5] for w in re.findall(r"\w{4,}", text)}


def fake_reply(messages: list[dict[str, str]]) -> str:
    """A model that answers from the sources: the opening words of the source sharing most words
    with the question, with its [n]. Follow-up rewrites return the last question unchanged."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if messages[0]["role"] != "system":  # the follow-up rewrite prompt
        found = re.findall(r"^Last question: (.*)$", user, re.MULTILINE)
        return found[-1] if found else user
    sources = re.findall(r"^\[(\d+)\] (.*)$", system.rsplit("\nSources:\n", 1)[-1], re.MULTILINE)
    if not sources:
        return "NOT_FOUND"
    question = _words(user.split("\n", 1)[0])
    number, text = max(sources, key=lambda s: len(question & _words(s[1])))
    return f"{' '.join(text.split()[:16]).rstrip('.,;:')} [{number}]."


def serve(args: argparse.Namespace) -> None:
    """Child process: build the assistant, sync the seed documents, serve the UI until killed."""
    import logging

    from rag import ui
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.embeddings import Embedder, HashEmbedder
    from rag.llm import LLM, Completion, Message, ScriptedLLM

    logging.basicConfig(level=logging.WARNING)
    parent = os.getppid()

    def orphaned() -> None:  # the load process was killed: do not keep serving (and holding a model)
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()

    class SlowScriptedLLM(ScriptedLLM):
        def stream(self, messages: list[Message], max_tokens: int, result: Completion, slot: int = 0) -> Iterator[str]:
            self.calls.clear()  # a long run must not keep every prompt
            for piece in super().stream(messages, max_tokens, result, slot):
                time.sleep(args.token_delay)
                yield piece

        def yes_probability(self, messages: list[Message], slot: int = 0) -> float:
            self.calls.clear()
            self.check_slots.clear()
            return super().yes_probability(messages, slot)

    data = Path(args.serve)
    settings = Settings(index_dir=data / "index", data_dir=data / "data", ui_host="127.0.0.1", ui_port=args.port)
    llm: LLM | None = SlowScriptedLLM(reply_fn=fake_reply) if args.llm == "fake" else None
    embedder: Embedder | None = HashEmbedder() if args.embedder == "hash" else None
    assistant = Assistant(settings, llm=llm, embedder=embedder)
    assistant.ingest()
    if args.llm == "embedded":
        assistant.warm()  # start llama.cpp and read the fixed prefix before the page is up
    ui.launch(ui.create_app(assistant), settings, queue_size=args.queue_size, quiet=True)


# --- measuring -----------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (psutil if installed, else /proc/<pid>/status)."""
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        pass
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc: cannot measure memory on this system")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append(rss_mb(self.pid))
            except (OSError, RuntimeError):
                return
            self.stop.wait(self.every_s)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def trajectory(samples: list[float], points: int = 11) -> list[float]:
    """`points` evenly spaced samples, first and last included: a leak climbs, a warm server is flat."""
    if len(samples) <= points:
        return [round(x, 1) for x in samples]
    return [round(samples[round(i * (len(samples) - 1) / (points - 1))], 1) for i in range(points)]


def load_questions(n: int) -> list[tuple[str, list[dict[str, str]] | None]]:
    records = [json.loads(line) for line in SEED_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    pool = [(r["question"], r.get("history")) for r in records]
    return [pool[i % len(pool)] for i in range(n)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float) -> float:
    started = time.perf_counter()
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the UI server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}config", timeout=5)
            return time.perf_counter() - started
        except OSError:
            if time.perf_counter() - started > timeout_s:
                raise SystemExit(f"the UI server did not start in {timeout_s:.0f} s") from None
            time.sleep(0.5)


def result(job: Any, timeout_s: float, server: subprocess.Popen[bytes]) -> Any:
    """The job's result; a dead server or `timeout_s` raise instead of waiting on a stream that never ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return job.result(timeout=1)
        except TimeoutError:
            if server.poll() is not None:
                raise RuntimeError(f"the UI server exited ({server.returncode})") from None
            if time.monotonic() > deadline:
                raise


class Outcomes:
    """Thread-safe tally of one phase: latencies of answered questions, counts, error messages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.answered = self.failed = self.rejected = self.abstained = self.with_sources = 0
        self.errors: dict[str, int] = {}

    def run(self, job: Any, started: float, timeout_s: float, server: subprocess.Popen[bytes]) -> None:
        from gradio_client.utils import QueueError

        try:
            text, details = result(job, timeout_s, server)
            ok = isinstance(text, str) and bool(text.strip()) and isinstance(details, dict)
            error = None if ok else f"malformed reply: {text!r:.80}"
        except QueueError as exc:
            with self.lock:
                self.rejected += 1
                self.errors[f"{type(exc).__name__}: {exc}"] = self.errors.get(f"{type(exc).__name__}: {exc}", 0) + 1
            return
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:120]}"
        with self.lock:
            if error is not None:
                self.failed += 1
                self.errors[error] = self.errors.get(error, 0) + 1
                return
            self.answered += 1
            self.latencies.append(time.perf_counter() - started)
            self.abstained += bool(details.get("abstained"))
            self.with_sources += bool(details.get("sources"))

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        return {
            "answered": self.answered,
            "failed": self.failed,
            "rejected": self.rejected,
            "abstained": self.abstained,
            "with_sources": self.with_sources,
            "latency_s": {
                "p50": percentile(lat, 50),
                "p95": percentile(lat, 95),
                "max": max(lat) if lat else None,
                "mean": statistics.fmean(lat) if lat else None,
            },
            "errors": self.errors,
        }


# --- the load (parent process) ---------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="Load test of the chat UI through gradio_client (/ask).")
    parser.add_argument("--sessions", type=int, default=10, help="concurrent gradio_client sessions")
    parser.add_argument("--questions", type=int, default=100, help="questions in the load phase, over all sessions")
    parser.add_argument("--llm", choices=["fake", "embedded"], default="fake")
    parser.add_argument("--embedder", choices=["e5", "hash"], default="e5")
    parser.add_argument("--token-delay", type=float, default=0.01, help="fake LLM: seconds per word")
    parser.add_argument("--queue-size", type=int, default=None, help="max waiting events (default rag.ui.QUEUE_SIZE)")
    parser.add_argument("--burst", type=int, default=None, help="overflow phase requests (default 2 x queue size)")
    parser.add_argument("--max-growth", type=float, default=10.0, help="allowed RSS growth in percent")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one question may take, queue included")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--serve", default="", help=argparse.SUPPRESS)  # child mode: data folder
    args = parser.parse_args()
    if args.queue_size is None:
        from rag.ui import QUEUE_SIZE

        args.queue_size = QUEUE_SIZE
    if args.serve:
        serve(args)
        return
    burst = args.burst if args.burst is not None else 2 * args.queue_size
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        log = Path(tmp) / "server.log"
        cmd = [sys.executable, __file__, "--serve", tmp, "--port", str(port), "--llm", args.llm]
        cmd += ["--embedder", args.embedder, "--token-delay", str(args.token_delay)]
        cmd += ["--queue-size", str(args.queue_size)]
        with log.open("wb") as out:
            server = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        stopping = threading.Event()

        def stop(*_: Any) -> None:  # `timeout` or kill: stop the server, let the sessions end, clean up
            stopping.set()
            server.terminate()
            raise SystemExit(143)

        signal.signal(signal.SIGTERM, stop)
        clients: list[Any] = []
        try:
            ready_s = wait_ready(url, server, log, timeout_s=900)
            print(f"UI ready in {ready_s:.1f} s (llm {args.llm}, embedder {args.embedder}, queue {args.queue_size})")

            def connect(_: int) -> Any:
                return Client(url, verbose=False, analytics_enabled=False, download_files=False)

            with ThreadPoolExecutor(args.sessions) as pool:
                clients = list(pool.map(connect, range(args.sessions)))

            def phase(questions: list[tuple[str, Any]]) -> tuple[Outcomes, float]:
                """Session i asks questions i, i+N, i+2N, ... one after the other."""
                outcomes = Outcomes()

                def session(i: int) -> None:
                    for question, history in questions[i :: len(clients)]:
                        if stopping.is_set() or server.poll() is not None:
                            return
                        started = time.perf_counter()
                        job = clients[i].submit(question, history, api_name="/ask")
                        outcomes.run(job, started, args.timeout, server)

                started = time.perf_counter()
                with ThreadPoolExecutor(len(clients)) as pool:
                    list(pool.map(session, range(len(clients))))
                return outcomes, time.perf_counter() - started

            warm, warm_s = phase(load_questions(args.sessions))
            print(f"warm-up: {warm.answered}/{args.sessions} answered in {warm_s:.1f} s")
            rss_before = rss_mb(server.pid)
            sampler = RssSampler(server.pid)
            sampler.start()
            load, load_s = phase(load_questions(args.questions))
            sampler.stop.set()
            sampler.join()
            if server.poll() is not None:
                raise SystemExit(f"the UI server died during the load:\n{log.read_text()[-3000:]}")
            rss_after = rss_mb(server.pid)
            growth = 100 * (rss_after - rss_before) / rss_before

            # overflow: everything at once, from all sessions
            over = Outcomes()
            started = time.perf_counter()
            jobs = [
                clients[i % len(clients)].submit(q, h, api_name="/ask")
                for i, (q, h) in enumerate(load_questions(burst))
            ]
            with ThreadPoolExecutor(len(jobs)) as pool:
                list(pool.map(lambda job: over.run(job, started, args.timeout, server), jobs))
            over_s = time.perf_counter() - started
            after = Outcomes()
            after.run(
                clients[0].submit("Why did Parler drop its lawsuit against Amazon?", None, api_name="/ask"),
                time.perf_counter(),
                args.timeout,
                server,
            )
            alive = server.poll() is None
            rss_end = rss_mb(server.pid) if alive else None
        finally:
            with ThreadPoolExecutor(max(1, len(clients))) as pool:  # each close waits up to 1 s
                list(pool.map(lambda c: c.close(), clients))
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    result = {
        "config": {
            "sessions": args.sessions,
            "questions": args.questions,
            "llm": args.llm,
            "embedder": args.embedder,
            "token_delay_s": args.token_delay if args.llm == "fake" else None,
            "queue_size": args.queue_size,
            "burst": burst,
        },
        "load": {**load.summary(), "wall_s": load_s, "questions_per_s": load.answered / load_s},
        "memory_mb": {
            "before": rss_before,
            "after": rss_after,
            "growth_pct": growth,
            "peak": max(sampler.samples, default=rss_after),
            "during_load": trajectory(sampler.samples),
            "after_overflow": rss_end,
        },
        "overflow": {**over.summary(), "wall_s": over_s},
        "after_overflow": {"answered": after.answered == 1, "server_alive": alive},
    }
    checks = {
        "every question answered": load.answered == args.questions and load.failed == 0 and load.rejected == 0,
        f"RSS growth under {args.max_growth:g}%": growth < args.max_growth,
        "overflow refused cleanly": over.rejected > 0 and over.failed == 0 and over.answered + over.rejected == burst,
        "healthy after the overflow": after.answered == 1 and alive,
    }
    result["checks"] = checks
    lat = result["load"]["latency_s"]
    print(
        f"load: {args.sessions} sessions, {args.questions} questions in {load_s:.1f} s: answered {load.answered}, "
        f"failed {load.failed}, rejected {load.rejected} (abstained {load.abstained}, with sources "
        f"{load.with_sources}); latency p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, max {lat['max']:.2f} s"
        if lat["p50"] is not None
        else f"load: nothing answered; errors {load.errors}"
    )
    print(
        f"server RSS: {rss_before:.1f} MB -> {rss_after:.1f} MB ({growth:+.1f}%), "
        f"peak {result['memory_mb']['peak']:.1f} MB"
    )
    print(
        f"overflow: {burst} at once, queue {args.queue_size}: answered {over.answered}, rejected {over.rejected} "
        f"({', '.join(over.errors) or 'no message'}), failed {over.failed}, in {over_s:.1f} s; "
        f"afterwards answered: {after.answered == 1}, server alive: {alive}"
    )
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
