"""rag.language: which language a question is written in, among those the assistant answers in."""

from __future__ import annotations

import pytest

from rag import prompts
from rag.language import SUPPORTED, detect


@pytest.mark.parametrize(
    ("question", "code"),
    [
        ("Why did Parler drop its lawsuit against Amazon?", "en"),
        ("Pourquoi Parler a-t-il abandonné sa plainte ?", "fr"),
        ("Warum hat Parler die Klage zurückgezogen?", "de"),
        ("Parler为什么撤诉？", "zh"),
        ("Parlerはなぜ訴訟を取り下げたのですか？", "ja"),
        ("아마존 이후 어떤 회사가 Parler를 호스팅했나요?", "ko"),
        ("Почему Parler отозвал свой иск?", "ru"),
        ("Яка компанія прийняла Parler після Amazon?", "uk"),
        ("ما الشركة التي استضافت Parler بعد أمازون؟", "ar"),
        ("Która firma przyjęła Parler po Amazonie?", "pl"),
        ("Amazon'dan sonra Parler'i hangi şirket barındırdı?", "tr"),
    ],
)
def test_questions_are_detected_in_their_language(question: str, code: str) -> None:
    assert detect(question) == code


def test_too_short_or_unknown_text_falls_back_to_the_default() -> None:
    assert detect("Hi", default="fr") == "fr"
    assert detect("???", default="de") == "de"


def test_every_language_answered_in_has_a_name_and_a_cannot_answer_phrase() -> None:
    # the prompt says "Answer in <name>", and an abstention is written in the question's language
    assert set(SUPPORTED) == set(prompts.LANGUAGE_NAMES) == set(prompts.CANNOT_ANSWER)
    assert len(prompts.CANNOT_ANSWER_PHRASES) == len(prompts.CANNOT_ANSWER)
