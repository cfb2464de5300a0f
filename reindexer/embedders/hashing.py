"""A model-free embedder: word unigrams and bigrams hashed into a fixed number of signed buckets."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from reindexer.embedders.base import Vectors

_WORD = re.compile(r"\w+")


# Bounded well below a corpus's vocabulary: a 200k-entry cache held ~70 MiB in a long job, and
# measured no faster than this size (hot words hit either way; rare ones cost one crc32).
@lru_cache(maxsize=16_384)
def _bucket(feature: str, dimensions: int) -> int:
    """A signed bucket: the index in the low bits, the sign in bit 31 (hot words hash once)."""
    h = zlib.crc32(feature.encode())
    index = h % dimensions
    return -index - 1 if h & 0x8000_0000 else index + 1


class HashingEmbedder:
    """Deterministic across processes and runs: crc32, not Python's salted hash()."""

    name = "hashing"
    retries = 0  # it never calls out
    # Pure Python on the GIL: a prefetch thread only contends with the writer (0.80 measured).
    releases_gil = False

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions

    def features(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        if not words:
            return [text]
        return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]

    def embed(self, texts: Sequence[str]) -> Vectors:
        dims = self.dimensions
        flat: list[int] = []
        weights: list[float] = []
        for row, text in enumerate(texts):
            base = row * dims
            for feature in self.features(text):
                signed = _bucket(feature, dims)
                flat.append(base + abs(signed) - 1)
                weights.append(1.0 if signed > 0 else -1.0)
        counts = np.bincount(
            np.asarray(flat, dtype=np.int64),
            weights=np.asarray(weights, dtype=np.float64),
            minlength=len(texts) * dims,
        )
        vectors = counts.reshape(len(texts), dims).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # A text whose features cancel out gets a fixed unit vector rather than a zero one.
        zero = norms[:, 0] == 0
        if zero.any():
            vectors[zero, 0] = 1.0
            norms[zero] = 1.0
        result: Vectors = vectors / norms
        return result
