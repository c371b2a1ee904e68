"""Start the chat UI: sync the documents folder into the index, then serve the page."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
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
        target=_when_listening, args=(settings.ui_host, settings.ui_port, warmer.request), daemon=True
    ).start()
    launch(create_app(assistant, on_change=warmer.request), settings)


def _when_listening(host: str, port: int, then: Callable[[], None], wait_s: float = 60.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    then()


if __name__ == "__main__":
    main()
