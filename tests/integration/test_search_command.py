"""`reindex search` after a real job on sqlite-vec: the human table, the `--json` shape, and
every refusal as one line on stderr with exit code 1, without creating a missing collection."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from reindexer.documents import Document
from reindexer.models import JobStatus, ReindexJob
from reindexer.stores.sqlite_vec import SqliteVecBackend
from tests.integration.conftest import Processes

pytestmark = pytest.mark.django_db(transaction=True)

LONG = "a long document about lighthouses " + "and the sea " * 40
DOCS = [
    ("light", LONG),
    ("bread", "how to bake sourdough bread at home"),
    ("train", "the night train to the mountains was late"),
    ("chess", "an opening in chess that sacrifices a pawn"),
]


@pytest.fixture
def indexed(data_dir: Path) -> str:
    """A collection written by a real job (hashing embedder, in-process burst worker)."""
    with (data_dir / "search.jsonl").open("w") as f:
        for doc_id, text in DOCS:
            f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    job = ReindexJob.objects.get(
        pk=_start("--source", "jsonl:search.jsonl", "--collection", "found")
    )
    call_command("reindex_worker", "--burst", "--worker-id", "search-test")
    job.refresh_from_db()
    assert (job.status, job.processed_docs) == (JobStatus.COMPLETED, len(DOCS))
    return "found"


def _start(*argv: str) -> int:
    out = StringIO()
    call_command("reindex", "start", *argv, stdout=out)
    return int(out.getvalue().split()[-1])


def search(*argv: str) -> str:
    out = StringIO()
    call_command("reindex", "search", "--store", "sqlite-vec", *argv, stdout=out)
    return out.getvalue()


def test_search__subprocess_prints_json_nearest_first(indexed: str, processes: Processes) -> None:
    done = processes.run(
        "reindex", "search", "--store", "sqlite-vec", "--collection", indexed,
        "--json", "--k", "3", "baking sourdough bread",
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    hits = json.loads(done.stdout)
    assert [set(hit) for hit in hits] == [{"id", "distance", "text"}] * 3
    assert hits[0]["id"] == "bread"
    assert hits[0]["text"] == "how to bake sourdough bread at home"
    distances = [hit["distance"] for hit in hits]
    assert distances == sorted(distances)
    assert 0 <= distances[0] < distances[-1] <= 2


def test_search__json_cuts_text_to_200_characters(indexed: str) -> None:
    (hit,) = json.loads(search("--collection", indexed, "--json", "--k", "1", "lighthouses sea"))
    assert hit["id"] == "light"
    assert hit["text"] == LONG[:200]


def test_search__table_for_humans_has_one_line_per_hit(indexed: str) -> None:
    lines = search("--collection", indexed, "night train mountains").splitlines()
    assert len(lines) == len(DOCS)
    distance, doc_id, *words = lines[0].split()
    assert (doc_id, " ".join(words)) == ("train", "the night train to the mountains was late")
    assert 0 <= float(distance) < 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--k", "0", "x"], "k must be from 1 to 1000, got 0"),
        (["--k", "1001", "x"], "k must be from 1 to 1000, got 1001"),
        (["--k", "many", "x"], "k must be a whole number"),
        (["   "], "the search text is empty"),
        (["--embedder", "nope", "x"], "unknown embedder 'nope'"),
        (["--store", "nope", "x"], "unknown store 'nope'"),
    ],
)
def test_search__refuses_bad_arguments(indexed: str, argv: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        search("--collection", indexed, *argv)


def test_search__missing_collection_is_refused_and_not_created(data_dir: Path) -> None:
    with pytest.raises(CommandError, match="collection 'ghost' in sqlite-vec does not exist"):
        search("--collection", "ghost", "anything")
    assert not Path(SqliteVecBackend().location("ghost")).exists()
    flaky = "flaky(sqlite-vec,transient=0)"
    with pytest.raises(CommandError, match=r"collection 'ghost' in flaky\(.*does not exist"):
        search("--store", flaky, "--collection", "ghost", "anything")
    assert not Path(SqliteVecBackend().location("ghost")).exists(), "nor through a wrapper"
    with pytest.raises(CommandError, match="must be 1-64 letters"):
        search("--collection", "../ghost", "anything")


def test_search__collection_of_other_dimensions_is_a_dimension_mismatch(data_dir: Path) -> None:
    store = SqliteVecBackend().open("small", 8)
    store.upsert([Document("a", "tiny vectors")], np.eye(1, 8, dtype=np.float32))
    store.close()
    with pytest.raises(CommandError, match="holds vectors of 8 dimensions, but the embedder"):
        search("--collection", "small", "anything")


def test_search__errors_are_one_line_on_stderr_with_exit_1(
    indexed: str, processes: Processes
) -> None:
    for argv in (["--collection", "ghost", "x"], ["--collection", indexed, "--k", "0", "x"]):
        done = processes.run("reindex", "search", "--store", "sqlite-vec", *argv)
        assert done.returncode == 1
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
