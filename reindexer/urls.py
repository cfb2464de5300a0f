from django.contrib import admin
from django.urls import include, path

from dashboard.metrics_view import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("dashboard.api_urls")),
    path("metrics", metrics, name="metrics"),
    path("", include("dashboard.urls")),
]
