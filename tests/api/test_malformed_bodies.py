"""Bodies that break naive JSON handling: 400 with a JSON message, nothing created, any database.

Deep nesting makes the parser recurse past Python's limit; a lone surrogate is valid JSON but no
valid Unicode (PostgreSQL's text refuses it); a NUL is valid Unicode that PostgreSQL refuses.
"""

from __future__ import annotations

import json

import pytest

from reindexer.models import JobEvent, ReindexJob
from tests.api.conftest import Api
from tests.api.test_jobs import error_of

pytestmark = pytest.mark.django_db

DEPTH = 3_000


def refused(api: Api, raw: str) -> str:
    response = api.post("/api/jobs/", raw=raw)
    assert response.status_code == 400, response.content[:300]
    assert not ReindexJob.objects.exists()
    assert not JobEvent.objects.exists()
    return error_of(response)


@pytest.mark.parametrize(
    "raw",
    [
        "[" * DEPTH + "]" * DEPTH,
        '{"source": ' + "[" * DEPTH + "]" * DEPTH + "}",
        '{"name": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}",
    ],
    ids=["a list", "in source", "in name"],
)
def test_json_nested_3000_deep_is_400(as_operator: Api, corpus: str, raw: str) -> None:
    assert refused(as_operator, raw) == "the request body must be a JSON object"


@pytest.mark.parametrize("field", ["name", "source"])
def test_lone_surrogate_is_400_naming_the_field(as_operator: Api, corpus: str, field: str) -> None:
    # The JSON text carries the escape itself: json.dumps would refuse to write a lone surrogate.
    raw = json.dumps({"source": corpus}).rstrip("}") + f', "{field}": "x\\ud800y"}}'
    assert "\\ud800" in raw
    assert refused(as_operator, raw).startswith(f"{field}")


@pytest.mark.parametrize("field", ["name", "source"])
def test_nul_is_400_naming_the_field(as_operator: Api, corpus: str, field: str) -> None:
    raw = json.dumps({"source": corpus, field: "x\u0000y"})
    assert "\\u0000" in raw
    message = refused(as_operator, raw)
    assert message.startswith(field) and "NUL" in message
