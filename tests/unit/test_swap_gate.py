"""The cutover gate's pure parts: the canary's sample positions, the failure sentences, the
one-line summary; and where a rollback goes, from an alias's history of moves."""

from __future__ import annotations

import pytest

from reindexer.models import AliasMove
from reindexer.swaps.gate import Canary, gate_failures, spread, summary
from reindexer.swaps.history import earlier


@pytest.mark.parametrize(
    ("n", "positions"),
    [
        (0, []),
        (3, [0, 1, 2]),
        (20, list(range(20))),
        (100, list(range(0, 100, 5))),
        (41, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38]),
    ],
)
def test_spread__up_to_20_positions_evenly_from_the_first(n: int, positions: list[int]) -> None:
    assert spread(n) == positions


def test_gate_failures__one_sentence_per_failed_check() -> None:
    sample = Canary(sampled=20, found=13, misses=[f"d{i}" for i in range(7)])
    assert gate_failures("a__9", "a__4", 3, 1, 50, 100, 10, sample) == [
        "3 documents of the source are missing from a__9",
        "1 ids are stored more than once in a__9",
        "a__9 holds 50 documents against 100 in a__4: 50 apart, more than the error budget of 10",
        "canary: 7 of 20 sampled documents were not in their own top 5 (d0, d1, d2, d3, d4, …)",
    ]


def test_gate_failures__none_when_within_budget_and_without_previous() -> None:
    clean = Canary(sampled=20, found=20)
    assert gate_failures("a__9", "a__4", 0, 0, 95, 100, 10, clean) == []
    assert gate_failures("a__9", None, 0, 0, 5, None, 0, clean) == []


def test_summary__of_a_first_swap() -> None:
    verification = {
        "collection": "a__1",
        "previous": None,
        "count": 5,
        "previous_count": None,
        "budget": 0,
        "missing": 0,
        "duplicates": 0,
        "canary": {"sampled": 5, "found": 5, "misses": []},
    }
    assert summary(verification) == (
        "a__1: 5 documents, no previous collection; 0 missing, 0 duplicated;"
        " canary 5/5 found in their top 5"
    )


def move(collection: str, previous: str, kind: str = "swap") -> AliasMove:
    return AliasMove(
        store="sqlite-vec", alias="a", collection=collection, previous=previous, kind=kind
    )


def test_earlier__walks_back_one_swap_per_rollback_not_to_and_fro() -> None:
    swaps = [move("a__3", "a__2"), move("a__2", "a__base")]  # newest first
    existing = ["a__base", "a__2", "a__3"]
    assert earlier("a", "a__3", swaps, existing).target == "a__2"
    rolled = [move("a__2", "a__3", "rollback"), *swaps]
    assert earlier("a", "a__2", rolled, existing).target == "a__base"


def test_earlier__says_why_when_there_is_nothing_to_go_back_to() -> None:
    first = [move("a__1", "")]
    assert earlier("a", "a__1", first, ["a__1"]).why_not == (
        "alias 'a' serves a__1, the first collection it ever served: there is nothing earlier"
        " to roll back to"
    )
    pruned = [move("a__2", "a__1"), *first]
    assert earlier("a", "a__2", pruned, ["a__2"]).why_not == (
        "alias 'a' served a__1 before a__2, but it is gone (pruned or dropped): nothing to roll"
        " back to"
    )
    assert earlier("a", None, [], []).why_not == "'a' is not an alias: nothing to roll back"
