"""Offline, cited-answer chat over a folder of documents.

    from rag import Assistant
    assistant = Assistant()
    answer = assistant.ask("Why did Parler drop its suit?")

Names are imported lazily: `import rag` stays fast, and llama-index, Chroma and the
models load only when an Assistant is built.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# numpy's BLAS threads fight the embedder's and the LLM's for 2 cores; set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if TYPE_CHECKING:
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.errors import RagError
    from rag.types import Answer, Citation, IngestReport, Status, Token

_EXPORTS = {
    "Assistant": "rag.assistant",
    "Settings": "rag.config",
    "RagError": "rag.errors",
    "Answer": "rag.types",
    "Citation": "rag.types",
    "IngestReport": "rag.types",
    "Status": "rag.types",
    "Token": "rag.types",
}

__all__ = ["Answer", "Assistant", "Citation", "IngestReport", "RagError", "Settings", "Status", "Token"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
