"""Hostile inputs: a folder of broken and malicious files through `sync_folder`, arbitrary text
through the chunker and the citation parser, and hostile questions through `Assistant.ask`,
`Assistant.stream` and the HTTP API.

Everything is built in tmp_path at test time (the 50 MB file, the zip bombs...): nothing big
is committed. The rule checked throughout: no exception other than the project's own
escapes; each bad file is indexed sensibly or skipped with a reason and a warning naming it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfWriter

from rag import loaders
from rag.api import MODEL_ID, create_app
from rag.assistant import Assistant, clean_text
from rag.chunking import chunk_document, sentence_spans
from rag.citations import novel_names, novel_numbers, parse_answer, strip_markers
from rag.config import Settings
from rag.embeddings import HashEmbedder
from rag.errors import QuestionError
from rag.ingest import source_key, sync_folder
from rag.llm import ScriptedLLM
from rag.types import Answer, Document, Status, Token
from tests.conftest import SEED_DIR
from tests.test_loaders import docx_bytes, pdf_bytes, pdf_file

MB = 1024 * 1024
GOOD = {  # the good documents, and a query that must find each of them first
    "good/cats.txt": ("Cats purr when they are content; a purring cat is usually relaxed.", "why do cats purr"),
    "good/ferry.md": (
        "# Ferry Guide\n\nThe ferry to Brittany leaves at noon from the northern pier.",
        "ferry brittany",
    ),
    "good/orchard.html": (
        "<html><head><title>Orchard</title></head><body><p>Apple trees bloom in April in the valley "
        "orchard.</p></body></html>",
        "apple trees bloom orchard",
    ),
    "good/memo.docx": ("The budget committee approved the lighthouse repairs.", "lighthouse repairs budget"),
    "good/glacier.pdf": ("Glacier measurements show the ice retreated twelve meters.", "glacier ice retreated"),
}


@dataclass
class Case:
    """One hostile input and what must happen to it.

    expect: "indexed" (its text is searchable), "skipped" (in report.skipped with a reason naming
    it, and a warning), "refused" (never read: a warning names it; iter_files keeps it out),
    "ignored" (hidden or unsupported: silently left out, by design).
    """

    rel: str
    expect: str
    reason: str = ""  # for "skipped"/"refused": a fragment the reason must contain
    text: str = ""  # for "indexed": a phrase its indexed text must contain
    absent: str = ""  # for "indexed": a phrase its indexed text must not contain


def _write(folder: Path, rel: str, data: bytes | str) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def _one_page_pdf(
    content: bytes, font: bytes = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
) -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        content,
        font,
    ]


def flate_bomb_pdf() -> bytes:
    """One page whose content stream inflates from ~20 KB to 20 MB (pypdf's own limit is 75 MB)."""
    content = b"BT /F1 12 Tf 72 720 Td (Bomb) Tj ET\n" + b" " * (20 * MB)
    packed = zlib.compress(content, 9)
    return pdf_file(_one_page_pdf(_stream(packed, b" /Filter /FlateDecode")))


def lone_surrogate_pdf() -> bytes:
    """A PDF whose ToUnicode map sends "A" to U+D800: pypdf returns a str with a lone surrogate."""
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Adobe-Identity-UCS def "
        b"/CMapType 2 def 1 begincodespacerange <00> <FF> endcodespacerange 1 beginbfchar <41> <D800> "
        b"endbfchar endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    objects = _one_page_pdf(
        _stream(b"BT /F1 12 Tf 72 720 Td (Surrogate A in a sunflower field) Tj ET"),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
    )
    return pdf_file([*objects, _stream(cmap)])


def blank_pdf(encrypt: bool = False) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    if encrypt:
        writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def zip_bomb(member: str = "[Content_Types].xml") -> bytes:
    """A real bomb: just over MAX_UNZIPPED_BYTES of zeros, ~100 KB compressed (in the part Word reads first)."""
    buf = io.BytesIO()
    block = bytes(MB)
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open(member, "w", force_zip64=False) as out,
    ):
        for _ in range(loaders.MAX_UNZIPPED_BYTES // MB + 2):
            out.write(block)
    return buf.getvalue()


def lying_zip_bomb(bomb: bytes) -> bytes:
    """The bomb again, but its headers declare 1 000 bytes: the reader must not trust them blindly."""
    data = bytearray(bomb)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
    central = data.rfind(b"PK\x01\x02")
    if info.flag_bits & 0x08:  # sizes in a data descriptor after the data; the central directory is what counts
        struct.pack_into("<I", data, central + 24, 1000)
    else:
        struct.pack_into("<I", data, info.header_offset + 22, 1000)
        struct.pack_into("<I", data, central + 24, 1000)
    return bytes(data)


def billion_laughs_docx() -> bytes:
    """A real .docx whose document.xml defines nested entities expanding to 10^9 "lol"s."""
    good = zipfile.ZipFile(io.BytesIO(docx_bytes(["Placeholder paragraph."])))
    entities = b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"lol") * 10) for i in range(1, 10)
    )
    xml = good.read("word/document.xml")
    body = xml.split(b"?>", 1)[1]
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [' + entities + b"]>" + body.replace(b"Placeholder paragraph.", b"&lol9;")
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in good.infolist():
            zf.writestr(info.filename, xml if info.filename == "word/document.xml" else good.read(info.filename))
    return buf.getvalue()


def build_hostile_folder(tmp: Path) -> tuple[Path, list[Case], Callable[[int, int, str], None]]:
    """The docs folder, its cases, and a progress callback that changes files mid-ingestion."""
    docs = tmp / "docs"
    rng = random.Random(7)
    cases: list[Case] = []

    def add(rel: str, data: bytes | str, expect: str, reason: str = "", text: str = "", absent: str = "") -> None:
        _write(docs, rel, data)
        cases.append(Case(rel, expect, reason, text, absent))

    for rel, (content, _query) in GOOD.items():
        if rel.endswith(".docx"):
            _write(docs, rel, docx_bytes([content]))
        elif rel.endswith(".pdf"):
            _write(docs, rel, pdf_bytes([content]))
        else:
            _write(docs, rel, content)

    # -- text files: emptiness, binary, encodings ------------------------------------------------
    add("empty.txt", b"", "skipped", "no text found")
    add("whitespace.md", " \n\n\t \r\n\u3000\n", "skipped", "no text found")
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.randrange(256) for _ in range(3000))
    add("image_as.txt", png, "skipped", "binary")
    add("random_as.md", bytes(rng.randrange(256) for _ in range(5000)), "skipped", "binary")
    no_nul = bytes(rng.randrange(1, 256) for _ in range(5000))
    add("random_without_nul.txt", no_nul, "skipped", "binary")
    add("nul_bytes.txt", b"Hello\x00world\x00this\x00has\x00NULs\x00inside.", "skipped", "NUL bytes")
    add("zero_tail.txt", b"The caretaker winds the tower clock." + bytes(9000), "indexed", text="tower clock")
    invalid = "Le café est très bon.\n".encode() + b"Broken \xff\xfe bytes \xc3 here, \x80\x81 and more.\n"
    add("invalid_utf8.txt", invalid, "indexed", text="Le café est très bon.")
    mixed = "Un café crème en UTF-8.\n".encode() + "Une tête de Noël en Latin-1.\n".encode("latin-1")
    add("mixed_encodings.txt", mixed, "indexed", text="Un café crème en UTF-8.\nUne tête de Noël en Latin-1.")
    add("utf16_bom.txt", "Le château d’été a ouvert.".encode("utf-16"), "indexed", text="Le château d’été")
    add(
        "utf16le_no_bom.txt",
        "Les hirondelles reviennent au printemps.".encode("utf-16-le"),
        "indexed",
        text="hirondelles",
    )
    add("utf16be_no_bom.md", "Der Bäcker öffnet um sechs Uhr.".encode("utf-16-be"), "indexed", text="Der Bäcker öffnet")
    add("utf32_bom.txt", "Sailors measure depth in fathoms.".encode("utf-32"), "indexed", text="fathoms")
    ansi = "Terminal \x1b[31mred\x1b[0m text with a \u202eright-to-left override\u202c and a bell\x07 inside."
    add("ansi_and_bidi.txt", ansi, "indexed", text="right-to-left override")

    # -- size: 50 MB (over the cap), a 5 MB line without spaces, a base64 image in markdown -----
    big = docs / "huge_50mb.txt"
    block = b"The quick brown fox jumps over the lazy dog.\n" * (MB // 45)
    with big.open("wb") as fh:
        for _ in range(51):
            fh.write(block)
    cases.append(Case("huge_50mb.txt", "skipped", "over the 20 MB limit"))
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    line = bytes(rng.choice(alphabet) for _ in range(1000)) * (5 * MB // 1000)
    add("long_line_5mb.txt", line, "skipped", "data without spaces")
    blob = bytes(rng.choice(alphabet) for _ in range(30_000)).decode()
    add(
        "data_uri.md",
        f"# Diagram\n\nThe pump diagram shows the valve.\n\n![valve](data:image/png;base64,{blob})\n",
        "indexed",
        text="pump diagram shows the valve",
        absent=blob[:100],
    )

    # -- HTML -----------------------------------------------------------------------------------
    nested = "<html><body>" + "<div>" * 100_000 + "Deep inside the nested divs lives a heron." + "</div>" * 100_000
    add("deep_nesting.html", nested + "</body></html>", "indexed", text="lives a heron")
    add(
        "scripts_only.html",
        "<html><head><style>p{color:red}</style></head><body><script>var a = '<p>not text</p>';</script>"
        "<noscript>Enable JS</noscript><template><p>hidden</p></template></body></html>",
        "skipped",
        "no text found",
    )
    malformed = (
        "<html><body><p>Unclosed paragraph about <b>otters <i>swimming</p></div></span>"
        "<p class='x>5'>a < b and c > d &amp; &bogus; &#0; &#xD800; done</body>"
    )
    add("malformed.html", malformed, "indexed", text="Unclosed paragraph about otters swimming", absent="not text")
    add("unclosed_tags.html", "<p>Beavers build dams.</p>" + "<a " * 60_000, "indexed", text="Beavers build dams.")
    add("unclosed_comments.html", "<p>Owls hunt at night.</p>" + "<!--" * 60_000, "indexed", text="Owls hunt")

    # -- PDF ------------------------------------------------------------------------------------
    add(
        "corrupt.pdf",
        b"%PDF-1.4\nthis is not really a pdf\n" + bytes(rng.randrange(256) for _ in range(2000)),
        "skipped",
    )
    add("truncated.pdf", pdf_bytes(["Some text that is cut off."])[:300], "skipped")
    add("encrypted.pdf", blank_pdf(encrypt=True), "skipped", "password-protected")
    add("no_text.pdf", blank_pdf(), "skipped", "no text found")
    add("flate_bomb.pdf", flate_bomb_pdf(), "skipped", "cannot read the text of the PDF")
    add("lone_surrogate.pdf", lone_surrogate_pdf(), "indexed", text="sunflower field")

    # -- DOCX -----------------------------------------------------------------------------------
    bomb = zip_bomb()
    add("zip_bomb.docx", bomb, "skipped", "zip bomb")
    add("lying_zip_bomb.docx", lying_zip_bomb(bomb), "skipped", "cannot parse .docx")
    add("random_bytes.docx", bytes(rng.randrange(256) for _ in range(4000)), "skipped", "not a valid .docx")
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("hello.txt", "not a word document")
    add("plain_zip.docx", plain_zip.getvalue(), "skipped", "cannot parse .docx")
    add("billion_laughs.docx", billion_laughs_docx(), "skipped", "cannot parse .docx")

    # -- links, permissions, special files --------------------------------------------------------
    outside = _write(tmp, "outside/secret.txt", "The vault combination is 31-41-59.")
    (docs / "loop").symlink_to(".", target_is_directory=True)
    cases.append(Case("loop", "refused", "symbolic link to a folder"))
    (docs / "good" / "up").symlink_to("..", target_is_directory=True)
    cases.append(Case("good/up", "refused", "symbolic link to a folder"))
    (docs / "dangling.txt").symlink_to(docs / "no-such-target.txt")
    cases.append(Case("dangling.txt", "skipped", "No such file"))
    (docs / "outside_link.txt").symlink_to(outside)
    cases.append(Case("outside_link.txt", "skipped", "outside the folder"))
    (docs / "alias.txt").symlink_to(docs / "good" / "cats.txt")
    cases.append(Case("alias.txt", "indexed", text="Cats purr"))
    (docs / "zero.txt").symlink_to("/dev/zero")
    cases.append(Case("zero.txt", "refused", "not a regular file"))
    os.mkfifo(docs / "pipe.txt")
    cases.append(Case("pipe.txt", "refused", "not a regular file"))
    locked = _write(docs, "unreadable.txt", "Nobody may read about the hidden treasure.")
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway
        cases.append(Case("unreadable.txt", "indexed", text="hidden treasure"))
    else:
        cases.append(Case("unreadable.txt", "skipped", "Permission denied"))

    # -- names ----------------------------------------------------------------------------------
    add("name with spaces.txt", "Spaces in names are fine.", "indexed", text="Spaces in names")
    add(unicodedata.normalize("NFC", "café.txt"), "Composed accent in the name.", "indexed", text="Composed accent")
    add(unicodedata.normalize("NFD", "café.txt"), "Decomposed accent in the name.", "indexed", text="Decomposed")
    add("-leading-dash.md", "A name starting with a dash.", "indexed", text="starting with a dash")
    add("new\nline.txt", "A newline inside the file name.", "indexed", text="newline inside")
    add("n" * 246 + ".txt", "A very long file name.", "indexed", text="very long file name")
    add("name..with..dots.txt", "Dots in the name are not a path.", "indexed", text="Dots in the name")
    add("semi;colon $(echo x) 'q'.txt", "Shell characters in the name.", "indexed", text="Shell characters")
    with open(os.path.join(os.fsencode(docs), b"latin1-\xe9.txt"), "wb") as fh:
        fh.write(b"A Latin-1 byte in the name.")
    cases.append(Case(os.fsdecode(b"latin1-\xe9.txt"), "refused", "not valid UTF-8"))
    add(".hidden.txt", "Hidden files are not indexed.", "ignored")
    add(".hiddendir/inside.md", "Neither are files in hidden folders.", "ignored")
    add("program.exe", b"MZ\x90\x00" + bytes(100), "ignored")
    add("no_extension", "No extension, no indexing.", "ignored")

    # -- files that change while the folder is being ingested -------------------------------------
    _write(docs, "zy_trigger.txt", "This file triggers changes to the next two files.")
    add("zz_changes.txt", "Original content about pelicans.", "indexed", text="Rewritten content about flamingos")
    add("zz_vanishes.txt", "This file disappears before it is read.", "skipped", "cannot read file")

    def progress(done: int, total: int, rel: str) -> None:
        if rel == "zy_trigger.txt":
            (docs / "zz_changes.txt").write_text("Rewritten content about flamingos.")
            (docs / "zz_vanishes.txt").unlink()

    return docs, cases, progress


def _warnings_about(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and name in r.getMessage()]


def test_hostile_folder_is_ingested_without_escaping_errors(tmp_path, make_chunk_store, hash_embedder, caplog):  # type: ignore[no-untyped-def]
    docs, cases, progress = build_hostile_folder(tmp_path)
    assert len(cases) == 56 and len({c.rel for c in cases}) == len(cases)  # 56 distinct hostile inputs
    store = make_chunk_store()
    try:
        with caplog.at_level(logging.WARNING):
            report = sync_folder(docs, store, hash_embedder, progress=progress)  # nothing may escape
    finally:
        for big in ("huge_50mb.txt", "long_line_5mb.txt"):
            (docs / big).unlink(missing_ok=True)

    chunks = store.chunks()
    texts: dict[str, str] = {}
    for chunk in chunks:
        texts[chunk.doc_path] = texts.get(chunk.doc_path, "") + " " + chunk.text
    for chunk in chunks:
        assert chunk.text.encode("utf-8")  # what the store holds is valid Unicode

    for rel in GOOD:
        assert rel in texts, f"good document {rel} not indexed ({report.skipped.get(rel)})"
    for case in cases:
        shown = loaders.display_name(case.rel)
        if case.expect == "indexed":
            assert case.rel in texts, f"{shown}: expected indexed, got {report.skipped.get(case.rel)!r}"
            assert case.text in texts[case.rel], f"{shown}: {texts[case.rel][:200]!r}"
            if case.absent:
                assert case.absent not in texts[case.rel]
        elif case.expect == "skipped":
            assert case.rel not in texts
            reason = report.skipped.get(case.rel, "")
            assert reason.startswith(f"{shown}: "), f"{shown}: reason {reason!r}"
            assert case.reason in reason, f"{shown}: reason {reason!r}"
            assert _warnings_about(caplog, shown), f"no warning names {shown}"
        elif case.expect == "refused":
            assert case.rel not in texts and not any(p.startswith(case.rel + "/") for p in texts)
            warnings = _warnings_about(caplog, shown)
            assert warnings and case.reason in warnings[0], f"{shown}: {warnings}"
            if case.rel in report.skipped or shown in report.skipped:  # once ingest records iter_files' refusals
                assert (report.skipped.get(case.rel) or report.skipped[shown]).startswith(shown)
        else:
            assert case.expect == "ignored"
            assert case.rel not in texts and case.rel not in report.skipped
            assert not _warnings_about(caplog, Path(case.rel).name)

    assert "vault combination" not in " ".join(texts.values())  # the outside file was never indexed
    assert set(texts) == {c.rel for c in cases if c.expect == "indexed"} | set(GOOD) | {"zy_trigger.txt"}

    # every good document is found first by a query about it
    for rel, (_content, query) in GOOD.items():
        [(best, _score)] = store.query(hash_embedder.embed_query(query), 1)
        assert best.doc_path in (rel, "alias.txt" if rel == "good/cats.txt" else rel), (rel, best.doc_path)

    # a second sync goes through the same folder without error; only the file changed mid-sync is redone
    again = sync_folder(docs, store, hash_embedder)
    assert (again.added, again.updated, again.removed) == ([], ["zz_changes.txt"], [])
    assert source_key(docs) == chunks[0].source


def test_hostile_folder_reports_each_problem_once_per_sync(tmp_path, make_chunk_store, hash_embedder, caplog):  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    _write(docs, "good.txt", "Herons stand still in the shallow water.")
    _write(docs, "empty.txt", b"")
    os.mkfifo(docs / "pipe.md")
    with caplog.at_level(logging.WARNING):
        report = sync_folder(docs, make_chunk_store(), hash_embedder)
    assert report.added == ["good.txt"] and "empty.txt" in report.skipped
    assert set(report.skipped) <= {"empty.txt", "pipe.md"}  # pipe.md too once ingest passes report.skipped on
    assert len(_warnings_about(caplog, "empty.txt")) == 1 and len(_warnings_about(caplog, "pipe.md")) == 1


# --- property tests: the chunker and the citation parser on hostile text ----------------------------

_hostile_text = st.text(
    alphabet=st.characters(codec=None, categories=("L", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co", "M")),
    max_size=300,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_hostile_text, max_tokens=st.integers(min_value=20, max_value=200))
def test_chunker_never_raises_on_hostile_text(text: str, max_tokens: int) -> None:
    doc = Document(path="d.txt", title="d", text=text, sha256="0" * 64)
    for chunk in chunk_document(doc, max_tokens):
        assert chunk.text == text[chunk.start : chunk.end] and chunk.text.strip()
    for start, end in sentence_spans(text):
        assert 0 <= start < end <= len(text)


@settings(max_examples=100, deadline=None)
@given(text=_hostile_text, n_sources=st.integers(0, 8))
def test_citation_parser_never_raises_on_hostile_text(text: str, n_sources: int) -> None:
    for sentence, cited in parse_answer(text, n_sources):
        assert sentence.strip() and all(1 <= n <= n_sources for n in cited)
    strip_markers(text)
    novel_numbers(text, [text])
    novel_names(text, [text])


@settings(max_examples=150, deadline=None)
@given(text=_hostile_text)
def test_clean_text_output_is_safe_everywhere(text: str) -> None:
    cleaned = clean_text(text)
    cleaned.encode("utf-8")  # no lone surrogates: JSON, tiktoken and the embedder accept it
    assert cleaned == cleaned.strip() and "\r" not in cleaned and "\x1b" not in cleaned
    assert all(ch.isprintable() or ch in "\n\t\u200c\u200d" for ch in cleaned)
    assert clean_text(cleaned) == cleaned  # idempotent


# --- hostile questions ------------------------------------------------------------------------

REFUSED: list[tuple[str, Any, str]] = [
    ("empty", "", "empty"),
    ("whitespace", " \t\n\r\n \u3000\u00a0 ", "empty"),
    ("controls only", "\x00\x01\x1b[31m\x1b[0m\u202e\u200b", "empty"),
    ("lone surrogate only", "\ud800\udfff", "empty"),
    ("100 KB", "why " * 25_600, "characters long; the limit is 2000"),
    ("just over the limit", "a" * 2001, "2001 characters long; the limit is 2000 (RAG_MAX_QUESTION_CHARS)"),
    ("punctuation only", "?!... ¿¡ — «» ;:", "no words"),
    ("emoji only", "🤔❓🐈", "no words"),
    ("None", None, "must be text, not NoneType"),
    ("int", 42, "must be text, not int"),
    ("bytes", b"why do cats purr?", "must be text, not bytes"),
    ("list", ["why"], "must be text, not list"),
]
ANSWERED: list[tuple[str, str, str]] = [
    ("NUL inside", "why did\x00 Parler drop\x00 its lawsuit?", "why did  Parler drop  its lawsuit?"),
    ("ANSI colours", "\x1b[31mwhy did Parler drop\x1b[0m its lawsuit?", "why did Parler drop its lawsuit?"),
    ("carriage returns", "why did Parler\r\ndrop its\rlawsuit?", "why did Parler\ndrop its\nlawsuit?"),
    ("bidi override", "why did \u202eParler drop\u202c its lawsuit?", "why did Parler drop its lawsuit?"),
    ("lone surrogate", "why did Parler\ud800 drop its lawsuit?", "why did Parler drop its lawsuit?"),
    ("tabs and newlines kept", "why\tdid Parler\n drop its lawsuit?", "why\tdid Parler\n drop its lawsuit?"),
    ("NFD accents", unicodedata.normalize("NFD", "pourquoi Parler a-t-il abandonné ?"), "abandonné"),
    ("mixed scripts", "Parler lawsuit почему 为什么 لماذا 🤔 drop?", "Parler lawsuit почему 为什么 لماذا 🤔 drop?"),
    ("exactly the limit", "why " * 499 + "ok??", "why why"),
]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Assistant:  # type: ignore[no-untyped-def]
    """One Assistant on fakes for all the question tests (the seed document, indexed once)."""
    tmp = tmp_path_factory.mktemp("hostile-questions")
    settings = Settings(index_dir=tmp / "index", data_dir=tmp / "data", docs_dir=SEED_DIR)
    assistant = Assistant(settings, llm=ScriptedLLM(reply_fn=lambda messages: "NOT_FOUND"), embedder=HashEmbedder())
    assistant.ingest()
    return assistant


@pytest.mark.parametrize(("label", "question", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_hostile_question_is_refused_clearly(ingested, label: str, question: Any, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QuestionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingested.ask(question)
    with pytest.raises(QuestionError, match=r"empty|characters long|no words|must be text"):
        next(ingested.stream(question))  # the first event: nothing is searched before the check


@pytest.mark.parametrize(("label", "question", "cleaned"), ANSWERED, ids=[r[0] for r in ANSWERED])
def test_hostile_question_gets_a_normal_answer(ingested, label: str, question: str, cleaned: str) -> None:  # type: ignore[no-untyped-def]
    answer = ingested.ask(question)
    assert isinstance(answer, Answer) and answer.text
    assert cleaned in answer.question
    answer.question.encode("utf-8")
    events = list(ingested.stream(question))
    assert all(isinstance(e, Token | Status | Answer) for e in events) and isinstance(events[-1], Answer)


def test_hostile_history_is_cleaned_or_refused(ingested) -> None:  # type: ignore[no-untyped-def]
    history = [{"role": "user", "content": "Parler\ud800 \x1b[1mlawsuit\u202e"}, {"role": "assistant", "content": None}]
    assert ingested.ask("and why did it drop it?", history=history).text
    rewrite = next(m[0]["content"] for m in reversed(ingested.llm.calls) if m[0]["content"].startswith("Rewrite"))
    assert "User: Parler lawsuit\nAssistant: \n" in rewrite  # cleaned, and None is not "None"
    rewrite.encode("utf-8")  # no lone surrogate left to break the LLM request
    for bad in ("not a list of turns", [["user", "hi"]], [None]):
        with pytest.raises(QuestionError, match="history must be a list"):
            ingested.ask("why?", history=bad)


@pytest.fixture(scope="module")
def client(ingested) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(ingested))


def _post(client: TestClient, content: Any, stream: bool = False, raw: bytes | None = None) -> Any:
    """POST a chat completion; the body is JSON with \\u escapes (so a lone surrogate can be sent) or `raw`."""
    if raw is None:
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": content}], "stream": stream}
        raw = json.dumps(body).encode("ascii")
    return client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})


API_REFUSED = [r for r in REFUSED if not isinstance(r[1], bytes)]  # JSON has no bytes


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("label", "question", "message"), API_REFUSED, ids=[r[0] for r in API_REFUSED])
def test_api_hostile_question_is_a_400(client, label: str, question: Any, message: str, stream: bool) -> None:  # type: ignore[no-untyped-def]
    response = _post(client, question, stream)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] and error["param"] is None


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("label", "question", "cleaned"), ANSWERED, ids=[r[0] for r in ANSWERED])
def test_api_hostile_question_is_answered(client, label: str, question: str, cleaned: str, stream: bool) -> None:  # type: ignore[no-untyped-def]
    response = _post(client, question, stream)
    assert response.status_code == 200, response.text
    if stream:
        assert response.text.rstrip().endswith("data: [DONE]") and '"error"' not in response.text
    else:
        assert response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": [{"role": "user", "content": "why \\ud800 did Parler drop it?"}]}',  # lone surrogate escape
        b'{"messages": [{"role": "user", "content": "\\udfff"}]}',
        b'{"messages": [{"role": "user", "content": "caf\xe9 latin-1 bytes, not UTF-8"}]}',
        b'{"messages": [{"role": "user", "content": "\xff\xfe\x00"}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "text", "text": {"nested": 1}}]}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}',
        b'{"messages": [{"role": "user", "content": [1, 2, 3]}]}',
        b'{"messages": [{"role": "user"}]}',
        b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes please"}',
        b'{"messages": "why?"}',
        b'{"messages": []}',
        b'{"messages": [{"role": "user", "content": "why?"}',
        b"",
        b"null",
        b"[]",
        b'"\\ud800"',
    ],
)
def test_api_malformed_body_is_a_400_not_a_500(client, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    response = _post(client, None, raw=raw)
    assert response.status_code in (200, 400), response.text
    data = response.json()
    if response.status_code == 400:
        assert data["error"]["type"] == "invalid_request_error"
    else:
        assert data["choices"][0]["message"]["content"]
