"""OpenTelemetry tracing, on when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.

On: every HTTP request is a server span (the caller's `traceparent` its parent), every consumed event a consumer
span whose parent is the span that published it (the CloudEvents `traceparent` the outbox wrote), every batch of
events one span linked to each event's; calls to other services (httpx) and database statements (asyncpg) are
spans of their own. Whatever a span's code logs or publishes carries the span's traceparent, so the events it
writes make their consumers' spans its children: one trace follows a request through every service. Spans go
out over OTLP/HTTP in batches (the standard OTEL_* variables configure the exporter).

Off (the default): no provider, no instrumentation, no span objects; the W3C traceparent still travels through
requests, the outbox and events into every log line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from partnerhub.logs import restore_traceparent, swap_traceparent

SERVER, CONSUMER, PRODUCER, INTERNAL = SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER, SpanKind.INTERNAL
__all__ = ["CONSUMER", "INTERNAL", "PRODUCER", "SERVER", "StatusCode", "configure_tracing", "enabled", "install",
           "instrument_client", "span"]
# A batch span links to at most this many of its events (a batch of sales holds thousands).
MAX_LINKS = 128
_propagator = TraceContextTextMapPropagator()


class _Processors(SpanProcessor):
    """The provider's one processor, handing spans to the one installed now (a provider cannot drop one)."""

    def __init__(self) -> None:
        self.current: SpanProcessor | None = None

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.current is not None:
            self.current.on_start(span, parent_context)

    def on_end(self, span: Any) -> None:
        if self.current is not None:
            self.current.on_end(span)

    def shutdown(self) -> None:
        if self.current is not None:
            self.current.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.current.force_flush(timeout_millis) if self.current is not None else True


class _State:
    enabled = False
    provider: TracerProvider | None = None
    processors = _Processors()


def enabled() -> bool:
    return _State.enabled


def wanted() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_tracing(service: str) -> bool:
    """At a service's start: exports spans over OTLP when the endpoint is configured. One provider per process
    (the first service to start in it names the resource)."""
    if _State.enabled or not wanted():
        return _State.enabled
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    install(BatchSpanProcessor(OTLPSpanExporter()), os.environ.get("OTEL_SERVICE_NAME") or f"partnerhub-{service}")
    return True


def install(processor: SpanProcessor, service_name: str = "partnerhub") -> Callable[[], None]:
    """Turns tracing on with this span processor (OTLP, or a test's own exporter); returns what turns it off."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    if _State.provider is None:
        _State.provider = TracerProvider(resource=Resource.create({"service.name": service_name,
                                                                   "service.namespace": "partnerhub"}))
        _State.provider.add_span_processor(_State.processors)
        trace.set_tracer_provider(_State.provider)
    _State.processors.current = processor
    instrumentor = AsyncPGInstrumentor()
    instrumentor.instrument(tracer_provider=_State.provider)
    _State.enabled = True

    def uninstall() -> None:
        _State.enabled = False
        instrumentor.uninstrument()
        _State.processors.current = None
        processor.shutdown()

    return uninstall


def instrument_client(client: Any) -> None:
    """Outgoing calls of this httpx client become client spans carrying the traceparent (when tracing is on)."""
    if _State.enabled:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_State.provider)


def _context(traceparent: str | None) -> Any:
    return _propagator.extract({"traceparent": traceparent}) if traceparent else None


def _span_context(traceparent: str) -> trace.SpanContext | None:
    span_context = trace.get_current_span(_propagator.extract({"traceparent": traceparent})).get_span_context()
    return span_context if span_context.is_valid else None


def current_span() -> trace.Span | None:
    """The span being recorded now (e.g. the server span FastAPI's own telemetry opened), if any."""
    current = trace.get_current_span()
    return current if current.is_recording() else None


def traceparent_of(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@contextlib.contextmanager
def span(name: str, service: str, kind: SpanKind, parent: str | None = None,
         attributes: dict[str, Any] | None = None, links: Sequence[str | None] = ()) -> Iterator[trace.Span | None]:
    """Runs the block in a span, child of `parent` (a traceparent), linked to `links`; inside it the current
    traceparent (logs, the outbox) is the span's. Off: runs the block as it is and yields None."""
    if not _State.enabled:
        yield None
        return
    tracer = trace.get_tracer("partnerhub", tracer_provider=_State.provider)
    linked = [Link(found) for tp in links[:MAX_LINKS] if tp and (found := _span_context(tp)) is not None]
    with tracer.start_as_current_span(name, context=_context(parent), kind=kind, links=linked,
                                      attributes={"partnerhub.service": service, **(attributes or {})}) as current:
        token = swap_traceparent(traceparent_of(current))
        try:
            yield current
        finally:
            restore_traceparent(token)
