"""Unit tests for rag.loaders: files -> Document."""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from pathlib import Path

import docx
import pytest
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
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info %d 0 R" % len(objects) if title is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
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
