"""Sources: streaming from a checkpoint, counting, malformed records, and refused paths."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reindexer.documents import Document, Malformed, Record
from reindexer.errors import SourcePathError, SpecError, UnknownBackend
from reindexer.sources import open_source


def read_all(spec: str, checkpoint: dict[str, object] | None = None) -> list[Record]:
    reader = open_source(spec).open(checkpoint)
    try:
        return list(reader)
    finally:
        reader.close()


def read_some(spec: str, n: int) -> tuple[list[Record], dict[str, object]]:
    """The first `n` records, and the checkpoint just after them."""
    reader = open_source(spec).open()
    try:
        it = iter(reader)
        records = [next(it) for _ in range(n)]
        return records, reader.checkpoint()
    finally:
        reader.close()


def write_lines(data_dir: Path, lines: list[str | bytes], name: str = "docs.jsonl") -> str:
    with (data_dir / name).open("wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
    return f"jsonl:{name}"


def doc_line(doc_id: object, text: object = "some text", **extra: object) -> str:
    return json.dumps({"id": doc_id, "text": text, **extra})


def ids(records: list[Record]) -> list[str]:
    return [r.id for r in records]


# -- jsonl streaming -------------------------------------------------------------------------


def test_jsonl__yields_every_document_in_order(make_corpus: Callable[..., Path]) -> None:
    make_corpus(50)
    records = read_all("jsonl:docs.jsonl")
    assert all(isinstance(r, Document) for r in records)
    assert ids(records) == [f"doc-{i}" for i in range(50)]
    assert records[3] == Document("doc-3", records[3].text, {"n": 3})  # type: ignore[union-attr]


def test_jsonl__count_includes_malformed_lines_and_skips_blank_ones(
    make_corpus: Callable[..., Path],
) -> None:
    make_corpus(10, extra_lines=["", "not json", "   ", '{"id": "x"}'])
    assert open_source("jsonl:docs.jsonl").count() == 12
    assert len(read_all("jsonl:docs.jsonl")) == 12


@pytest.mark.parametrize("split", [0, 1, 17, 300, 499, 500])
def test_jsonl__resume_from_checkpoint_yields_exactly_the_remaining_records(
    make_corpus: Callable[..., Path], split: int
) -> None:
    make_corpus(500)
    head, checkpoint = read_some("jsonl:docs.jsonl", split)
    tail = read_all("jsonl:docs.jsonl", checkpoint)
    assert ids(head) + ids(tail) == [f"doc-{i}" for i in range(500)]


def test_jsonl__checkpoint_of_a_fresh_reader_restarts_from_the_beginning(
    make_corpus: Callable[..., Path],
) -> None:
    make_corpus(3)
    _, checkpoint = read_some("jsonl:docs.jsonl", 0)
    assert ids(read_all("jsonl:docs.jsonl", checkpoint)) == ["doc-0", "doc-1", "doc-2"]


MALFORMED_CASES = [
    ("bad JSON", '{"id": "a", "text": ', "invalid JSON"),
    ("not an object", '["a", "b"]', "not a JSON object"),
    ("a JSON string", '"just text"', "not a JSON object"),
    ("missing id", json.dumps({"text": "t"}), "'id' must be a non-empty string"),
    ("empty id", doc_line(""), "'id' must be a non-empty string"),
    ("numeric id", doc_line(7), "'id' must be a non-empty string"),
    ("missing text", json.dumps({"id": "a"}), "'text' must be a non-empty string"),
    ("empty text", doc_line("a", ""), "'text' must be a non-empty string"),
    ("blank text", doc_line("a", "   "), "'text' must be a non-empty string"),
    ("non-string text", doc_line("a", 12), "'text' must be a non-empty string"),
    ("metadata a list", doc_line("a", metadata=[1]), "'metadata' must be an object"),
    ("metadata a string", doc_line("a", metadata="m"), "'metadata' must be an object"),
]


@pytest.mark.parametrize(
    ("line", "reason"), [c[1:] for c in MALFORMED_CASES], ids=[c[0] for c in MALFORMED_CASES]
)
def test_jsonl__malformed_line_is_reported_with_its_line_number_and_reason(
    data_dir: Path, line: str, reason: str
) -> None:
    spec = write_lines(data_dir, [doc_line("before"), line, doc_line("after")])
    records = read_all(spec)
    assert [type(r) for r in records] == [Document, Malformed, Document]
    bad = records[1]
    assert isinstance(bad, Malformed)
    assert bad.locator == "line 2"
    assert bad.reason.startswith("line 2: ")
    assert reason in bad.reason


def test_jsonl__invalid_utf8_is_malformed_not_fatal(data_dir: Path) -> None:
    spec = write_lines(data_dir, [doc_line("a"), b'{"id": "b", "text": "caf\xe9"}', doc_line("c")])
    records = read_all(spec)
    assert ids(records)[0] == "a" and ids(records)[2] == "c"
    assert isinstance(records[1], Malformed)
    assert "not valid UTF-8" in records[1].reason


def test_jsonl__duplicate_id_is_malformed_and_named_by_its_line(data_dir: Path) -> None:
    spec = write_lines(data_dir, [doc_line("a"), doc_line("b"), doc_line("a")])
    records = read_all(spec)
    assert isinstance(records[0], Document)
    dup = records[2]
    assert isinstance(dup, Malformed)
    assert dup.id == "a (line 3)"
    assert "duplicate id 'a'" in dup.reason


def test_jsonl__duplicate_of_a_record_before_the_checkpoint_is_caught_after_resuming(
    data_dir: Path,
) -> None:
    spec = write_lines(data_dir, [doc_line("a"), doc_line("b"), doc_line("c"), doc_line("a")])
    _, checkpoint = read_some(spec, 2)
    tail = read_all(spec, checkpoint)
    assert isinstance(tail[0], Document) and tail[0].id == "c"
    assert isinstance(tail[1], Malformed) and "duplicate id 'a'" in tail[1].reason


def test_jsonl__malformed_duplicate_candidate_does_not_shadow_a_later_good_record(
    data_dir: Path,
) -> None:
    spec = write_lines(data_dir, [doc_line("a", ""), doc_line("a")])
    records = read_all(spec)
    assert isinstance(records[0], Malformed)
    assert records[1] == Document("a", "some text", {})


# -- directory streaming ---------------------------------------------------------------------


def make_tree(data_dir: Path) -> Path:
    root = data_dir / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha text")
    (root / "b.md").write_text("# beta")
    (root / "ignored.bin").write_bytes(b"\x00\x01")
    (root / "sub" / "c.txt").write_text("gamma")
    (root / "sub" / "d.txt").write_text("delta")
    return root


def test_directory__yields_text_and_markdown_files_in_path_order(data_dir: Path) -> None:
    make_tree(data_dir)
    records = read_all("directory:notes")
    assert ids(records) == ["a.txt", "b.md", "sub/c.txt", "sub/d.txt"]
    assert records[0] == Document(
        "a.txt", "alpha text", {"path": "a.txt", "bytes": 10, "format": "text"}
    )
    assert open_source("directory:notes").count() == 4


@pytest.mark.parametrize("split", [0, 1, 3, 4])
def test_directory__resume_from_checkpoint_yields_exactly_the_remaining_files(
    data_dir: Path, split: int
) -> None:
    make_tree(data_dir)
    head, checkpoint = read_some("directory:notes", split)
    tail = read_all("directory:notes", checkpoint)
    assert ids(head) + ids(tail) == ["a.txt", "b.md", "sub/c.txt", "sub/d.txt"]


def test_directory__empty_and_non_utf8_files_are_malformed(data_dir: Path) -> None:
    root = make_tree(data_dir)
    (root / "empty.txt").write_text("  \n")
    (root / "latin.txt").write_bytes(b"caf\xe9")
    by_id = {r.id: r for r in read_all("directory:notes")}
    assert isinstance(by_id["empty.txt"], Malformed) and "empty file" in by_id["empty.txt"].reason
    assert isinstance(by_id["latin.txt"], Malformed)
    assert "not valid UTF-8" in by_id["latin.txt"].reason


def test_directory__symlinked_file_is_counted_and_malformed_not_followed(data_dir: Path) -> None:
    root = make_tree(data_dir)
    (data_dir / "secret.txt").write_text("outside")
    (root / "link.txt").symlink_to(data_dir / "secret.txt")
    by_id = {r.id: r for r in read_all("directory:notes")}
    assert isinstance(by_id["link.txt"], Malformed)
    assert "symbolic link" in by_id["link.txt"].reason
    assert open_source("directory:notes").count() == 5


# -- path refusal ----------------------------------------------------------------------------


def test_path__outside_the_roots_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jsonl"
    outside.write_text(doc_line("a") + "\n")
    with pytest.raises(SourcePathError, match="outside the allowed roots"):
        open_source(f"jsonl:{outside}")


@pytest.mark.parametrize("raw", ["../outside.jsonl", "sub/../docs.jsonl", "/etc/../etc/passwd"])
def test_path__with_dot_dot_is_refused(make_corpus: Callable[..., Path], raw: str) -> None:
    make_corpus(1)
    with pytest.raises(SourcePathError, match=r"must not contain '\.\.'"):
        open_source(f"jsonl:{raw}")


def test_path__through_a_symlinked_folder_is_refused(
    data_dir: Path, make_corpus: Callable[..., Path]
) -> None:
    (data_dir / "real").mkdir()
    make_corpus(1, name="real/docs.jsonl")
    (data_dir / "alias").symlink_to(data_dir / "real")
    with pytest.raises(SourcePathError, match="symbolic link"):
        open_source("jsonl:alias/docs.jsonl")


def test_path__to_a_symlinked_file_is_refused(
    data_dir: Path, make_corpus: Callable[..., Path]
) -> None:
    make_corpus(1)
    (data_dir / "link.jsonl").symlink_to(data_dir / "docs.jsonl")
    with pytest.raises(SourcePathError, match="symbolic link"):
        open_source("jsonl:link.jsonl")


def test_path__missing_file_is_refused_with_its_path(data_dir: Path) -> None:
    with pytest.raises(SourcePathError, match="source file not found: .*nope.jsonl"):
        open_source("jsonl:nope.jsonl")


def test_path__folder_given_as_jsonl_file_is_refused(data_dir: Path) -> None:
    (data_dir / "folder").mkdir()
    with pytest.raises(SourcePathError, match="not a file"):
        open_source("jsonl:folder")


def test_path__file_given_as_directory_is_refused(make_corpus: Callable[..., Path]) -> None:
    make_corpus(1)
    with pytest.raises(SourcePathError, match="not a folder"):
        open_source("directory:docs.jsonl")


def test_path__absolute_path_inside_the_root_is_accepted(make_corpus: Callable[..., Path]) -> None:
    path = make_corpus(2)
    assert open_source(f"jsonl:{path}").count() == 2


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("docs.jsonl", SpecError, "must look like KIND:PATH"),
        ("csv:docs.csv", UnknownBackend, "unknown source kind 'csv'"),
        ("jsonl:", SourcePathError, "empty"),
    ],
)
def test_spec__malformed_source_specs_are_refused(
    spec: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        open_source(spec)


# -- read_batch: the engine's path -----------------------------------------------------------


def _mixed_jsonl(data_dir: Path) -> str:
    lines: list[str | bytes] = []
    for i in range(40):
        lines.append(doc_line(f"doc-{i}"))
        if i % 7 == 3:
            lines.append("")  # blank lines are not records
        if i % 11 == 5:
            lines.append(doc_line(f"doc-{i - 1}"))  # a duplicate
        if i % 13 == 8:
            lines.append("{broken")
    return write_lines(data_dir, lines)


def _directory(data_dir: Path) -> str:
    folder = data_dir / "notes"
    for i in range(23):
        sub = folder / f"part-{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"note-{i:02}.md").write_text("" if i == 9 else f"note number {i}")
    return "directory:notes"


@pytest.mark.parametrize("make_spec", [_mixed_jsonl, _directory])
@pytest.mark.parametrize("size", [1, 4, 9, 1000])
def test_read_batch__batches_match_the_stream_and_each_checkpoint_resumes_exactly(
    data_dir: Path, make_spec: Callable[[Path], str], size: int
) -> None:
    spec = make_spec(data_dir)
    everything = read_all(spec)
    reader = open_source(spec).open()
    batches: list[list[Record]] = []
    checkpoints: list[dict[str, object]] = []
    try:
        while batch := reader.read_batch(size):
            assert len(batch) <= size
            batches.append(batch)
            checkpoints.append(reader.checkpoint())
        assert reader.read_batch(size) == []
    finally:
        reader.close()
    assert [r for batch in batches for r in batch] == everything
    assert all(len(batch) == size for batch in batches[:-1])
    for n, checkpoint in enumerate(checkpoints):
        rest = [r for batch in batches[n + 1 :] for r in batch]
        assert read_all(spec, checkpoint) == rest, f"resume after batch {n + 1}"


def test_jsonl__a_byte_order_mark_opening_the_file_is_not_a_malformed_record(
    data_dir: Path,
) -> None:
    spec = write_lines(data_dir, [b"\xef\xbb\xbf" + doc_line("first").encode(), doc_line("second")])
    assert ids(read_all(spec)) == ["first", "second"]
    assert all(isinstance(r, Document) for r in read_all(spec))


def test_directory__resume_after_files_were_added_and_removed__neither_skips_nor_repeats(
    data_dir: Path,
) -> None:
    root = data_dir / "notes"
    root.mkdir()
    for name in ["b.md", "d.md", "f.md", "h.md", "j.md"]:
        (root / name).write_text(f"text of {name}")
    reader = open_source("directory:notes").open()
    try:
        assert ids(reader.read_batch(3)) == ["b.md", "d.md", "f.md"]
        checkpoint = reader.checkpoint()
    finally:
        reader.close()
    # While the job was handed back: one file before the checkpoint goes, others arrive.
    (root / "d.md").unlink()
    (root / "a.md").write_text("arrived before the checkpoint")
    (root / "g.md").write_text("arrived after it")
    assert ids(read_all("directory:notes", checkpoint)) == ["g.md", "h.md", "j.md"]


def test_lease_settings__a_heartbeat_longer_than_half_the_lease_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reindexer.conf import ReindexerSettings

    monkeypatch.setenv("REINDEXER_LEASE_SECONDS", "6")
    monkeypatch.setenv("REINDEXER_HEARTBEAT_SECONDS", "4")
    with pytest.raises(ValueError, match="at most half of REINDEXER_LEASE_SECONDS"):
        ReindexerSettings.from_environ()
    monkeypatch.setenv("REINDEXER_HEARTBEAT_SECONDS", "3")
    assert ReindexerSettings.from_environ().heartbeat_seconds == 3


# -- hard links ------------------------------------------------------------------------------


def outside_file(tmp_path: Path, text: str) -> Path:
    """A file beside the data dir, not under any source root: the stand-in for /etc/passwd."""
    secret = tmp_path / "secret.txt"
    secret.write_text(text)
    return secret


def test_path__hard_link_to_a_file_outside_the_roots_is_refused(
    tmp_path: Path, data_dir: Path
) -> None:
    secret = outside_file(tmp_path, doc_line("root", "root:x:0:0") + "\n")
    (data_dir / "docs.jsonl").hardlink_to(secret)
    with pytest.raises(SourcePathError, match="more than one hard link is refused") as caught:
        open_source("jsonl:docs.jsonl")
    assert isinstance(caught.value, SpecError)
    assert str(data_dir / "docs.jsonl") in str(caught.value)


def test_jsonl__a_file_hard_linked_after_its_check_is_refused_when_opened(
    tmp_path: Path, data_dir: Path, make_corpus: Callable[..., Path]
) -> None:
    corpus = make_corpus(3)
    source = open_source("jsonl:docs.jsonl")
    assert ids(read_all("jsonl:docs.jsonl")) == ["doc-0", "doc-1", "doc-2"]
    corpus.unlink()
    corpus.hardlink_to(outside_file(tmp_path, doc_line("root", "root:x:0:0") + "\n"))
    with pytest.raises(SourcePathError, match="more than one hard link is refused"):
        source.open()
    with pytest.raises(SourcePathError, match="more than one hard link is refused"):
        source.count()


def test_directory__hard_linked_file_is_malformed_and_the_others_are_read(
    tmp_path: Path, data_dir: Path
) -> None:
    root = make_tree(data_dir)
    (root / "sub" / "linked.txt").hardlink_to(outside_file(tmp_path, "root:x:0:0"))
    records = read_all("directory:notes")
    assert ids(records) == ["a.txt", "b.md", "sub/c.txt", "sub/d.txt", "sub/linked.txt"]
    linked = records[-1]
    assert isinstance(linked, Malformed)
    assert linked.reason.startswith("sub/linked.txt: refused")
    assert "more than one hard link is refused" in linked.reason
    assert all(isinstance(r, Document) for r in records[:-1])
    assert open_source("directory:notes").count() == 5
