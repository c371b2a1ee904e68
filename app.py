"""Start the chat UI: sync the documents folder into the index, then serve the page."""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.errors import RagError
    from rag.ui import create_app, launch
    from rag.warmup import Warmer

    try:
        settings = Settings()
        assistant = Assistant(settings)
        assistant.ingest(show_bar=True)  # syncs settings.docs_dir; fast when the folder is unchanged
        uploads = settings.data_dir / "uploads"  # documents added in the browser (see rag/ui.py)
        if uploads.is_dir():
            assistant.ingest(uploads)
    except RagError as error:
        raise SystemExit(f"error: {error}") from None
    # load the model and read the fixed prompt prefix once the page is up (on 2 cores, warming
    # while Gradio starts delayed the page by ~7 s), and again whenever an upload or a removal
    # in the page changes the documents
    warmer = Warmer(assistant.warm)
    threading.Thread(
        target=_when_serving, args=(settings.ui_host, settings.ui_port, warmer.request), daemon=True
    ).start()
    launch(create_app(assistant, on_change=warmer.request), settings)


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
