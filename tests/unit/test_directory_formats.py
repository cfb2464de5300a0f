"""`directory:` sources over HTML and PDF files: real files written here (PDFs built by hand with a
text operator, or by pypdf's writer), text and metadata, and each unreadable file a failure."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pypdf
import pytest
from django.core.management import call_command

from reindexer.documents import MALFORMED_ERROR, Document, Malformed, Record
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.models import JobStatus, ReindexJob
from reindexer.sources import open_source
from reindexer.sources.directory import SUFFIXES
from reindexer.sources.excerpt import FailingRecord, excerpt
from reindexer.sources.extract import extract
from reindexer.stores import open_store

REPO_ROOT = Path(__file__).resolve().parents[2]


def text_pdf(*pages: str) -> bytes:
    """A real PDF, one page per text, each drawn with Helvetica by a `Tj` operator; xref exact."""
    n = len(pages)
    font = 3 + 2 * n
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>",
    ]
    for i, text in enumerate(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R"
            f" /Resources << /Font << /F1 {font} 0 R >> >> >>"
        )
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET" if text else ""
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, "owner-pw", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


PAGE = """<!DOCTYPE html>
<html><head>
  <meta charset="utf-8">
  <title>  Vector   stores &amp; you </title>
  <style>body { color: red; } p::after { content: "styled"; }</style>
  <script>document.write("<p>scripted</p>"); if (a < b && c > d) {}</script>
</head>
<body>
  <!-- a comment that must not be indexed -->
  <h1>Indexing&nbsp;<em>without</em> tears</h1>
  <div><p>Caf&eacute; costs &euro;3 &lt;each&gt; &#x263A;
     and  <a href="/x">links <b>nest</b></a>.</p></div>
  <ul><li>one</li><li>two <span>and a half</span></li></ul>
  <table><tr><th>name</th><th>dims</th></tr><tr><td>minilm</td><td>384</td></tr></table>
  <pre>  kept
    as written</pre>
  <noscript>Please enable JavaScript</noscript>
  <svg viewBox="0 0 1 1"><title>icon</title><path d="M0 0"/></svg>
  <p>the end<br>of the page</p>
</body></html>
"""
PAGE_TEXT = (
    "Vector stores & you\n\n"
    "Indexing without tears\n"
    "Café costs €3 <each> ☺ and links nest.\n"
    "one\n"
    "two and a half\n"
    "name dims\n"
    "minilm 384\n"
    "  kept\n"
    "    as written\n"
    "the end\n"
    "of the page"
)


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)


def read_all(spec: str) -> dict[str, Record]:
    reader = open_source(spec).open()
    try:
        return {record.id: record for record in reader}
    finally:
        reader.close()


def document(records: dict[str, Record], rel: str) -> Document:
    record = records[rel]
    assert isinstance(record, Document), record
    return record


def malformed(records: dict[str, Record], rel: str) -> Malformed:
    record = records[rel]
    assert isinstance(record, Malformed), record
    assert record.locator == rel
    return record


# -- HTML -------------------------------------------------------------------------------------


def test_html__keeps_the_text_and_title_and_drops_scripts_styles_and_comments(
    data_dir: Path,
) -> None:
    write(data_dir / "site", {"index.html": PAGE})
    doc = document(read_all("directory:site"), "index.html")
    assert doc.text == PAGE_TEXT
    raw = len(PAGE.encode())
    assert doc.metadata == {
        "path": "index.html",
        "bytes": raw,
        "format": "html",
        "title": "Vector stores & you",
    }
    for hidden in ("scripted", "styled", "color", "comment", "JavaScript", "icon", "<p>"):
        assert hidden not in doc.text


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ('<meta charset="windows-1252"><p>caf\xe9 \x93quoted\x94</p>', "café “quoted”"),
        # Browsers read ISO-8859-1 as windows-1252 (WHATWG), so its curly quotes survive too.
        ("<meta charset=ISO-8859-1><p>na\xefve \x93q\x94</p>", "naïve “q”"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">'
            "<p>\xf0\xd2\xc9</p>",
            "При",
        ),
    ],
)
def test_html__is_decoded_with_the_charset_its_meta_declares(
    data_dir: Path, raw: str, text: str
) -> None:
    write(data_dir / "site", {"page.htm": raw.encode("latin-1")})
    doc = document(read_all("directory:site"), "page.htm")
    assert doc.text == text
    assert doc.metadata["format"] == "html" and "title" not in doc.metadata


def test_html__a_utf8_byte_order_mark_is_honoured_and_not_kept(data_dir: Path) -> None:
    write(data_dir / "site", {"bom.html": b"\xef\xbb\xbf<p>cr\xc3\xa8me</p>"})
    assert document(read_all("directory:site"), "bom.html").text == "crème"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"<p>caf\xe9</p>", "not valid UTF-8"),  # no <meta charset>: UTF-8, as for .txt
        (b'<meta charset="klingon-8"><p>qapla</p>', "unknown charset 'klingon-8'"),
        (b"<script>alert(1)</script><style>p{}</style><!-- only -->", "no text in the HTML"),
        (b"", "no text in the HTML"),
    ],
)
def test_html__without_readable_text_is_a_recorded_failure(
    data_dir: Path, raw: bytes, reason: str
) -> None:
    write(data_dir / "site", {"bad.html": raw, "good.html": "<p>fine</p>"})
    records = read_all("directory:site")
    assert reason in malformed(records, "bad.html").reason
    assert document(records, "good.html").text == "fine"


def test_html__an_unclosed_dropped_element_hides_only_itself(data_dir: Path) -> None:
    raw = "<noscript><p>enable js</noscript><p>shown</p><template><b>hidden</template>after"
    assert extract("x.html", raw.encode()).text == "shown\nafter"


# -- PDF --------------------------------------------------------------------------------------


def test_pdf__yields_the_text_of_every_page_with_its_page_count(data_dir: Path) -> None:
    pdf = text_pdf("Reindexing moves vectors.", "", "Search works afterwards.")
    write(data_dir / "papers", {"paper.pdf": pdf})
    doc = document(read_all("directory:papers"), "paper.pdf")
    assert doc.text == "Reindexing moves vectors.\n\nSearch works afterwards."
    assert doc.metadata == {"path": "paper.pdf", "bytes": len(pdf), "format": "pdf", "pages": 3}


def test_pdf__encrypted_with_an_empty_user_password_is_read(data_dir: Path) -> None:
    write(data_dir / "papers", {"locked-for-editing.pdf": encrypted(text_pdf("open text"), "")})
    doc = document(read_all("directory:papers"), "locked-for-editing.pdf")
    assert doc.text == "open text"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: text_pdf(""), "no text in the PDF (1 page; a scanned PDF needs OCR first)"),
        (lambda: text_pdf("cut short")[:150], "cannot read the PDF: "),
        (lambda: b"%PDF-1.4\nthis is no PDF at all\n", "cannot read the PDF: "),
        (lambda: b"", "cannot read the PDF: EmptyFileError"),
        (lambda: encrypted(text_pdf("secret"), "s3cret"), "encrypted PDF: it needs a password"),
    ],
    ids=["no-text", "truncated", "garbage", "empty", "encrypted"],
)
def test_pdf__unreadable_is_a_recorded_failure_and_the_next_file_is_still_read(
    data_dir: Path, make: Callable[[], bytes], reason: str
) -> None:
    write(data_dir / "papers", {"a-bad.pdf": make(), "b-good.pdf": text_pdf("good one")})
    records = read_all("directory:papers")
    bad = malformed(records, "a-bad.pdf")
    assert bad.reason.startswith(f"a-bad.pdf: {reason}"), bad.reason
    assert document(records, "b-good.pdf").text == "good one"


# -- listing and counting ---------------------------------------------------------------------

MIXED: dict[str, str | bytes] = {
    "a.txt": "plain text",
    "b.md": "# markdown",
    "c.html": "<p>html</p>",
    "d.HTM": "<p>shouting suffix</p>",
    "e.pdf": text_pdf("pdf text"),
    "sub/f.pdf": text_pdf("nested pdf"),
    "image.png": b"\x89PNG\r\n",
    "notes.html.bak": "<p>a backup</p>",
}


def test_count__includes_html_htm_and_pdf_files_and_nothing_else(data_dir: Path) -> None:
    write(data_dir / "mixed", MIXED)
    assert {".txt", ".md", ".html", ".htm", ".pdf"} <= SUFFIXES
    source = open_source("directory:mixed")
    assert source.count() == 6
    records = read_all("directory:mixed")
    assert list(records) == ["a.txt", "b.md", "c.html", "d.HTM", "e.pdf", "sub/f.pdf"]
    formats = {rel: document(records, rel).metadata["format"] for rel in records}
    assert formats == {
        "a.txt": "text",
        "b.md": "text",
        "c.html": "html",
        "d.HTM": "html",
        "e.pdf": "pdf",
        "sub/f.pdf": "pdf",
    }


def test_count__without_pypdf_leaves_pdf_files_out_and_says_so(data_dir: Path) -> None:
    write(data_dir / "mixed", MIXED)
    # A fresh interpreter in which `import pypdf` fails, as where the extra is not installed.
    script = (
        "import sys, json, logging, django\n"
        "sys.modules['pypdf'] = None\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "django.setup()\n"
        "from reindexer.sources.directory import SUFFIXES, DirectorySource\n"
        "source = DirectorySource('directory:mixed', __import__('pathlib').Path(sys.argv[1]))\n"
        "print(json.dumps({'suffixes': sorted(SUFFIXES), 'paths': source.paths()}))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "reindexer.settings"}
    env["REINDEXER_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_dir / "mixed")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["suffixes"] == [".htm", ".html", ".md", ".txt"]
    assert listed["paths"] == ["a.txt", "b.md", "c.html", "d.HTM"]
    assert "directory:mixed: 2 PDF files left out: they need pypdf" in done.stderr


# -- failure excerpts -------------------------------------------------------------------------


def failing(rel: str, preview: str, error_type: str = "PermanentError") -> FailingRecord:
    return FailingRecord("directory:docs", rel, [rel], error_type, preview)


def test_excerpt__of_an_html_or_pdf_document_shows_the_text_that_was_indexed(
    data_dir: Path,
) -> None:
    write(data_dir / "docs", {"page.html": PAGE, "paper.pdf": text_pdf("Page one.", "Two.")})
    records = read_all("directory:docs")
    for rel in ("page.html", "paper.pdf"):
        doc = document(records, rel)
        shown = excerpt(failing(rel, doc.text[:300]))
        assert (shown.problem, shown.changed) == ("", False)
        assert [line.text for line in shown.lines] == [doc.text]


def test_excerpt__of_an_html_document_that_was_edited_says_it_changed(data_dir: Path) -> None:
    write(data_dir / "docs", {"page.html": PAGE})
    indexed = document(read_all("directory:docs"), "page.html").text
    write(data_dir / "docs", {"page.html": "<p>rewritten since</p>"})
    shown = excerpt(failing("page.html", indexed[:300]))
    assert shown.changed
    assert shown.lines[0].text == "rewritten since"


def test_excerpt__of_an_unreadable_pdf_or_html_says_why_or_shows_the_markup(
    data_dir: Path,
) -> None:
    markup = "<script>only()</script>"
    write(data_dir / "docs", {"broken.pdf": b"%PDF-1.4\ngarbage", "empty.html": markup})
    records = read_all("directory:docs")
    pdf = excerpt(failing("broken.pdf", malformed(records, "broken.pdf").raw, MALFORMED_ERROR))
    assert pdf.problem.startswith("The PDF has no text to show: cannot read the PDF: ")
    html = malformed(records, "empty.html")
    shown = excerpt(failing("empty.html", html.raw, MALFORMED_ERROR))
    assert (shown.problem, shown.changed) == ("", False)
    assert shown.lines[0].text == markup


# -- a job over a mixed folder ----------------------------------------------------------------

GOOD_FILES: dict[str, str | bytes] = {
    "guide.txt": "a plain text guide to reindexing",
    "notes/readme.md": "# markdown notes on vector stores",
    "site/index.html": PAGE,
    "site/old.htm": "<html><title>Old page</title><body><p>kept from 2009</p></body></html>",
    "papers/two-pages.pdf": text_pdf("first page of the paper", "second page of the paper"),
}
BAD_FILES: dict[str, tuple[str | bytes, str]] = {
    "papers/corrupt.pdf": (text_pdf("will be cut")[:200], "cannot read the PDF: "),
    "papers/locked.pdf": (encrypted(text_pdf("private"), "pw"), "encrypted PDF"),
    "papers/scanned.pdf": (text_pdf("", ""), "no text in the PDF (2 pages"),
    "site/app.html": ("<div id=app></div><script>boot()</script>", "no text in the HTML"),
    "site/latin.html": (b"<p>caf\xe9</p>", "not valid UTF-8"),
}


@pytest.mark.django_db(transaction=True)
def test_job__over_a_mixed_folder_records_exactly_the_bad_files_and_verifies_clean(
    data_dir: Path, make_job: Callable[..., ReindexJob]
) -> None:
    write(data_dir / "mixed", {**GOOD_FILES, **{rel: raw for rel, (raw, _) in BAD_FILES.items()}})
    (data_dir / "mixed" / "site" / "logo.png").write_bytes(b"\x89PNG\r\n")  # not listed
    job = make_job("directory:mixed", total=None, batch_size=3, max_failed_ratio=0.9)

    call_command("reindex_worker", "--burst", "--worker-id", "w-formats")

    job.refresh_from_db()
    total = len(GOOD_FILES) + len(BAD_FILES)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (total, total, len(BAD_FILES))
    failures = {f.locator: f for f in job.failures.all()}
    assert set(failures) == set(BAD_FILES)
    for rel, (_, reason) in BAD_FILES.items():
        assert failures[rel].error_type == MALFORMED_ERROR
        assert failures[rel].doc_ids == [rel]
        assert failures[rel].message.startswith(f"{rel}: {reason}"), failures[rel].message

    out = StringIO()
    call_command("reindex", "verify", str(job.pk), "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["source_docs"], report["in_store"]) == (len(GOOD_FILES), len(GOOD_FILES))
    assert (report["missing"], report["duplicates"], report["failed_recorded"]) == (0, 0, 0)

    store = open_store(job.store, job.collection, 384)
    try:
        assert set(store.ids()) == set(GOOD_FILES)
        query = HashingEmbedder(384).embed(["first page of the paper\n\nsecond page of the paper"])
        [hit] = store.search(query[0], k=1)
    finally:
        store.close()
    assert hit.id == "papers/two-pages.pdf"
    assert hit.metadata["format"] == "pdf" and hit.metadata["pages"] == 2
