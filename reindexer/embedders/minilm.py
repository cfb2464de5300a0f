"""`minilm`: all-MiniLM-L6-v2 through sentence-transformers (extra `[minilm]`), on the CPU."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Self

from reindexer.backends import ParsedSpec
from reindexer.embedders.base import Embedder
from reindexer.errors import SpecError


def minilm_installed() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


@dataclass(frozen=True, slots=True)
class MinilmOptions:
    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        if not minilm_installed():
            raise SpecError(
                "minilm embedder needs the extra: pip install 'reindexer[minilm]'", field="embedder"
            )
        return cls()


def open_minilm(options: MinilmOptions) -> Embedder:
    raise SpecError("minilm: not built yet", field="embedder")
