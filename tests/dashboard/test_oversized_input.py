"""Oversized input is refused at once, before any validation, and creates nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from reindexer.models import ReindexJob
from reindexer.specs import NAME_MAX

pytestmark = pytest.mark.django_db

TEN_MB_NAME = "n" * (10 * 1024 * 1024)


def _form(name: str) -> dict[str, object]:
    return {
        "source": "jsonl:docs.jsonl",
        "embedder": "hashing",
        "store": "sqlite-vec",
        "collection": "default",
        "batch_size": 100,
        "max_retries": 2,
        "max_failed_ratio": 0.1,
        "name": name,
    }


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}], ids=["plain", "htmx"])
def test_form__a_10_mb_name_is_refused_with_400_and_creates_nothing(
    operator_client: Client, corpus: Path, headers: dict[str, str]
) -> None:
    response = operator_client.post("/jobs/create/", _form(TEN_MB_NAME), headers=headers)
    assert response.status_code == 400
    assert "too large" in response.content.decode()
    assert not ReindexJob.objects.exists()


def test_api__a_10_mb_name_is_refused_with_400_and_creates_nothing(
    operator_client: Client, corpus: Path
) -> None:
    body = json.dumps({"source": "jsonl:docs.jsonl", "name": TEN_MB_NAME})
    response = operator_client.post("/api/jobs/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"error": "the request body is too large"}
    assert not ReindexJob.objects.exists()


def test_form__a_name_over_its_limit_is_refused_by_the_form_in_the_specs_words(
    operator_client: Client, corpus: Path
) -> None:
    response = operator_client.post("/jobs/create/", _form("n" * (NAME_MAX + 1)))
    assert response.status_code == 422
    html = response.content.decode()
    assert f"name must be at most {NAME_MAX} characters" in html
    assert not ReindexJob.objects.exists()


def test_form__text_inputs_carry_their_maxlength(operator_client: Client) -> None:
    html = operator_client.get("/jobs/new/").content.decode()
    assert f'maxlength="{NAME_MAX}"' in html
