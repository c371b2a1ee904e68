"""User-facing errors. Each message says what went wrong and how to fix it.

RagError                      base: str(error) is safe to show to a user
├── ConfigError               a setting has a bad value
├── ModelError                the bundled model files are missing or corrupt
├── LLMError                  the LLM server is unreachable, failing or too slow
├── StoreError                the index cannot be opened or written
│   └── IndexLockedError      another process is writing the index
├── EmptyIndexError           nothing is indexed yet
└── QuestionError             the question is empty or too long
"""

from __future__ import annotations


class RagError(Exception):
    """Base class: the message is meant for the user."""


class ConfigError(RagError):
    pass


class ModelError(RagError):
    pass


class LLMError(RagError):
    pass


class StoreError(RagError):
    pass


class IndexLockedError(StoreError):
    pass


class EmptyIndexError(RagError):
    pass


class QuestionError(RagError):
    pass
