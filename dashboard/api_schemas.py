"""The JSON API's schemas: the job spec it takes, and the job, failure and error it returns.

The job's spec fields come from `JobSpec` itself and its figures from the presenter, so the
OpenAPI schema shows the same fields, bounds and descriptions as every other surface.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from dashboard.api_errors import NOT_AN_OBJECT, ApiError
from reindexer.models import BatchFailure, JobStatus, Phase, ReindexJob
from reindexer.presenter import job_status
from reindexer.specs import JobSpec

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def _parse_spec(value: Any, handler: ValidatorFunctionWrapHandler) -> JobSpec:
    # JobSpec.parse rather than the handler: its InvalidSpec carries the spec's own messages.
    if not isinstance(value, dict):
        raise ApiError(400, NOT_AN_OBJECT)
    return JobSpec.parse(value)


# The body of POST /api/jobs/: documented as JobSpec, validated by JobSpec.parse.
SpecBody = Annotated[JobSpec, WrapValidator(_parse_spec)]


def _always_present(info: FieldInfo) -> FieldInfo:
    """A spec field as an output field: the same type, bounds and description, but required."""
    field = copy.copy(info)
    field.default = PydanticUndefined
    return field


_FIGURES: dict[str, Any] = {
    "id": int,
    "status": Literal[tuple(JobStatus.values)],
    "label": Annotated[
        str, Field(description='The state as the dashboard names it, e.g. "completed with errors".')
    ],
    "total_docs": int | None,
    "processed_docs": int,
    "failed_docs": int,
    "skipped_docs": int,
    "written_docs": int,
    "progress": Annotated[float, Field(ge=0, le=1)],
    "batches_done": int,
    "batches_failed": int,
    "retries": int,
    "docs_per_second": float | None,
    "eta_seconds": float | None,
    "heartbeat_at": Timestamp | None,
    "heartbeat_age_seconds": float | None,
    "stalled": bool,
    "created_at": Timestamp,
    "started_at": Timestamp | None,
    "finished_at": Timestamp | None,
    "cancel_requested": bool,
    "error": str,
    "last_error": str,
    "last_error_at": Timestamp | None,
    "worker": str,
    "retry_of": int | None,
    "phase": Annotated[
        Literal[tuple(Phase.values)] | None,
        Field(
            description="The phase the job is in (its last one once ended); null before it starts."
        ),
    ],
    "dimensions": Annotated[
        int | None,
        Field(description="The embedder's dimensions; null until the job starts."),
    ],
}


class SliceOut(BaseModel):
    """One slice of a sliced job: its range's figures and the worker running it."""

    id: int
    slice_number: int
    status: Literal[tuple(JobStatus.values)]  # type: ignore[valid-type]
    label: str
    worker: str
    total_docs: int | None
    processed_docs: int
    failed_docs: int
    skipped_docs: int
    progress: Annotated[float, Field(ge=0, le=1)]
    batches_done: int
    batches_failed: int
    retries: int
    docs_per_second: float | None
    eta_seconds: float | None
    heartbeat_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    error: str


_SLICE_FIGURES: dict[str, Any] = {
    "slice_count": Annotated[
        int, Field(description="The slices asked for (1: not sliced); the `slices` field of input.")
    ],
    "slices": Annotated[
        list[SliceOut],
        Field(description="A sliced job's slices, once its source is split; empty otherwise."),
    ],
    "slice_of": Annotated[int | None, Field(description="For a slice: the job it is a slice of.")],
    "slice_number": int | None,
}


class _PresentedJob(BaseModel):
    """Reads a ReindexJob through the presenter, where each figure is computed once."""

    @model_validator(mode="before")
    @classmethod
    def _present(cls, value: Any) -> Any:
        return job_status(value) if isinstance(value, ReindexJob) else value


_FIELDS: dict[str, Any] = {
    **{
        name: (info.annotation, _always_present(info))
        for name, info in JobSpec.model_fields.items()
    },
    **{name: (annotation, ...) for name, annotation in _FIGURES.items()},
    # After the spec's fields: as output, `slices` is the list of slices, not their number.
    **{name: (annotation, ...) for name, annotation in _SLICE_FIGURES.items()},
}
JobOut = create_model(
    "Job",
    __base__=_PresentedJob,
    __doc__="A job: its spec and its figures, the fields of `reindex status --json`.",
    **_FIELDS,
)


# The failure's columns that FailureOut reads.
FAILURE_FIELDS = (
    "id",
    "job",
    "batch_number",
    "doc_ids",
    "error_type",
    "message",
    "traceback",
    "attempts",
    "transient",
    "created_at",
    "resolved_at",
)


class FailureOut(BaseModel):
    """A batch's documents that failed for good, with the error they failed with."""

    id: int
    job: Annotated[
        int, Field(description="The job that recorded it: for a sliced job, one of its slices.")
    ]
    slice_number: Annotated[
        int | None, Field(description="The slice it came from, if it is a slice's.")
    ]
    batch_number: int
    doc_ids: list[str]
    error_type: str
    message: str
    traceback: str
    attempts: int
    transient: bool
    created_at: Timestamp
    resolved_at: Timestamp | None

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, value: Any) -> Any:
        if not isinstance(value, BatchFailure):
            return value
        return {
            "id": value.pk,
            "job": value.job_id,
            "slice_number": value.job.slice_number,
            "batch_number": value.batch_number,
            "doc_ids": value.doc_ids,
            "error_type": value.error_type,
            "message": value.message,
            "traceback": value.traceback,
            "attempts": value.attempts,
            "transient": value.transient,
            "created_at": value.created_at.isoformat(),
            "resolved_at": value.resolved_at.isoformat() if value.resolved_at else None,
        }


class FieldErrorOut(BaseModel):
    """One invalid input, beside the field it concerns (null: the request as a whole)."""

    field: str | None
    message: str


class ErrorOut(BaseModel):
    """Every error: a message for the operator; invalid input also lists every invalid field."""

    error: str
    errors: list[FieldErrorOut] | None = Field(
        None, description="400 for invalid input only: every invalid field, with its message."
    )


def errors(*codes: int) -> dict[int, type[ErrorOut]]:
    """The documented error answers of an operation."""
    return dict.fromkeys(codes, ErrorOut)
