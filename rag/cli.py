"""Command line: a thin adapter over `Assistant`.

python -m rag ingest [FOLDER]        sync a folder into the index (default: RAG_DOCS_DIR)
python -m rag ask "QUESTION" [--json]  answer once, with the cited passages
python -m rag chat                   a terminal chat loop (follow-ups use the history)
python -m rag ui                     the browser chat (same as app.py)
python -m rag serve [--host H] [--port P] [--api-key K]   OpenAI-compatible API (see rag/api.py)
python -m rag eval [--set F [--docs D] | --squad F] [--pipeline ours|baseline|both]   score against a question set
python -m rag bench [--runs N] [--questions N] [--sp-limit N] [--skip-startup] [--skip-sp]   speed benchmark
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from rag.errors import RagError
from rag.loaders import display_name
from rag.prompts import WITHDRAWN_NOTE
from rag.types import Answer, Status, Token

if TYPE_CHECKING:
    from rag.assistant import Assistant


def _assistant(args: argparse.Namespace) -> Assistant:
    from rag.assistant import Assistant
    from rag.config import Settings

    overrides = {}
    if getattr(args, "index", None):
        overrides["index_dir"] = args.index
    return Assistant(Settings(**overrides))


def print_answer(answer: Answer, out: TextIO) -> None:
    out.write(answer.text.strip() + "\n")
    for label, sentences in (
        ("Removed (not supported by the sources)", answer.unsupported),
        (WITHDRAWN_NOTE, answer.withdrawn),
    ):
        if sentences:
            out.write(f"\n{label}:\n" + "".join(f"  - {sentence}\n" for sentence in sentences))
    if answer.citations:
        out.write("\nSources:\n")
        for c in answer.citations:
            head = f"[{c.number}] {c.title}" + (f" ({c.date})" if c.date else "") + f" - {c.doc_path}"
            out.write(f"{head}, chars {c.start}-{c.end}\n")
            out.write(f"    {' '.join(c.text.split())}\n")
    if answer.search_translation:
        out.write(f"\nAlso searched in the documents' language as: {answer.search_translation}\n")
    t = answer.timings
    translation = f"translation {t['translate_s']:.2f} s, " if "translate_s" in t else ""
    out.write(
        f"\n({translation}retrieval {t.get('retrieval_s', 0):.2f} s, first token {t.get('first_token_s', 0):.2f} s, "
        f"total {t.get('total_s', 0):.2f} s)\n"
    )


def _stream_answer(assistant: Assistant, question: str, history: list[dict[str, str]], out: TextIO) -> Answer:
    answer = None
    for event in assistant.stream(question, history):
        if isinstance(event, Token):
            out.write(event.text)
            out.flush()
        elif isinstance(event, Status):
            pass
        elif isinstance(event, Answer):
            answer = event
    out.write("\n\n")
    assert answer is not None
    return answer


def cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    assistant = _assistant(args)
    report = assistant.ingest(args.folder, show_bar=not args.quiet)
    out.write(report.summary() + "\n")
    for path, reason in report.skipped.items():  # names may hold terminal escapes: printed inert
        out.write(f"  skipped {display_name(path)}: {display_name(reason)}\n")
    return 0


def cmd_ask(args: argparse.Namespace, out: TextIO) -> int:
    assistant = _assistant(args)
    assistant.ingest()
    if args.json:
        out.write(json.dumps(assistant.ask(args.question).to_dict(), ensure_ascii=False, indent=2) + "\n")
        return 0
    answer = assistant.ask(args.question)
    print_answer(answer, out)
    return 0


def cmd_chat(args: argparse.Namespace, out: TextIO, stdin: TextIO = sys.stdin) -> int:
    assistant = _assistant(args)
    assistant.ingest()
    history: list[dict[str, str]] = []
    out.write("Ask about your documents. Empty line or Ctrl-D to quit; /new starts over.\n")
    while True:
        out.write("\n> ")
        out.flush()
        line = stdin.readline()
        if not line or not line.strip():
            return 0
        question = line.strip()
        if question == "/new":
            history.clear()
            continue
        try:
            answer = _stream_answer(assistant, question, history, out)
        except RagError as exc:
            out.write(f"Error: {exc}\n")
            continue
        out.write("---\n")
        print_answer(answer, out)
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]


def cmd_ui(args: argparse.Namespace, out: TextIO) -> int:
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parent.parent / "app.py"), run_name="__main__")
    return 0


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import uvicorn

    from rag.api import create_app
    from rag.config import Settings
    from rag.warmup import Warmer

    settings = Settings()
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    api_key = settings.api_key if args.api_key is None else args.api_key
    if not api_key and host not in ("127.0.0.1", "localhost", "::1"):
        out.write(f"Warning: serving on {host} without an API key (set --api-key or RAG_API_KEY).\n")
    # built before listening, so a bad setting or a server that is down stops here with a clear error
    assistant = _assistant(args)
    if not args.no_ingest:
        assistant.ingest()
    app = create_app(assistant, api_key=api_key, stream_mode=args.stream_mode)
    Warmer(assistant.warm).request()  # the LLM prefix, in the background: the port opens at once
    out.write(f"OpenAI-compatible API on http://{host}:{port}/v1 (model rag-assistant)\n")
    out.flush()
    uvicorn.run(app, host=host, port=port, log_level="info" if args.verbose else "warning")
    return 0


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    from rag.eval.pipelines import evaluate, rescore_results

    if args.rescore:
        if args.squad or args.docs:
            raise RagError("--rescore re-reads stored answers: it takes --set, not --squad or --docs.")
        rescore_results(args.rescore, args.set, args.out, log=out)
        return 0
    result = evaluate(
        set_path=args.set,
        squad=args.squad,
        docs=args.docs,
        limit=args.limit,
        seed=args.seed,
        pipeline=args.pipeline,
        out=args.out,
        compare_to=args.compare,
        progress=not args.quiet,
        log=out,
        only=[x.strip() for x in (args.only or "").split(",") if x.strip()],
    )
    if result.skipped:
        out.write(f"Skipped: {result.skipped}\n")
    return 0


def cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    from pathlib import Path

    from rag.bench import SP_ZIP, BenchOptions, run_bench

    options = BenchOptions(
        runs=args.runs,
        questions=args.questions,
        sp_limit=args.sp_limit,
        skip_startup=args.skip_startup,
        skip_sp=args.skip_sp,
        sp_zip=Path(args.sp_zip) if args.sp_zip else SP_ZIP,
        out=Path(args.out) if args.out else None,
        progress=not args.quiet,
    )
    run_bench(options, log=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rag", description="Cited answers from your documents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="sync a folder of documents into the index")
    p.add_argument("folder", nargs="?", default=None, help="folder to ingest (default: RAG_DOCS_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", help="answer one question")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the whole Answer as JSON")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", help="chat in the terminal")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("ui", help="serve the browser chat")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("serve", help="serve the assistant as an OpenAI-compatible API (/v1/chat/completions)")
    p.add_argument("--host", default=None, help="address to bind (default RAG_API_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default RAG_API_PORT, 8000)")
    p.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY (default RAG_API_KEY)")
    p.add_argument(
        "--stream-mode",
        choices=["live", "checked"],
        default="live",
        help="stream the model's tokens live (default) or only the checked answer",
    )
    p.add_argument("--no-ingest", action="store_true", help="do not sync RAG_DOCS_DIR at start (replicas)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("eval", help="score the assistant on a question set; writes a report folder")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--set", default=None, help="JSONL question set (default: rag/eval/sets/seed.jsonl)")
    source.add_argument("--squad", default=None, help="SQuAD-format file, e.g. ../shared/bench/cnil_squad.json")
    p.add_argument(
        "--docs",
        default=None,
        metavar="FOLDER",
        help="documents to ask over, in their own cached index (default: the set's <name>/docs folder "
        "if it has one, e.g. rag/eval/sets/poisoned/docs, else RAG_DOCS_DIR)",
    )
    p.add_argument("--limit", type=int, default=None, help="questions to run (--squad: questions answered)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for --limit")
    p.add_argument(
        "--only",
        metavar="A,B",
        default=None,
        help="only the questions whose type (answerable, unanswerable, multi_turn, injection), language or "
        "tag is one of these, e.g. --only multi_turn or --only de,es",
    )
    p.add_argument("--pipeline", choices=["ours", "baseline", "both"], default="ours", help="what to evaluate")
    p.add_argument("--out", default=None, help="report folder (default: reports/<timestamp>)")
    p.add_argument("--compare", default=None, metavar="OLD.json", help="an earlier results.json to compare with")
    p.add_argument(
        "--rescore",
        default=None,
        metavar="OLD.json",
        help="apply the set's current injection checks to the answers stored in an earlier results.json "
        "(no model is run); writes a new report with a before/after table",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="measure start-up, ingestion, retrieval and answer speed; writes a report folder")
    p.add_argument("--runs", type=int, default=5, help="repetitions of the start-up and re-ingest measurements")
    p.add_argument(
        "--questions", type=int, default=None, help="eval-set questions per pipeline (default all; 0 = skip)"
    )
    p.add_argument("--sp-limit", type=int, default=None, help="ingest only the first N Service-Public pages")
    p.add_argument("--sp-zip", default=None, help="Service-Public zip (default ../shared/bench/...fiches_txt.zip)")
    p.add_argument("--skip-startup", action="store_true", help="do not measure start-up in fresh processes")
    p.add_argument("--skip-sp", action="store_true", help="do not ingest the Service-Public set")
    p.add_argument("--out", default=None, help="report folder (default: reports/bench-<timestamp>)")
    p.add_argument("--quiet", action="store_true", help="no per-question progress output")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args, out))
    except RagError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
