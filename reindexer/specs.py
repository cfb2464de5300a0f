"""The one typed spec of a new job: every field with its bounds, validated alike everywhere.

The form, the JSON API (and its OpenAPI schema), the command line and the admin all build a
`JobSpec` through `JobSpec.parse`, so a field added here shows up in all of them, and no bound is
written twice. Errors come back as one `InvalidSpec`, each `SpecError` naming its field.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from reindexer.embedders import validate_embedder
from reindexer.errors import SpecError
from reindexer.sources import open_source
from reindexer.stores import store_backend, validate_store
from reindexer.stores.aliases import physical_name

NAME_MAX = 200
SOURCE_MAX = 1000
STORE_MAX = 1000
EMBEDDER_MAX = 200
COLLECTION_MAX = 200
MIN_BATCH_SIZE = 1
MAX_BATCH_SIZE = 10_000
MAX_RETRIES_LIMIT = 20
# Slices of one job that workers run in parallel; more than the workers of a fleet pays nothing.
MAX_SLICES = 64
# A rate limit above what any store takes is a typo, not a limit.
MAX_DOCS_PER_SECOND = 1_000_000
# A shown input is cut to this many characters: a 10 MB name must not come back in the error.
SHOWN_INPUT_CHARS = 80


class InvalidSpec(SpecError):
    """Every problem of a spec at once; `errors` holds one SpecError per problem, with its field."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("; ".join(str(e) for e in errors), field=errors[0].field)
        self.errors = errors

    def by_field(self) -> dict[str | None, list[str]]:
        grouped: dict[str | None, list[str]] = {}
        for error in self.errors:
            grouped.setdefault(error.field, []).append(str(error))
        return grouped


def _storable_text(value: str) -> str:
    """Refuse what a database cannot store: PostgreSQL's text takes no NUL, UTF-8 no surrogate."""
    if "\x00" in value:
        raise PydanticCustomError("spec", "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "spec", "must be valid Unicode (it holds a lone surrogate)"
        ) from None
    return value


Text = Annotated[str, AfterValidator(_storable_text)]


def _checked(value: str, check: Callable[[str], object]) -> str:
    """`value`, once `check` accepts it; its SpecError becomes this field's validation error."""
    try:
        check(value)
    except SpecError as exc:
        message = str(exc)  # the backends' messages name what they concern: "unknown store 'x'"
    except OSError as exc:  # a source name too long for the file system, say
        message = f"the source path cannot be used: {exc.strerror}"
    else:
        return value
    raise PydanticCustomError("backend", "{message}", {"message": message})


def _refuse(message: str) -> None:
    """A field's error, as an operator reads it (not prefixed with the field's name)."""
    raise PydanticCustomError("backend", "{message}", {"message": message})


# The job id a swap's physical collection name is checked with (`ALIAS__<job id>`) before the
# job exists: ten digits, ids to the billions.
SWAP_ID_WIDTH = 10**9


# How each backend field is checked: its path, or its name and options, by its registry.
_BACKEND_CHECKS: dict[str, Callable[[str], object]] = {
    "source": open_source,
    "embedder": validate_embedder,
    "store": validate_store,
}


class JobSpec(BaseModel):
    """What an operator asks for when queueing a job (DESIGN.md, "Models")."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="JobSpec")

    source: Text = Field(
        max_length=SOURCE_MAX,
        description=(
            "jsonl:FILE or directory:FOLDER, inside the allowed source roots, or sql:TABLE "
            "(columns id, text, metadata; rename them as sql:TABLE(id=COL,text=COL,metadata=COL))."
        ),
        examples=["jsonl:docs.jsonl"],
    )
    embedder: Text = Field("hashing", max_length=EMBEDDER_MAX, description="An embedder spec.")
    store: Text = Field(
        "sqlite-vec",
        max_length=STORE_MAX,
        description="sqlite-vec, or flaky(sqlite-vec,transient=0.1,...) to rehearse failures.",
    )
    collection: Text = Field("default", max_length=COLLECTION_MAX, description="Collection name.")
    batch_size: int = Field(
        200,
        ge=MIN_BATCH_SIZE,
        le=MAX_BATCH_SIZE,
        description="Documents embedded and written together, with one checkpoint.",
    )
    max_retries: int = Field(
        3, ge=0, le=MAX_RETRIES_LIMIT, description="Retries of a transient error per batch."
    )
    max_failed_ratio: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="The share of documents that may fail before the job fails.",
    )
    slices: int = Field(
        1,
        ge=1,
        le=MAX_SLICES,
        description=(
            "Split the source into this many ranges, each run by whichever worker claims it, "
            "in parallel."
        ),
    )
    mode: Literal["full", "incremental", "swap"] = Field(
        "full",
        description=(
            "full writes every document; incremental skips those unchanged since their last "
            "successful write (by a hash of text, metadata and embedder) and re-embeds the rest; "
            "swap builds collection__<job id> while the collection, an alias, serves readers, "
            "verifies it, then moves the alias to it."
        ),
    )
    cleanup: Literal["none", "full"] = Field(
        "none",
        description=(
            "full: once the job has completed, delete from the collection the documents that "
            "are no longer in the source."
        ),
    )
    approve: Literal["auto", "manual"] = Field(
        "auto",
        description=(
            "Swap mode: auto moves the alias once the verification passes; manual waits, "
            "awaiting approval, for an operator's Swap or Discard."
        ),
    )
    max_docs_per_second: float | None = Field(
        None,
        ge=0,
        le=MAX_DOCS_PER_SECOND,
        allow_inf_nan=False,
        description="A limit on the job's rate, changeable while it runs; 0 or empty: none.",
    )
    name: Text = Field("", max_length=NAME_MAX, description="Optional; defaults to the source.")

    @field_validator("source", "embedder", "store")
    @classmethod
    def _backend_is_valid(cls, value: str, info: ValidationInfo) -> str:
        return _checked(value, _BACKEND_CHECKS[info.field_name or ""])

    @field_validator("mode")
    @classmethod
    def _swap_builds_one_collection(cls, value: str, info: ValidationInfo) -> str:
        if value != "swap":
            return value
        slices = info.data.get("slices", 1)
        if slices != 1:
            _refuse(
                f"swap mode builds its collection in one job (slices 1), got slices {slices}:"
                " verifying and moving an alias is one step, not one per slice"
            )
        store, collection = info.data.get("store"), info.data.get("collection")
        if store is not None and collection is not None:  # else reported already
            _checked(
                collection, lambda alias: physical_name(alias, SWAP_ID_WIDTH, store_backend(store))
            )
        return value

    @field_validator("mode")
    @classmethod
    def _reads_not_what_it_writes(cls, value: str, info: ValidationInfo) -> str:
        """A collection source may feed a swap into its own alias (the migration), but a job
        that writes in place must not read the collection it writes."""
        source, store = info.data.get("source"), info.data.get("store")
        collection = info.data.get("collection")
        if value == "swap" or source is None or store is None or collection is None:
            return value  # an invalid source, store or collection is reported already
        # Imported here: the sources import the stores, which import this module's limits.
        from reindexer.content_hashes import store_identity
        from reindexer.sources.collection import refers_to

        if refers_to(source, store_identity(store), collection):
            _refuse(
                f"{source} is the collection this job writes ({collection}): a job cannot read"
                " the collection it writes; use --mode swap to rebuild it into a fresh one"
            )
        return value

    @field_validator("cleanup")
    @classmethod
    def _swap_needs_no_cleanup(cls, value: str, info: ValidationInfo) -> str:
        if value == "full" and info.data.get("mode") == "swap":
            _refuse(
                "cleanup full does not apply to swap mode: a swap builds a fresh collection from"
                " the source, so nothing that left the source is in it"
            )
        return value

    @field_validator("approve")
    @classmethod
    def _approval_is_for_swaps(cls, value: str, info: ValidationInfo) -> str:
        if value == "manual" and info.data.get("mode") not in ("swap", None):
            _refuse(
                "approve manual applies to swap mode only (--mode swap): other jobs write their"
                " collection in place, with no alias to move"
            )
        return value

    @field_validator("max_docs_per_second")
    @classmethod
    def _zero_is_no_limit(cls, value: float | None) -> float | None:
        return value or None

    @field_validator("collection")
    @classmethod
    def _collection_suits_the_store(cls, value: str, info: ValidationInfo) -> str:
        store = info.data.get("store")
        if store is None:
            return value  # the store is invalid, and reported; its naming rule is unknown
        return _checked(value, store_backend(store).check_collection)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        """Validate `data`; raises InvalidSpec listing every problem, each with its field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise invalid_spec(exc) from None

    def revalidated(self) -> Self:
        """The same spec checked again: a source may have vanished since it was first checked."""
        return self.parse(self.model_dump())

    @property
    def job_name(self) -> str:
        """The name a job gets: its own, or else its source (cut to fit)."""
        return self.name or self.source[:NAME_MAX]


def field_names() -> list[str]:
    return list(JobSpec.model_fields)


def defaults() -> dict[str, Any]:
    """Each optional field's default."""
    return {
        name: info.default for name, info in JobSpec.model_fields.items() if not info.is_required()
    }


def number_type(info: FieldInfo) -> type[int] | type[float] | None:
    """int or float for a numeric field (an optional one included), else None."""
    annotation = info.annotation
    if get_origin(annotation) in (types.UnionType, Union):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        annotation = kinds[0] if len(kinds) == 1 else None
    if annotation is int:
        return int
    if annotation is float:
        return float
    return None


def choices(info: FieldInfo) -> tuple[str, ...]:
    """The values a Literal field allows, in order; () for any other field."""
    if get_origin(info.annotation) is Literal:
        return tuple(str(a) for a in get_args(info.annotation))
    return ()


def field_bounds(info: FieldInfo) -> tuple[Any, Any]:
    """(lowest, highest) allowed for a numeric pydantic field, from its `ge`/`le` metadata."""
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    return low, high


def bounds(name: str) -> tuple[Any, Any]:
    """(lowest, highest) allowed for a numeric JobSpec field."""
    return field_bounds(JobSpec.model_fields[name])


def max_length(name: str) -> int | None:
    for item in JobSpec.model_fields[name].metadata:
        if getattr(item, "max_length", None) is not None:
            return int(item.max_length)
    return None


def invalid_spec(exc: ValidationError) -> InvalidSpec:
    errors = exc.errors(include_url=False)
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    messages = [_describe(e) for e in errors if e["type"] != "extra_forbidden"]
    if unknown:
        expected = ", ".join(field_names())
        messages.insert(
            0,
            SpecError(
                f"unknown field(s): {', '.join(unknown)}; expected: {expected}", field=unknown[0]
            ),
        )
    return InvalidSpec(messages)


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        text = str(value)
    return text if len(text) <= SHOWN_INPUT_CHARS else text[: SHOWN_INPUT_CHARS - 1] + "…"


def _describe(error: ErrorDetails) -> SpecError:
    """One pydantic error as an operator reads it, naming the field as the JSON key."""
    field = str(error["loc"][0]) if error["loc"] else None
    key = field or "the spec"
    kind = error["type"]
    value = error.get("input")
    context = error.get("ctx") or {}
    if kind == "backend":
        message = str(context["message"])
    elif kind == "spec":
        message = f"{key} {error['msg']}"
    elif kind == "missing":
        example = JobSpec.model_fields[key].examples if field in JobSpec.model_fields else None
        message = f"{key} is required" + (f", for example {example[0]!r}" if example else "")
    elif kind in {"int_type", "int_parsing", "int_from_float"}:
        message = f"{key} must be a whole number, got {_shown(value)}"
    elif kind in {"float_type", "float_parsing", "finite_number"}:
        message = f"{key} must be a number, got {_shown(value)}"
    elif kind == "string_unicode":
        message = f"{key} must be valid Unicode (it holds a lone surrogate)"
    elif kind == "string_type":
        message = f"{key} must be a string, got {_shown(value)}"
    elif kind == "string_too_long":
        message = f"{key} must be at most {context.get('max_length')} characters"
    elif kind in {"greater_than_equal", "less_than_equal"} and field is not None:
        low, high = bounds(field)
        label = field.replace("_", " ")
        message = f"{label} must be between {low:g} and {high:g}, got {_shown(value)}"
    else:
        message = f"{key}: {error['msg']}"
    return SpecError(message, field=field)
