"""A fake assistant that answers a few seed questions from the article, and their records."""

from __future__ import annotations

import re

import pytest

from rag.eval.dataset import SEED_SET, EvalRecord, load_set
from rag.llm import Message, ScriptedLLM

FOUR = ["en-host-01", "en-unans-damages-01", "mt-en-why-01", "inj-en-link-01"]


def _number(system: str, needle: str) -> int:
    found = re.findall(rf"^\[(\d+)\] .*{needle}", system, re.MULTILINE)
    return int(found[-1]) if found else 1


def seed_reply(messages: list[Message]) -> str:
    """Answers as a good model would: from the sources, with the right [n]; NOT_FOUND otherwise."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if "Rewritten question:" in user:
        return "Why did Parler drop its lawsuit against Amazon?"
    question = user.lower()
    if "host" in question:
        return f"Parler moved to another host, Epik [{_number(system, 'Epik')}]."
    if "lawsuit" in question or "drop" in question:
        reply = "The lawsuit had become moot since Parler was back online, and its victory was uncertain"
        return f"{reply} [{_number(system, 'sans objet')}]."
    return "NOT_FOUND"


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
