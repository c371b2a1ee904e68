"""SIGKILL an ingestion at random moments, restart it, and check the index repairs itself.

    .venv/bin/python benchmarks/crash_trials.py [--trials 50] [--seed 0] [--corpus DIR | --pages 200]
        [--embedder hash|e5] [--out crash.json]
    .venv/bin/python benchmarks/crash_trials.py --growth [--cycles 10] [--out growth.json]

Each trial runs `sync_folder` (the code behind `python -m rag ingest`, same settings from RAG_*
variables) in a child process on a working copy of the corpus, either into an empty index (3 in
10) or after editing 20 %, deleting 2 % and adding 2 % of the files, and SIGKILLs it: half the
time after a random delay spread over a clean run's duration, half the time as it starts a
random one of a clean run's writes. One trial in five kills the repair run too. A fresh child
then opens the index and the trial fails unless:
  1. every document the manifest calls current is stored whole, exactly as a clean ingest stores it
     (otherwise the next run would skip a half-written document for ever);
  2. a re-ingest completes;
  3. afterwards the manifest holds one sha256 per file, equal to the file's, no deleted file, and
     the chunks (ids, texts, versions, count) equal a clean ingest of the same folder into a fresh index;
  4. a search returns no chunk that is not stored, ranks a searched text first, and every stored
     vector can be read (chunks that no search reaches are counted, beside a clean index's: see `dump`).

The default embedder is the hash fake: the property under test is the store and manifest write
path, not the model. The corpus is `--pages` Service-Public pages from
../shared/bench/service_public_fiches_txt.zip, or generated French-like pages if it is absent,
plus one long generated document (~1100 chunks: its write spans two batches).
`--growth` measures the index folder on disk over unchanged, touched and edited-then-reverted
re-ingests instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SP_ZIP = ROOT.parent / "shared" / "bench" / "service_public_fiches_txt.zip"
COLLECTION = "documents"
LONG_DOC = "guide-complet.txt"
_VOCABULARY = (
    "le la les un une des du de et à pour par avec sans dans sur sous demande droit service public mairie "
    "préfecture carte identité passeport délai pièce justificatif formulaire allocation logement impôt "
    "revenu déclaration famille enfant employeur salarié retraite pension contrat bail locataire "
    "propriétaire démarche dossier rendez-vous attestation naissance mariage décès permis conduire "
    "véhicule amende recours tribunal avocat aide sociale santé assurance maladie chômage formation"
)
WORDS = _VOCABULARY.split()


# -- corpus -----------------------------------------------------------------------------------


def _paragraph(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(2, 6)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 24))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def page_text(rng: random.Random, paragraphs: int) -> str:
    title = " ".join(rng.choice(WORDS) for _ in range(4)).capitalize()
    return title + "\n\n" + "\n\n".join(_paragraph(rng) for _ in range(paragraphs)) + "\n"


def make_corpus(folder: Path, pages: int, seed: int = 0) -> Path:
    """`pages` generated French-like pages of 1 to 40 paragraphs."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(pages):
        (folder / f"fiche-{i:04d}.txt").write_text(page_text(rng, rng.randint(1, 40)), encoding="utf-8")
    return folder


def add_long_document(folder: Path, paragraphs: int, seed: int = 0) -> None:
    """One long generated document (1500 paragraphs: ~1100 chunks, more than one write batch)."""
    text = page_text(random.Random(seed), paragraphs)
    (folder / LONG_DOC).write_text(text, encoding="utf-8")


def service_public_corpus(folder: Path, pages: int, seed: int) -> Path | None:
    """`pages` Service-Public pages drawn from the shared zip, or None if it is absent."""
    if not SP_ZIP.exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(SP_ZIP) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith((".txt", ".md")) and not n.endswith("/"))
        for name in random.Random(seed).sample(names, min(pages, len(names))):
            (folder / Path(name).name).write_bytes(zf.read(name))
    return folder


def edit(path: Path, rng: random.Random, how: str = "") -> str:
    """Rewrite one paragraph, append one, or cut the tail off; returns which."""
    paragraphs = path.read_text(encoding="utf-8").split("\n\n")
    how = how or rng.choice(["rewrite", "append", "cut"])
    if how == "rewrite":
        paragraphs[rng.randrange(len(paragraphs))] = _paragraph(rng)
    elif how == "append":
        paragraphs.append(_paragraph(rng))
    elif len(paragraphs) > 2:
        del paragraphs[rng.randrange(1, len(paragraphs)) :]
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return how


def mutate(folder: Path, rng: random.Random, edits: int, deletes: int, adds: int) -> list[str]:
    """Edit, delete and add files (the long document is only edited, never cut); returns what was done."""
    files = sorted(folder.iterdir())
    picked = rng.sample(files, min(edits, len(files)))
    done = [f"edit {p.name} ({edit(p, rng, 'rewrite' if p.name == LONG_DOC else '')})" for p in picked]
    files = [p for p in sorted(folder.iterdir()) if p.name != LONG_DOC]
    for path in rng.sample(files, min(deletes, len(files))):
        path.unlink()
        done.append(f"delete {path.name}")
    for _ in range(adds):
        path = folder / f"ajout-{rng.randrange(10**8):08d}.txt"
        path.write_text(page_text(rng, rng.randint(1, 30)), encoding="utf-8")
        done.append(f"add {path.name}")
    return done


# -- the child: the real ingestion code path --------------------------------------------------


def make_embedder(kind: str) -> Any:
    from rag.embeddings import HashEmbedder

    if kind == "e5":
        from rag.assistant import default_embedder
        from rag.config import Settings

        return default_embedder(Settings())
    return HashEmbedder()


def open_store(settings: Any, embedder: Any) -> Any:
    from rag.store import ChunkStore

    return ChunkStore(collection=settings.collection, path=settings.index_dir, embedder_name=embedder.name)


def dump(store: Any, embedder: Any | None = None, samples: int = 10) -> dict[str, Any]:
    """What is indexed: manifest, {chunk id: [doc path, doc sha256, text sha256]}, and a search check.

    The search check asks the vector index for as many neighbours as there are chunks, for
    `samples` stored texts: it must return no chunk that is not stored and rank the chunk searched
    for (or its twin text) first. A stored chunk it leaves out, and that a search for its own
    vector misses too, is listed as unreachable: HNSW loses the odd outlier (a node no neighbour
    links back to) even in a clean index, so that is measured against a clean index, not failed.
    """
    from rag.store import text_sha

    chunks = store.chunks()
    out: dict[str, Any] = {
        "manifest": {path: sorted(shas) for path, shas in store.manifest().items()},
        "chunks": {c.id: [c.doc_path, c.doc_sha256, text_sha(c.text)] for c in chunks},
        "listed": len(chunks),
        "count": store.count(),
        "search": [],
        "unreachable": [],
    }
    if embedder is None or not chunks:
        return out
    ids, left_out, first = {c.id for c in chunks}, set(), []
    for chunk in random.Random(0).sample(chunks, min(samples, len(chunks))):
        hits = store.query(embedder.embed_passages([chunk.text])[0], len(chunks))
        found = {c.id for c, _ in hits}
        out["search"] += [f"search returned {cid}, which is not stored" for cid in sorted(found - ids)]
        left_out |= ids - found
        first.append((chunk, hits[0]))
    for cid in sorted(left_out):
        try:
            vector = store.collection.get(ids=[cid], include=["embeddings"])["embeddings"][0]
        except Exception as exc:  # Chroma reads vectors from the HNSW segment: a lost one fails here
            out["search"].append(f"{cid} is stored but its vector cannot be read: {exc}")
            continue
        if not any(c.id == cid or s > 0.9999 for c, s in store.query(np.asarray(vector), 10)):
            out["unreachable"].append(cid)
    for chunk, (hit, sim) in first:
        if chunk.id not in out["unreachable"] and not (hit.id == chunk.id or (hit.text == chunk.text and sim > 0.999)):
            out["search"].append(f"search for {chunk.id} ranks {hit.id} first")
    return out


def child(mode: str, embedder_kind: str, pause: float, flush: int, dump_file: str) -> int:
    """`ingest`: sync RAG_DOCS_DIR into RAG_INDEX_DIR; `repair`: the same, with dumps before and after.

    Each write to the collection is announced ("write upsert") before it is made, and followed by
    a `pause`, so the parent can kill the process at a chosen write.
    """
    from rag.config import Settings
    from rag.errors import RagError
    from rag.ingest import sync_folder

    settings = Settings()
    embedder = make_embedder(embedder_kind)
    try:
        store = open_store(settings, embedder)
        before = dump(store) if mode == "repair" else None
        for name in ("add", "upsert", "update", "delete"):
            setattr(store.collection, name, _announced(name, getattr(store.collection, name), pause))
        print("ready", flush=True)
        sync_folder(settings.docs_dir, store, embedder, settings.chunk_tokens, flush_chunks=flush)
    except RagError as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        return 3
    print("done", flush=True)
    if dump_file:
        Path(dump_file).write_text(json.dumps({"before": before, "after": dump(store, embedder)}))
    return 0


def _announced(name: str, real: Any, pause: float) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        print(f"write {name}", flush=True)
        result = real(*args, **kwargs)
        time.sleep(pause)
        return result

    return call


# -- the parent -------------------------------------------------------------------------------


class Child:
    """A child ingestion (see `child`) whose output lines are collected, timestamped, as they come."""

    def __init__(
        self,
        env: dict[str, str],
        mode: str = "ingest",
        embedder: str = "hash",
        pause: float = 0.0,
        flush: int = 256,
        dump_file: Path | None = None,
    ) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--embedder", embedder]
        cmd += ["--pause", str(pause), "--flush", str(flush), "--dump", str(dump_file or "")]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[tuple[float, str]] = []  # (seconds since start, line)
        self.killed = False
        self.plan = ""  # when the parent meant to kill it
        self.stderr = ""
        self._seen = threading.Condition()
        self._readers = [threading.Thread(target=self._read_stdout), threading.Thread(target=self._read_stderr)]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append((time.perf_counter() - self.started, line.strip()))
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def count(self, prefix: str) -> int:
        return sum(line.startswith(prefix) for _, line in self.lines)

    def at(self, prefix: str) -> float | None:
        """Seconds from the start to the first line starting with `prefix`, if any."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 300.0) -> bool:
        """Wait until `count` lines start with `prefix`; False if the child ended or time ran out first."""
        with self._seen:
            return (
                self._seen.wait_for(lambda: self.count(prefix) >= count or not self._readers[0].is_alive(), timeout)
                and self.count(prefix) >= count
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.killed = True

    def finish(self, timeout: float = 900.0) -> Child:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self

    @property
    def writes(self) -> int:
        return self.count("write")

    @property
    def done(self) -> bool:
        return self.at("done") is not None

    @property
    def mid_write(self) -> bool:
        """Killed after its first write and before it finished."""
        return self.killed and self.writes > 0 and not self.done

    @property
    def seconds(self) -> float:
        """From "ready" to "done", or to the end."""
        ready = self.at("ready") or 0.0
        end = self.at("done") or (self.lines[-1][0] if self.lines else 0.0)
        return max(0.0, end - ready)


def child_env(docs: Path, index: Path) -> dict[str, str]:
    return {**os.environ, "RAG_DOCS_DIR": str(docs), "RAG_INDEX_DIR": str(index), "RAG_COLLECTION": COLLECTION}


def run_child(env: dict[str, str], kill_after: float | None = None, kill_at_write: int = 0, **kwargs: Any) -> Child:
    """Run a child to its end, or SIGKILL it `kill_after` s after it is ready, or as it starts write n."""
    child = Child(env, **kwargs)
    child.plan = (
        f"kill at write {kill_at_write}" if kill_at_write else f"kill at {kill_after:.1f} s" if kill_after else ""
    )
    if kill_at_write and child.wait_for("write", kill_at_write):
        child.kill()
    elif kill_after is not None and child.wait_for("ready"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(kill_after)
        child.kill()
    return child.finish()


def clean_dump(docs: Path, embedder_kind: str, scratch: Path) -> dict[str, Any]:
    """A clean ingest of `docs` into a fresh index, in this process."""
    from rag.config import Settings
    from rag.ingest import sync_folder

    index = Path(tempfile.mkdtemp(prefix="clean-", dir=scratch))
    settings = Settings(docs_dir=docs, index_dir=index, collection=COLLECTION)
    embedder = make_embedder(embedder_kind)
    store = open_store(settings, embedder)
    sync_folder(docs, store, embedder, settings.chunk_tokens)
    out = dump(store, embedder)
    out["bytes"] = folder_bytes(index)
    shutil.rmtree(index)
    return out


def file_shas(docs: Path) -> dict[str, str]:
    from rag.ingest import file_sha256

    return {p.relative_to(docs).as_posix(): file_sha256(p) for p in docs.rglob("*") if p.is_file()}


def check(before: dict[str, Any], after: dict[str, Any], clean: dict[str, Any], shas: dict[str, str]) -> list[str]:
    """Failures of one trial: `before`/`after` the repair run, against a clean ingest."""
    failures = []
    by_doc: dict[str, set[tuple[str, str, str]]] = {}
    for cid, (path, sha, tsha) in clean["chunks"].items():
        by_doc.setdefault(path, set()).add((cid, sha, tsha))
    for path, versions in before["manifest"].items():
        if versions == [shas.get(path)]:  # the manifest says current: the next run will skip it
            stored = {(cid, sha, tsha) for cid, (p, sha, tsha) in before["chunks"].items() if p == path}
            if stored != by_doc.get(path, set()):
                failures.append(
                    f"after the kill, {path} is marked current but holds {len(stored)} chunks, "
                    f"not the {len(by_doc.get(path, ()))} of a clean ingest"
                )
    want_manifest = {path: [shas[path]] for path in clean["manifest"]}
    if after["manifest"] != want_manifest:
        paths = sorted(set(after["manifest"]) | set(want_manifest))
        wrong = [(p, after["manifest"].get(p), want_manifest.get(p)) for p in paths]
        wrong = [w for w in wrong if w[1] != w[2]]
        failures.append(f"{len(wrong)} manifest entries differ from the folder, e.g. (path, stored, file): {wrong[:2]}")
    if after["chunks"] != clean["chunks"]:
        extra = set(after["chunks"]) - set(clean["chunks"])
        missing = set(clean["chunks"]) - set(after["chunks"])
        changed = {k for k in set(after["chunks"]) & set(clean["chunks"]) if after["chunks"][k] != clean["chunks"][k]}
        failures.append(
            f"chunks differ from a clean ingest: {len(extra)} extra, {len(missing)} missing, {len(changed)} changed"
        )
    if not after["count"] == after["listed"] == clean["count"]:
        failures.append(f"count {after['count']}, listed {after['listed']}, clean {clean['count']}")
    failures += after["search"]
    return failures


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def trials(args: argparse.Namespace, corpus: Path, scratch: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    docs, index = scratch / "docs", scratch / "index"
    shutil.copytree(corpus, docs)
    env = child_env(docs, index)
    n_files = sum(1 for _ in docs.iterdir())
    edits, changes = max(2, n_files // 5), max(1, n_files // 50)

    full = run_child(env, embedder=args.embedder)  # clean runs first: they set the kill windows
    mutate(docs, rng, edits, changes, changes)
    update = run_child(env, embedder=args.embedder)
    if full.proc.returncode or update.proc.returncode:
        raise SystemExit(f"a clean ingest failed:\n{full.stderr[-2000:]}{update.stderr[-2000:]}")
    windows = {"full": (full.seconds, full.writes), "update": (update.seconds, update.writes)}
    print(
        f"clean runs: full ingest {full.seconds:.1f} s and {full.writes} writes, update ({edits} edits, "
        f"{changes} deletes, {changes} adds) {update.seconds:.1f} s and {update.writes} writes, after start-up",
        flush=True,
    )

    def killed_run(kind: str) -> Child:  # half the kills at a random time, half at a random write
        seconds, writes = windows[kind]
        if rng.random() < 0.5:
            return run_child(env, embedder=args.embedder, kill_after=rng.uniform(0, seconds))
        return run_child(env, embedder=args.embedder, kill_at_write=rng.randint(1, max(1, writes)))

    results = []
    for trial in range(1, args.trials + 1):
        kind = "full" if rng.random() < 0.3 else "update"
        done = ["wipe index"] if kind == "full" else mutate(docs, rng, edits, changes, changes)
        if kind == "full":
            shutil.rmtree(index, ignore_errors=True)
        kills = [killed_run(kind)]
        if rng.random() < 0.2:  # and crash the repair too
            kills.append(killed_run(kind))
        dump_file = scratch / "dump.json"
        dump_file.unlink(missing_ok=True)
        repair = run_child(env, mode="repair", embedder=args.embedder, dump_file=dump_file)
        shas = file_shas(docs)
        clean = clean_dump(docs, args.embedder, scratch)
        if repair.proc.returncode:
            failures = [f"the repair run failed (exit {repair.proc.returncode}): {repair.stderr.strip()[-600:]}"]
            repaired: dict[str, Any] = {}
        else:
            repaired = json.loads(dump_file.read_text())
            failures = check(repaired["before"], repaired["after"], clean, shas)
        where = [
            "mid-write" if k.mid_write else "finished first" if k.done else "before any write" if k.killed else "?"
            for k in kills
        ]
        result = {
            "trial": trial,
            "kind": kind,
            "changes": done,
            "kills": [
                {"plan": k.plan, "after_s": round(k.seconds, 2), "writes_seen": k.writes, "landed": w}
                for k, w in zip(kills, where, strict=True)
            ],
            "repair_s": round(repair.seconds, 2),
            "chunks": clean["count"],
            "unreachable": len(repaired.get("after", {}).get("unreachable", [])),
            "unreachable_clean": len(clean["unreachable"]),
            "index_bytes": folder_bytes(index),
            "clean_bytes": clean["bytes"],
            "failures": failures,
        }
        results.append(result)
        if failures and args.keep:
            shutil.copytree(index, args.keep / f"trial-{trial}-index")
        landed = ", ".join(
            f"{k.plan}: {w}, {k.seconds:.1f} s, {k.writes} writes" for k, w in zip(kills, where, strict=True)
        )
        status = "FAIL " + "; ".join(failures) if failures else "ok"
        print(
            f"trial {trial:3d} {kind:6s} {landed}; repair {repair.seconds:.1f} s; {clean['count']} chunks, "
            f"{result['unreachable']} unreachable ({result['unreachable_clean']} in a clean index): {status}",
            flush=True,
        )
    kills_total = sum(len(r["kills"]) for r in results)
    mid = sum(k["landed"] == "mid-write" for r in results for k in r["kills"])
    failed = sum(bool(r["failures"]) for r in results)
    unreachable = sum(r["unreachable"] for r in results), sum(r["unreachable_clean"] for r in results)
    summary = {
        "trials": len(results),
        "kills": kills_total,
        "kills_mid_write": mid,
        "failed_trials": failed,
        "unreachable_by_search": {"repaired": unreachable[0], "clean": unreachable[1]},
        "clean_runs": {k: {"seconds": t, "writes": w} for k, (t, w) in windows.items()},
        "files": n_files,
    }
    print(
        f"\n{len(results)} trials, {kills_total} kills, {mid} landed mid-write, {failed} failed trials; "
        f"chunks unreachable by vector search, summed over trials: {unreachable[0]} in the repaired indexes, "
        f"{unreachable[1]} in clean ones"
    )
    return {"summary": summary, "trials": results}


def growth(args: argparse.Namespace, corpus: Path, scratch: Path) -> dict[str, Any]:
    """Index bytes on disk after a first ingest, unchanged and touched re-ingests, and edit+revert cycles."""
    from rag.config import Settings
    from rag.ingest import sync_folder

    docs, index = scratch / "docs", scratch / "index"
    shutil.copytree(corpus, docs)
    settings = Settings(docs_dir=docs, index_dir=index, collection=COLLECTION)
    embedder = make_embedder(args.embedder)
    store = open_store(settings, embedder)
    steps: list[tuple[str, int]] = []

    def ingest(step: str) -> None:
        sync_folder(docs, store, embedder, settings.chunk_tokens)
        steps.append((step, folder_bytes(index)))
        print(f"{step:28s} {steps[-1][1] / 1e6:8.2f} MB  {steps[-1][1] / steps[0][1] - 1:+7.1%}", flush=True)

    ingest("first ingest")
    for i in range(10):
        ingest(f"unchanged re-ingest {i + 1}")
    for path in docs.iterdir():
        path.write_bytes(path.read_bytes())  # same bytes, new mtime
    ingest("files rewritten identical")
    rng = random.Random(args.seed)
    for cycle in range(args.cycles):
        files = rng.sample(sorted(docs.iterdir()), max(1, len(list(docs.iterdir())) // 10))
        saved = {p: p.read_bytes() for p in files}
        for path in files:
            edit(path, rng, "rewrite")
        ingest(f"cycle {cycle + 1}: {len(files)} files edited")
        for path, data in saved.items():
            path.write_bytes(data)
        ingest(f"cycle {cycle + 1}: reverted")
    first, last = steps[0][1], steps[-1][1]
    most = max(b for _, b in steps)
    print(
        f"\nfirst ingest {first / 1e6:.2f} MB, at the end {last / 1e6:.2f} MB ({last / first - 1:+.1%}), "
        f"largest {most / 1e6:.2f} MB ({most / first - 1:+.1%}), {store.count()} chunks"
    )
    return {"steps": steps, "growth": last / first - 1, "max_growth": most / first - 1, "chunks": store.count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, help="a folder of documents (default: Service-Public pages)")
    parser.add_argument("--pages", type=int, default=200, help="pages of the default corpus")
    parser.add_argument("--long-doc", type=int, default=1500, help="paragraphs of the long document added (0: none)")
    parser.add_argument("--embedder", choices=["hash", "e5"], default="hash")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--keep", type=Path, help="copy the index of each failed trial under this folder")
    parser.add_argument("--growth", action="store_true", help="measure index growth over re-ingests instead")
    parser.add_argument("--cycles", type=int, default=10, help="edit+revert cycles of --growth")
    parser.add_argument("--child", choices=["ingest", "repair"], help=argparse.SUPPRESS)
    parser.add_argument("--pause", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--flush", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--dump", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        raise SystemExit(child(args.child, args.embedder, args.pause, args.flush, args.dump))

    with tempfile.TemporaryDirectory(prefix="crash-trials-") as tmp:
        scratch = Path(tmp)
        corpus = args.corpus
        if corpus is None:
            corpus = service_public_corpus(scratch / "corpus", args.pages, args.seed) if SP_ZIP.exists() else None
            if corpus is None:
                print(f"{SP_ZIP} not found: using {args.pages} generated pages instead", flush=True)
                corpus = make_corpus(scratch / "corpus", args.pages, args.seed)
            if args.long_doc:
                add_long_document(corpus, args.long_doc, args.seed)
        result = growth(args, corpus, scratch) if args.growth else trials(args, corpus, scratch)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    failed = result.get("summary", {}).get("failed_trials", 0)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
