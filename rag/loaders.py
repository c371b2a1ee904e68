"""Files -> Document.

Reads .txt, .md, .html/.htm, .pdf and .docx into plain text with a title and, where the
file carries one, a date. A first line like ``date 2021-03 <lead sentence>`` (the seed
format) is parsed into metadata and removed from the body.

Text files that are not UTF-8 are decoded with charset-normalizer (French Latin-1 and
cp1252 files are common). A file that cannot be read raises `LoadError` naming it;
`load_folder` turns that into a warning and goes on with the rest.

Deliberately not here: OCR of scanned PDFs, tables, images.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

from rag.types import Document

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
MAX_FILE_BYTES = 20 * 1024 * 1024  # larger files are skipped: 20 MB of text is ~5M tokens
MAX_UNZIPPED_BYTES = 100 * 1024 * 1024  # a .docx expanding beyond this is treated as a zip bomb

_HEADER = re.compile(r"^\s*date\s+(\d{4}-\d{2}(?:-\d{2})?)\b[ \t]*(.*)$")
# "# Title" or "# Title #": never spans lines, and "# C#" keeps its "#" (a closing run needs a space)
_MD_TITLE = re.compile(r"^[ \t]{0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class LoadError(Exception):
    """A file could not be turned into text; the message names the file and the cause."""


def load_file(path: Path, root: Path | None = None) -> Document:
    """Read one file into a Document. Raises LoadError if it cannot be read."""
    root = root or path.parent
    rel = _relative(path, root)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(f"{rel}: unsupported file type {suffix!r} (supported: {', '.join(SUPPORTED_SUFFIXES)})")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LoadError(f"{rel}: file is {size / 1e6:.0f} MB, over the {MAX_FILE_BYTES / 1e6:.0f} MB limit")
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"{rel}: cannot read file ({exc.strerror or exc})") from exc

    try:
        if suffix in (".txt", ".md", ".markdown"):
            title, text = _plain(data, rel, markdown=suffix != ".txt")
        elif suffix in (".html", ".htm"):
            title, text = _html(data, rel)
        elif suffix == ".pdf":
            title, text = _pdf(data, rel)
        else:
            title, text = _docx(data, rel)
    except LoadError:
        raise
    except Exception as exc:  # parsers raise many types on broken input
        raise LoadError(f"{rel}: cannot parse {suffix} file ({type(exc).__name__}: {exc})") from exc

    date, lead, text = _split_header(_clean(text))  # after newline normalisation: "\r" ends a line too
    text = _clean(text)
    if not text.strip():
        raise LoadError(f"{rel}: no text found in file")
    if not title:
        title = _short(lead) if lead else Path(rel).stem
    return Document(
        path=rel,
        title=title,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        date=date,
        lead=lead,
        source=str(root),
    )


def iter_files(folder: Path) -> Iterator[Path]:
    """Supported files under `folder`, sorted, not following symlinked directories."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(SUPPORTED_SUFFIXES):
                continue
            yield Path(dirpath) / name


def load_folder(folder: Path) -> tuple[list[Document], dict[str, str]]:
    """Load every supported file; returns (documents, {path: reason} for skipped files)."""
    docs: list[Document] = []
    skipped: dict[str, str] = {}
    for path in iter_files(folder):
        try:
            docs.append(load_file(path, folder))
        except LoadError as exc:
            log.warning("skipped %s", exc)
            skipped[_relative(path, folder)] = str(exc)
    return docs, skipped


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def decode(data: bytes) -> str:
    """Bytes -> str: UTF-8 (with or without BOM) first, else the most likely encoding."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    # charset-normalizer often ties cp1252 with another code page on French text and then
    # picks the wrong one (cp1250 turns "œ" into "ś" and "è" into "č"; a short file may come
    # out as UTF-16 CJK): score cp1252 on its own and keep it unless another fits clearly better.
    western = from_bytes(data, cp_isolation=["cp1252"]).best()
    if western is not None and (
        best is None or (western.chaos <= best.chaos and western.coherence >= best.coherence - 0.05)
    ):
        return str(western)
    if best is not None and best.encoding:
        return str(best)
    return data.decode("cp1252", errors="replace")


def _looks_binary(data: bytes) -> bool:
    head = data[:4096]
    return b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))


def _plain(data: bytes, rel: str, markdown: bool) -> tuple[str, str]:
    if _looks_binary(data):
        raise LoadError(f"{rel}: looks like a binary file, not text")
    text = decode(data)
    title = ""
    if markdown:
        match = _MD_TITLE.search(text)
        if match:
            title = _short(match.group(1))
    return title, text


def _html(data: bytes, rel: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    if _looks_binary(data):
        raise LoadError(f"{rel}: looks like a binary file, not HTML")
    soup = BeautifulSoup(decode(data), "html.parser")
    title = _short(soup.title.get_text(" ", strip=True)) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    text = soup.get_text("\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return title, re.sub(r"\n{3,}", "\n\n", text)


def _pdf(data: bytes, rel: str) -> tuple[str, str]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise LoadError(f"{rel}: PDF is password-protected")
    pages = [page.extract_text() or "" for page in reader.pages]
    meta_title = ""
    if reader.metadata and reader.metadata.title:
        meta_title = _short(str(reader.metadata.title))
    return meta_title, "\n\n".join(p.strip() for p in pages if p.strip())


def _docx(data: bytes, rel: str) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except zipfile.BadZipFile as exc:
        raise LoadError(f"{rel}: not a valid .docx (zip) file") from exc
    if total > MAX_UNZIPPED_BYTES:
        raise LoadError(f"{rel}: .docx expands to {total / 1e6:.0f} MB; refusing a likely zip bomb")
    import docx

    document = docx.Document(io.BytesIO(data))
    paragraphs = [p.text for p in document.paragraphs]
    title = _short(document.core_properties.title or "")
    return title, "\n\n".join(p for p in paragraphs if p.strip())


def _split_header(text: str) -> tuple[str, str, str]:
    """Split a ``date YYYY-MM lead`` first line off the body: (date, lead, body)."""
    first, _sep, rest = text.lstrip("\ufeff").partition("\n")
    match = _HEADER.match(first)
    if not match:
        return "", "", text
    return match.group(1), match.group(2).strip(), rest


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    return text.strip("\n ")


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
