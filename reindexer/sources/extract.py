"""The text of one file of a `directory:` source, by its suffix: plain text and Markdown as they
are, HTML with its tags stripped by the stdlib's parser, PDF page by page through pypdf.

PDF needs the optional extra `[pdf]`. Without pypdf, `*.pdf` files are not part of a source at
all (neither listed nor counted, as the DESIGN has it: "`*.pdf` with the extra `[pdf]`"), so a
folder indexes the same way before and after an upgrade that adds no extra; the directory source
logs that it left them out.
"""

from __future__ import annotations

import codecs
import importlib.util
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Any

from reindexer.documents import PREVIEW_CHARS, preview_of

TEXT_SUFFIXES = frozenset({".txt", ".md"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
PDF_AVAILABLE = importlib.util.find_spec("pypdf") is not None
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | (PDF_SUFFIXES if PDF_AVAILABLE else frozenset())

# Browsers look for a <meta charset> in the first 1024 bytes; a little more costs nothing.
_CHARSET_SCAN_BYTES = 4096
_META_CHARSET = re.compile(
    rb"""<meta\s[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)
# The WHATWG encoding standard reads these labels as windows-1252, as every browser does.
_WINDOWS_1252_LABELS = frozenset({"iso-8859-1", "iso8859-1", "latin1", "latin-1", "us-ascii"})


@dataclass(frozen=True)
class Extracted:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


class Unreadable(Exception):  # noqa: N818 - a verdict on a file, not a program error
    """The file has no text that can be indexed; `reason` says why, `shown` is its start."""

    def __init__(self, reason: str, shown: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.shown = shown


def format_of(name: str) -> str:
    """ "html", "pdf" or "text", by the file's suffix."""
    suffix = PurePath(name).suffix.lower()
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in PDF_SUFFIXES:
        return "pdf"
    return "text"


def extract(name: str, data: bytes) -> Extracted:
    """The text and format metadata of file `name` holding `data`; raises Unreadable."""
    kind = format_of(name)
    if kind == "html":
        return _html(data)
    if kind == "pdf":
        return _pdf(data)
    text = _decode(data, "utf-8")
    if not text.strip():
        raise Unreadable("empty file")
    return Extracted(text, {"format": "text"})


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        # A character is at most 4 bytes: no need to decode the whole file for the preview.
        shown = preview_of(data[: 4 * PREVIEW_CHARS].decode(encoding, "replace"))
        label = "UTF-8" if encoding in ("utf-8", "utf-8-sig") else encoding
        raise Unreadable(f"not valid {label}", shown) from None


# -- HTML -------------------------------------------------------------------------------------


def html_encoding(data: bytes) -> str:
    """The encoding of an HTML file: its byte order mark, else its <meta charset>, else UTF-8."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return encoding
    match = _META_CHARSET.search(data[:_CHARSET_SCAN_BYTES])
    if match is None:
        return "utf-8"
    label = match.group(1).decode("ascii").lower()
    try:
        name = codecs.lookup(label).name
    except LookupError:
        raise Unreadable(f"unknown charset {label!r} in its <meta charset>") from None
    # A UTF-16 <meta> without a BOM cannot be right (the tag itself was read as ASCII).
    if name.startswith("utf-16"):
        return "utf-8"
    return "cp1252" if label in _WINDOWS_1252_LABELS or name == "latin-1" else name


def _html(data: bytes) -> Extracted:
    encoding = html_encoding(data)
    if encoding == "cp1252":
        # windows-1252 leaves five bytes undefined, where ISO-8859-1 reads every byte.
        try:
            markup = data.decode(encoding)
        except UnicodeDecodeError:
            markup = data.decode("latin-1")
    else:
        markup = _decode(data, encoding)
    parser = _TextParser()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as exc:  # the parser is lenient, but one bad file must not stop a job
        raise Unreadable(f"cannot parse the HTML: {type(exc).__name__}: {exc}") from exc
    title = " ".join(parser.title.split())
    body = parser.text()
    text = "\n\n".join(part for part in (title, body) if part)
    if not text:
        raise Unreadable("no text in the HTML (only markup, scripts or styles)", preview_of(markup))
    metadata: dict[str, Any] = {"format": "html"}
    if title:
        metadata["title"] = title
    return Extracted(text, metadata)


# Elements whose content is never text for a reader.
_DROPPED = frozenset({"script", "style", "template", "noscript", "svg"})
# Elements that start a new line (block-level boxes, line breaks, table rows, list items); the
# cells of a row stay on its line.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1",
        "h2", "h3", "h4", "h5", "h6", "header", "hr", "html", "li", "main", "nav", "ol", "p",
        "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


class _TextParser(HTMLParser):
    """Collects the readable text: whitespace collapsed as a browser shows it, one line per
    block, `<pre>` kept as written; scripts, styles and comments dropped; entities unescaped
    (convert_charrefs). The first `<title>` is kept apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self._lines: list[str] = []
        self._line: list[str] = []
        self._dropped: list[str] = []  # the open dropped elements, innermost last
        self._in_title = False
        self._seen_title = False
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._seen_title and not self._dropped:
            self._in_title = True
            return
        if self._dropped or tag in _DROPPED:
            if tag not in _VOID:
                self._dropped.append(tag)
            return
        if tag in _BLOCKS:
            self._break()
        elif tag in ("td", "th"):
            self._line.append(" ")
        if tag == "pre":
            self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self._seen_title = True
            return
        if self._dropped:
            # Close up to the matching element: an unclosed child must not keep the rest hidden.
            if tag in self._dropped:
                while self._dropped.pop() != tag:
                    pass
            return
        if tag == "pre" and self._pre:
            self._break(keep=True)
            self._pre -= 1
        elif tag in _BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        data = data.replace("\x00", "")  # no store keeps NUL characters (PostgreSQL refuses them)
        if self._in_title:
            self.title += data
        elif not self._dropped:
            if self._pre:
                lines = data.split("\n")
                self._line.append(lines[0])
                for line in lines[1:]:
                    self._break(keep=True)
                    self._line.append(line)
            else:
                self._line.append(data)

    def _break(self, *, keep: bool = False) -> None:
        raw = "".join(self._line)
        line = raw.rstrip() if keep else " ".join(raw.split())
        if line or keep:
            self._lines.append(line)
        self._line = []

    def text(self) -> str:
        self._break()
        # Blocks give one line each; runs of empty lines (from <pre>) shrink to one.
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(self._lines))
        return text.strip()


# -- PDF --------------------------------------------------------------------------------------


def _pdf(data: bytes) -> Extracted:
    # Imported here: only jobs that meet a PDF pay for the import.
    from pypdf import PasswordType, PdfReader

    # pypdf raises many exception types for a damaged file (its own, and ValueError, KeyError,
    # struct and zlib errors, RecursionError...): each is this file's failure, never the job's.
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise Unreadable("encrypted PDF: it needs a password to be read")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            try:
                pages.append(page.extract_text().replace("\x00", "").strip())
            except Unreadable:
                raise
            except Exception as exc:
                raise Unreadable(
                    f"cannot read page {number} of the PDF: {type(exc).__name__}: {exc}"
                ) from exc
    except Unreadable:
        raise
    except Exception as exc:
        raise Unreadable(f"cannot read the PDF: {type(exc).__name__}: {exc}") from exc
    text = "\n\n".join(page for page in pages if page)
    if not text:
        raise Unreadable(
            f"no text in the PDF ({len(pages)} page{'s' if len(pages) != 1 else ''}; "
            "a scanned PDF needs OCR first)"
        )
    return Extracted(text, {"format": "pdf", "pages": len(pages)})
