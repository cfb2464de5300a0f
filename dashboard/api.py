"""The JSON API under /api/ (DESIGN.md, "JSON API").

Every action goes through reindexer.jobs, like the command line and the dashboard. Callers
authenticate with a session (and then CSRF applies to POSTs) or with `Authorization: Bearer
<token>`. Errors are `{"error": "..."}` with 400, 401, 403, 404, 405 or 409.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import RequestDataTooBig
from django.core.paginator import Page, Paginator
from django.db.models import CharField, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt

from dashboard.tokens import CsrfFailed, NotAuthenticated, authenticate
from reindexer import telemetry
from reindexer.errors import SpecError
from reindexer.jobs import JobSpec, cancel_job, create_job, job_status, retry_failed
from reindexer.models import BatchFailure, InvalidTransition, JobStatus, ReindexJob

VIEW = "reindexer.view_reindexjob"
OPERATE = "reindexer.operate_reindexjob"

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

Handler = Callable[..., HttpResponse]


class ApiError(Exception):
    """Ends a request with `{"error": message}` and the given status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        return JsonResponse({"error": self.message}, status=self.status, headers=self.headers)


# -- dispatch ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    handler: Handler
    permission: str


def endpoint(**actions: Action) -> Handler:
    """One URL: dispatch on the method, authenticate, check the action's permission."""
    allowed = ", ".join(sorted(method.upper() for method in actions))

    @csrf_exempt  # CSRF is enforced by authenticate(), for session-authenticated callers only
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        try:
            action = actions.get((request.method or "").lower())
            if action is None:
                raise ApiError(
                    405, f"method {request.method} not allowed; use {allowed}", {"Allow": allowed}
                )
            try:
                user = authenticate(request)
            except NotAuthenticated as exc:
                raise ApiError(401, str(exc), {"WWW-Authenticate": exc.challenge}) from None
            except CsrfFailed as exc:
                raise ApiError(403, f"CSRF verification failed: {exc}") from None
            if not user.has_perm(action.permission):  # type: ignore[attr-defined]
                raise ApiError(403, f"permission {action.permission!r} required")
            response = action.handler(request, user, **kwargs)
        except ApiError as exc:
            response = exc.response()
        add_never_cache_headers(response)
        return response

    return view


@csrf_exempt
def not_found(request: HttpRequest) -> HttpResponse:
    """Any other path under /api/: a JSON 404 rather than the HTML page."""
    response = ApiError(404, f"no API endpoint at {request.path}").response()
    add_never_cache_headers(response)
    return response


# -- input ------------------------------------------------------------------------------------


def _query_int(request: HttpRequest, key: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{key} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{key} must be between {low} and {high}, got {value}")
    return value


def _paginate(request: HttpRequest, rows: QuerySet[Any]) -> Page[Any]:
    size = _query_int(request, "page_size", PAGE_SIZE, 1, MAX_PAGE_SIZE)
    number = _query_int(request, "page", 1, 1, 1_000_000_000)
    paginator = Paginator(rows, size)
    if number > paginator.num_pages:
        raise ApiError(404, f"page {number} does not exist; there are {paginator.num_pages}")
    return paginator.page(number)


def _page_url(request: HttpRequest, number: int) -> str:
    query = request.GET.copy()
    query["page"] = str(number)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def _page_payload(
    request: HttpRequest, page: Page[Any], results: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "count": page.paginator.count,
        "page": page.number,
        "pages": page.paginator.num_pages,
        "next": _page_url(request, page.next_page_number()) if page.has_next() else None,
        "previous": (
            _page_url(request, page.previous_page_number()) if page.has_previous() else None
        ),
        "results": results,
    }


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body)
    except RequestDataTooBig:
        raise ApiError(400, "the request body is too large") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _max_length(name: str) -> int:
    field = ReindexJob._meta.get_field(name)
    if not isinstance(field, CharField) or field.max_length is None:
        raise TypeError(f"ReindexJob.{name} is not a bounded CharField")
    return field.max_length


def _string(body: dict[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string, got {json.dumps(value)}")
    limit = _max_length(key)
    if len(value) > limit:
        raise ApiError(400, f"{key} must be at most {limit} characters")
    return value


def _integer(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{key} must be a whole number, got {json.dumps(value)}")
    return value


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"{key} must be a number, got {json.dumps(value)}")
    return float(value)


_SPEC_FIELDS = tuple(field.name for field in dataclasses.fields(JobSpec))


def _job_spec(body: dict[str, Any]) -> JobSpec:
    unknown = sorted(set(body) - set(_SPEC_FIELDS))
    if unknown:
        raise ApiError(
            400, f"unknown field(s): {', '.join(unknown)}; expected: {', '.join(_SPEC_FIELDS)}"
        )
    if "source" not in body:
        raise ApiError(400, "source is required, for example 'jsonl:docs.jsonl'")
    defaults = JobSpec(source="")
    source = _string(body, "source", "")
    return JobSpec(
        source=source,
        embedder=_string(body, "embedder", defaults.embedder),
        store=_string(body, "store", defaults.store),
        collection=_string(body, "collection", defaults.collection),
        batch_size=_integer(body, "batch_size", defaults.batch_size),
        max_retries=_integer(body, "max_retries", defaults.max_retries),
        max_failed_ratio=_number(body, "max_failed_ratio", defaults.max_failed_ratio),
        # create_job names an unnamed job after its source, which may be longer than a name.
        name=_string(body, "name", "") or source[: _max_length("name")],
    )


def _job(job_id: int) -> ReindexJob:
    job = ReindexJob.objects.filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, f"no job with id {job_id}")
    return job


def _created(job: ReindexJob) -> JsonResponse:
    response = JsonResponse(job_status(job), status=201)
    response["Location"] = reverse("api:job", args=[job.pk])
    return response


def _failure(failure: BatchFailure) -> dict[str, Any]:
    return {
        "id": failure.pk,
        "batch_number": failure.batch_number,
        "doc_ids": failure.doc_ids,
        "error_type": failure.error_type,
        "message": failure.message,
        "traceback": failure.traceback,
        "attempts": failure.attempts,
        "transient": failure.transient,
        "created_at": failure.created_at.isoformat(),
        "resolved_at": failure.resolved_at.isoformat() if failure.resolved_at else None,
    }


# -- actions ----------------------------------------------------------------------------------


def list_jobs(request: HttpRequest, user: AbstractBaseUser) -> HttpResponse:
    jobs = ReindexJob.objects.all()
    raw = request.GET.get("status", "")
    if raw:
        statuses = [s.strip() for s in raw.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in JobStatus.values]
        if unknown:
            raise ApiError(
                400,
                f"unknown status {', '.join(unknown)}; use one or more of "
                f"{', '.join(JobStatus.values)}, separated by commas",
            )
        jobs = jobs.filter(status__in=statuses)
    page = _paginate(request, jobs)
    return JsonResponse(_page_payload(request, page, [job_status(job) for job in page]))


@contextmanager
def _operator_errors() -> Iterator[None]:
    """What reindexer.jobs refuses, as API errors: 400 for the input, 409 for the job's state."""
    try:
        yield
    except InvalidTransition as exc:
        raise ApiError(409, str(exc)) from None
    except SpecError as exc:
        raise ApiError(400, str(exc)) from None
    except OSError as exc:
        # Checking a source path can fail below SpecError (a name too long for the filesystem).
        raise ApiError(400, f"the source path cannot be used: {exc.strerror}") from None


def start_job(request: HttpRequest, user: AbstractBaseUser) -> HttpResponse:
    spec = _job_spec(_json_body(request))
    with _operator_errors():
        job = create_job(spec, user=user, trace_context=telemetry.current_trace_context())
    return _created(job)


def show_job(request: HttpRequest, user: AbstractBaseUser, job_id: int) -> HttpResponse:
    return JsonResponse(job_status(_job(job_id)))


def cancel(request: HttpRequest, user: AbstractBaseUser, job_id: int) -> HttpResponse:
    job = _job(job_id)
    with _operator_errors():
        cancel_job(job, user=user)
    return JsonResponse(job_status(job))


def retry(request: HttpRequest, user: AbstractBaseUser, job_id: int) -> HttpResponse:
    job = _job(job_id)
    with _operator_errors():
        queued = retry_failed(job, user=user, trace_context=telemetry.current_trace_context())
    return _created(queued)


def list_failures(request: HttpRequest, user: AbstractBaseUser, job_id: int) -> HttpResponse:
    job = _job(job_id)
    page = _paginate(request, job.failures.all())
    payload = _page_payload(request, page, [_failure(f) for f in page])
    return JsonResponse({"job": job.pk, **payload})


jobs = endpoint(get=Action(list_jobs, VIEW), post=Action(start_job, OPERATE))
job = endpoint(get=Action(show_job, VIEW))
job_cancel = endpoint(post=Action(cancel, OPERATE))
job_retry_failed = endpoint(post=Action(retry, OPERATE))
job_failures = endpoint(get=Action(list_failures, VIEW))
