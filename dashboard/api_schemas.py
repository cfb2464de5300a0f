"""The JSON API's schemas: the job spec it takes, and the job, failure and error it returns.

The job's spec fields come from `JobSpec` itself and its figures from the presenter, so the
OpenAPI schema shows the same fields, bounds and descriptions as every other surface.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from dashboard.api_errors import NOT_AN_OBJECT, ApiError, FieldProblem
from reindexer.jobs import RATE_FIELD, checked_rate
from reindexer.models import AliasMove, AliasMoveKind, BatchFailure, JobStatus, Phase, ReindexJob
from reindexer.presenter import job_status
from reindexer.specs import COLLECTION_MAX, MAX_DOCS_PER_SECOND, STORE_MAX, JobSpec
from reindexer.swaps.actions import MAX_KEEP

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


class CanaryOut(BaseModel):
    """The canary search: sampled documents, how many found themselves in their own top 5."""

    sampled: int
    found: int
    misses: list[str]


class VerificationOut(BaseModel):
    """A swap job's cutover gate: verify, the count against the old collection's, the canary."""

    passed: bool
    collection: Annotated[str, Field(description="The collection built, `ALIAS__<job id>`.")]
    previous: Annotated[
        str | None, Field(description="What the alias served before; null for a new alias.")
    ]
    missing: int
    duplicates: int
    count: int
    previous_count: int | None
    budget: Annotated[int, Field(description="How far the count may be from the old count.")]
    canary: CanaryOut
    failures: Annotated[list[str], Field(description="Why the gate refused; empty if it passed.")]


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
    "verification": Annotated[
        VerificationOut | None,
        Field(description="Swap mode: the cutover gate's results; null until it ran."),
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


class ThrottleIn(BaseModel):
    """The body of POST /api/jobs/<id>/throttle/."""

    model_config = ConfigDict(extra="forbid", title="Throttle")

    max_docs_per_second: float | None = Field(
        ge=0,
        le=MAX_DOCS_PER_SECOND,
        description="The job's new rate limit in documents per second; 0 or null lifts it.",
        examples=[200],
    )


def _parse_throttle(value: Any, handler: ValidatorFunctionWrapHandler) -> ThrottleIn:
    # reindexer.jobs.checked_rate rather than the handler: its SpecError names the rate's bounds
    # as every other surface does.
    if not isinstance(value, dict):
        raise ApiError(400, NOT_AN_OBJECT)
    unknown = sorted(set(value) - {RATE_FIELD})
    if unknown:
        message = f"unknown field(s): {', '.join(map(str, unknown))[:80]}; expected: {RATE_FIELD}"
        raise ApiError.invalid([FieldProblem(str(unknown[0])[:80], message)])
    if RATE_FIELD not in value:
        message = f"{RATE_FIELD} is required: documents per second, or 0 or null for no limit"
        raise ApiError.invalid([FieldProblem(RATE_FIELD, message)])
    return ThrottleIn.model_construct(max_docs_per_second=checked_rate(value[RATE_FIELD]))


# The body of POST /api/jobs/<id>/throttle/: documented as ThrottleIn, checked by checked_rate.
ThrottleBody = Annotated[ThrottleIn, WrapValidator(_parse_throttle)]

ThrottledOut = create_model(
    "ThrottledJob",
    __base__=JobOut,
    __doc__="The job after a throttle, and whether its limit changed.",
    changed=(
        bool,
        Field(description="false: the job had this limit already; nothing was changed or logged"),
    ),
    message=(str, Field(description='What was done, e.g. "job 7: limit set to 200 docs/s".')),
)


class MoveOut(BaseModel):
    """One move of an alias (newest first): a swap job's cutover or a rollback."""

    kind: Literal[tuple(AliasMoveKind.values)]  # type: ignore[valid-type]
    collection: Annotated[str, Field(description="The collection the alias served from then.")]
    previous: Annotated[str, Field(description='What it served before; "" when it was new.')]
    job: Annotated[int | None, Field(description="The swap job that built `collection`.")]
    actor: str
    at: Timestamp
    verification: Annotated[
        VerificationOut | None, Field(description="That job's cutover gate; null without one.")
    ]

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, value: Any) -> Any:
        if not isinstance(value, AliasMove):
            return value
        job = value.job
        return {
            "kind": value.kind,
            "collection": value.collection,
            "previous": value.previous,
            "job": value.job_id,
            "actor": value.actor,
            "at": value.at.isoformat(),
            "verification": (job.verification or None) if job is not None else None,
        }


class AliasOut(BaseModel):
    """An alias of a store, the collection it serves, and its history."""

    store: str
    alias: str
    serves: Annotated[
        str | None, Field(description="The physical collection it serves; null if unknown.")
    ]
    collections: Annotated[
        list[str], Field(description="Its physical collections that exist, oldest first.")
    ]
    can_rollback: bool
    moves: list[MoveOut]
    error: Annotated[str, Field(description='Why the store could not be read; "" if it was.')]


class RollbackIn(BaseModel):
    """The body of POST /api/aliases/rollback/."""

    model_config = ConfigDict(extra="forbid", title="Rollback")

    store: str = Field(min_length=1, max_length=STORE_MAX, description="The store spec.")
    alias: str = Field(min_length=1, max_length=COLLECTION_MAX, description="The alias.")


def _alias_problems(value: dict[Any, Any], expected: tuple[str, ...]) -> list[FieldProblem]:
    """The unknown fields of an alias action's body, and any problem with its store and alias."""
    listed = ", ".join(expected)
    problems = [
        FieldProblem(str(name)[:80], f"unknown field {str(name)[:80]!r}; expected {listed}")
        for name in sorted(set(value) - set(expected), key=str)
    ]
    for name, limit in (("store", STORE_MAX), ("alias", COLLECTION_MAX)):
        given = value.get(name)
        if not isinstance(given, str) or not given.strip():
            problems.append(FieldProblem(name, f"{name} is required: a non-empty string"))
        elif len(given) > limit:
            problems.append(FieldProblem(name, f"{name} must be at most {limit} characters"))
        elif "\x00" in given:
            problems.append(FieldProblem(name, f"{name} must not contain NUL characters"))
    return problems


def _parse_rollback(value: Any, handler: ValidatorFunctionWrapHandler) -> RollbackIn:
    # Our own refusals rather than the handler's: every problem named with its field.
    if not isinstance(value, dict):
        raise ApiError(400, NOT_AN_OBJECT)
    problems = _alias_problems(value, ("store", "alias"))
    if problems:
        raise ApiError.invalid(problems)
    return RollbackIn.model_construct(store=value["store"], alias=value["alias"])


# The body of POST /api/aliases/rollback/: documented as RollbackIn, checked by _parse_rollback.
RollbackBody = Annotated[RollbackIn, WrapValidator(_parse_rollback)]


class RolledBackOut(BaseModel):
    """The alias after a rollback, and what was done."""

    alias: AliasOut
    message: str


class PruneIn(BaseModel):
    """The body of POST /api/aliases/prune/."""

    model_config = ConfigDict(extra="forbid", title="Prune")

    store: str = Field(min_length=1, max_length=STORE_MAX, description="The store spec.")
    alias: str = Field(min_length=1, max_length=COLLECTION_MAX, description="The alias.")
    keep: int = Field(
        ge=0,
        le=MAX_KEEP,
        description="How many of its newest physical collections to keep, besides the one it"
        " serves and those of swaps under way.",
        examples=[1],
    )


def _keep_problem(given: Any) -> FieldProblem | None:
    # bool is an int to Python, never a count to a caller.
    if given is None:
        return FieldProblem("keep", f"keep is required: a whole number from 0 to {MAX_KEEP}")
    if isinstance(given, bool) or not isinstance(given, int):
        return FieldProblem("keep", f"keep must be a whole number, got {str(given)[:80]!r}")
    if not 0 <= given <= MAX_KEEP:
        return FieldProblem("keep", f"keep must be between 0 and {MAX_KEEP}, got {str(given)[:80]}")
    return None


def _parse_prune(value: Any, handler: ValidatorFunctionWrapHandler) -> PruneIn:
    if not isinstance(value, dict):
        raise ApiError(400, NOT_AN_OBJECT)
    problems = _alias_problems(value, ("store", "alias", "keep"))
    keep = _keep_problem(value.get("keep"))
    if keep is not None:
        problems.append(keep)
    if problems:
        raise ApiError.invalid(problems)
    return PruneIn.model_construct(store=value["store"], alias=value["alias"], keep=value["keep"])


# The body of POST /api/aliases/prune/: documented as PruneIn, checked by _parse_prune.
PruneBody = Annotated[PruneIn, WrapValidator(_parse_prune)]


class PrunedOut(BaseModel):
    """What a prune dropped, and the physical collections the alias has left."""

    store: str
    alias: str
    dropped: Annotated[list[str], Field(description="The collections dropped, oldest first.")]
    kept: Annotated[
        list[str], Field(description="Its physical collections left, served one included.")
    ]


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
