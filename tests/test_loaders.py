"""Unit tests for rag.loaders: files -> Document."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
import zlib
from pathlib import Path

import docx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfWriter

from rag import loaders
from rag.loaders import LoadError, decode, iter_files, load_file, load_folder

SEED = Path(__file__).resolve().parents[1] / "seeds" / "000_1d7c1f8b7bb62d9d.txt"

FRENCH = "Les élèves français étudient où ils veulent : à Besançon, c’est déjà ça. L’œuvre coûte 5 €."


def write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def pdf_bytes(lines: list[str], title: str | None = None) -> bytes:
    """A minimal valid one-page PDF showing `lines` in Helvetica (ASCII only)."""
    ops = ["BT", "/F1 12 Tf", "72 720 Td"]
    for i, line in enumerate(lines):
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"{'0 -16 Td ' if i else ''}({escaped}) Tj")
    ops.append("ET")
    content = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title is not None:
        objects.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
    return pdf_file(objects, info=len(objects) if title is not None else None)


def pdf_file(objects: list[bytes], info: int | None = None) -> bytes:
    """A PDF file from its numbered objects (1 = the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info_ref = b" /Info %d 0 R" % info if info is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info_ref, xref)
    return bytes(out)


def docx_bytes(paragraphs: list[str], title: str = "") -> bytes:
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    document.core_properties.title = title
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


# --- the "date YYYY-MM lead" seed header -------------------------------------------------


def test_header_date_parsed(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", "date 2021-03 The lead sentence.\n\nThe body."))
    assert doc.date == "2021-03"


def test_header_lead_parsed(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", "date 2021-03 The lead sentence.\n\nThe body."))
    assert doc.lead == "The lead sentence."


def test_header_removed_from_body(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", "date 2021-03 The lead sentence.\n\nThe body."))
    assert doc.text == "The body."


def test_header_full_date(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", "date 2021-03-15 Lead.\nBody."))
    assert (doc.date, doc.lead, doc.text) == ("2021-03-15", "Lead.", "Body.")


def test_header_leading_whitespace_allowed(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", "  date 2020-12 Lead.\nBody."))
    assert doc.date == "2020-12"


def test_header_without_lead(tmp_path):
    doc = load_file(write(tmp_path, "notes.txt", "date 2021-03\nBody."))
    assert (doc.date, doc.lead, doc.text, doc.title) == ("2021-03", "", "Body.", "notes")


def test_header_only_on_first_line(tmp_path):
    text = "Intro line.\ndate 2021-03 not a header\nEnd."
    doc = load_file(write(tmp_path, "a.txt", text))
    assert (doc.date, doc.lead, doc.text) == ("", "", text)


def test_no_header_leaves_text_alone(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", "An update from 2021-03.\nBody."))
    assert doc.date == ""
    assert doc.text == "An update from 2021-03.\nBody."


def test_header_with_crlf_line_endings(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", b"date 2021-03 Lead.\r\n\r\nBody one.\r\nBody two.\r\n"))
    assert (doc.date, doc.lead, doc.text) == ("2021-03", "Lead.", "Body one.\nBody two.")


def test_header_with_cr_only_line_endings(tmp_path):
    # old Mac line endings: the header is still only the first line
    doc = load_file(write(tmp_path, "a.txt", b"date 2021-03 Lead.\rBody one.\rBody two."))
    assert (doc.date, doc.lead, doc.text) == ("2021-03", "Lead.", "Body one.\nBody two.")


def test_title_falls_back_to_lead(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", "date 2021-03 The lead sentence.\nBody."))
    assert doc.title == "The lead sentence."


def test_long_lead_title_is_shortened(tmp_path):
    lead = "word " * 60
    doc = load_file(write(tmp_path, "a.txt", f"date 2021-03 {lead}\nBody."))
    assert len(doc.title) <= 120
    assert doc.title.endswith("…")
    assert doc.lead == lead.strip()


def test_title_falls_back_to_file_stem(tmp_path):
    doc = load_file(write(tmp_path, "meeting-notes.txt", "Just text."))
    assert doc.title == "meeting-notes"


def test_seed_file_date():
    assert load_file(SEED).date == "2021-03"


def test_seed_file_body_starts_after_header():
    doc = load_file(SEED)
    assert doc.text.startswith("Il n’y aura donc pas")
    assert "date 2021-03" not in doc.text


def test_seed_file_lead_and_title():
    doc = load_file(SEED)
    assert doc.lead.startswith("Le réseau social américain Parler")
    assert doc.lead not in doc.text
    assert doc.title.startswith("Le réseau social américain Parler")


def test_seed_file_path_relative_to_its_folder():
    doc = load_file(SEED)
    assert doc.path == SEED.name
    assert doc.source == str(SEED.parent)


# --- markdown ------------------------------------------------------------------------------


def test_markdown_title(fixture_docs_dir):
    assert load_file(fixture_docs_dir / "guide.md").title == "Getting Started"


def test_markdown_heading_kept_in_text(fixture_docs_dir):
    doc = load_file(fixture_docs_dir / "guide.md")
    assert doc.text.startswith("# Getting Started")
    assert "Every answer cites the passages it used." in doc.text


@pytest.mark.parametrize(
    ("source", "title"),
    [
        ("# Closed Title ##\nbody", "Closed Title"),
        ("   # Indented\nbody", "Indented"),
        ("Intro.\n\n# Later Title\nbody", "Later Title"),
        ("# C#\nbody", "C#"),
        ("#\nnot a title\n", "doc"),
        ("#hashtag\nbody", "doc"),
        ("## Only a subheading\nbody", "doc"),
    ],
)
def test_markdown_title_variants(tmp_path, source, title):
    assert load_file(write(tmp_path, "doc.md", source)).title == title


def test_markdown_suffix_variant(tmp_path):
    assert load_file(write(tmp_path, "doc.markdown", "# Title\nbody")).title == "Title"


def test_txt_hash_line_is_not_a_title(tmp_path):
    assert load_file(write(tmp_path, "doc.txt", "# Not a title\nbody")).title == "doc"


# --- html ----------------------------------------------------------------------------------


def test_html_title(fixture_docs_dir):
    assert load_file(fixture_docs_dir / "page.html").title == "Release Notes"


def test_html_script_dropped(fixture_docs_dir):
    text = load_file(fixture_docs_dir / "page.html").text
    assert "scriptMarker" not in text
    assert "inline script marker" not in text


def test_html_style_dropped(fixture_docs_dir):
    assert "hidden-style-marker" not in load_file(fixture_docs_dir / "page.html").text


def test_html_body_text_kept(fixture_docs_dir):
    text = load_file(fixture_docs_dir / "page.html").text
    assert "Version 2.0" in text
    assert "The search is now twice as fast." in text
    assert "Citations link to the source paragraph." in text


def test_html_head_not_in_text(fixture_docs_dir):
    assert "Release Notes" not in load_file(fixture_docs_dir / "page.html").text


def test_html_no_markup_left(fixture_docs_dir):
    text = load_file(fixture_docs_dir / "page.html").text
    assert "<" not in text
    assert "\n\n\n" not in text


def test_html_without_title_uses_stem(tmp_path):
    doc = load_file(write(tmp_path, "page.htm", "<html><body><p>Hello there.</p></body></html>"))
    assert (doc.title, doc.text) == ("page", "Hello there.")


def test_html_only_script_is_empty(tmp_path):
    with pytest.raises(LoadError, match=r"empty\.html: no text"):
        load_file(write(tmp_path, "empty.html", "<html><script>var x = 1;</script></html>"))


# --- encodings -----------------------------------------------------------------------------


def test_cp1252_fixture_accents(fixture_docs_dir):
    doc = load_file(fixture_docs_dir / "ete_cp1252.txt")
    assert doc.text == (
        "Les élèves français étudient où ils veulent : à Paris, à Lyon ou à Besançon.\n"
        "Ça paraît élevé, mais c’est déjà ça."
    )


def test_cp1252_fixture_header(fixture_docs_dir):
    doc = load_file(fixture_docs_dir / "ete_cp1252.txt")
    assert (doc.date, doc.lead) == ("2021-03", "Un été à Noël, l’œuvre coûte 5 €.")


def test_cp1252_fixture_is_not_utf8(fixture_docs_dir):
    data = (fixture_docs_dir / "ete_cp1252.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")


def test_decode_cp1252():
    assert decode(FRENCH.encode("cp1252")) == FRENCH


def test_decode_latin1():
    text = "Un résumé très détaillé : les élèves de la forêt ont marché jusqu'à Besançon."
    assert decode(text.encode("latin-1")) == text


def test_decode_short_latin1_word():
    assert decode("Le café est très bon.".encode("latin-1")) == "Le café est très bon."


def test_decode_utf8():
    assert decode(FRENCH.encode("utf-8")) == FRENCH


def test_decode_strips_utf8_bom():
    assert decode(b"\xef\xbb\xbf" + FRENCH.encode("utf-8")) == FRENCH


def test_decode_other_languages_unaffected():
    russian = "Привет, как дела? Это тестовый текст на русском языке."
    assert decode(russian.encode("cp1251")) == russian


def test_load_utf8_bom_with_header(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", b"\xef\xbb\xbfdate 2021-03 L\xc3\xa9ad.\nCorps."))
    assert (doc.date, doc.lead, doc.text) == ("2021-03", "Léad.", "Corps.")


def test_load_utf8_bom_markdown_title(tmp_path):
    doc = load_file(write(tmp_path, "a.md", b"\xef\xbb\xbf# Titre\nCorps."))
    assert doc.title == "Titre"
    assert "\ufeff" not in doc.text


def test_load_utf16_with_bom(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", "Un été à Noël.\nCorps du texte.".encode("utf-16")))
    assert doc.text == "Un été à Noël.\nCorps du texte."


def test_control_characters_replaced(tmp_path):
    doc = load_file(write(tmp_path, "a.txt", b"one\x0btwo\x07three"))
    assert doc.text == "one two three"


# --- errors --------------------------------------------------------------------------------


def test_empty_file_raises_naming_file(tmp_path):
    with pytest.raises(LoadError, match=r"^empty\.txt: no text found"):
        load_file(write(tmp_path, "empty.txt", b""))


def test_whitespace_only_file_raises(tmp_path):
    with pytest.raises(LoadError, match=r"blank\.md"):
        load_file(write(tmp_path, "blank.md", " \n\n\t\n"))


def test_header_only_file_raises(tmp_path):
    with pytest.raises(LoadError, match=r"only\.txt: no text found"):
        load_file(write(tmp_path, "only.txt", "date 2021-03 Only a lead."))


def test_binary_txt_raises(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    with pytest.raises(LoadError, match=r"^image\.txt: looks like a binary file"):
        load_file(write(tmp_path, "image.txt", png))


def test_binary_html_raises(tmp_path):
    with pytest.raises(LoadError, match=r"^page\.html: looks like a binary"):
        load_file(write(tmp_path, "page.html", b"<html>\x00\x01\x02</html>"))


def test_unsupported_extension_raises(tmp_path):
    with pytest.raises(LoadError, match=r"^sheet\.xlsx: unsupported file type '\.xlsx'"):
        load_file(write(tmp_path, "sheet.xlsx", b"PK\x03\x04"))


def test_no_extension_raises(tmp_path):
    with pytest.raises(LoadError, match=r"^README: unsupported file type ''"):
        load_file(write(tmp_path, "README", "text"))


def test_uppercase_extension_supported(tmp_path):
    assert load_file(write(tmp_path, "NOTES.TXT", "Hello.")).text == "Hello."


def test_missing_file_raises(tmp_path):
    with pytest.raises(LoadError, match=r"^gone\.txt: cannot read file"):
        load_file(tmp_path / "gone.txt")


def test_oversized_file_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_FILE_BYTES", 100)
    with pytest.raises(LoadError, match=r"^big\.txt: file is .* over the .* limit"):
        load_file(write(tmp_path, "big.txt", "x" * 101))


def test_file_at_size_limit_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_FILE_BYTES", 100)
    assert load_file(write(tmp_path, "ok.txt", "x" * 100)).text == "x" * 100


def test_error_names_path_relative_to_root(tmp_path):
    path = write(tmp_path, "sub/dir/empty.txt", b"")
    with pytest.raises(LoadError, match=r"^sub/dir/empty\.txt: "):
        load_file(path, tmp_path)


def test_load_error_is_exception():
    assert issubclass(LoadError, Exception)


# --- pdf -----------------------------------------------------------------------------------


def test_pdf_text_extracted(tmp_path):
    doc = load_file(write(tmp_path, "report.pdf", pdf_bytes(["Quarterly results improved.", "Costs fell."])))
    assert "Quarterly results improved." in doc.text
    assert "Costs fell." in doc.text


def test_pdf_title_from_metadata(tmp_path):
    doc = load_file(write(tmp_path, "report.pdf", pdf_bytes(["Some text."], title="Annual Report")))
    assert doc.title == "Annual Report"


def test_pdf_without_metadata_uses_stem(tmp_path):
    assert load_file(write(tmp_path, "report.pdf", pdf_bytes(["Some text."]))).title == "report"


def test_pdf_header_parsed(tmp_path):
    doc = load_file(write(tmp_path, "a.pdf", pdf_bytes(["date 2021-03 The lead.", "The body."])))
    assert (doc.date, doc.lead) == ("2021-03", "The lead.")
    assert doc.text == "The body."


def test_corrupt_pdf_raises_naming_file(tmp_path):
    with pytest.raises(LoadError, match=r"^broken\.pdf: "):
        load_file(write(tmp_path, "broken.pdf", b"%PDF-1.4\nthis is not really a pdf\n"))


def test_truncated_pdf_raises(tmp_path):
    data = pdf_bytes(["Some text."])[:60]
    with pytest.raises(LoadError, match=r"^cut\.pdf: "):
        load_file(write(tmp_path, "cut.pdf", data))


def test_pdf_without_text_raises(tmp_path):
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(LoadError, match=r"^scan\.pdf: no text found"):
        load_file(write(tmp_path, "scan.pdf", buf.getvalue()))


def test_encrypted_pdf_raises(tmp_path):
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(LoadError, match=r"^locked\.pdf: PDF is password-protected"):
        load_file(write(tmp_path, "locked.pdf", buf.getvalue()))


# --- docx ----------------------------------------------------------------------------------


def test_docx_paragraphs(tmp_path):
    doc = load_file(write(tmp_path, "memo.docx", docx_bytes(["First paragraph.", "", "Second paragraph."])))
    assert doc.text == "First paragraph.\n\nSecond paragraph."


def test_docx_title_from_core_properties(tmp_path):
    doc = load_file(write(tmp_path, "memo.docx", docx_bytes(["Body."], title="Budget Memo")))
    assert doc.title == "Budget Memo"


def test_docx_without_title_uses_stem(tmp_path):
    assert load_file(write(tmp_path, "memo.docx", docx_bytes(["Body."]))).title == "memo"


def test_docx_accents(tmp_path):
    assert load_file(write(tmp_path, "fr.docx", docx_bytes([FRENCH]))).text == FRENCH


def test_corrupt_docx_raises_naming_file(tmp_path):
    with pytest.raises(LoadError, match=r"^broken\.docx: not a valid \.docx"):
        load_file(write(tmp_path, "broken.docx", b"PK\x03\x04 definitely not a zip"))


def test_zip_that_is_not_a_docx_raises(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "not a word document")
    with pytest.raises(LoadError, match=r"^fake\.docx: cannot parse \.docx"):
        load_file(write(tmp_path, "fake.docx", buf.getvalue()))


def test_docx_zip_bomb_rejected(tmp_path):
    # ~110 MB of zeros compresses to ~110 KB: over MAX_UNZIPPED_BYTES once expanded
    buf = io.BytesIO()
    block = bytes(1 << 20)
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("word/document.xml", "w") as member,
    ):
        for _ in range(loaders.MAX_UNZIPPED_BYTES // len(block) + 5):
            member.write(block)
    assert buf.tell() < 2 * 1024 * 1024
    with pytest.raises(LoadError, match=r"^bomb\.docx: .*zip bomb"):
        load_file(write(tmp_path, "bomb.docx", buf.getvalue()))


def test_docx_expansion_limit_applies(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(LoadError, match=r"zip bomb"):
        load_file(write(tmp_path, "memo.docx", docx_bytes(["Body."])))


# --- document fields -----------------------------------------------------------------------


def test_sha256_is_hash_of_raw_bytes(fixture_docs_dir):
    path = fixture_docs_dir / "ete_cp1252.txt"
    assert load_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_sha256_stable_across_loads(fixture_docs_dir):
    path = fixture_docs_dir / "guide.md"
    assert load_file(path).sha256 == load_file(path).sha256


def test_sha256_changes_with_content(tmp_path):
    path = write(tmp_path, "a.txt", "Version one.")
    before = load_file(path).sha256
    write(tmp_path, "a.txt", "Version two.")
    assert load_file(path).sha256 != before


def test_sha256_differs_for_same_text_different_bytes(tmp_path):
    a = load_file(write(tmp_path, "a.txt", "Text.\n"))
    b = load_file(write(tmp_path, "b.txt", "Text.\r\n"))
    assert a.text == b.text
    assert a.sha256 != b.sha256


def test_relative_path_is_posix(tmp_path):
    doc = load_file(write(tmp_path, "sub/dir/a.md", "# T\nx"), tmp_path)
    assert doc.path == "sub/dir/a.md"
    assert doc.doc_id == "sub/dir/a.md"


def test_path_outside_root_falls_back_to_name(tmp_path):
    path = write(tmp_path, "one/a.txt", "Hello.")
    assert load_file(path, tmp_path / "other").path == "a.txt"


def test_default_root_is_parent(tmp_path):
    doc = load_file(write(tmp_path, "sub/a.txt", "Hello."))
    assert (doc.path, doc.source) == ("a.txt", str(tmp_path / "sub"))


def test_text_is_stripped(tmp_path):
    assert load_file(write(tmp_path, "a.txt", "\n\n  Hello.  \n\n")).text == "Hello."


# --- folders -------------------------------------------------------------------------------


def test_load_folder_fixtures(fixture_docs_dir):
    docs, skipped = load_folder(fixture_docs_dir)
    assert [d.path for d in docs] == ["ete_cp1252.txt", "guide.md", "page.html"]
    assert skipped == {}


def test_load_folder_source_is_folder(fixture_docs_dir):
    docs, _ = load_folder(fixture_docs_dir)
    assert {d.source for d in docs} == {str(fixture_docs_dir)}


def test_load_folder_skips_broken_file_and_loads_others(tmp_path):
    write(tmp_path, "good.txt", "Good text.")
    write(tmp_path, "broken.pdf", b"%PDF-1.4 garbage")
    write(tmp_path, "z.md", "# Z\nMore text.")
    docs, skipped = load_folder(tmp_path)
    assert [d.path for d in docs] == ["good.txt", "z.md"]
    assert list(skipped) == ["broken.pdf"]
    assert skipped["broken.pdf"].startswith("broken.pdf: ")


def test_load_folder_warns_naming_broken_file(tmp_path, caplog):
    write(tmp_path, "good.txt", "Good text.")
    write(tmp_path, "sub/empty.txt", b"")
    with caplog.at_level(logging.WARNING, logger="rag.loaders"):
        load_folder(tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "sub/empty.txt" in warnings[0].getMessage()


def test_load_folder_ignores_hidden_files_and_dirs(tmp_path):
    write(tmp_path, "visible.txt", "Visible.")
    write(tmp_path, ".hidden.txt", "Hidden.")
    write(tmp_path, ".git/notes.md", "# Hidden dir")
    docs, skipped = load_folder(tmp_path)
    assert [d.path for d in docs] == ["visible.txt"]
    assert skipped == {}


def test_load_folder_ignores_unsupported_extensions(tmp_path):
    write(tmp_path, "visible.txt", "Visible.")
    write(tmp_path, "image.png", b"\x89PNG\x00\x00")
    write(tmp_path, "data.csv", "a,b\n1,2\n")
    docs, skipped = load_folder(tmp_path)
    assert [d.path for d in docs] == ["visible.txt"]
    assert skipped == {}


def test_load_folder_nested_paths_posix_and_sorted(tmp_path):
    write(tmp_path, "b/2.txt", "Two.")
    write(tmp_path, "a/x/1.md", "One.")
    write(tmp_path, "top.txt", "Top.")
    docs, _ = load_folder(tmp_path)
    assert [d.path for d in docs] == ["top.txt", "a/x/1.md", "b/2.txt"]


def test_load_folder_empty(tmp_path):
    assert load_folder(tmp_path) == ([], {})


def test_iter_files_sorted_and_filtered(tmp_path):
    write(tmp_path, "b.TXT", "b")
    write(tmp_path, "a.md", "a")
    write(tmp_path, "c.exe", "c")
    assert [p.name for p in iter_files(tmp_path)] == ["a.md", "b.TXT"]


# --- hostile files: behaviours added for the reliability work (the full folder is in test_hostile_inputs.py) --


def test_decode_mixed_utf8_and_latin1_lines():
    data = "Un café crème.\n".encode() + "Une tête de Noël.\n".encode("latin-1")
    assert decode(data) == "Un café crème.\nUne tête de Noël.\n"


def test_decode_stray_bytes_in_utf8_keep_the_utf8_characters():
    data = "Première ligne.\n".encode() + "Déjà vu, très ".encode() + b"\xe9l\xe9gant.\n"
    assert decode(data) == "Première ligne.\nDéjà vu, très élégant.\n"


def test_decode_legacy_multibyte_text_is_not_taken_for_a_mix():
    chinese = "这是一个用GBK编码的中文句子，里面有很多汉字和标点符号。今天天气很好，我们去公园散步吧。" * 5
    assert decode(chinese.encode("gbk")) == chinese


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_decode_utf16_without_bom(codec):
    assert decode("Un été à Noël, sans BOM.".encode(codec)) == "Un été à Noël, sans BOM."


def test_regular_nul_pattern_in_binary_is_not_taken_for_utf16(tmp_path):
    with pytest.raises(LoadError, match=r"looks like a binary file"):
        load_file(write(tmp_path, "a.txt", b"\x00\xff\x00\xfe" * 100))


def test_decode_utf32_with_bom():
    assert decode("Un été.".encode("utf-32")) == "Un été."


def test_zero_filled_tail_is_not_binary(tmp_path):
    assert load_file(write(tmp_path, "a.txt", b"Real text." + bytes(10_000))).text == "Real text."


def test_scattered_nul_bytes_are_binary(tmp_path):
    with pytest.raises(LoadError, match=r"^a\.txt: looks like a binary file, not text \(it contains NUL bytes\)"):
        load_file(write(tmp_path, "a.txt", b"Real\x00text\x00here."))


def test_control_code_soup_without_nul_is_binary(tmp_path):
    with pytest.raises(LoadError, match=r"looks like a binary file, not text \(\d+% control codes\)"):
        load_file(write(tmp_path, "a.txt", bytes(range(1, 32)) * 20 + b"some text"))


def test_long_run_without_spaces_is_dropped_and_prose_kept(tmp_path):
    blob = "QUJD" * 1000  # 4000 characters of base64
    doc = load_file(write(tmp_path, "a.md", f"# Title\n\nThe prose stays.\n\n![x](data:image/png;base64,{blob})\n"))
    assert "The prose stays." in doc.text and "QUJD" not in doc.text


def test_run_at_the_limit_is_kept(tmp_path):
    word = "x" * loaders.MAX_RUN_CHARS
    assert load_file(write(tmp_path, "a.txt", f"Before {word} after.")).text == f"Before {word} after."


def test_file_of_only_a_long_run_says_why_it_is_empty(tmp_path):
    with pytest.raises(LoadError, match=r"^a\.txt: no text found \(0\.\d MB of data without spaces"):
        load_file(write(tmp_path, "a.txt", "A" * 100_000))


def test_long_runs_of_non_ascii_letters_are_kept(tmp_path):
    chinese = "这是一个没有空格的很长的中文句子。" * 200  # CJK has no spaces: not a blob
    assert load_file(write(tmp_path, "zh.txt", chinese)).text == chinese


def test_lone_surrogates_from_a_parser_become_replacement_characters(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "_pdf", lambda data, name: ("Ti\ud800tle", "Text \udfff with \ud83d\ude00 pair."))
    doc = load_file(write(tmp_path, "a.pdf", b"%PDF"))
    assert (doc.title, doc.text) == ("Ti\ufffdtle", "Text \ufffd with 😀 pair.")


def test_named_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")  # opening it for reading would wait for a writer forever
    with pytest.raises(LoadError, match=r"^pipe\.txt: not a regular file"):
        load_file(tmp_path / "pipe.txt")


def test_symlink_inside_the_folder_is_followed(tmp_path):
    write(tmp_path, "real.txt", "Real text.")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    assert load_file(tmp_path / "link.txt", tmp_path).text == "Real text."


def test_symlink_outside_the_folder_is_refused(tmp_path):
    secret = write(tmp_path, "elsewhere/secret.txt", "Secret.")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "link.txt").symlink_to(secret)
    with pytest.raises(LoadError, match=r"^link\.txt: symbolic link to a file outside the folder"):
        load_file(tmp_path / "docs" / "link.txt", tmp_path / "docs")


def test_check_file_refuses_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_FILE_BYTES", 10)
    write(tmp_path, "docs/big.txt", "x" * 11)
    write(tmp_path, "docs/ok.txt", "x" * 10)
    write(tmp_path, "secret.txt", "Secret.")
    (tmp_path / "docs" / "out.txt").symlink_to(tmp_path / "secret.txt")
    os.mkfifo(tmp_path / "docs" / "pipe.md")
    docs = tmp_path / "docs"
    loaders.check_file(docs / "ok.txt", docs)
    for name, reason in [("big.txt", "over the 0 MB limit"), ("out.txt", "outside the folder"), ("pipe.md", "regular")]:
        with pytest.raises(LoadError, match=rf"^{name}: .*{reason}"):
            loaders.check_file(docs / name, docs)


def test_iter_files_refuses_special_entries_with_a_warning(tmp_path, caplog):
    write(tmp_path, "ok.txt", "Fine.")
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "loop").symlink_to(".", target_is_directory=True)
    with open(os.path.join(os.fsencode(tmp_path), b"bad-\xe9.txt"), "wb") as fh:
        fh.write(b"text")
    skipped: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="rag.loaders"):
        assert [p.name for p in iter_files(tmp_path, skipped)] == ["ok.txt"]
    assert skipped == {
        "loop": "loop: symbolic link to a folder; not followed",
        "bad-\\udce9.txt": "bad-\\udce9.txt: file name is not valid UTF-8; rename the file",
        "pipe.txt": "pipe.txt: not a regular file (a named pipe, socket or device); not read",
    }
    assert len(caplog.records) == 3


def test_load_folder_lists_refused_entries(tmp_path):
    write(tmp_path, "ok.txt", "Fine.")
    os.mkfifo(tmp_path / "pipe.txt")
    docs, skipped = load_folder(tmp_path)
    assert [d.path for d in docs] == ["ok.txt"] and list(skipped) == ["pipe.txt"]


def test_display_name_escapes_what_a_terminal_would_interpret():
    assert loaders.display_name("plain name é.txt") == "plain name é.txt"
    assert loaders.display_name("new\nline\x1b[31m\u202e.txt") == "new\\nline\\x1b[31m\\u202e.txt"


def test_html_inline_tags_do_not_break_lines():
    _, text = loaders.html_text("<p>Hello <b>bold</b> and <a href='x'>linked</a> world.</p><p>Next.</p>")
    assert text.strip() == "Hello bold and linked world.\n\nNext."


def test_html_pre_keeps_its_whitespace_and_entities_are_decoded():
    _, text = loaders.html_text("<pre>a   b\n  c</pre><p>x &amp; y &lt;z&gt; &eacute;</p>")
    assert "a   b\n  c" in text and "x & y <z> é" in text


def test_html_missing_head_end_is_closed_by_body():
    title, text = loaders.html_text("<html><head><title>T</title><body><p>Shown.</p></body></html>")
    assert (title, text.strip()) == ("T", "Shown.")


def test_html_unterminated_markup_drops_only_the_rest():
    assert loaders.html_text("<p>Kept.</p><a href='x")[1].strip() == "Kept."
    assert loaders.html_text("<p>Kept.</p><!-- never closed <p>lost</p>")[1].strip() == "Kept."
    assert loaders.html_text("<p>Kept.</p><script>var x = '</p>lost")[1].strip() == "Kept."


def test_html_is_linear_on_pathological_markup():
    import time

    started = time.perf_counter()
    for soup in ("<a " * 200_000, "<!--" * 200_000, "<div>" * 200_000, "</script" * 200_000, "<p<" * 200_000):
        loaders.html_text(soup)
    assert time.perf_counter() - started < 20  # the stdlib parser took over 30 s on 20 000 "<a "


def _two_page_pdf(first_page_content: bytes) -> bytes:
    """Two pages, the first with the given (raw) content stream object, the second fine."""
    good = b"BT /F1 12 Tf 72 720 Td (The second page is fine.) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 7 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 7 0 R >> >> "
        b"/Contents 6 0 R >>",
        first_page_content,
        b"<< /Length %d >>\nstream\n" % len(good) + good + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_file(objects)


def test_pdf_bomb_page_is_left_out_and_the_others_kept(tmp_path, caplog):
    packed = zlib.compress(b" " * (loaders.PDF_LIMITS["zlib_maximum_output_length"] + 1000), 9)
    bomb = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream"
    with caplog.at_level(logging.WARNING, logger="rag.loaders"):
        doc = load_file(write(tmp_path, "two.pdf", _two_page_pdf(bomb)))
    assert doc.text == "The second page is fine."
    assert "two.pdf: 1 of 2 PDF pages could not be read" in caplog.text


def test_pdf_time_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_PDF_SECONDS", -1.0)
    with pytest.raises(LoadError, match=r"^a\.pdf: reading the PDF took over .* \(abandoned at page 1 of 1\)"):
        load_file(write(tmp_path, "a.pdf", pdf_bytes(["Some text."])))


def test_docx_xml_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_DOCX_XML_BYTES", 1000)
    with pytest.raises(LoadError, match=r"^memo\.docx: \.docx holds .* of XML, over the"):
        load_file(write(tmp_path, "memo.docx", docx_bytes(["Body."])))


# --- properties: whatever the bytes, only LoadError escapes -----------------------------------------


def _check_loaded(path: Path) -> None:
    try:
        doc = load_file(path)
    except LoadError as exc:
        assert str(exc).startswith(path.name + ": ")
        return
    assert doc.text.strip()
    doc.text.encode("utf-8")  # no lone surrogates: hashing, storing and JSON all need this
    doc.title.encode("utf-8")


_MAGIC = st.sampled_from(
    [b"", b"%PDF-1.4\n", b"PK\x03\x04", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf", b"<html><body>", b"\x00\x00\xfe\xff"]
)
_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(data=st.binary(max_size=3000), magic=_MAGIC, suffix=st.sampled_from(loaders.SUPPORTED_SUFFIXES))
def test_property_arbitrary_bytes_raise_only_load_error(tmp_path, data, magic, suffix):
    _check_loaded(write(tmp_path, "fuzz" + suffix, magic + data))


_VALID = {
    ".pdf": pdf_bytes(["Fuzzed text on a page.", "A second line."], title="Fuzz"),
    ".docx": docx_bytes(["Fuzzed paragraph.", "Another one."], title="Fuzz"),
    ".html": b"<html><head><title>T</title></head><body><p>Fuzzed <b>text</b>.</p><!-- c --></body></html>",
    ".txt": "Un été à Noël.\nLigne deux.".encode("utf-16"),
    ".md": "# Titre\n\nDéjà vu.\n".encode("cp1252"),
}


@_FUZZ
@given(
    suffix=st.sampled_from(sorted(_VALID)),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_property_damaged_valid_files_raise_only_load_error(tmp_path, suffix, edits, cut):
    data = bytearray(_VALID[suffix])
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    _check_loaded(write(tmp_path, "fuzz" + suffix, bytes(data)))


@_FUZZ
@given(
    members=st.lists(
        st.tuples(
            st.sampled_from(["[Content_Types].xml", "_rels/.rels", "word/document.xml", "docProps/core.xml", "x"]),
            st.binary(max_size=300) | st.text(alphabet="<>/=\"' &;!?wpbodyxml:", max_size=300).map(str.encode),
        ),
        max_size=5,
    )
)
def test_property_zip_with_arbitrary_members_raises_only_load_error(tmp_path, members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in dict(members).items():
            zf.writestr(name, content)
    _check_loaded(write(tmp_path, "fuzz.docx", buf.getvalue()))


_MARKUP = st.lists(st.sampled_from([*"<>/!-?&;#x'\"= \n", "p", "b", "div", "script", "head", "pre"])).map("".join)


@settings(max_examples=200, deadline=None)
@given(html=_MARKUP | st.text(max_size=300))
def test_property_html_text_is_clean(html):
    title, text = loaders.html_text(html)
    assert "\x00" not in text and "\n\n\n" not in text and "\n" not in title


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=8), min_size=1, max_size=10))
def test_property_html_keeps_all_text_of_well_formed_markup(words):
    html = "".join(f"<div><p class='c'>{w} <b>{w}</b></p></div>" for w in words)
    _, text = loaders.html_text(html)
    assert text.split() == [w for w in words for _ in (0, 1)]


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300).filter(lambda t: "\x00" not in t and not t.startswith("\ufeff")))
def test_property_decode_round_trips_utf8_and_utf16(text):
    assert decode(text.encode("utf-8")) == text
    assert decode(text.encode("utf-16")) == text


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000))
def test_property_decode_never_raises_and_gives_valid_unicode(data):
    decode(data).encode("utf-8")
