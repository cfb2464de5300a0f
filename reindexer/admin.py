"""Admin for jobs, failures, events and workers: read-only records; changes go through
reindexer.jobs.

Built for volume: no page sorts or scans a whole table on every request. The lists order by an
index, their filters offer fixed choices (no DISTINCT over every row, no month hierarchy), and a
job's page shows only its latest failures and events, linking out to the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Model, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from reindexer import telemetry
from reindexer.embedders import EMBEDDERS
from reindexer.errors import BackendFailed, SpecError
from reindexer.jobs import (
    cancel_job,
    force_cancel_job,
    rate_from_text,
    resume_job,
    retry_failed,
    set_throttle,
)
from reindexer.models import (
    BATCH_COUNTERS,
    AliasMove,
    BatchFailure,
    InvalidTransition,
    JobEvent,
    JobStatus,
    ReindexJob,
    WorkerProcess,
)
from reindexer.permissions import can_operate
from reindexer.presenter import present, status_label
from reindexer.stores import STORES
from reindexer.swaps.actions import MAX_KEEP, approve_swap, discard_swap, prune, rollback

# A job's page shows this many of its latest failures and events; the changelists hold the rest.
INLINE_LIMIT = 20

# The most collections the "Prune these aliases…" action may keep (the API's bound too).

# The query parameter of the failures and events changelists that narrows them to one job.
JOB_FILTER = "job__exact"


def _actor(request: HttpRequest) -> AbstractBaseUser | None:
    user = request.user
    return user if user.is_authenticated else None


class _ReadOnlyMixin:
    """Rows written by the worker and the guarded transitions only: no add, no edit."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


if TYPE_CHECKING:
    _InlineFormSet = BaseInlineFormSet[Any, ReindexJob, Any]
    _FailureInline = admin.TabularInline[BatchFailure, ReindexJob]
    _EventInline = admin.TabularInline[JobEvent, ReindexJob]
    _JobAdmin = admin.ModelAdmin[ReindexJob]
    _FailureAdmin = admin.ModelAdmin[BatchFailure]
    _EventAdmin = admin.ModelAdmin[JobEvent]
    _WorkerAdmin = admin.ModelAdmin[WorkerProcess]
    _MoveAdmin = admin.ModelAdmin[AliasMove]
else:  # the stubs' generics are not subscriptable at run time
    _InlineFormSet = BaseInlineFormSet
    _FailureInline = _EventInline = admin.TabularInline
    _JobAdmin = _FailureAdmin = _EventAdmin = _WorkerAdmin = _MoveAdmin = admin.ModelAdmin


class _LatestInlineFormSet(_InlineFormSet):
    """The job's latest INLINE_LIMIT rows, oldest of them first, read once.

    Django indexes the formset's queryset once per form; a queryset sliced afresh on each call
    ran one query per row shown.
    """

    latest_order: tuple[str, ...] = ()
    related_name = ""  # the job's accessor of these rows
    changelist = ""  # the admin URL name of all of them

    def get_queryset(self) -> Any:
        if not hasattr(self, "_latest"):
            newest = super().get_queryset().order_by(*self.latest_order)[:INLINE_LIMIT]
            self._latest = list(newest)[::-1]
        return self._latest

    @cached_property
    def total_count(self) -> int:
        return int(getattr(self.instance, self.related_name).count())

    @property
    def shown_count(self) -> int:
        return len(self.get_queryset())

    @property
    def changelist_url(self) -> str:
        return f"{reverse(self.changelist)}?{JOB_FILTER}={self.instance.pk}"


class _LatestFailures(_LatestInlineFormSet):
    latest_order = ("-batch_number", "-id")
    related_name, changelist = "failures", "admin:reindexer_batchfailure_changelist"


class _LatestEvents(_LatestInlineFormSet):
    latest_order = ("-at", "-id")
    related_name, changelist = "events", "admin:reindexer_jobevent_changelist"


class BatchFailureInline(_ReadOnlyMixin, _FailureInline):
    model = BatchFailure
    formset = _LatestFailures
    template = "admin/reindexer/reindexjob/latest_inline.html"
    fields = readonly_fields = (
        "batch_number",
        "error_type",
        "message",
        "doc_count",
        "attempts",
        "transient",
        "created_at",
        "resolved_at",
    )
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = f"Batch failures (the latest {INLINE_LIMIT})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[BatchFailure]:
        # A traceback or a preview can run to kilobytes, and the inline shows neither.
        return super().get_queryset(request).defer("traceback", "preview", "locator")

    @admin.display(description="Docs")
    def doc_count(self, obj: BatchFailure) -> int:
        return len(obj.doc_ids)


class JobEventInline(_ReadOnlyMixin, _EventInline):
    model = JobEvent
    formset = _LatestEvents
    template = "admin/reindexer/reindexjob/latest_inline.html"
    fields = readonly_fields = ("at", "kind", "actor", "detail")
    extra = 0
    can_delete = False
    verbose_name_plural = f"Events (the latest {INLINE_LIMIT})"


class _BackendFilter(admin.SimpleListFilter):
    """Jobs by the backend their spec names (`flaky(...)`, `openai:MODEL` included).

    Its choices are the registry's names: Django's default for a char field runs a DISTINCT
    over every job on each page of the list.
    """

    registry: Iterable[str]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(self.registry)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        name, field = self.value(), str(self.parameter_name)
        if name is None:
            return queryset
        with_options = Q(**{f"{field}__startswith": f"{name}("})
        with_argument = Q(**{f"{field}__startswith": f"{name}:"})
        return queryset.filter(Q(**{field: name}) | with_options | with_argument)


class StoreFilter(_BackendFilter):
    title = parameter_name = "store"
    registry = STORES


class EmbedderFilter(_BackendFilter):
    title = parameter_name = "embedder"
    registry = EMBEDDERS


class SliceFilter(admin.SimpleListFilter):
    """The jobs as operators queue them by default; the slices of sliced jobs on demand."""

    title = "slices"
    parameter_name = "slices"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("only", "Slices only"), ("all", "Jobs and their slices")]

    def choices(self, changelist: Any) -> Iterator[Any]:
        # Django's "All" would read as every row; here the default is the jobs without slices.
        for choice in super().choices(changelist):
            if choice["display"] == "All":
                yield {**choice, "display": "Jobs (no slices)"}
            else:
                yield choice

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "only":
            return queryset.filter(parent__isnull=False)
        if value == "all":
            return queryset
        return queryset.filter(parent__isnull=True)


class RateLimitForm(forms.Form):
    """The intermediate page of the "Set rate limit…" action: one rate for the jobs chosen."""

    max_docs_per_second = forms.CharField(
        label="Rate limit (docs/s)",
        max_length=40,
        help_text="Documents per second; 0 for no limit.",
    )

    def clean_max_docs_per_second(self) -> float | None:
        try:
            return rate_from_text(self.cleaned_data["max_docs_per_second"])
        except SpecError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(ReindexJob)
class ReindexJobAdmin(_ReadOnlyMixin, _JobAdmin):
    class Media:
        css = {"all": ["css/admin.css"]}

    list_display = (
        "id",
        "name",
        "status_display",
        "progress_display",
        "failed_docs",
        "slices_display",
        "store",
        "created_at",
    )
    list_display_links = ("id", "name")
    # A date range, not a date_hierarchy: its month links ran a DISTINCT over every job.
    list_filter = (
        "status",
        "mode",
        SliceFilter,
        StoreFilter,
        EmbedderFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("name", "source", "collection", "worker")
    # The index reindexjob_created_order; and no second COUNT of the whole table when filtered.
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    # Rendering a row (its checkbox widget above all) is most of the page's time.
    list_per_page = 50
    actions = (
        "cancel_jobs",
        "force_cancel_jobs",
        "retry_failed_jobs",
        "resume_jobs",
        "set_rate_limit",
        "approve_swaps",
        "discard_swaps",
    )
    inlines = (JobEventInline, BatchFailureInline)
    fieldsets = (
        (None, {"fields": ("name", "status_display", "progress_display", "error")}),
        (
            "Settings",
            {
                "fields": (
                    "source",
                    "embedder",
                    "store",
                    "collection",
                    "batch_size",
                    "max_retries",
                    "max_failed_ratio",
                    "max_docs_per_second",
                    "mode",
                    "approve",
                    "cleanup",
                    "slices",
                    "parent",
                    "slice_number",
                    "slice_bounds",
                    "retry_of",
                    "created_by",
                    "trace_context",
                )
            },
        ),
        ("Swap", {"fields": ("verification_display",)}),
        (
            "Counters",
            {"fields": ("total_docs", *BATCH_COUNTERS, "checkpoint")},
        ),
        (
            "Runtime",
            {
                "fields": (
                    "created_at",
                    "started_at",
                    "finished_at",
                    "heartbeat_at",
                    "updated_at",
                    "worker",
                    "lease_token",
                    "cancel_requested_at",
                )
            },
        ),
    )

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> ReindexJob | None:
        # The change page shows both relations: one join rather than a query each.
        if from_field is not None:
            return super().get_object(request, object_id, from_field)
        queryset = (
            self.get_queryset(request)
            .select_related("retry_of", "created_by", "parent")
            .prefetch_related("slice_jobs")
        )
        return queryset.filter(pk=object_id).first() if str(object_id).isdigit() else None

    def get_readonly_fields(self, request: HttpRequest, obj: ReindexJob | None = None) -> list[str]:
        # Every field: a bare save() would bypass the guarded transitions.
        return [f for fieldset in self.fieldsets for f in fieldset[1]["fields"]]  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: ReindexJob | None = None) -> bool:
        # Deleting a job a worker holds would pull the rows from under it.
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.is_finished)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # The bulk delete would not check each job's state.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return can_operate(request.user)

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj: ReindexJob) -> str:
        return status_label(obj)

    @admin.display(description="Verification")
    def verification_display(self, obj: ReindexJob) -> str:
        """A swap job's cutover gate, as stored; blank until it ran."""
        if not obj.verification:
            return "—"
        shown = json.dumps(obj.verification, indent=2, sort_keys=True)
        return format_html('<pre class="verification">{}</pre>', shown)

    @admin.display(description="Slices")
    def slices_display(self, obj: ReindexJob) -> str:
        """ "4 slices" for a sliced job, "slice 2 of #7" for a slice; blank otherwise (from the
        row alone: no query per row)."""
        if obj.parent_id is not None:
            return f"slice {obj.slice_number} of #{obj.parent_id}"
        return f"{obj.slices} slices" if obj.slices > 1 else ""

    @admin.display(description="Progress")
    def progress_display(self, obj: ReindexJob) -> str:
        total = "?" if obj.total_docs is None else f"{obj.total_docs:,}"
        return f"{present(obj).percent}% ({obj.processed_docs:,} / {total})"

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[ReindexJob],
        act: Callable[..., object],
        done_message: str,
    ) -> None:
        """Apply `act` to each job; every refusal gets its own message, the successes one."""
        done = 0
        for job in queryset:
            try:
                act(job, user=_actor(request))
            except InvalidTransition as exc:
                self.message_user(request, f"#{job.pk}: {exc}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, done_message.format(done))

    @admin.action(description="Cancel", permissions=["operate"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[ReindexJob]) -> None:
        self._each(request, queryset, cancel_job, "Cancelled or asked to cancel {} job(s).")

    # Only running jobs whose lease expired; each other job gets its own error message.
    @admin.action(description="Force cancel", permissions=["operate"])
    def force_cancel_jobs(self, request: HttpRequest, queryset: QuerySet[ReindexJob]) -> None:
        self._each(request, queryset, force_cancel_job, "Force-cancelled {} job(s).")

    # Only failed jobs: queued again to continue from their checkpoint.
    @admin.action(description="Resume", permissions=["operate"])
    def resume_jobs(self, request: HttpRequest, queryset: QuerySet[ReindexJob]) -> None:
        self._each(request, queryset, resume_job, "Resumed {} job(s) from their checkpoint.")

    @admin.action(description="Retry failed", permissions=["operate"])
    def retry_failed_jobs(self, request: HttpRequest, queryset: QuerySet[ReindexJob]) -> None:
        for job in queryset:
            try:
                retry = retry_failed(
                    job, user=_actor(request), trace_context=telemetry.current_trace_context()
                )
            except (InvalidTransition, SpecError) as exc:
                self.message_user(request, f"#{job.pk}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"#{job.pk}: failures queued as job #{retry.pk}.")

    # An intermediate form, then set_throttle for each job: never a bare save of the field.
    @admin.action(description="Set rate limit…", permissions=["operate"])
    def set_rate_limit(
        self, request: HttpRequest, queryset: QuerySet[ReindexJob]
    ) -> TemplateResponse | None:
        form = RateLimitForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            rate = form.cleaned_data["max_docs_per_second"]
            for job in queryset:
                try:
                    done = set_throttle(job, rate, user=_actor(request))
                except InvalidTransition as exc:
                    self.message_user(request, f"#{job.pk}: {exc}", messages.ERROR)
                else:
                    self.message_user(request, done.message[0].upper() + done.message[1:] + ".")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Set the rate limit",
            "form": form,
            "jobs": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/reindexer/reindexjob/set_rate_limit.html", context)

    # A confirmation page first, then the swap action for each job awaiting approval; any other
    # job, and a store that fails, gets its own error message.
    @admin.action(description="Swap (approve)", permissions=["operate"])
    def approve_swaps(
        self, request: HttpRequest, queryset: QuerySet[ReindexJob]
    ) -> TemplateResponse | None:
        return self._swap_step(request, queryset, "approve_swaps", approve_swap, "swapped")

    @admin.action(description="Discard", permissions=["operate"])
    def discard_swaps(
        self, request: HttpRequest, queryset: QuerySet[ReindexJob]
    ) -> TemplateResponse | None:
        return self._swap_step(request, queryset, "discard_swaps", discard_swap, "discarded")

    def _swap_step(
        self,
        request: HttpRequest,
        queryset: QuerySet[ReindexJob],
        action: str,
        act: Callable[..., ReindexJob],
        done: str,
    ) -> TemplateResponse | None:
        if "apply" not in request.POST:
            context = {
                **self.admin_site.each_context(request),
                "title": "Swap the aliases" if action == "approve_swaps" else "Discard the swaps",
                "action": action,
                "jobs": queryset,
                "awaiting": JobStatus.AWAITING_APPROVAL.value,
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/reindexer/reindexjob/confirm_swap.html", context
            )
        for job in queryset:
            try:
                act(job, user=_actor(request))
            except (InvalidTransition, BackendFailed) as exc:
                self.message_user(request, f"#{job.pk}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"#{job.pk}: {done} (alias {job.collection}).")
        return None


class PruneForm(forms.Form):
    """The intermediate page of the "Prune these aliases…" action: how many collections to keep."""

    keep = forms.IntegerField(
        label="Keep the newest",
        min_value=0,
        max_value=MAX_KEEP,
        initial=1,
        help_text="Physical collections per alias, besides the one it serves and those of swaps"
        " under way.",
    )


@admin.register(AliasMove)
class AliasMoveAdmin(_ReadOnlyMixin, _MoveAdmin):
    """The moves of the aliases, as swaps and rollbacks record them: to look at, never to edit."""

    list_display = ("at", "store", "alias", "kind", "collection", "previous", "job_link", "actor")
    list_filter = ("kind", StoreFilter, ("at", admin.DateFieldListFilter))
    list_select_related = ("job",)
    show_full_result_count = False
    search_fields = ("alias", "collection", "previous", "actor")
    ordering = ("-at", "-id")
    fields = ("store", "alias", "kind", "collection", "previous", "job_link", "actor", "at")
    readonly_fields = fields
    actions = ("roll_back_aliases", "prune_aliases")

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return can_operate(request.user)

    @admin.action(description="Roll back these aliases…", permissions=["operate"])
    def roll_back_aliases(
        self, request: HttpRequest, queryset: QuerySet[AliasMove]
    ) -> TemplateResponse | None:
        """Each chosen move's alias, once, back to what it served before its current collection
        (as `reindex rollback`), after a confirmation page."""
        aliases = sorted({(move.store, move.alias) for move in queryset})
        if "apply" not in request.POST:
            context = {
                **self.admin_site.each_context(request),
                "title": "Roll back the aliases",
                "aliases": aliases,
                "moves": queryset,
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/reindexer/aliasmove/confirm_rollback.html", context
            )
        for store, alias in aliases:
            try:
                move = rollback(store, alias, user=_actor(request))
            except (InvalidTransition, BackendFailed, SpecError) as exc:
                self.message_user(request, f"Alias {alias} ({store}): {exc}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Alias {alias} ({store}) rolled back: it serves {move.collection} again"
                    f" (was {move.previous}).",
                )
        return None

    # A form first (how many to keep), then prune once for each alias of the chosen moves.
    @admin.action(description="Prune these aliases…", permissions=["operate"])
    def prune_aliases(
        self, request: HttpRequest, queryset: QuerySet[AliasMove]
    ) -> TemplateResponse | None:
        """Drop each chosen move's alias's physical collections but its newest `keep` (as
        `reindex prune`), after a page that asks how many to keep."""
        aliases = sorted({(move.store, move.alias) for move in queryset})
        form = PruneForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Prune the aliases",
                "form": form,
                "aliases": aliases,
                "moves": queryset,
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/reindexer/aliasmove/prune.html", context)
        keep = form.cleaned_data["keep"]
        for store, alias in aliases:
            try:
                dropped = prune(store, alias, keep, user=_actor(request))
            except (BackendFailed, SpecError, ValueError) as exc:
                self.message_user(request, f"Alias {alias} ({store}): {exc}", messages.ERROR)
            else:
                done = f"dropped {', '.join(dropped)}" if dropped else "nothing to drop"
                self.message_user(
                    request, f"Alias {alias} ({store}) pruned, keeping the newest {keep}: {done}."
                )
        return None

    @admin.display(description="Job", ordering="job")
    def job_link(self, obj: AliasMove) -> str:
        if obj.job_id is None:
            return "—"
        url = reverse("admin:reindexer_reindexjob_change", args=[obj.job_id])
        return format_html(
            '<a href="{}">#{} {}</a>', url, obj.job_id, obj.job.name if obj.job else ""
        )

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def _by_job_first(request: HttpRequest, by_job: tuple[str, ...]) -> tuple[str, ...]:
    """One job's rows in `by_job` order (its index); all jobs' newest first, by primary key,
    as no index on the whole table matches the per-job order."""
    return by_job if JOB_FILTER in request.GET else ("-id",)


class _ErrorTypeFilter(admin.SimpleListFilter):
    """The error types of the job filtered by (its index), or of every failure otherwise."""

    title = "error type"
    parameter_name = "error_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        failures = BatchFailure.objects.order_by()
        job = request.GET.get(JOB_FILTER, "")
        if job.isdigit():
            failures = failures.filter(job_id=int(job))
        types = failures.values_list("error_type", flat=True).distinct()
        return [(name, name) for name in sorted(types)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(error_type=value)


@admin.register(BatchFailure)
class BatchFailureAdmin(_ReadOnlyMixin, _FailureAdmin):
    class Media:
        css = {"all": ["css/admin.css"]}

    list_display = (
        "id",
        "job",
        "batch_number",
        "error_type",
        "short_message",
        "doc_count",
        "attempts",
        "transient",
        "created_at",
        "resolved_at",
    )
    list_filter = ("transient", ("resolved_at", admin.EmptyFieldListFilter), _ErrorTypeFilter)
    list_select_related = ("job",)
    show_full_result_count = False
    list_per_page = 50
    search_fields = ("error_type", "message", "job__name")
    search_help_text = "Error type, message, job name, or a document id."
    fields = (
        "job",
        "batch_number",
        "error_type",
        "message",
        "traceback_display",
        "doc_ids",
        "attempts",
        "transient",
        "created_at",
        "resolved_at",
    )
    readonly_fields = fields

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        return _by_job_first(request, ("batch_number", "id"))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[BatchFailure], search_term: str
    ) -> tuple[QuerySet[BatchFailure], bool]:
        """Also match document ids, inside the JSON list cast to text (SQLite and PostgreSQL)."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return results, may_have_duplicates
        # The term as stored inside a JSON string: SQLite keeps Django's ASCII-escaped JSON text,
        # PostgreSQL's jsonb prints non-ASCII plainly; both escape quotes and backslashes.
        spellings = {term, json.dumps(term)[1:-1], json.dumps(term, ensure_ascii=False)[1:-1]}
        condition = Q()
        for spelling in spellings:
            condition |= Q(doc_ids_text__icontains=spelling)
        matches = (
            BatchFailure.objects.annotate(doc_ids_text=Cast("doc_ids", TextField()))
            .filter(condition)
            .values("pk")
        )
        return results | queryset.filter(pk__in=matches), may_have_duplicates

    @admin.display(description="Message")
    def short_message(self, obj: BatchFailure) -> str:
        return obj.message if len(obj.message) <= 100 else obj.message[:99] + "…"

    @admin.display(description="Docs")
    def doc_count(self, obj: BatchFailure) -> int:
        return len(obj.doc_ids)

    @admin.display(description="Traceback")
    def traceback_display(self, obj: BatchFailure) -> str:
        return format_html('<pre class="traceback">{}</pre>', obj.traceback)


@admin.register(JobEvent)
class JobEventAdmin(_ReadOnlyMixin, _EventAdmin):
    list_display = ("at", "job", "kind", "actor", "detail")
    # A date range, not a date_hierarchy: its links ran a DISTINCT over every event.
    list_filter = ("kind", ("at", admin.DateFieldListFilter))
    list_select_related = ("job",)
    show_full_result_count = False
    search_fields = ("actor", "detail", "job__name")
    readonly_fields = ("job", "at", "kind", "actor", "detail")

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        return _by_job_first(request, ("-at", "-id"))


@admin.register(WorkerProcess)
class WorkerProcessAdmin(_ReadOnlyMixin, _WorkerAdmin):
    """The worker registry, as the workers keep it: to look at, never to edit."""

    list_display = (
        "name",
        "host",
        "pid",
        "heartbeat_at",
        "current_job",
        "jobs_done",
        "started_at",
        "stopped_at",
    )
    list_filter = (("stopped_at", admin.EmptyFieldListFilter),)
    list_select_related = ("current_job",)
    show_full_result_count = False
    search_fields = ("name", "host")
    fields = readonly_fields = list_display

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
