from django.urls import URLPattern, path, re_path

from dashboard import api

app_name = "api"
urlpatterns: list[URLPattern] = [
    path("jobs/", api.jobs, name="jobs"),
    path("jobs/<int:job_id>/", api.job, name="job"),
    path("jobs/<int:job_id>/cancel/", api.job_cancel, name="job-cancel"),
    path("jobs/<int:job_id>/retry-failed/", api.job_retry_failed, name="job-retry-failed"),
    path("jobs/<int:job_id>/failures/", api.job_failures, name="job-failures"),
    # Every other path ending in a slash, and /api/ itself (the empty rest), is a JSON 404;
    # paths without a trailing slash are left to APPEND_SLASH's redirect.
    re_path(r"^(?:.*/)?$", api.not_found),
]
