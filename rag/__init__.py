"""Offline, cited-answer chat over a folder of documents.

from rag import Assistant
assistant = Assistant()
answer = assistant.ask("Why did Parler drop its suit?")
"""

import os

# numpy's BLAS threads fight the embedder's and the LLM's for 2 cores; set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.assistant import Assistant  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.errors import RagError  # noqa: E402
from rag.types import Answer, Citation, IngestReport, Status, Token  # noqa: E402

__all__ = ["Answer", "Assistant", "Citation", "IngestReport", "RagError", "Settings", "Status", "Token"]
