"""The New job form offers only the backends whose connections are configured, says which setting
enables the others, and a spec of an unconfigured one is refused naming the setting, on the form,
the API and `reindex start` alike."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import Any

import pytest
from django.core.management import execute_from_command_line
from django.test import Client

from dashboard.forms import NewJobForm
from reindexer.models import ReindexJob
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db

PGVECTOR = "REINDEXER_PGVECTOR_URL"
MILVUS = "REINDEXER_MILVUS_URI"
OPENAI = "REINDEXER_OPENAI_BASE_URL"
SQL = "REINDEXER_SQL_SOURCE_URL"


def configure(settings: Any, *, on: bool, data_dir: Path) -> None:
    """Every connection setting set (not reachable: configured means set), or none."""
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER,
        pgvector_url="postgresql://x@127.0.0.1:1/x" if on else None,
        milvus_uri="http://127.0.0.1:1" if on else None,
        openai_base_url="http://127.0.0.1:1/v1" if on else None,
        sql_source_url=f"sqlite:///{data_dir / 'source.sqlite3'}" if on else None,
    )


@pytest.fixture
def settings_off(settings: Any, data_dir: Path) -> None:
    configure(settings, on=False, data_dir=data_dir)


@pytest.fixture
def settings_on(settings: Any, data_dir: Path) -> None:
    configure(settings, on=True, data_dir=data_dir)


def _form(**overrides: object) -> dict[str, object]:
    return {
        "source": "jsonl:docs.jsonl",
        "embedder": "hashing",
        "store": "sqlite-vec",
        "collection": "default",
        "batch_size": 100,
        "max_retries": 2,
        "max_failed_ratio": 0.1,
        "name": "backends",
        **overrides,
    }


def datalist(page: str, name: str) -> str:
    start = page.index(f'<datalist id="{name}-choices">')
    return page[start : page.index("</datalist>", start)]


def test_form__without_settings_offers_only_the_embedded_backends_and_names_the_settings(
    settings_off: None, operator_client: Client, corpus: Path
) -> None:
    form = NewJobForm()
    assert form.store_choices == ["sqlite-vec"]
    assert "openai:MODEL" not in form.embedder_choices
    assert "hashing" in form.embedder_choices
    # A collection source reads any configured store, the embedded sqlite-vec included.
    assert form.source_kinds == ["jsonl:PATH", "directory:PATH", "collection:STORE/NAME"]
    page = html.unescape(operator_client.get("/jobs/new/").content.decode())
    stores = datalist(page, "store")
    assert 'value="sqlite-vec"' in stores
    assert "pgvector" not in stores and "milvus" not in stores
    assert "openai" not in datalist(page, "embedder")
    for hint in (
        f"pgvector: set {PGVECTOR}",
        f"milvus: set {MILVUS}",
        f"openai:MODEL: set {OPENAI}",
        f"set {SQL}",
    ):
        assert hint in page, hint


def test_form__with_settings_offers_pgvector_milvus_openai_and_sql(
    settings_on: None, operator_client: Client, corpus: Path
) -> None:
    form = NewJobForm()
    assert form.store_choices == ["sqlite-vec", "pgvector", "milvus"]
    assert "openai:MODEL" in form.embedder_choices
    assert "sql:TABLE(id=COL,text=COL,metadata=COL)" in form.source_kinds
    assert form.missing["store"] == []
    page = html.unescape(operator_client.get("/jobs/new/").content.decode())
    stores = datalist(page, "store")
    assert 'value="pgvector"' in stores and 'value="milvus"' in stores
    # flaky stays offered as today: one example around sqlite-vec.
    assert 'value="flaky(sqlite-vec,transient=0.1,seed=1)"' in stores
    for setting in (PGVECTOR, MILVUS, OPENAI, SQL):
        assert setting not in page, setting


@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("store", "pgvector", PGVECTOR),
        ("store", "milvus", MILVUS),
        ("store", "flaky(pgvector,transient=0.1)", PGVECTOR),
        ("embedder", "openai:text-embedding-3-small", OPENAI),
        ("source", "sql:articles", SQL),
    ],
)
def test_form__unconfigured_backend_typed_in_is_refused_naming_the_setting(
    settings_off: None, operator_client: Client, corpus: Path, field: str, value: str, setting: str
) -> None:
    response = operator_client.post("/jobs/create/", _form(**{field: value}))
    assert response.status_code == 422
    errors = NewJobForm(_form(**{field: value})).errors
    assert setting in " ".join(str(e) for e in errors.get(field, [])), errors
    assert setting in html.unescape(response.content.decode())
    assert not ReindexJob.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("store", "pgvector", PGVECTOR),
        ("store", "milvus", MILVUS),
        ("embedder", "openai:text-embedding-3-small", OPENAI),
        ("source", "sql:articles", SQL),
    ],
)
def test_api__unconfigured_backend_is_refused_with_400_naming_the_setting(
    settings_off: None,
    operator_client: Client,
    corpus: Path,
    field: str,
    value: str,
    setting: str,
) -> None:
    body = {"source": "jsonl:docs.jsonl", field: value}
    response = Api(operator_client).post("/api/jobs/", body)
    assert response.status_code == 400
    assert setting in response.json()["error"]
    assert not ReindexJob.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("flag", "value", "setting"),
    [
        ("--store", "pgvector", PGVECTOR),
        ("--store", "milvus", MILVUS),
        ("--embedder", "openai:text-embedding-3-small", OPENAI),
        ("--source", "sql:articles", SQL),
    ],
)
def test_cli_start__unconfigured_backend_exits_1_naming_the_setting(
    settings_off: None,
    corpus: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
    setting: str,
) -> None:
    argv = ["manage.py", "reindex", "start", "--source", "jsonl:docs.jsonl", flag, value]
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(argv)
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0], err
    assert not ReindexJob.objects.exists()
