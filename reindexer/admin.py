"""Admin for jobs, failures and events: read-only records; changes go through reindexer.jobs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.html import format_html

from reindexer import telemetry
from reindexer.errors import SpecError
from reindexer.jobs import cancel_job, force_cancel_job, retry_failed
from reindexer.models import BATCH_COUNTERS, BatchFailure, InvalidTransition, JobEvent, ReindexJob
from reindexer.permissions import can_operate
from reindexer.presenter import present, status_label

# Inlines render every row on the job's page; beyond this, the failure list is the place to look.
INLINE_LIMIT = 50


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
    _InlineFormSet = BaseInlineFormSet[BatchFailure, ReindexJob, Any]
    _FailureInline = admin.TabularInline[BatchFailure, ReindexJob]
    _EventInline = admin.TabularInline[JobEvent, ReindexJob]
    _JobAdmin = admin.ModelAdmin[ReindexJob]
    _FailureAdmin = admin.ModelAdmin[BatchFailure]
    _EventAdmin = admin.ModelAdmin[JobEvent]
else:  # the stubs' generics are not subscriptable at run time
    _InlineFormSet = BaseInlineFormSet
    _FailureInline = _EventInline = admin.TabularInline
    _JobAdmin = _FailureAdmin = _EventAdmin = admin.ModelAdmin


class _LimitedInlineFormSet(_InlineFormSet):
    def get_queryset(self) -> QuerySet[BatchFailure]:
        return super().get_queryset()[:INLINE_LIMIT]


class BatchFailureInline(_ReadOnlyMixin, _FailureInline):
    model = BatchFailure
    formset = _LimitedInlineFormSet
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
    verbose_name_plural = f"Batch failures (first {INLINE_LIMIT})"

    @admin.display(description="Docs")
    def doc_count(self, obj: BatchFailure) -> int:
        return len(obj.doc_ids)


class JobEventInline(_ReadOnlyMixin, _EventInline):
    model = JobEvent
    fields = readonly_fields = ("at", "kind", "actor", "detail")
    extra = 0
    can_delete = False


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
        "store",
        "created_at",
    )
    list_display_links = ("id", "name")
    list_filter = ("status", "store", "embedder")
    search_fields = ("name", "source", "collection", "worker")
    date_hierarchy = "created_at"
    actions = ("cancel_jobs", "force_cancel_jobs", "retry_failed_jobs")
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
                    "retry_of",
                    "created_by",
                    "trace_context",
                )
            },
        ),
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
    list_filter = ("transient", ("resolved_at", admin.EmptyFieldListFilter), "error_type")
    list_select_related = ("job",)
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
    list_filter = ("kind",)
    list_select_related = ("job",)
    search_fields = ("actor", "detail", "job__name")
    date_hierarchy = "at"
    readonly_fields = ("job", "at", "kind", "actor", "detail")
