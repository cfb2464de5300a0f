"""Websocket routes; the pages name them in their `ws-connect` attribute."""

from __future__ import annotations

from django.urls import URLPattern, path

from dashboard.consumers import JobConsumer, JobsConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/jobs/", JobsConsumer.as_asgi(), name="ws-jobs"),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi(), name="ws-job"),
]
