from django.urls import path

from dashboard import (
    alias_views,
    bulk_views,
    failure_views,
    resume_views,
    swap_views,
    throttle_views,
    views,
    worker_views,
)

app_name = "dashboard"
urlpatterns = [
    path("", views.job_list, name="job-list"),
    path("jobs/new/", views.job_new, name="job-new"),
    path("jobs/create/", views.job_create, name="job-create"),
    path("jobs/bulk/", bulk_views.jobs_bulk, name="jobs-bulk"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:pk>/force-cancel/", views.job_force_cancel, name="job-force-cancel"),
    path("jobs/<int:pk>/retry-failed/", views.job_retry_failed, name="job-retry-failed"),
    path("jobs/<int:pk>/resume/", resume_views.job_resume, name="job-resume"),
    path("jobs/<int:pk>/throttle/", throttle_views.job_throttle, name="job-throttle"),
    path("jobs/<int:pk>/approve/", swap_views.job_approve, name="job-approve"),
    path("jobs/<int:pk>/discard/", swap_views.job_discard, name="job-discard"),
    path("jobs/<int:pk>/failures/", failure_views.failure_list, name="failure-list"),
    path("jobs/<int:pk>/failures.csv", failure_views.failures_csv, name="failures-csv"),
    path(
        "jobs/<int:pk>/failures/<int:failure_pk>/",
        views.failure_detail,
        name="failure-detail",
    ),
    path(
        "jobs/<int:pk>/failures/<int:failure_pk>/source/",
        failure_views.failure_source,
        name="failure-source",
    ),
    path("workers/", worker_views.worker_list, name="worker-list"),
    path("queue/", worker_views.queue, name="queue"),
    path("aliases/", alias_views.alias_list, name="alias-list"),
    path("aliases/rollback/", alias_views.alias_rollback, name="alias-rollback"),
    path("aliases/prune/", alias_views.alias_prune, name="alias-prune"),
]
