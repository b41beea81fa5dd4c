"""One trace across services: a request's server span, the span that relays its event, and the consuming
service's span (child of the request's, through the event's traceparent), on real PostgreSQL and the broker."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from partnerhub import tracing
from partnerhub.logs import JsonFormatter, set_traceparent
from tests.conftest import Infrastructure, eventually, running_service


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    uninstall = tracing.install(SimpleSpanProcessor(exporter))
    yield exporter
    uninstall()


@pytest.fixture(scope="module")
async def services(spans: InMemorySpanExporter, infrastructure: Infrastructure
                   ) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with running_service("registry") as registry, running_service("accounts") as accounts:
        yield {"registry": registry, "accounts": accounts}


def of_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]


async def test_a_request_and_the_event_it_publishes_are_one_trace_across_two_services(
    services: dict[str, httpx.AsyncClient], spans: InMemorySpanExporter, tokens: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace_id, caller = uuid.uuid4().int, uuid.uuid4().int >> 64
    caplog.set_level(logging.INFO, logger="partnerhub.consumer")
    created = await services["registry"].post(
        "/v1/partners", headers={**tokens(), "traceparent": f"00-{trace_id:032x}-{caller:016x}-01"},
        json={"name": "Traced", "country": "DE", "region": "EMEA", "types": ["sales"]})
    assert created.status_code == 201, created.text
    answered = created.headers["traceparent"].split("-")
    assert answered[1] == f"{trace_id:032x}" and answered[2] != f"{caller:016x}"  # the server span's own id

    def consumed() -> list[ReadableSpan]:
        return [s for s in of_trace(spans, trace_id) if s.kind is SpanKind.CONSUMER
                and s.attributes is not None and s.attributes.get("partnerhub.service") == "accounts"]

    consumer = (await eventually(consumed))[0]
    server = next(s for s in of_trace(spans, trace_id) if s.kind is SpanKind.SERVER)
    assert server.name == "POST /v1/partners" and server.attributes is not None
    assert server.attributes["partnerhub.service"] == "registry"
    assert server.attributes["http.response.status_code"] == 201
    assert server.parent is not None and server.parent.span_id == caller
    assert consumer.parent is not None and server.context is not None
    assert consumer.parent.span_id == server.context.span_id  # the event's traceparent is the request's span
    assert consumer.attributes is not None and consumer.attributes["cloudevents.event_type"] == "partner.registered"
    database = [s for s in of_trace(spans, trace_id) if s.kind is SpanKind.CLIENT]
    assert database, "the request's SQL statements are spans of the trace"

    def relayed() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER
                and any(link.context.trace_id == trace_id for link in s.links)]

    assert (await eventually(relayed))[0].name == "registry.partners send"
    applied = [r for r in caplog.records if r.getMessage() == "event applied"
               and getattr(r, "fields", {}).get("event_type") == "partner.registered"
               and r.name == "partnerhub.consumer"]
    assert applied, "every applied event is logged at INFO"


def test_log_lines_carry_the_trace_id_of_the_span_they_are_written_in() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "event applied", None, None)
    set_traceparent(f"00-{'ab' * 16}-{'cd' * 8}-01")
    try:
        assert f'"trace_id": "{"ab" * 16}"' in JsonFormatter("accounts").format(record)
    finally:
        set_traceparent(None)


def test_off_there_are_no_spans() -> None:
    assert not tracing.wanted() or tracing.enabled()
    with tracing.span("nothing", "accounts", tracing.INTERNAL) as span:
        assert (span is None) is (not tracing.enabled())
