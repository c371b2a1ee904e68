"""Document -> Chunks: sentence-aware, token-budgeted, with stable ids and char offsets.

Sentences (and lines such as headings) are packed greedily into chunks of at most
`max_tokens` tiktoken tokens; a sentence longer than the budget is cut at word
boundaries. Chunks never overlap, and `chunk.text == document.text[chunk.start:chunk.end]`
always holds, so the UI can highlight a passage inside its document.

Short chunks retrieve better with e5 (a relevant sentence buried in a long chunk is lost),
so the default budget is 160 tokens: the seed article gives 5 chunks.

Ids are `<sha1(source folder + path)[:16]>-<position>`: stable for a document and position, so
re-ingesting a changed file overwrites its chunks in place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace

from rag.tokens import count_tokens
from rag.types import Chunk, Document

# A sentence ends at . ! ? … (optionally followed by closing quotes/brackets) before
# whitespace; a line break always ends a unit (headings, list items). Only the captured
# whitespace separates sentences: the punctuation and closing quotes stay in the sentence.
# French puts a (no-break) space before the closing guillemet: « Très bien. »
# Text extracted from web pages often loses the space after a full stop ("règle.Il y a"):
# a lower-case word of 2+ letters, the punctuation, then a capitalised word also ends a
# sentence, at an empty separator. Initials ("M.Dupont"), decimals, "e.g.this" and domain
# names ("cnil.fr") do not match.
_LOWER = "a-zß-öø-ÿœ"
_UPPER = "A-ZÀ-ÖØ-ÞŒ"
_SENTENCE_END = re.compile(
    r"[.!?…](?:[\"'»”’)\]]|[ \u00a0\u202f]»)*(\s+)|(\n+)"
    rf"|(?<=[{_LOWER}][{_LOWER}][.!?])()(?=[{_UPPER}][{_LOWER}])"
)

# A full stop after an abbreviation or an initial does not end a sentence: "founded by Mr. Yamada",
# "M. Dupont", "the U.S. court", "David S. Cohen", "J. K. Rowling", nor one inside a German date
# ("am 24. Februar"). Only abbreviations that rarely end a sentence are listed (not "No.", "vol.",
# "art.": French "vol" is a flight). An initial is a capital after a capitalised word or another
# initial; after a lower-case word ("la société X.") it ends the sentence.
_ABBREVIATION = re.compile(
    r"(?:^|[\s(«\"'])(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|Gen|Gov|Sen|Rep|Lt|Col|M|Mme|Mlle|MM|Me|Pr|"
    r"Hr|Fr|Nr|vs|approx|cf|e\.g|i\.e|z\.B|d\.h|U\.S|U\.K|U\.N|E\.U)\.$"
    r"|(?:^|[A-ZÀ-Ý][\w'’-]*\s+|[A-Z]\.\s*)[A-Z]\.$"
)
_INITIAL = re.compile(r"[A-Z]\.(?:\s|$)")  # a sentence that starts with one ("J. | K. Rowling")
_ORDINAL_END = re.compile(r"(?:^|\s)\d{1,2}\.$")
_GERMAN_MONTH = re.compile(
    r"(?:Januar|Jänner|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember)\b"
)


def continues_sentence(previous: str, following: str) -> bool:
    """Whether `following` goes on the sentence `previous` seemed to end (see _ABBREVIATION)."""
    previous, following = previous.rstrip(), following.lstrip()
    if _ORDINAL_END.search(previous) and _GERMAN_MONTH.match(following):
        return True
    return bool(_ABBREVIATION.search(previous) or _INITIAL.match(following))


def chunk_id(doc_path: str, position: int, source: str = "") -> str:
    key = f"{source}\n{doc_path}" if source else doc_path
    return f"{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}-{position}"


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank sentence or line, trimmed of surrounding whitespace. Two
    sentences on one line are one where the first ends at an abbreviation (`continues_sentence`)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        group = next(g for g in (1, 2, 3) if match.start(g) >= 0)
        spans.extend(_trimmed(text, start, match.start(group)))
        start = match.end(group)
    spans.extend(_trimmed(text, start, len(text)))
    merged: list[tuple[int, int]] = []
    for begin, end in spans:
        if merged:
            last_begin, last_end = merged[-1]
            gap = text[last_end:begin]
            if "\n" not in gap and continues_sentence(text[last_begin:last_end], text[begin:end]):
                merged[-1] = (last_begin, end)
                continue
        merged.append((begin, end))
    return merged


def _trimmed(text: str, start: int, end: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if end > start else []


def _longest_prefix(text: str, start: int, end: int, max_tokens: int) -> int:
    """The largest cut in (start, end] with text[start:cut] within max_tokens (at least start + 1).

    Gallops then bisects, so each probe tokenizes at most about twice the piece it finds:
    cutting a long blob stays linear instead of re-tokenizing the whole remainder per piece.
    """
    good, bad = start + 1, end + 1  # count(text[start:good]) fits (or is one char); bad does not
    size = max(1, max_tokens * 4)
    while True:
        probe = min(end, start + size)
        if count_tokens(text[start:probe]) > max_tokens:
            bad = probe
            break
        good = probe
        if probe == end:
            return end
        size *= 2
    while bad - good > 1:
        mid = (good + bad) // 2
        if count_tokens(text[start:mid]) <= max_tokens:
            good = mid
        else:
            bad = mid
    return good


def _split_long(text: str, start: int, end: int, max_tokens: int) -> Iterator[tuple[int, int]]:
    """Cut an over-long sentence into pieces of <= max_tokens at whitespace."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    piece_start = words[0][0]
    piece_end = piece_start
    for w_start, w_end in words:
        if piece_end > piece_start and count_tokens(text[piece_start:w_end]) > max_tokens:
            yield piece_start, piece_end
            piece_start = w_start
        # a single "word" longer than the budget (e.g. a base64 blob) is cut by characters
        if piece_start == w_start:
            while (cut := _longest_prefix(text, piece_start, w_end, max_tokens)) < w_end:
                yield piece_start, cut
                piece_start = cut
        piece_end = w_end
    if piece_end > piece_start:
        yield piece_start, piece_end


def chunk_document(doc: Document, max_tokens: int = 160, window_tokens: int = 0) -> list[Chunk]:
    """Split a document into chunks of at most `max_tokens` tokens.

    With `window_tokens`, consecutive chunks are also grouped into windows of at most that
    many tokens, and each chunk of a window holding more than itself gets the window's text
    as `context` (see `windows`)."""
    text = doc.text
    units: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for start, end in sentence_spans(text):
        n = count_tokens(text[start:end])
        if n <= max_tokens:
            units.append((start, end, n))
        else:
            for s, e in _split_long(text, start, end, max_tokens):
                units.append((s, e, count_tokens(text[s:e])))

    groups: list[tuple[int, int]] = []
    cur_start = cur_end = -1
    cur_tokens = 0
    for start, end, n in units:
        # Count the joined text for real: the whitespace between two units can be many
        # tokens (a run of blank lines), and tokens are not additive across a boundary.
        if cur_start >= 0 and cur_tokens + n <= max_tokens:
            joined = count_tokens(text[cur_start:end])
            if joined <= max_tokens:
                cur_end = end
                cur_tokens = joined
                continue
        if cur_start >= 0:
            groups.append((cur_start, cur_end))
        cur_start, cur_end, cur_tokens = start, end, n
    if cur_start >= 0:
        groups.append((cur_start, cur_end))

    chunks = []
    for position, (start, end) in enumerate(groups):
        piece = text[start:end]
        chunks.append(
            Chunk(
                id=chunk_id(doc.path, position, doc.source),
                doc_path=doc.path,
                title=doc.title,
                date=doc.date,
                text=piece,
                start=start,
                end=end,
                position=position,
                doc_sha256=doc.sha256,
                tokens=count_tokens(piece),
                source=doc.source,
            )
        )
    return with_windows(chunks, text, window_tokens) if window_tokens > 0 else chunks


def windows(chunks: Sequence[Chunk], max_tokens: int) -> list[list[int]]:
    """Consecutive chunks of one document grouped greedily into windows of at most
    `max_tokens` tokens (a chunk alone may exceed it); lists of positions in `chunks`."""
    out: list[list[int]] = []
    used = 0
    for i, chunk in enumerate(chunks):
        if out and used + chunk.tokens <= max_tokens:
            out[-1].append(i)
            used += chunk.tokens
        else:
            out.append([i])
            used = chunk.tokens
    return out


def with_windows(chunks: Sequence[Chunk], text: str, max_tokens: int) -> list[Chunk]:
    """The chunks, each with `context` = the text of its window (empty when the window is the
    chunk alone). The retrieval vector of a chunk embeds both (see rag/ingest.py): measured on
    the CNIL pages, a page-sized window finds the right page far more often than a 160-token
    chunk, and the chunk keeps what is given to the model short."""
    out = list(chunks)
    for group in windows(chunks, max_tokens):
        if len(group) > 1:
            first, last = chunks[group[0]], chunks[group[-1]]
            for i in group:
                out[i] = replace(chunks[i], context=text[first.start : last.end])
    return out
