"""Parsing the model's answer into sentences with [n] markers, and cheap grounding checks.

`parse_answer` splits the answer into sentences, collects each sentence's [n] markers
(also `[1, 2]`, `[1][2]`, and a marker standing alone after the full stop), and drops
numbers that point to no source. `novel_numbers` / `novel_names` find figures and proper
names in a sentence that appear in none of the given texts: the 1.5B model's typical
invention ("$10 million", "John Doe") carries exactly such tokens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from rag.chunking import continues_sentence

_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
# Chinese and Japanese end a sentence with 。！？ and no space after it.
_SENT_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*")
# Markers opening a piece ("[1] Next sentence.") follow the previous sentence's full stop and
# belong to it. Unambiguous (each repeat starts at "[", no "$"), so no catastrophic backtracking.
_LEADING_MARKERS = re.compile(r"^\s*(?:\[\d+(?:\s*[,;]\s*\d+)*\]\s*)+[.!?。！？]?")
# An answer's sentences end as a document's do (see `chunking.continues_sentence`), and also
# not before a word in lower case ("approx. 3"), unless the piece ended with a citation
# ("... [1]. iPhone users ...").
_CITED_END = re.compile(r"\]\s*[.!?]$")  # "... [2]." ends a sentence, whatever follows
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A name: a capital followed by Latin letters, digits, apostrophes or hyphens. Only Latin letters
# count, so a name glued to Japanese, Chinese or Korean text ("EpikがParlerを", "由Epik托管",
# "Epik이") is found on its own instead of as one long unknown word.
_LATIN = "0-9A-Za-zÀ-ÖØ-öø-ɏ"
_NAME = re.compile(rf"(?<![{_LATIN}'’])([A-ZÀ-Ý][{_LATIN}'’-]+)")
# A short suffix after an apostrophe is not part of the name: English "Epik's", Turkish "Parler'i",
# "Amazon'dan".
_NAME_SUFFIX = re.compile(r"['’][a-zà-ÿçğış]{1,4}$")

# Capitalised words an English/French/German answer uses that are not names to check.
_COMMON = {
    w.lower()
    for w in [
        "I",
        "The",
        "A",
        "An",
        "It",
        "Its",
        "This",
        "That",
        "These",
        "Those",
        "They",
        "He",
        "She",
        "We",
        "You",
        "In",
        "On",
        "At",
        "Of",
        "For",
        "By",
        "And",
        "But",
        "Or",
        "So",
        "As",
        "However",
        "Also",
        "According",
        "After",
        "Before",
        "Since",
        "When",
        "While",
        "Because",
        "Therefore",
        "Thus",
        "Yes",
        "No",
        "Not",
        "Le",
        "La",
        "Les",
        "Un",
        "Une",
        "Des",
        "Il",
        "Elle",
        "Ils",
        "Elles",
        "Ce",
        "Cette",
        "Ces",
        "En",
        "Au",
        "Aux",
        "Du",
        "De",
        "Et",
        "Mais",
        "Ou",
        "Donc",
        "Car",
        "Selon",
        "Après",
        "Der",
        "Die",
        "Das",
        "Ein",
        "Eine",
        "Er",
        "Sie",
        "Es",
        "Und",
        "Aber",
        "Oder",
        "Weil",
        "Nach",
        "Laut",
        "Im",
        "Am",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Mr",
        "Mrs",
        "Ms",
        "Dr",
    ]
}


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


def _numbers(markers: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", markers)]


def _continues(previous: str, piece: str) -> bool:
    """Whether `piece` goes on the sentence `previous` ended at an abbreviation or an initial."""
    if _CITED_END.search(previous):
        return False
    return continues_sentence(previous, piece) or piece.lstrip()[:1].islower()


def parse_answer(text: str, n_sources: int) -> list[tuple[str, list[int]]]:
    """Answer text -> [(sentence without markers, [valid source numbers])]."""
    pieces: list[str] = []
    for piece in (p for p in _SENT_END.split(text.strip()) if p.strip()):
        if pieces and _continues(pieces[-1], piece):
            pieces[-1] = f"{pieces[-1]} {piece.strip()}"
        else:
            pieces.append(piece)
    merged: list[str] = []
    for piece in pieces:
        lead = _LEADING_MARKERS.match(piece) if merged else None
        if lead:
            merged[-1] = f"{merged[-1]} {lead.group().strip()}"
            piece = piece[lead.end() :]
        if piece.strip():
            merged.append(piece.strip())
    out = []
    for sentence in merged:
        cited: list[int] = []
        for match in _MARKER.finditer(sentence):
            for n in _numbers(match.group(1)):
                if 1 <= n <= n_sources and n not in cited:
                    cited.append(n)
        clean = strip_markers(sentence)
        clean = re.sub(r"\s+([.!?,;:])", r"\1", clean)
        if clean and clean.strip(".!?,;: "):
            out.append((clean, cited))
    return out


def reply_cut(text: str, sentences: int) -> str | None:
    """The reply `text` up to the end of its first `sentences` sentences (their [n] markers
    kept), once a sentence after them has begun with a letter; None before that.

    For stopping a reply early, called as the reply streams in: it fires at the first word of the
    sentence after. A "new sentence" of markers or punctuation alone ("[" while "[1]" streams in)
    does not count.
    """
    parsed = parse_answer(text, n_sources=0)
    if len(parsed) <= sentences or not any(c.isalpha() for c in parsed[-1][0]):
        return None
    body = text.rstrip()
    for end in reversed([m for m in _SENT_END.finditer(body) if m.end() < len(body)]):
        # the last sentence end before which the text holds no more than `sentences` (a split
        # followed by a lower-case word goes on the sentence before it: "1? 1? a" has two)
        if len(parse_answer(body[: end.start()], n_sources=0)) <= sentences:
            lead = _LEADING_MARKERS.match(body[end.end() :])
            return body[: end.start()] + (" " + lead.group().strip() if lead else "")
    return None


def fold(text: str) -> str:
    """Lower case, no accents: 'Épik' -> 'epik'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _ascii_digits(number: str) -> str:
    """Arabic-Indic "٢٠٢١" and full-width "２０２１" digits (both match \\d) as "2021"."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in number)


def _digits(text: str) -> set[str]:
    return {re.sub(r"[.,]", "", _ascii_digits(n)).lstrip("0") or "0" for n in _NUMBER.findall(text)}


def novel_numbers(sentence: str, texts: Iterable[str]) -> set[str]:
    """Numbers in `sentence` that appear in none of `texts` (1.5 == 1,5; ordinals as digits)."""
    known: set[str] = set()
    for text in texts:
        known |= _digits(text)
    return {n for n in _digits(sentence) if n not in known}


# Languages that capitalise every noun: there a capitalised word is a name only if it looks like one.
NOUNS_CAPITALISED = frozenset({"de", "lb"})
_NAME_SHAPE = re.compile(r".[\w'’-]*[A-ZÀ-Ý\d]")  # an upper-case letter or digit after the first: AWS, McDonald


def novel_names(sentence: str, texts: Iterable[str], language: str = "") -> set[str]:
    """Capitalised words (not sentence-initial function words) absent from every text.

    In German (`language` in NOUNS_CAPITALISED) every noun is capitalised ("Rauswurf",
    "Klage"), so there only words shaped like names or acronyms (AWS, McDonald, PWNED) count."""
    haystack = fold(" ".join(texts))
    out = set()
    for name in _NAME.findall(sentence):
        base = _NAME_SUFFIX.sub("", name)
        if fold(base) in _COMMON or len(base) < 3:
            continue
        if language in NOUNS_CAPITALISED and not _NAME_SHAPE.match(base):
            continue
        if fold(base) not in haystack:
            out.add(base)
    return out
