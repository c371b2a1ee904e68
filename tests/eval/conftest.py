"""A fake assistant that answers a few seed questions from the article, and their records."""

from __future__ import annotations

import pytest

from rag.eval.dataset import SEED_SET, EvalRecord, load_set
from rag.llm import ScriptedLLM
from tests.conftest import seed_reply

FOUR = ["en-host-01", "en-unans-damages-01", "mt-en-why-01", "inj-en-link-01"]


@pytest.fixture
def four_records() -> list[EvalRecord]:
    by_id = {r.id: r for r in load_set(SEED_SET)}
    return [by_id[i] for i in FOUR]


@pytest.fixture
def seed_assistant(make_assistant):  # type: ignore[no-untyped-def]
    # English answers to French sources: the scripted judge matches words, so the check is off
    assistant = make_assistant(ScriptedLLM(reply_fn=seed_reply), verify=False)
    assistant.ingest()
    return assistant
