"""The model-free hashing embedder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from reindexer.embedders import open_embedder

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a quick brown fox jumped over a lazy dog",
    "quarterly revenue grew by twelve percent in europe",
    "!!!",
]


def test_hashing__vectors_are_384_dim_float32_and_unit_length() -> None:
    vectors = open_embedder("hashing").embed(TEXTS)
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_hashing__same_text_gives_the_same_vector_in_any_batch() -> None:
    embedder = open_embedder("hashing")
    alone = embedder.embed([TEXTS[2]])[0]
    in_batch = embedder.embed(TEXTS)[2]
    np.testing.assert_array_equal(alone, in_batch)


def test_hashing__vectors_are_identical_across_processes() -> None:
    script = (
        "from reindexer.embedders import open_embedder;"
        f"print(open_embedder('hashing').embed([{TEXTS[0]!r}])[0].tobytes().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONHASHSEED": "123"},
    ).stdout.strip()
    here = open_embedder("hashing").embed([TEXTS[0]])[0].tobytes().hex()
    assert out == here


def test_hashing__similar_texts_are_closer_than_unrelated_ones() -> None:
    fox, fox_again, revenue, _ = open_embedder("hashing").embed(TEXTS)
    assert float(fox @ fox_again) > 0.3
    assert float(fox @ fox_again) > float(fox @ revenue) + 0.2


def test_hashing__text_without_words_still_gets_a_unit_vector() -> None:
    vectors = open_embedder("hashing").embed(["!!!", "   "])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_hashing__empty_batch_gives_an_empty_matrix() -> None:
    assert open_embedder("hashing").embed([]).shape == (0, 384)
