"""The JSON API under /api/ (DESIGN.md, "JSON API"), on django-ninja.

Every action goes through reindexer.jobs, like the command line and the dashboard. Who may call
is in dashboard.api_auth, the schemas in dashboard.api_schemas, the refusals in
dashboard.api_errors. The OpenAPI schema is at /api/openapi.json, the docs at /api/docs.
"""

# No `from __future__ import annotations`: ninja reads the views' annotations at import, and
# @paginate's wrapper would resolve names as strings in ninja's module, not this one.
from typing import Annotated, Any

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Field, Schema
from ninja.openapi.docs import Swagger
from ninja.pagination import PaginationBase, paginate
from ninja.params import functions as params
from ninja.responses import Status

from dashboard.api_auth import behind_login, caller, operators, viewers
from dashboard.api_errors import (
    ApiError,
    FieldProblem,
    JsonApi,
    JsonBodyParser,
    install_error_handlers,
)
from dashboard.api_schemas import (
    FAILURE_FIELDS,
    AliasOut,
    FailureOut,
    JobOut,
    PruneBody,
    PrunedOut,
    RollbackBody,
    RolledBackOut,
    SpecBody,
    ThrottleBody,
    ThrottledOut,
    errors,
)
from dashboard.list_query import top_level
from reindexer import telemetry
from reindexer.errors import BackendFailed
from reindexer.jobs import (
    cancel_job,
    create_job,
    force_cancel_job,
    job_failures,
    resume_job,
    retry_failed,
    set_throttle,
)
from reindexer.models import JobStatus, ReindexJob
from reindexer.presenter import job_status
from reindexer.stores import store_backend
from reindexer.swaps import actions as swaps
from reindexer.swaps.overview import AliasView, alias_view, aliases

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_PAGE = 1_000_000_000
ForceFlag = Annotated[
    bool,
    params.Query(
        False,
        description="Cancel a running job whose lease expired, without its worker (409 while the"
        " worker still renews the lease).",
    ),
]
# A store that refused or could not be reached: the gateway's upstream failed, not the request.
STORE_FAILED = 502
StatusFilter = Annotated[
    str, params.Query("", description="Only jobs in these states, separated by commas.")
]

api = JsonApi(
    title="Reindexer",
    version="1",
    description='Queue, watch and operate reindex jobs. Errors are `{"error": "..."}`.',
    urls_namespace="api",
    auth=viewers,
    parser=JsonBodyParser(),
    docs=Swagger(),  # with "ninja" in INSTALLED_APPS, served from its bundled static files
    docs_decorator=behind_login,
)
install_error_handlers(api)


class Pages(PaginationBase):
    """`?page=N&page_size=M`, answered with count, page, pages, next, previous and results."""

    class Input(Schema):
        page: int = Field(1, ge=1, le=MAX_PAGE)
        page_size: int = Field(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    class Output(Schema):
        count: int
        page: int
        pages: int
        next: str | None
        previous: str | None
        results: list[Any]

    items_attribute = "results"

    def paginate_queryset(
        self, queryset: QuerySet[Any], pagination: Input, request: HttpRequest, **params: Any
    ) -> dict[str, Any]:
        paginator = Paginator(queryset, pagination.page_size)
        if pagination.page > paginator.num_pages:
            raise ApiError(
                404, f"page {pagination.page} does not exist; there are {paginator.num_pages}"
            )
        page = paginator.page(pagination.page)
        return {
            "count": paginator.count,
            "page": page.number,
            "pages": paginator.num_pages,
            "next": _page_url(request, page.next_page_number()) if page.has_next() else None,
            "previous": (
                _page_url(request, page.previous_page_number()) if page.has_previous() else None
            ),
            "results": list(page),
        }


class FailurePages(Pages):
    """The failures of one job, paginated, under that job's id."""

    class Output(Pages.Output):
        job: int

    def paginate_queryset(
        self, queryset: QuerySet[Any], pagination: Pages.Input, request: HttpRequest, **params: Any
    ) -> dict[str, Any]:
        return {"job": params["job_id"], **super().paginate_queryset(queryset, pagination, request)}


def _page_url(request: HttpRequest, number: int) -> str:
    query = request.GET.copy()
    query["page"] = str(number)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def _job(job_id: int) -> ReindexJob:
    job = ReindexJob.objects.filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, f"no job with id {job_id}")
    return job


def _store_failed(exc: BackendFailed) -> ApiError:
    return ApiError(STORE_FAILED, f"the store failed ({exc.cause}): {exc}")


def _created(response: HttpResponse, job: ReindexJob) -> Status[ReindexJob]:
    response["Location"] = reverse("api:job", args=[job.pk])
    return Status(201, job)


def _statuses(raw: str) -> list[str]:
    statuses = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in JobStatus.values]
    if unknown:
        message = (
            f"unknown status {', '.join(unknown)}; use one or more of "
            f"{', '.join(JobStatus.values)}, separated by commas"
        )
        raise ApiError.invalid([FieldProblem("status", message)])
    return statuses


@api.get("/jobs/", response={200: list[JobOut], **errors(400, 401, 403, 404)}, url_name="jobs")
@paginate(Pages)
def list_jobs(
    request: HttpRequest,
    status: StatusFilter = "",
) -> QuerySet[ReindexJob]:
    """Every job as operators queued them, newest first: a sliced job's slices are listed in its
    `slices`, not as jobs of their own (each still has its URL, under its id)."""
    jobs = top_level(ReindexJob.objects.all()).prefetch_related("slice_jobs")
    return jobs.filter(status__in=_statuses(status)) if status else jobs


@api.post(
    "/jobs/", auth=operators, response={201: JobOut, **errors(400, 401, 403)}, url_name="jobs"
)
def start_job(request: HttpRequest, response: HttpResponse, spec: SpecBody) -> Status[ReindexJob]:
    """Queue a job; its URL is in the Location header."""
    job = create_job(spec, user=caller(request), trace_context=telemetry.current_trace_context())
    return _created(response, job)


@api.get("/jobs/{int:job_id}/", response={200: JobOut, **errors(401, 403, 404)}, url_name="job")
def show_job(request: HttpRequest, job_id: int) -> ReindexJob:
    """One job; a slice names its sliced job in `slice_of`."""
    return _job(job_id)


@api.post(
    "/jobs/{int:job_id}/cancel/",
    auth=operators,
    response={200: JobOut, **errors(400, 401, 403, 404, 409)},
    url_name="job-cancel",
)
def cancel(request: HttpRequest, job_id: int, force: ForceFlag = False) -> ReindexJob:
    """Cancel a pending job at once, or ask a running one to stop at its next batch; with
    `?force=true`, cancel a running job whose worker stopped responding."""
    job = _job(job_id)
    if force:
        force_cancel_job(job, user=caller(request))
    else:
        cancel_job(job, user=caller(request))
    job.refresh_from_db()  # a slice's cancel acted on its sliced job: show the slice as it is now
    return job


@api.post(
    "/jobs/{int:job_id}/resume/",
    auth=operators,
    response={200: JobOut, **errors(401, 403, 404, 409)},
    url_name="job-resume",
)
def resume(request: HttpRequest, job_id: int) -> ReindexJob:
    """Queue a failed job again: a worker continues it from its checkpoint, with its counters."""
    return resume_job(_job(job_id), user=caller(request))


@api.post(
    "/jobs/{int:job_id}/retry-failed/",
    auth=operators,
    response={201: JobOut, **errors(400, 401, 403, 404, 409)},
    url_name="job-retry-failed",
)
def retry(request: HttpRequest, response: HttpResponse, job_id: int) -> Status[ReindexJob]:
    """Queue a job over a finished job's failed documents."""
    job = _job(job_id)
    queued = retry_failed(
        job, user=caller(request), trace_context=telemetry.current_trace_context()
    )
    return _created(response, queued)


@api.post(
    "/jobs/{int:job_id}/throttle/",
    auth=operators,
    response={200: ThrottledOut, **errors(400, 401, 403, 404, 409)},
    url_name="job-throttle",
)
def throttle(request: HttpRequest, job_id: int, body: ThrottleBody) -> dict[str, Any]:
    """Set, change or lift (0 or null) a pending or running job's rate limit: its worker applies
    it from the next batch, or at once while it waits. On a slice, it sets its sliced job's
    limit, which all its slices share. The same limit again changes nothing (`changed`: false)."""
    job = _job(job_id)
    done = set_throttle(job, body.max_docs_per_second, user=caller(request))
    job.refresh_from_db()  # a slice's throttle acted on its sliced job: show the slice as it is
    return {**job_status(job), "changed": done.changed, "message": done.message}


@api.get(
    "/jobs/{int:job_id}/failures/",
    response={200: list[FailureOut], **errors(400, 401, 403, 404)},
    url_name="job-failures",
)
@paginate(FailurePages)
def list_failures(request: HttpRequest, job_id: int) -> QuerySet[Any]:
    """A job's recorded failures, in batch order; a sliced job's are its slices', each naming
    the slice (`job`, `slice_number`) it came from."""
    return (
        job_failures(_job(job_id)).select_related("job").only(*FAILURE_FIELDS, "job__slice_number")
    )


@api.post(
    "/jobs/{int:job_id}/approve/",
    auth=operators,
    response={200: JobOut, **errors(401, 403, 404, 409, STORE_FAILED)},
    url_name="job-approve",
)
def approve(request: HttpRequest, job_id: int) -> ReindexJob:
    """Swap: move a swap job's alias to the collection it built and verified (a job awaiting
    approval, started with `approve: manual`); it completes. 502 if the store failed, the job
    still awaiting approval."""
    try:
        return swaps.approve_swap(_job(job_id), user=caller(request))
    except BackendFailed as exc:
        raise _store_failed(exc) from exc


@api.post(
    "/jobs/{int:job_id}/discard/",
    auth=operators,
    response={200: JobOut, **errors(401, 403, 404, 409, STORE_FAILED)},
    url_name="job-discard",
)
def discard(request: HttpRequest, job_id: int) -> ReindexJob:
    """Discard: drop the collection a swap job awaiting approval built, leaving the alias as it
    was; the job is cancelled."""
    try:
        return swaps.discard_swap(_job(job_id), user=caller(request))
    except BackendFailed as exc:
        raise _store_failed(exc) from exc


def alias_out(view: AliasView) -> dict[str, Any]:
    """An alias as the API answers it (AliasOut reads each move's row itself)."""
    return {
        "store": view.store,
        "alias": view.alias,
        "serves": view.serves,
        "collections": list(view.collections),
        "can_rollback": view.can_rollback,
        "moves": list(view.moves),
        "error": view.error,
    }


@api.get("/aliases/", response={200: list[AliasOut], **errors(401, 403)}, url_name="aliases")
def list_aliases(request: HttpRequest) -> list[dict[str, Any]]:
    """Every alias a swap job or a rollback moved, by store: what it serves, its collections and
    its moves, newest first, each with its job's verification. A store that cannot be read
    names why in `error`."""
    return [alias_out(view) for view in aliases()]


@api.post(
    "/aliases/rollback/",
    auth=operators,
    response={200: RolledBackOut, **errors(400, 401, 403, 409, STORE_FAILED)},
    url_name="alias-rollback",
)
def rollback(request: HttpRequest, body: RollbackBody) -> dict[str, Any]:
    """Move an alias back to the collection it served before its last move (kept until a
    prune). 409 when there is nothing earlier to go back to."""
    try:
        move = swaps.rollback(body.store, body.alias, user=caller(request))
    except BackendFailed as exc:
        raise _store_failed(exc) from exc
    message = (
        f"alias {body.alias}: rolled back from {move.previous or 'nothing'} to {move.collection}"
    )
    return {"alias": alias_out(alias_view(body.store, body.alias)), "message": message}


@api.post(
    "/aliases/prune/",
    auth=operators,
    response={200: PrunedOut, **errors(400, 401, 403, STORE_FAILED)},
    url_name="alias-prune",
)
def prune(request: HttpRequest, body: PruneBody) -> dict[str, Any]:
    """Drop an alias's physical collections but its newest `keep`, the one it serves and those
    of swap jobs under way (as `reindex prune`); a dropped collection cannot be rolled back to.
    `dropped` is oldest first; `kept` is what the alias has left."""
    try:
        dropped = swaps.prune(body.store, body.alias, body.keep, user=caller(request))
        kept = store_backend(body.store).physical_collections(body.alias)
    except BackendFailed as exc:
        raise _store_failed(exc) from exc
    return {"store": body.store, "alias": body.alias, "dropped": dropped, "kept": kept}
