"""Files -> Document.

Reads .txt, .md, .html/.htm, .pdf and .docx into plain text with a title and, where the
file carries one, a date. A first line like ``date 2021-03 <lead sentence>`` (the seed
format) is parsed into metadata and removed from the body.

Text files that are not UTF-8 are decoded with charset-normalizer (French Latin-1 and
cp1252 files are common); UTF-16/32 are recognised by their BOM, UTF-16 also without one;
a UTF-8 file with some lines in another encoding keeps its UTF-8 and has the other bytes
decoded in that encoding. A file that cannot be read raises `LoadError` naming it;
`load_folder` and `ingest.sync_folder` turn that into a warning and go on with the rest.

Hostile or broken files are refused or bounded, never allowed to hang or exhaust memory:

- files over `MAX_FILE_BYTES` (20 MB) are skipped before being read (`check_file`: a stat only);
- binary data with a text extension (NUL bytes, or mostly control codes once decoded) is skipped;
- runs of more than `MAX_RUN_CHARS` visible ASCII characters without a space (base64
  blobs, minified code, hex dumps) are dropped from the text: they are not prose, and a
  5 MB one used to take 40 s to cut into 21 000 junk passages;
- HTML is read by a linear scanner (no tree, no recursion): deep nesting and unclosed tags
  or comments cost time proportional to the file, not to its square;
- a .docx expanding past `MAX_UNZIPPED_BYTES`, or holding more than `MAX_DOCX_XML_BYTES`
  of XML, is refused as a zip bomb; XML entity expansion ("billion laughs") is refused by lxml;
- PDFs are read with tighter pypdf limits (`PDF_LIMITS`); a page that cannot be read is left
  out, and a PDF taking more than `MAX_PDF_SECONDS` is abandoned;
- `iter_files` does not follow symlinked folders, skips hidden files and folders, named
  pipes and devices (reading them would block forever) and names that are not valid UTF-8;
  a symlinked file is read only if it points inside the folder.

Deliberately not here: OCR of scanned PDFs, tables, images.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import time
import zipfile
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

from rag.types import Document

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
MAX_FILE_BYTES = 20 * 1024 * 1024  # larger files are skipped: 20 MB of text is ~5M tokens
MAX_UNZIPPED_BYTES = 100 * 1024 * 1024  # a .docx expanding beyond this is treated as a zip bomb
MAX_DOCX_XML_BYTES = 32 * 1024 * 1024  # XML parsed by lxml takes ~10x its size in memory
MAX_RUN_CHARS = 2000  # longer runs of visible ASCII without a space are data, not prose: dropped
MAX_JUNK_RATIO = 0.05  # decoded text with more control codes than this is binary
MAX_PDF_SECONDS = 120.0  # a PDF still being read after this long is abandoned
# pypdf's own limits are sized for correctness (75 MB streams, 2M tokens per content stream:
# ~25 s for one hostile page here); text pages need far less
PDF_LIMITS: dict[str, Any] = {
    "zlib_maximum_output_length": 16_000_000,
    "lzw_maximum_output_length": 16_000_000,
    "run_length_maximum_output_length": 16_000_000,
    "array_based_stream_maximum_output_length": 16_000_000,
    "brotli_maximum_output_length": 16_000_000,
    "stream_parsing_work_maximum_count": 400_000,
}

_HEADER = re.compile(r"^\s*date\s+(\d{4}-\d{2}(?:-\d{2})?)\b[ \t]*(.*)$")
# "# Title" or "# Title #": never spans lines, and "# C#" keeps its "#" (a closing run needs a space)
_MD_TITLE = re.compile(r"^[ \t]{0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# control codes that do not occur in text (tab, newlines and form feed do), and U+FFFD
_JUNK = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")
# a run starts only where the previous character is not part of one: linear, no re-scanning
_BLOB = re.compile(rf"(?<![!-~])[!-~]{{{MAX_RUN_CHARS + 1},}}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, after surrogateescape
_ESCAPED_RUN = re.compile("([\udc80-\udcff]+)")
_HIGH_BYTE = re.compile(b"[\x80-\xff]")
_ASCII_TEXT = bytes(range(0x20, 0x7F)) + b"\t\n\r"  # deleted by bytes.translate to count the rest
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


class LoadError(Exception):
    """A file could not be turned into text; the message names the file and the cause."""


def load_file(path: Path, root: Path | None = None) -> Document:
    """Read one file into a Document. Raises LoadError if it cannot be read."""
    root = root or path.parent
    rel = _relative(path, root)
    name = display_name(rel)
    suffix = path.suffix.lower()
    check_file(path, root)
    data = _read(path, name)

    try:
        if suffix in (".txt", ".md", ".markdown"):
            title, text = _plain(data, name, markdown=suffix != ".txt")
        elif suffix in (".html", ".htm"):
            title, text = _html(data, name)
        elif suffix == ".pdf":
            title, text = _pdf(data, name)
        else:
            title, text = _docx(data, name)
    except LoadError:
        raise
    except RecursionError as exc:
        raise LoadError(f"{name}: cannot parse {suffix} file (nested too deeply)") from exc
    except MemoryError as exc:
        raise LoadError(f"{name}: cannot parse {suffix} file (out of memory)") from exc
    except Exception as exc:  # parsers raise many types on broken input
        raise LoadError(f"{name}: cannot parse {suffix} file ({type(exc).__name__}: {exc})") from exc

    title, text = _valid_unicode(title), _valid_unicode(text)
    text, dropped = _drop_blobs(text)
    date, lead, text = _split_header(_clean(text))  # after newline normalisation: "\r" ends a line too
    text = _clean(text)
    if not text.strip():
        if dropped:
            raise LoadError(
                f"{name}: no text found ({dropped / (1024 * 1024):.1f} MB of data without spaces, such as base64 or "
                f"minified code, was dropped: runs over {MAX_RUN_CHARS} characters are not indexed)"
            )
        raise LoadError(f"{name}: no text found in file")
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


def check_file(path: Path, root: Path | None = None) -> None:
    """The checks `load_file` makes before reading a byte; LoadError naming the file if one fails.

    Supported type, not a symlink to outside `root`, a regular file, at most MAX_FILE_BYTES.
    Only a stat: a caller about to hash the file (ingest) can call it first, so that a huge
    file or a link to a file elsewhere is never read at all.
    """
    root = root or path.parent
    name = display_name(_relative(path, root))
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(f"{name}: unsupported file type {suffix!r} (supported: {', '.join(SUPPORTED_SUFFIXES)})")
    if _links_outside(path, root):
        raise LoadError(f"{name}: symbolic link to a file outside the folder; not followed")
    try:
        info = path.stat()
    except OSError as exc:
        raise LoadError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    _check_stat(info, name)


def _check_stat(info: os.stat_result, name: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise LoadError(f"{name}: not a regular file (a named pipe, socket or device); not read")
    if info.st_size > MAX_FILE_BYTES:
        raise LoadError(f"{name}: file is {_mb(info.st_size)}, over the {_mb(MAX_FILE_BYTES)} limit")


def iter_files(folder: Path, skipped: dict[str, str] | None = None) -> Iterator[Path]:
    """Supported files under `folder`, sorted.

    Not followed or not yielded: hidden files and folders (names starting with "."; silently),
    symlinked folders, named pipes, sockets and devices, and names that are not valid UTF-8
    (each with a warning, and recorded in `skipped` if given). Files that fail later (broken
    symlinks, no permission, symlinks pointing outside `folder`) are yielded so that the
    reader reports them.
    """
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            if (here / d).is_symlink():
                _refuse(folder, here / d, "symbolic link to a folder; not followed", skipped)
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(SUPPORTED_SUFFIXES):
                continue
            path = here / name
            problem = _entry_problem(path)
            if problem:
                _refuse(folder, path, problem, skipped)
                continue
            yield path


def load_folder(folder: Path) -> tuple[list[Document], dict[str, str]]:
    """Load every supported file; returns (documents, {path: reason} for skipped files)."""
    docs: list[Document] = []
    skipped: dict[str, str] = {}
    for path in iter_files(folder, skipped):
        try:
            docs.append(load_file(path, folder))
        except LoadError as exc:
            log.warning("skipped %s", exc)
            skipped[display_name(_relative(path, folder))] = str(exc)
    return docs, skipped


def display_name(name: str) -> str:
    """`name` safe to print or log: control characters, bidi overrides and undecodable bytes escaped."""
    return name if name.isprintable() else repr(name)[1:-1]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _entry_problem(path: Path) -> str:
    """Why `iter_files` must not yield this entry ("" if it may)."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8; rename the file"
    try:
        mode = path.stat().st_mode
    except OSError:
        return ""  # broken symlink, symlink loop, no permission: reported when read
    if not stat.S_ISREG(mode):
        return "not a regular file (a named pipe, socket or device); not read"
    return ""


def _refuse(folder: Path, path: Path, reason: str, skipped: dict[str, str] | None) -> None:
    name = display_name(_relative(path, folder))
    log.warning("skipped %s: %s", name, reason)
    if skipped is not None:
        skipped[name] = f"{name}: {reason}"


def _links_outside(path: Path, root: Path) -> bool:
    """True if `path` lies in `root` but resolves (through a symlink) to somewhere outside it."""
    try:
        path.absolute().relative_to(root.absolute())
    except ValueError:
        return False  # the caller chose a path outside root: not a link question
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real != base and base not in real.parents


def _read(path: Path, name: str) -> bytes:
    """The file's bytes: regular files only (O_NONBLOCK: opening a named pipe must not wait), at most MAX_FILE_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise LoadError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as fh:
        try:
            _check_stat(os.fstat(fd), name)  # again: the file may have been replaced since check_file
            data = fh.read(MAX_FILE_BYTES + 1)  # or may grow while we read it
        except OSError as exc:
            raise LoadError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if len(data) > MAX_FILE_BYTES:
        raise LoadError(f"{name}: file grew past the {_mb(MAX_FILE_BYTES)} limit while being read")
    return data


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


# --- text and encodings ----------------------------------------------------------------------


def decode(data: bytes) -> str:
    """Bytes -> str.

    UTF-32/UTF-16 by BOM (UTF-16 also by its pattern of NUL bytes), else UTF-8 (with or
    without BOM); a file partly in UTF-8 and partly in another encoding keeps its UTF-8 and
    decodes the rest in that encoding; else the most likely single encoding (charset-normalizer).
    """
    wide = _wide_codec(data)
    if wide:
        return _decode_wide(data, wide)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if _looks_mixed(data):
        return _decode_mixed(data.decode("utf-8", errors="surrogateescape"))
    match = _legacy_match(data)
    return str(match) if match is not None else data.decode("cp1252", errors="replace")


def _wide_codec(data: bytes) -> str:
    """The UTF-16/32 codec of `data` (by BOM, or UTF-16 by NULs in every other byte), or ""."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec
    sample = data[:4096]
    if len(sample) < 8:
        return ""
    even, odd = sample[0::2], sample[1::2]
    nul_even, nul_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if nul_odd > 0.3 and nul_even < 0.02:
        codec, chars = "utf-16-le", even
    elif nul_even > 0.3 and nul_odd < 0.02:
        codec, chars = "utf-16-be", odd
    else:
        return ""
    # the low bytes of Western text are mostly printable ASCII; binary with a regular NUL pattern is not
    not_ascii = len(chars.translate(None, _ASCII_TEXT)) / len(chars)
    return codec if not_ascii < 0.3 else ""


def _decode_wide(data: bytes, codec: str) -> str:
    for bom, bom_codec in _BOMS:
        if bom_codec == codec and data.startswith(bom):
            data = data[len(bom) :]
            break
    return data.decode(codec, errors="replace")


def _legacy_match(data: bytes) -> Any:
    """charset-normalizer's best guess, preferring cp1252 unless another fits clearly better."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    # charset-normalizer often ties cp1252 with another code page on French text and then
    # picks the wrong one (cp1250 turns "œ" into "ś" and "è" into "č"; a short file may come
    # out as UTF-16 CJK): score cp1252 on its own and keep it unless another fits clearly better.
    western = from_bytes(data, cp_isolation=["cp1252"]).best()
    if western is not None and (
        best is None or (western.chaos <= best.chaos and western.coherence >= best.coherence - 0.05)
    ):
        return western
    if best is not None and best.encoding:
        return best
    return None


def _looks_mixed(data: bytes) -> bool:
    """Whether `data` (not valid UTF-8) is UTF-8 with stray bytes or lines in another encoding.

    Among the first 1000 lines holding non-ASCII bytes, at least a tenth must be valid UTF-8:
    legacy text (cp1252, and multi-byte GBK or Shift-JIS, whose byte pairs now and then happen
    to be valid UTF-8) almost never has a whole such line that is.
    """
    valid = stray = pos = 0
    while valid + stray < 1000 and (found := _HIGH_BYTE.search(data, pos)):
        start = data.rfind(b"\n", 0, found.start()) + 1
        end = data.find(b"\n", found.end())
        end = len(data) if end < 0 else end
        try:
            data[start:end].decode("utf-8")
            valid += 1
        except UnicodeDecodeError:
            stray += 1
        pos = end + 1
    return valid > 0 and valid * 10 >= stray


def _decode_mixed(escaped: str) -> str:
    """UTF-8 holding bytes of another encoding (a Latin-1 file appended to a UTF-8 one, stray bytes).

    `escaped` is the data decoded with "surrogateescape". The valid UTF-8 is kept; each run of
    stray bytes is decoded in the encoding charset-normalizer finds for the lines holding them
    (sampled: the first 200 such lines), usually cp1252.
    """
    lines: list[str] = []
    pos = 0
    while len(lines) < 200 and (found := _ESCAPED.search(escaped, pos)):
        start = escaped.rfind("\n", 0, found.start()) + 1
        end = escaped.find("\n", found.end())
        end = len(escaped) if end < 0 else end
        lines.append(escaped[start:end])
        pos = end + 1
    match = _legacy_match("\n".join(lines).encode("utf-8", errors="surrogateescape"))
    codec = match.encoding if match is not None and match.encoding else "cp1252"

    pieces = _ESCAPED_RUN.split(escaped)  # the runs of stray bytes are at the odd indexes
    decoded: dict[str, str] = {}  # the same few runs ("é" alone...) come back again and again
    for i in range(1, len(pieces), 2):
        run = pieces[i]
        if run not in decoded:
            decoded[run] = run.encode("utf-8", errors="surrogateescape").decode(codec, errors="replace")
        pieces[i] = decoded[run]
    return "".join(pieces)


def _text(data: bytes, name: str, kind: str) -> str:
    """Decoded text of a text-like file; LoadError if it is binary."""
    if _wide_codec(data):
        text = decode(data)
    else:
        data = data.rstrip(b"\x00")  # a zero-filled tail (a crashed write) is not content
        if b"\x00" in data[:8192]:
            raise LoadError(f"{name}: looks like a binary file, not {kind} (it contains NUL bytes)")
        text = decode(data)
    sample = text[:65536]
    junk = len(sample) - len(_JUNK.sub("", sample))
    if junk >= 8 and junk / len(sample) > MAX_JUNK_RATIO:  # a stray control code or two is still text
        raise LoadError(f"{name}: looks like a binary file, not {kind} ({junk / len(sample):.0%} control codes)")
    return text


def _plain(data: bytes, name: str, markdown: bool) -> tuple[str, str]:
    text = _text(data, name, "text")
    title = ""
    if markdown:
        match = _MD_TITLE.search(text)
        if match:
            title = _short(match.group(1))
    return title, text


def _valid_unicode(text: str) -> str:
    """Lone surrogates (pypdf decodes ToUnicode maps with "surrogatepass") -> U+FFFD; pairs are joined.

    A str holding one cannot be encoded to UTF-8: hashing, storing or sending it would fail.
    """
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _drop_blobs(text: str) -> tuple[str, int]:
    """Remove runs of over MAX_RUN_CHARS visible ASCII characters without a space; (text, chars dropped)."""
    dropped = 0

    def drop(match: re.Match[str]) -> str:
        nonlocal dropped
        dropped += len(match.group())
        return " "

    return _BLOB.sub(drop, text), dropped


# --- HTML ------------------------------------------------------------------------------------

# elements that do not break a line; any other tag does
_INLINE_NAMES = (
    "a abbr b bdi bdo big cite code data del dfn em font i ins kbd label mark nobr q rp rt ruby s samp "
    "small span strike strong sub sup time tt u var wbr"
)
_INLINE = frozenset(_INLINE_NAMES.split())
_HIDDEN = frozenset({"head", "noscript", "template"})  # their content is not shown
_RAW = frozenset({"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes"})
_RAW_END = {tag: re.compile(rf"</{tag}\b", re.IGNORECASE) for tag in _RAW}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:_-]*)")
_SPACES = re.compile(r"[ \t\r\n\f]+")
_BREAKS = re.compile(r"[ \t]*\x00[ \t\x00]*")
_NAME_END = r"(?![A-Za-z0-9:_-])"
# Ordinary tags are removed in two C-speed passes before the scan (a tag soup of millions of
# "<b>" would otherwise cost a Python loop turn each): inline ones vanish, the others become
# a NUL (a line break, once the scan is done). `[^<>]*` stops at the next "<": linear.
_INLINE_TAG = re.compile(rf"</?(?:{'|'.join(sorted(_INLINE))}){_NAME_END}[^<>]*>", re.IGNORECASE)
_OTHER_TAG = re.compile(
    rf"</?(?!(?:{'|'.join(sorted(_HIDDEN | _RAW | {'pre', 'body'}))}){_NAME_END})[A-Za-z][A-Za-z0-9:_-]*[^<>]*>",
    re.IGNORECASE,
)


def _html(data: bytes, name: str) -> tuple[str, str]:
    return html_text(_text(data, name, "HTML"))


def html_text(html: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page.

    A single left-to-right scan with str.find: every step moves past what it looked at, so
    time is linear in the input whatever the nesting, and nothing recurses. What is not
    shown is dropped: head, script, style, noscript, template, comments. An unterminated
    tag or comment at the end is dropped (as browsers do); a ">" inside a quoted attribute
    value ends the tag early (a little markup may then show as text).
    """
    html = _OTHER_TAG.sub("\x00", _INLINE_TAG.sub("", html.replace("\x00", " ")))
    parts: list[str] = []
    title = ""
    hidden = pre = 0
    pos, end = 0, len(html)

    def text(piece: str) -> None:
        if piece and not hidden:
            piece = unescape(piece)
            parts.append(piece if pre else _SPACES.sub(" ", piece))

    while pos < end:
        lt = html.find("<", pos)
        if lt < 0:
            text(html[pos:])
            break
        text(html[pos:lt])
        if html.startswith("<!--", lt):
            close = html.find("-->", lt + 4)
            pos = close + 3
        elif html.startswith("<![CDATA[", lt):
            close = html.find("]]>", lt + 9)
            if close >= 0:
                text(html[lt + 9 : close])
            pos = close + 3
        elif html.startswith(("<!", "<?"), lt):
            close = html.find(">", lt + 2)
            pos = close + 1
        else:
            match = _TAG.match(html, lt)
            if match is None:  # "a < b": not a tag
                text("<")
                pos = lt + 1
                continue
            close = html.find(">", match.end())
            pos = close + 1
            if close >= 0:
                closing, tag = match.group(1) == "/", match.group(2).lower()
                if not closing and tag in _RAW and html[close - 1] != "/":
                    stop = _RAW_END[tag].search(html, pos)
                    content = html[pos : stop.start() if stop else end]
                    if tag == "title":
                        title = title or _short(unescape(content.replace("\x00", " ")))
                    elif tag == "textarea":
                        text(content)
                    close = html.find(">", stop.end()) if stop else -1
                    pos = close + 1
                elif tag in _HIDDEN:
                    hidden = max(0, hidden - 1) if closing else hidden + 1
                elif tag == "body" and not closing:
                    hidden = 0  # a missing </head> ends at <body>
                else:
                    if tag == "pre":
                        pre = max(0, pre - 1) if closing else pre + 1
                    if tag not in _INLINE:
                        parts.append("\x00")
        if close < 0:
            break  # unterminated comment, tag or raw text: the rest is dropped
    # a break between blocks is a line end, several (</p><p>) a blank line; <pre> text keeps its own
    body = _BREAKS.sub(lambda m: "\n\n" if m.group().count("\x00") > 1 else "\n", "".join(parts))
    return title, re.sub(r"\n{3,}", "\n\n", body)


# --- PDF -------------------------------------------------------------------------------------


def _pdf(data: bytes, name: str) -> tuple[str, str]:
    from pypdf import PdfReader, apply_configuration

    with apply_configuration(**PDF_LIMITS):
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception as exc:  # pypdf's DependencyError: AES needs the `cryptography` package
                raise LoadError(f"{name}: PDF is encrypted and cannot be opened ({exc})") from exc
            if not unlocked:
                raise LoadError(f"{name}: PDF is password-protected")
        deadline = time.monotonic() + MAX_PDF_SECONDS
        total = len(reader.pages)
        pages: list[str] = []
        failed: list[tuple[int, Exception]] = []
        for number, page in enumerate(reader.pages, 1):
            if time.monotonic() > deadline:
                raise LoadError(
                    f"{name}: reading the PDF took over {MAX_PDF_SECONDS:.0f} s (abandoned at page {number} of {total})"
                )
            try:
                pages.append((page.extract_text() or "").strip())
            except Exception as exc:  # one broken page must not lose the others
                failed.append((number, exc))
        if failed:
            number, error = failed[0]
            cause = f"page {number}: {type(error).__name__}: {error}"
            if not any(pages):
                raise LoadError(f"{name}: cannot read the text of the PDF ({cause})")
            log.warning(
                "%s: %d of %d PDF pages could not be read and are left out (%s)", name, len(failed), total, cause
            )
        meta_title = ""
        if reader.metadata and reader.metadata.title:
            meta_title = _short(str(reader.metadata.title))
    return meta_title, "\n\n".join(p for p in pages if p)


# --- DOCX ------------------------------------------------------------------------------------


def _docx(data: bytes, name: str) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise LoadError(f"{name}: not a valid .docx (zip) file") from exc
    total = sum(info.file_size for info in infos)
    if total > MAX_UNZIPPED_BYTES:
        raise LoadError(f"{name}: .docx expands to {_mb(total)}; refusing a likely zip bomb")
    if not any(info.filename == "[Content_Types].xml" for info in infos):
        raise LoadError(f"{name}: cannot parse .docx file (a zip archive, but not a Word document)")
    xml = sum(info.file_size for info in infos if info.filename.lower().endswith((".xml", ".rels")))
    if xml > MAX_DOCX_XML_BYTES:
        raise LoadError(f"{name}: .docx holds {_mb(xml)} of XML, over the {_mb(MAX_DOCX_XML_BYTES)} limit")
    import docx

    # python-docx parses with lxml, which refuses entity expansion bombs ("billion laughs")
    # and nesting deeper than 256; a member whose real size exceeds its declared size fails
    # zipfile's CRC check: both end as LoadError in load_file
    document = docx.Document(io.BytesIO(data))
    paragraphs = [p.text for p in document.paragraphs]
    title = _short(document.core_properties.title or "")
    return title, "\n\n".join(p for p in paragraphs if p.strip())


# --- shared ----------------------------------------------------------------------------------


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
