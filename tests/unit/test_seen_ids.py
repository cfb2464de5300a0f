"""SeenIds: exact duplicate detection, in memory for small sources and on disk past the limit."""

from __future__ import annotations

import random

import pytest

from reindexer.sources.seen import SeenIds


def expected_fresh(chunks: list[list[str]]) -> list[list[bool]]:
    seen: set[str] = set()
    answers = []
    for ids in chunks:
        answer = []
        for doc_id in ids:
            answer.append(doc_id not in seen)
            seen.add(doc_id)
        answers.append(answer)
    return answers


@pytest.mark.parametrize("in_memory_limit", [0, 5, 40, 10_000])
def test_add_many__flags_exactly_the_repeats__before_and_after_spilling_to_disk(
    in_memory_limit: int,
) -> None:
    rng = random.Random(in_memory_limit)
    chunks = [[f"doc-{rng.randrange(120)}" for _ in range(9)] for _ in range(40)]
    with SeenIds(in_memory_limit) as seen:
        assert [seen.add_many(ids) for ids in chunks] == expected_fresh(chunks)


def test_add_many__ids_with_quotes_and_unicode_round_trip_through_the_disk_table() -> None:
    odd = ['say "hi"', "naïve/ünïcode", "back\\slash", "<script>", "comma,semi;colon"]
    with SeenIds(in_memory_limit=0) as seen:
        assert seen.add_many(odd) == [True] * len(odd)
        assert seen.add_many(list(reversed(odd))) == [False] * len(odd)


def test_add_many__after_close__raises_a_clear_error() -> None:
    seen = SeenIds(in_memory_limit=0)
    seen.add_many(["a"])
    seen.close()
    with pytest.raises(ValueError, match="closed"):
        seen.add_many(["b"])
