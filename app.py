"""Start the chat UI: serve the page, then sync the documents folder into the index and warm the model.

The page comes up at once, whatever the folder holds: a first sync of thousands of documents
takes minutes to hours on 2 cores, and meanwhile questions are answered from what was indexed
before (or told that indexing is under way; see `Assistant.ingest`)."""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.errors import RagError
    from rag.ingest import check_folder
    from rag.ui import create_app, launch
    from rag.warmup import Warmer

    try:
        settings = Settings()
        check_folder(settings.docs_dir)
        assistant = Assistant(settings)
    except RagError as error:
        raise SystemExit(f"error: {error}") from None
    # once the page is up (on 2 cores, warming while Gradio starts delayed the page by ~7 s): sync
    # the documents folder and the uploads, then load the model and read the fixed prompt prefix;
    # warm again whenever an upload or a removal in the page changes the documents
    warmer = Warmer(assistant.warm)
    uploads = settings.data_dir / "uploads"  # documents added in the browser (see rag/ui.py)

    def prepare() -> None:
        sync_then_warm(assistant, [settings.docs_dir, uploads], warmer.request)

    threading.Thread(target=_when_serving, args=(settings.ui_host, settings.ui_port, prepare), daemon=True).start()
    launch(create_app(assistant, on_change=warmer.request), settings)


def sync_then_warm(assistant: Any, folders: Sequence[Path], warm: Callable[[], None]) -> None:
    """Sync each folder that exists, in order (a progress bar for the first), then `warm()`. A
    sync that fails is logged and the rest still runs: the page serves what is indexed."""
    for n, folder in enumerate(folders):
        if not folder.is_dir():
            continue
        try:
            report = assistant.ingest(folder, show_bar=n == 0)
            logging.getLogger("app").info("%s synced: %s", folder, report.summary())
        except Exception as error:  # RagError (another process writing the index, ...) or a bug
            logging.getLogger("app").error("could not sync %s: %s", folder, error)
    warm()


def _when_serving(host: str, port: int, then: Callable[[], None], wait_s: float = 60.0) -> None:
    """Call `then` once the page answers HTTP (any status), or after `wait_s` seconds anyway. A
    listening port is not enough: Gradio accepts connections seconds before it can serve the
    page, and loading the model meanwhile (~5 s of both cores) delayed the page by as much."""
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with opener.open(url, timeout=2):
                break
        except urllib.error.HTTPError:
            break  # an answer all the same (e.g. a login page)
        except OSError:  # URLError included: not serving yet
            time.sleep(0.2)
    then()


if __name__ == "__main__":
    main()
