"""Token counting with tiktoken's cl100k_base, loaded offline.

tiktoken downloads its encoding files on first use, which fails without internet.
llama-index-core ships the cl100k_base file in its package; we point tiktoken's cache at
it before the first `get_encoding` so nothing is ever fetched.

cl100k is not the answering model's tokenizer (Qwen's); it is a stable, fast yardstick
for chunk budgets. French text costs ~1.2x the Qwen count in cl100k tokens.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import util
from pathlib import Path
from typing import Any


def _bundled_cache_dir() -> str | None:
    spec = util.find_spec("llama_index.core")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "_static" / "tiktoken_cache"
    return str(folder) if folder.is_dir() else None


@lru_cache(maxsize=1)
def encoding() -> Any:
    folder = _bundled_cache_dir()
    if folder and "TIKTOKEN_CACHE_DIR" not in os.environ:
        os.environ["TIKTOKEN_CACHE_DIR"] = folder
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))
