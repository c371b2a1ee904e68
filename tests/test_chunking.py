"""Unit and property tests for rag.chunking: Document -> Chunks."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.chunking import chunk_document, chunk_id, sentence_spans, windows
from rag.loaders import load_file
from rag.tokens import count_tokens
from rag.types import Chunk, Document

SEED = Path(__file__).resolve().parents[1] / "seeds" / "000_1d7c1f8b7bb62d9d.txt"

SENTENCES = [
    "The assistant reads every document in the folder.",
    "It splits each one into short passages.",
    "Each passage keeps its offsets in the original text.",
    "Questions are answered only from those passages!",
    "Does it cite its sources?",
    "Yes, every sentence of an answer carries a citation.",
    "Passages that do not support the answer are dropped.",
    "Nothing leaves the machine…",
]


def make_doc(text: str, path: str = "docs/a.md") -> Document:
    return Document(path=path, title="A title", text=text, sha256="abc123", date="2021-03")


def check_invariants(doc: Document, chunks: list[Chunk], max_tokens: int) -> None:
    previous_end = 0
    for position, chunk in enumerate(chunks):
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert chunk.text.strip(), "empty chunk"
        assert count_tokens(chunk.text) <= max_tokens
        assert chunk.tokens == count_tokens(chunk.text)
        assert chunk.start >= previous_end, "chunks overlap or are out of order"
        assert chunk.position == position
        previous_end = chunk.end
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    missing = [i for i, ch in enumerate(doc.text) if not ch.isspace() and i not in covered]
    assert not missing, f"uncovered characters: {[doc.text[i] for i in missing[:10]]}"


# --- chunk_id ------------------------------------------------------------------------------


def test_chunk_id_format():
    assert re.fullmatch(r"[0-9a-f]{16}-3", chunk_id("docs/a.md", 3))


def test_chunk_id_stable():
    assert chunk_id("docs/a.md", 0) == chunk_id("docs/a.md", 0)


def test_chunk_id_depends_on_path():
    assert chunk_id("docs/a.md", 0) != chunk_id("docs/b.md", 0)


def test_chunk_id_depends_on_position():
    assert chunk_id("docs/a.md", 0) != chunk_id("docs/a.md", 1)


def test_chunk_id_depends_on_source_folder():
    ids = {chunk_id("a.md", 0, "/data/one"), chunk_id("a.md", 0, "/data/two"), chunk_id("a.md", 0)}
    assert len(ids) == 3


def test_chunk_id_empty_source_is_path_only():
    assert chunk_id("a.md", 2, "") == chunk_id("a.md", 2)


def test_chunk_ids_include_document_source():
    doc = Document(path="a.md", title="", text="One. Two.", sha256="", source="/data/one")
    assert [c.id for c in chunk_document(doc, 20)] == [chunk_id("a.md", 0, "/data/one")]


def test_chunk_id_unicode_path():
    assert re.fullmatch(r"[0-9a-f]{16}-0", chunk_id("été/réunion.txt", 0))


# --- sentence_spans ------------------------------------------------------------------------


def spans_text(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_sentence_spans_split_on_end_punctuation():
    assert spans_text("One. Two! Three? Four… Five") == ["One.", "Two!", "Three?", "Four…", "Five"]


def test_sentence_spans_do_not_end_at_an_abbreviation_an_initial_or_a_german_date():
    assert spans_text("M. Dupont a parlé. Il a dit non.") == ["M. Dupont a parlé.", "Il a dit non."]
    assert spans_text("Founded by Mr. Shima. Then J. K. Rowling wrote.") == [
        "Founded by Mr. Shima.",
        "Then J. K. Rowling wrote.",
    ]
    assert spans_text("Am 24. Februar 2021 kam es.") == ["Am 24. Februar 2021 kam es."]
    # a capital after a lower-case word ends the sentence; a line break always does
    assert spans_text("La société X. Elle vend.") == ["La société X.", "Elle vend."]
    assert spans_text("Signé par M.\nLa suite.") == ["Signé par M.", "La suite."]
    # French "vol" (a flight) is no abbreviation
    assert spans_text("Les données de chaque vol. Elles servent.") == ["Les données de chaque vol.", "Elles servent."]


def test_sentence_spans_split_on_newlines():
    assert spans_text("# Heading\n- item one\n- item two") == ["# Heading", "- item one", "- item two"]


def test_sentence_spans_trimmed_and_blank_lines_skipped():
    assert spans_text("  One.   \n\n \n  Two.  ") == ["One.", "Two."]


def test_sentence_spans_no_split_without_whitespace():
    assert spans_text("Pi is 3.14 and e.g.this stays.") == ["Pi is 3.14 and e.g.this stays."]


def test_sentence_spans_split_where_the_space_after_a_full_stop_was_lost():
    # web-page text often glues sentences: "Oui.Votre accord ... règle :le message ...électronique.Il y a"
    text = "Oui.Votre accord est nécessaire.Il y a des exceptions!Dans ces cas, écrivez-nous."
    assert spans_text(text) == [
        "Oui.",
        "Votre accord est nécessaire.",
        "Il y a des exceptions!",
        "Dans ces cas, écrivez-nous.",
    ]


def test_sentence_spans_glued_split_spares_initials_domains_and_acronyms():
    text = "Écrivez à M.Dupont sur cnil.fr, voir art.L34 et la U.E.Non."
    assert spans_text(text) == [text]


def test_sentence_spans_keep_closing_quotes():
    text = 'He said "Stop." Then he left. « Très bien. » Fin (vraiment.) Ok.'
    assert spans_text(text) == ['He said "Stop."', "Then he left.", "« Très bien. »", "Fin (vraiment.)", "Ok."]


def test_sentence_spans_french_apostrophe_quote():
    assert spans_text("Il a dit ‘non.’ Puis rien.") == ["Il a dit ‘non.’", "Puis rien."]


def test_sentence_spans_empty():
    assert sentence_spans("") == []
    assert sentence_spans(" \n\t\n ") == []


def test_sentence_spans_offsets_index_text():
    text = "  First one.\r\nSecond one?  Third"
    for start, end in sentence_spans(text):
        assert text[start:end] == text[start:end].strip()
        assert text[start:end]


# --- chunk_document ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_doc() -> Document:
    return make_doc(" ".join(SENTENCES * 6))


def test_chunk_text_matches_offsets(long_doc):
    for chunk in chunk_document(long_doc, 40):
        assert chunk.text == long_doc.text[chunk.start : chunk.end]


def test_no_chunk_exceeds_budget(long_doc):
    chunks = chunk_document(long_doc, 40)
    assert len(chunks) > 1
    assert all(count_tokens(c.text) <= 40 for c in chunks)


def test_chunks_in_order_without_overlap(long_doc):
    chunks = chunk_document(long_doc, 40)
    for before, after in itertools.pairwise(chunks):
        assert before.end <= after.start


def test_chunks_cover_all_text(long_doc):
    check_invariants(long_doc, chunk_document(long_doc, 40), 40)


def test_chunk_positions_sequential(long_doc):
    assert [c.position for c in chunk_document(long_doc, 40)] == list(range(len(chunk_document(long_doc, 40))))


def test_chunk_tokens_field(long_doc):
    assert all(c.tokens == count_tokens(c.text) for c in chunk_document(long_doc, 40))


def test_chunk_metadata_copied(long_doc):
    chunk = chunk_document(long_doc, 40)[0]
    assert (chunk.doc_path, chunk.title, chunk.date, chunk.doc_sha256) == ("docs/a.md", "A title", "2021-03", "abc123")


def test_ids_stable_across_calls(long_doc):
    assert [c.id for c in chunk_document(long_doc, 40)] == [c.id for c in chunk_document(long_doc, 40)]


def test_ids_use_path_and_position(long_doc):
    chunks = chunk_document(long_doc, 40)
    assert [c.id for c in chunks] == [chunk_id("docs/a.md", i) for i in range(len(chunks))]
    assert len({c.id for c in chunks}) == len(chunks)


def test_ids_differ_between_paths(long_doc):
    other = make_doc(long_doc.text, path="docs/b.md")
    ids_a = {c.id for c in chunk_document(long_doc, 40)}
    ids_b = {c.id for c in chunk_document(other, 40)}
    assert not ids_a & ids_b


def test_ids_independent_of_content():
    a = chunk_document(make_doc("Old text."), 40)
    b = chunk_document(make_doc("New text, changed."), 40)
    assert a[0].id == b[0].id


def test_chunks_end_at_sentence_ends(long_doc):
    spans = sentence_spans(long_doc.text)
    starts = {s for s, _ in spans}
    ends = {e for _, e in spans}
    for chunk in chunk_document(long_doc, 40):
        assert chunk.start in starts
        assert chunk.end in ends


def test_chunks_pack_sentences_greedily(long_doc):
    chunks = chunk_document(long_doc, 40)
    for before, after in itertools.pairwise(chunks):
        # the next sentence did not fit: adding it would have exceeded the budget
        next_sentence_end = next(e for s, e in sentence_spans(long_doc.text) if s == after.start)
        assert count_tokens(long_doc.text[before.start : next_sentence_end]) > 40


def test_short_doc_is_one_chunk():
    doc = make_doc("One sentence. Another one.")
    chunks = chunk_document(doc, 160)
    assert [(c.start, c.end, c.text) for c in chunks] == [(0, len(doc.text), doc.text)]


def test_default_budget_is_160():
    doc = make_doc(" ".join(SENTENCES * 20))
    chunks = chunk_document(doc)
    assert max(c.tokens for c in chunks) <= 160
    assert max(c.tokens for c in chunks) > 100


def test_leading_and_trailing_whitespace_excluded():
    doc = make_doc("\n\n   Hello there.   \n\n")
    (chunk,) = chunk_document(doc, 20)
    assert chunk.text == "Hello there."
    assert (chunk.start, chunk.end) == (5, 17)


@pytest.mark.parametrize("text", ["", " ", "\n\n\n", " \t\r\n \u00a0\u2003"])
def test_blank_text_has_no_chunks(text):
    assert chunk_document(make_doc(text), 50) == []


def test_single_character():
    (chunk,) = chunk_document(make_doc("x"), 20)
    assert (chunk.text, chunk.start, chunk.end) == ("x", 0, 1)


def test_long_sentence_split_within_budget():
    doc = make_doc("This sentence " + "goes on and on " * 100 + "until it ends.")
    chunks = chunk_document(doc, 30)
    assert len(chunks) > 5
    check_invariants(doc, chunks, 30)


def test_long_sentence_split_at_word_boundaries():
    doc = make_doc("word " * 300 + "end.")
    for chunk in chunk_document(doc, 25):
        assert chunk.start == 0 or doc.text[chunk.start - 1] == " "
        assert chunk.end == len(doc.text) or doc.text[chunk.end] == " "


def test_long_word_without_spaces_split_within_budget():
    blob = "".join(f"{i:x}ZqX" for i in range(3000))
    doc = make_doc(f"Before. {blob} After.")
    chunks = chunk_document(doc, 50)
    check_invariants(doc, chunks, 50)
    assert "".join(c.text for c in chunks if c.start >= doc.text.index(blob[:5])).startswith(blob[:100])


def test_long_word_pieces_are_not_tiny():
    blob = "abcdefghij" * 2000
    chunks = chunk_document(make_doc(blob), 100)
    assert all(c.tokens > 50 for c in chunks[:-1])


def test_long_word_cut_is_fast():
    # a 200 KB base64-like blob: cutting must not re-tokenize the remainder for every piece
    blob = "".join(f"QmFz{i:06d}ZTY0" for i in range(14_000))
    doc = make_doc(blob)
    chunks = chunk_document(doc, 160)
    assert "".join(c.text for c in chunks) == blob
    assert all(c.tokens <= 160 for c in chunks)


def test_long_whitespace_between_sentences_counted():
    # thousands of blank lines between two sentences are many tokens: they cannot be merged
    for separator in (" " * 3000, "\n" * 3000, " \n" * 500):
        doc = make_doc("First." + separator + "Second.")
        chunks = chunk_document(doc, 20)
        check_invariants(doc, chunks, 20)
        assert [c.text for c in chunks] == ["First.", "Second."]


def test_sentence_longer_than_budget_then_short_sentences():
    doc = make_doc("word " * 80 + "end. Short one. Short two.")
    check_invariants(doc, chunk_document(doc, 25), 25)


def test_closing_quotes_stay_with_sentence():
    doc = make_doc('He said "Stop." ' + "Then he left the building. " * 3)
    chunks = chunk_document(doc, 8)
    assert chunks[0].text == 'He said "Stop."'
    check_invariants(doc, chunks, 8)


def test_seed_article_chunks():
    doc = load_file(SEED)
    chunks = chunk_document(doc, 160)
    assert 3 <= len(chunks) <= 12
    assert all(c.tokens <= 160 for c in chunks)
    assert chunks[0].text.startswith("Il n’y aura donc pas")
    check_invariants(doc, chunks, 160)


def test_seed_article_ids_stable():
    doc = load_file(SEED)
    assert [c.id for c in chunk_document(doc)] == [c.id for c in chunk_document(doc)]


# --- properties ----------------------------------------------------------------------------

_word = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S")), min_size=1, max_size=12)
_separator = st.sampled_from([" ", " ", " ", "\n", "\n\n", ". ", "! ", "? ", "… ", '." ', "» ", "\t", "   ", "\r\n"])
_prose = st.lists(st.tuples(_word, _separator), max_size=120).map(lambda parts: "".join(w + s for w, s in parts))
_long_word = st.integers(min_value=200, max_value=2000).map(lambda n: "é" + "Ab9+/" * (n // 5))
_texts = st.one_of(
    st.text(max_size=600),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=1500),
    _prose,
    st.tuples(_prose, _long_word, _prose).map(" ".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_texts, max_tokens=st.integers(min_value=20, max_value=300))
def test_property_chunk_invariants(text, max_tokens):
    doc = make_doc(text)
    check_invariants(doc, chunk_document(doc, max_tokens), max_tokens)


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(st.text(max_size=400), _prose))
def test_property_sentence_spans_trimmed_ordered_nonblank(text):
    previous_end = 0
    for start, end in sentence_spans(text):
        piece = text[start:end]
        assert piece and piece == piece.strip()
        assert start >= previous_end
        previous_end = end


@settings(max_examples=50, deadline=None)
@given(text=_prose, max_tokens=st.integers(min_value=20, max_value=300))
def test_property_chunking_deterministic(text, max_tokens):
    doc = make_doc(text)
    assert chunk_document(doc, max_tokens) == chunk_document(doc, max_tokens)


# -- windows of neighbouring chunks (retrieval context) ---------------------------------------


def _doc(text: str) -> Document:
    return Document(path="w.txt", title="w", text=text, sha256="x")


def test_windows_group_consecutive_chunks_within_the_budget():
    chunks = chunk_document(_doc(" ".join(SENTENCES)), 12)
    groups = windows(chunks, 25)
    assert [i for g in groups for i in g] == list(range(len(chunks)))  # each chunk once, in order
    for group in groups:
        assert len(group) == 1 or sum(chunks[i].tokens for i in group) <= 25
    assert any(len(g) > 1 for g in groups)


def test_chunks_get_their_window_text_as_context_and_keep_their_own_text():
    text = " ".join(SENTENCES)
    plain = chunk_document(_doc(text), 12)
    windowed = chunk_document(_doc(text), 12, window_tokens=25)
    assert [c.text for c in windowed] == [c.text for c in plain]  # what the model is given is unchanged
    assert all(c.context == "" for c in plain)
    with_context = [c for c in windowed if c.context]
    assert with_context
    for chunk in with_context:
        assert chunk.text in chunk.context
        assert chunk.context in text and len(chunk.context) > len(chunk.text)


def test_a_chunk_alone_in_its_window_has_no_context():
    windowed = chunk_document(_doc("One short sentence only."), 160, window_tokens=320)
    assert len(windowed) == 1 and windowed[0].context == ""
