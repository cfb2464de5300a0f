"""An in-memory span exporter for the whole test session, and Django instrumented for this package.

OpenTelemetry lets a process set its global tracer provider once. So the session fixture installs
an SDK TracerProvider if none is installed yet, and otherwise adds its processor to the SDK
provider already there (telemetry.configure_tracing(), run by an in-process worker in an earlier
test, installs one without an exporter). Either way every span ends up in the exporter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from opentelemetry import trace
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": "reindexer-tests"}))
        trace.set_tracer_provider(provider)
    installed = trace.get_tracer_provider()
    if not isinstance(installed, TracerProvider):
        pytest.fail(f"could not install an SDK tracer provider; the global one is {installed!r}")
    installed.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="package")
def instrumented_django(span_exporter: InMemorySpanExporter) -> Iterator[None]:
    """Django's request spans, for this package's tests only (the middleware is removed after)."""
    instrumentor = DjangoInstrumentor()
    ours = not instrumentor.is_instrumented_by_opentelemetry
    if ours:
        instrumentor.instrument(tracer_provider=trace.get_tracer_provider())
    yield
    if ours:
        instrumentor.uninstrument()


class Spans:
    """The spans finished during one test."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.all() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span

    def server(self) -> list[ReadableSpan]:
        return [span for span in self.all() if span.kind == trace.SpanKind.SERVER]


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter, instrumented_django: None) -> Iterator[Spans]:
    span_exporter.clear()
    yield Spans(span_exporter)
    span_exporter.clear()


@pytest.fixture
def corpus(make_corpus: Callable[..., Path]) -> str:
    """Ten documents, doc-0 to doc-9."""
    make_corpus(10)
    return "jsonl:docs.jsonl"


@pytest.fixture
def run_worker(transactional_db: None) -> Callable[[], None]:
    """The worker, in this process (the test must be transactional: the worker commits)."""

    def run() -> None:
        call_command("reindex_worker", "--burst", "--worker-id", "tracing-tests")

    return run
