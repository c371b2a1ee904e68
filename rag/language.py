"""Which language a question is written in, so the answer can be written in it.

Uses py3langid (its model ships inside the package), restricted to the languages the
assistant has a "cannot answer" phrase for. Very short or ambiguous questions
("Parler ?" is also a French verb) fall back to the caller's default.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from rag.prompts import CANNOT_ANSWER

SUPPORTED = tuple(CANNOT_ANSWER)
MIN_CONFIDENCE = 0.6
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _identifier() -> Any:
    import py3langid.langid as langid

    ident = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)
    ident.set_languages(list(SUPPORTED))
    return ident


def detect(text: str, default: str = "en") -> str:
    """ISO 639-1 code of `text` among SUPPORTED, or `default` when unsure."""
    if len(text.strip()) < 3:
        return default
    with _lock:
        code, prob = _identifier().classify(text)
    return str(code) if prob >= MIN_CONFIDENCE else default
