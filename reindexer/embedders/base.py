"""The Protocol every embedder implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    name: str
    dimensions: int
    # Transient errors the embedder retried on its own, outside the batch writer (the openai
    # dimension probe); the engine adds them to the job's retries.
    retries: int
    # Whether `embed` lets other threads run meanwhile (a socket, torch's kernels): then the
    # engine may embed the next batch in a thread while this one is written (REINDEXER_PIPELINE).
    releases_gil: bool

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row per text, in order."""
        ...
