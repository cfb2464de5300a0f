"""Embedders by spec: `hashing`, `minilm` (extra `[minilm]`), and `openai:MODEL` for any
OpenAI-compatible server."""

from __future__ import annotations

from reindexer.backends import NoOptions, Registry
from reindexer.embedders.base import Embedder, Vectors
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.embedders.minilm import MinilmOptions, minilm_installed, open_minilm
from reindexer.embedders.openai import OpenAIOptions, open_openai, openai_configured

__all__ = ["Embedder", "Vectors", "EMBEDDERS", "open_embedder", "validate_embedder"]

EMBEDDERS: Registry[Embedder] = Registry("embedder")
EMBEDDERS.register("hashing", NoOptions, lambda _: HashingEmbedder())
EMBEDDERS.register("minilm", MinilmOptions, open_minilm, configured=minilm_installed)
EMBEDDERS.register(
    "openai",
    OpenAIOptions,
    open_openai,
    takes_arg=True,
    usage="openai:MODEL",
    configured=openai_configured,
)


def validate_embedder(spec: str) -> None:
    """Raise SpecError unless `spec` names a known embedder with valid options."""
    EMBEDDERS.resolve(spec)


def open_embedder(spec: str) -> Embedder:
    return EMBEDDERS.open(spec)
