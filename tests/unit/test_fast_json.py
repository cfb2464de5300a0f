"""The per-document fast paths (orjson) decide nothing of their own: a JSONL line that orjson
refuses is read as the standard library reads it, and metadata orjson cannot write is hashed
the same way every time."""

from __future__ import annotations

import json
from pathlib import Path

from reindexer.content_hashes import digest
from reindexer.documents import Document, Malformed
from tests.unit.test_sources import read_all, write_lines


def test_jsonl__lines_orjson_refuses_read_as_the_standard_library_reads_them(
    data_dir: Path,
) -> None:
    lines: list[str | bytes] = [
        "\ufeff" + json.dumps({"id": "bom", "text": "after a byte-order mark"}),
        '{"id": "nan", "text": "t", "metadata": {"x": NaN}}',
        json.dumps({"id": "big", "text": "t", "metadata": {"n": 2**70}}),
        '{"id": "surrogate", "text": "lone \\ud800 half"}',
        json.dumps({"id": "plain", "text": "t", "metadata": {"b": 1, "a": [1, 2]}}),
        '{"id": "broken", "text": }',
        '["not", "an", "object"]',
    ]
    records = read_all(write_lines(data_dir, lines))
    assert [type(r) for r in records[:5]] == [Document] * 5
    by_id = {r.id: r for r in records if isinstance(r, Document)}
    assert by_id["bom"].text == "after a byte-order mark"
    nan = by_id["nan"]
    assert nan.metadata["x"] != nan.metadata["x"]  # NaN
    assert by_id["big"].metadata == {"n": 2**70}
    assert by_id["surrogate"].text == "lone \ud800 half"
    assert by_id["plain"].metadata == {"b": 1, "a": [1, 2]}
    broken, not_object = records[5], records[6]
    assert isinstance(broken, Malformed) and broken.reason.startswith("line 6: invalid JSON (")
    assert isinstance(not_object, Malformed)
    assert not_object.reason == "line 7: not a JSON object"
    assert not_object.raw == '["not", "an", "object"]'


def test_digest__one_per_content_whatever_the_key_order_or_the_writer() -> None:
    def of(metadata: dict[str, object], text: str = "t") -> str:
        return digest(Document("d", text, metadata), "hashing", 384)

    assert of({"a": 1, "b": [1, "x"]}) == of({"b": [1, "x"], "a": 1})
    assert of({"a": 1}) != of({"a": 2}) != of({"a": 1}, text="u")
    # Past 64 bits orjson cannot write the int: the standard library does, every time alike.
    assert of({"n": 2**70}) == of({"n": 2**70}) != of({"n": 2**70 + 1})
    assert digest(Document("d", "t", {}), "hashing", 384) != digest(
        Document("d", "t", {}), "hashing", 768
    )
