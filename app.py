"""Start the chat UI: sync the documents folder into the index, then serve the page."""

from __future__ import annotations

import logging
import os
import threading

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.errors import RagError
    from rag.ui import create_app, launch

    try:
        settings = Settings()
        assistant = Assistant(settings)
        assistant.ingest(show_bar=True)  # syncs settings.docs_dir; fast when the folder is unchanged
        uploads = settings.data_dir / "uploads"  # documents added in the browser (see rag/ui.py)
        if uploads.is_dir():
            assistant.ingest(uploads)
    except RagError as error:
        raise SystemExit(f"error: {error}") from None
    # load the model and read the fixed prompt prefix while the page comes up
    threading.Thread(target=_warm, args=(assistant,), daemon=True).start()
    launch(create_app(assistant), settings)


def _warm(assistant: object) -> None:
    try:
        assistant.warm()  # type: ignore[attr-defined]
    except Exception as error:  # the first question will report it properly
        logging.getLogger(__name__).warning("could not warm the LLM: %s", error)


if __name__ == "__main__":
    main()
