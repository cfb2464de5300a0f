"""How the JSON API refuses: `{"error": "..."}` with 400, 401, 403, 404, 405 or 409, never 422;
a 400 for invalid input also lists every invalid field in `errors`.

`JsonApi` is django-ninja's API with our answers: input errors in the words the rest of the
project uses (the spec's own messages for a job spec), and plain `application/json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError, ValidationErrorContext
from ninja.parser import Parser
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from reindexer.errors import SpecError
from reindexer.models import InvalidTransition
from reindexer.specs import InvalidSpec, field_bounds

NOT_AN_OBJECT = "the request body must be a JSON object"
LOG_IN = "authentication required: log in, or send 'Authorization: Bearer <token>'"


@dataclass(frozen=True)
class FieldProblem:
    """One invalid input: the field (a spec field or a parameter; None for the whole request)."""

    field: str | None
    message: str


class ApiError(Exception):
    """Ends a request with `{"error": message}`, the given status and headers; an input error
    also lists every invalid field as `"errors": [{"field": ..., "message": ...}]`."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        problems: Sequence[FieldProblem] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.problems = tuple(problems)

    @classmethod
    def invalid(cls, problems: Sequence[FieldProblem]) -> ApiError:
        """A 400 naming every problem: joined in `error`, one by one in `errors`."""
        return cls(400, "; ".join(p.message for p in problems), problems=problems)

    def response(self) -> JsonResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.problems:
            body["errors"] = [asdict(problem) for problem in self.problems]
        return JsonResponse(body, status=self.status, headers=self.headers)


class Malformed:
    """Stands for a body that is not JSON; the body's validator refuses it as not an object."""


class JsonBodyParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        try:
            return json.loads(request.body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return Malformed()


def _bounds(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[Any, Any] | None:
    """The (ge, le) of the field at `loc` in a parameter model, if it has both."""
    annotation: Any = model
    info = None
    for part in loc:
        fields = getattr(annotation, "model_fields", {})
        if part not in fields:
            return None
        info = fields[part]
        annotation = info.annotation
    if info is None:
        return None
    low, high = field_bounds(info)
    return None if low is None or high is None else (low, high)


def _describe(error: ErrorDetails, model: Any) -> FieldProblem:
    """A query or path parameter's error, naming the parameter."""
    loc = model.__ninja_flatten_map_reverse__.get(error["loc"], error["loc"])
    field = str(loc[-1]) if loc else None
    name = field or "the request"
    kind, value = error["type"], error.get("input")
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return FieldProblem(field, f"{name} must be a whole number, got {value!r}")
    bounds = _bounds(model, error["loc"])
    if kind in {"greater_than_equal", "less_than_equal"} and bounds is not None:
        return FieldProblem(
            field, f"{name} must be between {bounds[0]} and {bounds[1]}, got {value}"
        )
    return FieldProblem(field, f"{name}: {error['msg']}")


class JsonApi(NinjaAPI):
    def get_content_type(self) -> str:
        return "application/json"

    def validation_error_from_error_contexts(
        self, error_contexts: list[ValidationErrorContext[Any]]
    ) -> ValidationError:
        problems: list[FieldProblem] = []
        for context in error_contexts:
            if context.model.__ninja_param_source__ == "body":  # a body is validated by
                raise ApiError(400, NOT_AN_OBJECT)  # JobSpec.parse, which raises its own errors
            errors = context.pydantic_validation_error.errors(include_url=False)
            problems.extend(_describe(error, context.model) for error in errors)
        raise ApiError.invalid(problems)


Handler = Callable[[HttpRequest, Any], HttpResponse]


def _answer(status: int, message: str | None = None, **headers: str) -> Handler:
    def handler(request: HttpRequest, exc: Any) -> HttpResponse:
        return ApiError(status, message or str(exc), headers).response()

    return handler


def _invalid_spec(request: HttpRequest, exc: Any) -> HttpResponse:
    """Every problem of a spec, each with its field (JobSpec reports them all at once)."""
    assert isinstance(exc, SpecError)  # noqa: S101 - registered for SpecError only
    errors = exc.errors if isinstance(exc, InvalidSpec) else [exc]
    problems = [FieldProblem(error.field, str(error)) for error in errors]
    return ApiError(400, str(exc), problems=problems).response()


def _refusal(request: HttpRequest, exc: Any) -> HttpResponse:
    if isinstance(exc, HttpError):  # ninja's own, such as 429 from a throttle
        exc = ApiError(exc.status_code, str(exc))
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for these two classes only
    return exc.response()


def install_error_handlers(api: NinjaAPI) -> None:
    """Every refusal as `{"error": ...}`; anything unforeseen stays a 500 for Django to log."""
    api.add_exception_handler(ApiError, _refusal)
    api.add_exception_handler(SpecError, _invalid_spec)
    api.add_exception_handler(InvalidTransition, _answer(409))
    api.add_exception_handler(
        AuthenticationError, _answer(401, LOG_IN, **{"WWW-Authenticate": "Bearer"})
    )
    api.add_exception_handler(HttpError, _refusal)
    api.add_exception_handler(Http404, _answer(404))
    api.add_exception_handler(RequestDataTooBig, _answer(400, "the request body is too large"))
    api.add_exception_handler(RecursionError, _answer(400, "the request body is nested too deeply"))


def method_not_allowed(method: str, allowed: Sequence[str]) -> JsonResponse:
    listed = ", ".join(sorted(allowed))
    return ApiError(405, f"method {method} not allowed; use {listed}", {"Allow": listed}).response()
