"""Start the chat UI: sync the documents folder into the index, then serve the page."""

from __future__ import annotations

import logging
import os

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
        assistant.ingest()  # syncs settings.docs_dir; fast when the folder is unchanged
    except RagError as error:
        raise SystemExit(f"error: {error}") from None
    launch(create_app(assistant), settings)


if __name__ == "__main__":
    main()
