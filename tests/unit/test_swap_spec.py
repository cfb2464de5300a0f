"""What JobSpec refuses in swap mode, each error on its field, as an operator reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reindexer.documents import Document
from reindexer.specs import InvalidSpec, JobSpec
from reindexer.stores import store_backend


@pytest.fixture
def source(data_dir: Path) -> str:
    (data_dir / "docs.jsonl").write_text('{"id": "a", "text": "a"}\n')
    return "jsonl:docs.jsonl"


def errors(**fields: object) -> dict[str | None, list[str]]:
    with pytest.raises(InvalidSpec) as raised:
        JobSpec.parse(fields)
    return raised.value.by_field()


def test_swap_spec__is_accepted_with_manual_approval(source: str) -> None:
    spec = JobSpec.parse({"source": source, "mode": "swap", "approve": "manual"})
    assert (spec.mode, spec.approve, spec.slices, spec.cleanup) == ("swap", "manual", 1, "none")


def test_swap_spec__refuses_slices(source: str) -> None:
    assert errors(source=source, mode="swap", slices=4) == {
        "mode": [
            "swap mode builds its collection in one job (slices 1), got slices 4: verifying"
            " and moving an alias is one step, not one per slice"
        ]
    }


def test_swap_spec__refuses_cleanup_full(source: str) -> None:
    assert errors(source=source, mode="swap", cleanup="full") == {
        "cleanup": [
            "cleanup full does not apply to swap mode: a swap builds a fresh collection from the"
            " source, so nothing that left the source is in it"
        ]
    }


def test_swap_spec__manual_approval_needs_swap_mode(source: str) -> None:
    assert errors(source=source, mode="incremental", approve="manual") == {
        "approve": [
            "approve manual applies to swap mode only (--mode swap): other jobs write their"
            " collection in place, with no alias to move"
        ]
    }


@pytest.mark.parametrize(
    ("collection", "why"),
    [
        ("a__b", "must not contain '__'"),
        ("x" * 60, "is too long for a swap"),
    ],
)
def test_swap_spec__refuses_an_alias_that_cannot_take_a_job_id(
    source: str, collection: str, why: str
) -> None:
    found = errors(source=source, mode="swap", collection=collection)
    assert list(found) == ["mode"] and why in found["mode"][0], found


def _collection(name: str, store: str = "sqlite-vec") -> None:
    """A real collection of one document, for a `collection:` source to read."""
    opened = store_backend(store).open(name, 4)
    try:
        opened.upsert([Document("a", "a", {})], np.ones((1, 4), dtype=np.float32))
    finally:
        opened.close()


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_spec__refuses_a_job_reading_the_collection_it_writes(data_dir: Path, mode: str) -> None:
    _collection("docs")
    for store in ("sqlite-vec", "flaky(sqlite-vec,transient=0.1)"):
        assert errors(
            source="collection:sqlite-vec/docs", store=store, collection="docs", mode=mode
        ) == {
            "mode": [
                "collection:sqlite-vec/docs is the collection this job writes (docs): a job"
                " cannot read the collection it writes; use --mode swap to rebuild it into a"
                " fresh one"
            ]
        }


def test_spec__a_swap_may_rebuild_its_alias_from_itself_and_a_copy_may_read_another(
    data_dir: Path,
) -> None:
    _collection("docs")
    rebuilt = JobSpec.parse(
        {"source": "collection:sqlite-vec/docs", "collection": "docs", "mode": "swap"}
    )
    copied = JobSpec.parse({"source": "collection:sqlite-vec/docs", "collection": "copy"})
    assert (rebuilt.mode, copied.collection) == ("swap", "copy")
