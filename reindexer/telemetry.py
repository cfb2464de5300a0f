"""OpenTelemetry set-up, and carrying a trace from the request that created a job to its worker."""

from __future__ import annotations

import os
import threading

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

TRACER_NAME = "reindexer"
_configured = threading.Lock()
_done = False


def _exporter_from_environ() -> SpanExporter | None:
    """The exporter the standard OTEL_* variables ask for; none by default."""
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not choice and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        choice = "otlp"
    if choice in {"", "none"}:
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(
        f"OTEL_TRACES_EXPORTER={choice!r} is not supported (use otlp, console or none)"
    )


def configure_tracing(service_name: str = "reindexer") -> None:
    """Install an SDK tracer provider once per process (so trace ids exist even with no export)."""
    global _done
    with _configured:
        if _done:
            return
        _done = True
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            return  # a test or the host application installed one already
        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
        )
        provider = TracerProvider(resource=resource)
        exporter = _exporter_from_environ()
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)


def instrument_django() -> None:
    """Instrument Django's request handling; the ASGI wrapper is applied in asgi.py."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    configure_tracing()
    instrumentor = DjangoInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def current_trace_context() -> dict[str, str]:
    """The W3C trace headers of the active span, to store on a job."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(carrier: dict[str, str] | None) -> otel_context.Context:
    return propagate.extract(carrier or {})
