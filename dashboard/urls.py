from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.job_list, name="job-list"),
    path("jobs/new/", views.job_new, name="job-new"),
    path("jobs/create/", views.job_create, name="job-create"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:pk>/force-cancel/", views.job_force_cancel, name="job-force-cancel"),
    path("jobs/<int:pk>/retry-failed/", views.job_retry_failed, name="job-retry-failed"),
    path(
        "jobs/<int:pk>/failures/<int:failure_pk>/",
        views.failure_detail,
        name="failure-detail",
    ),
]
