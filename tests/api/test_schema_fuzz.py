"""Property-based: schemathesis drives every operation of the app's own /api/openapi.json.

It sends valid and invalid input (positive and negative generation) through the whole Django
stack in-process (WSGI), as an operator with a bearer token, and checks that no answer is a 5xx,
that every status code, content type and body is the documented one, and that a refused
POST /api/jobs/ created nothing. Seeded, derandomized and bounded, so a run is reproducible and
short.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from reindexer.models import BatchFailure, JobStatus, ReindexJob
from tests.api.conftest import bearer
from tests.dashboard.swap_jobs import SwapJob, swap_job_fixture  # noqa: F401 - the fixture

MAX_EXAMPLES = 40
SOURCE = "jsonl:docs.jsonl"  # written by make_job

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture
def seeded_jobs(make_job: Callable[..., ReindexJob], swap_job: SwapJob) -> list[int]:
    """Jobs in every state, one finished with a failure, so that retry-failed can succeed, and
    a real swap job awaiting approval, so that approve, discard and rollback can too."""
    with_failure = make_job(status=JobStatus.COMPLETED, processed=5, failed=1)
    BatchFailure.objects.create(
        job=with_failure, batch_number=1, doc_ids=["doc-1"], error_type="PermanentError",
        message="poisoned", traceback="",
    )  # fmt: skip
    jobs = [
        make_job(),
        make_job(status=JobStatus.RUNNING, processed=2),
        make_job(status=JobStatus.FAILED, processed=1),
        make_job(status=JobStatus.CANCELLED),
        with_failure,
        swap_job(),
    ]
    return [job.pk for job in jobs]


@pytest.fixture
def api_schema(
    transactional_db: None, seeded_jobs: list[int], operator_token: str
) -> schemathesis.BaseSchema:
    # In-process WSGI calls the request signals, which close the connection after each request:
    # the test must not run inside a transaction, hence transactional_db.
    loaded = schemathesis.openapi.from_wsgi(
        "/api/openapi.json", get_wsgi_application(), headers=bearer(operator_token)
    )

    @loaded.hook
    def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
        # Random ids are almost never real: aim at the seeded jobs too.
        return st.one_of(strategy, st.fixed_dictionaries({"job_id": st.sampled_from(seeded_jobs)}))

    @loaded.hook
    def before_generate_body(context: Any, strategy: Any) -> Any:
        # A random source never exists: send the seeded corpus too, so that some jobs are made.
        readable = strategy.map(
            lambda body: {**body, "source": SOURCE} if isinstance(body, dict) else body
        )
        return st.one_of(strategy, readable, st.just({"source": SOURCE}))

    return loaded


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(
    api_schema: schemathesis.BaseSchema, operator_token: str, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 13, [op.label for op in operations]
    for operation in operations:
        check = settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )(given(case=operation.as_strategy(generation_mode=mode))(_answers_as_documented))
        try:
            check(token=operator_token)
        except Exception as exc:
            exc.add_note(f"while testing {operation.label} ({mode.value})")
            raise


def _answers_as_documented(case: schemathesis.Case[Any], token: str) -> None:
    before = ReindexJob.objects.count()

    response = case.call(headers=bearer(token))

    case.validate_response(response, checks=CHECKS)
    if case.method.upper() == "POST" and case.path == "/api/jobs/" and response.status_code >= 400:
        assert ReindexJob.objects.count() == before, "a refused POST /api/jobs/ created a job"
