"""What ops see: the correlation id flows HTTP → outbox → Kafka → consumer logs, and every metric moves."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from partnerhub.config import get_settings
from partnerhub.consumer import ConsumerRunner, Rejected, Subscription
from partnerhub.db import Database, Transaction, asyncpg_dsn
from partnerhub.events import CloudEvent, OutgoingEvent, dumps
from partnerhub.kafka import ensure_topics, make_producer
from partnerhub.logs import JsonFormatter, trace_id
from partnerhub.relay import OutboxRelay
from tests.conftest import Infrastructure, eventually, running_service

PARTNER = {"name": "Traced Partner GmbH", "country": "DE", "region": "EMEA", "types": ["sales"]}
log = logging.getLogger("tests.deploy.consumer")


class JsonLines(logging.Handler):
    """Keeps every record as the JSON line the services write."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter("deploytest"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextmanager
def captured_logs() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


def new_traceparent() -> tuple[str, str]:
    trace = secrets.token_hex(16)
    return f"00-{trace}-{secrets.token_hex(8)}-01", trace


async def test_a_request_trace_reaches_the_outbox_kafka_and_a_consumers_logs(infrastructure: Infrastructure) -> None:
    settings = get_settings()
    traceparent, trace = new_traceparent()
    consumer_service = f"deploytest-{secrets.token_hex(3)}"
    seen: dict[str, str | None] = {}

    async def on_registered(tx: Transaction, event: CloudEvent) -> None:
        log.info("partner registered, replica updated", extra={"fields": {"partner_id": event.data["id"]}})
        seen[event.data["id"]] = event.traceparent

    async with running_service("registry") as registry:
        response = await registry.post(
            "/v1/partners", json=PARTNER, headers={**admin_headers(), "traceparent": traceparent}
        )
        assert response.status_code == 201, response.text
        assert response.headers["traceparent"] == traceparent
        partner_id = response.json()["id"]

        conn = await asyncpg.connect(asyncpg_dsn(infrastructure.database_urls["registry"]))
        try:
            payload = json.loads(await conn.fetchval(
                "SELECT payload::text FROM outbox WHERE key = $1 AND payload::json->>'type' = 'partner.registered'",
                partner_id,
            ))
        finally:
            await conn.close()
        assert payload["traceparent"] == traceparent

        db = Database(infrastructure.database_urls["accounts"], consumer_service)
        runner = ConsumerRunner(
            consumer_service, "registry.partners", db, settings,
            [Subscription("registry.partners", {"partner.registered": on_registered})],
        )
        with captured_logs() as logs:
            task = asyncio.create_task(runner.run())
            try:
                await eventually(lambda: partner_id in seen, within=60)
            finally:
                runner.stop()
                await asyncio.wait_for(task, 30)
                await db.dispose()
        assert seen[partner_id] == traceparent
        handled = [line for line in logs.lines if line.get("partner_id") == partner_id]
        assert handled and all(line["trace_id"] == trace for line in handled), handled
        assert handled[0]["message"] == "partner registered, replica updated"

        metrics = samples((await registry.get("/metrics")).text)
    route = {"service": "registry", "method": "POST", "route": "/v1/partners", "status": "201"}
    assert (sample(metrics, "partnerhub_http_request_duration_seconds_count", **route) or 0) >= 1
    assert sample(metrics, "partnerhub_http_request_duration_seconds_bucket", **route, le="+Inf") is not None
    assert (sample(metrics, "partnerhub_events_published_total", service="registry", topic="registry.partners")
            or 0) >= 1
    assert sample(metrics, "partnerhub_outbox_backlog", service="registry") is not None
    assert sample(metrics, "partnerhub_outbox_oldest_age_seconds", service="registry") is not None
    assert (sample(metrics, "partnerhub_events_consumed_total", service=consumer_service,
                   topic="registry.partners", outcome="applied") or 0) >= 1
    assert sample(metrics, "partnerhub_consumer_lag", service=consumer_service, topic="registry.partners") is not None


async def test_a_dead_lettered_event_is_logged_with_its_trace_and_counted(infrastructure: Infrastructure) -> None:
    settings = get_settings()
    topic = f"deploytest-{secrets.token_hex(4)}"
    await ensure_topics(infrastructure.bootstrap_servers, {topic: 1, f"{topic}.dlq": 1})
    traceparent, trace = new_traceparent()
    service = f"deploytest-{secrets.token_hex(3)}"

    async def refuse(tx: Transaction, event: CloudEvent) -> None:
        raise Rejected("the sale conflicts with one already recorded")

    event = OutgoingEvent(topic=topic, type="sale.recorded", key="acct-1", data={"sale_id": "S-1"})
    db = Database(infrastructure.database_urls["incentives"], service)
    producer = make_producer(settings)
    await producer.start()
    runner = ConsumerRunner(service, topic, db, settings, [Subscription(topic, {"sale.recorded": refuse})])
    # The letter goes out through the database's outbox, like every event.
    relay = OutboxRelay(service, infrastructure.database_urls["incentives"], producer, settings)
    with captured_logs() as logs:
        await producer.send_and_wait(topic, dumps(event.envelope("tests", traceparent)), key=b"acct-1")
        tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
        try:
            await eventually(lambda: any(line["message"] == "message dead-lettered" for line in logs.lines), within=60)
        finally:
            runner.stop()
            await asyncio.wait_for(tasks[0], 30)
    dead = next(line for line in logs.lines if line["message"] == "message dead-lettered")
    assert dead["trace_id"] == trace and dead["topic"] == topic
    assert dead["reason"] == "the sale conflicts with one already recorded"

    reader = AIOKafkaConsumer(f"{topic}.dlq", bootstrap_servers=infrastructure.bootstrap_servers,
                              group_id=f"{service}-reader", auto_offset_reset="earliest")
    await reader.start()
    try:
        batch = await asyncio.wait_for(reader.getone(), 30)
    finally:
        await reader.stop()
        relay.stop()
        await asyncio.wait_for(tasks[1], 30)
        await producer.stop()
        await db.dispose()
    headers = {key: value.decode() for key, value in batch.headers}
    assert headers["dlq.reason"] == "the sale conflicts with one already recorded"
    assert trace_id(json.loads(batch.value)["traceparent"]) == trace

    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value(
        "partnerhub_events_dead_lettered_total", {"service": service, "topic": topic}
    ) == 1


async def test_a_recalculation_is_timed(infrastructure: Infrastructure) -> None:
    sku = f"SKU-OBS-{uuid.uuid4().hex[:8]}"
    async with running_service("incentives") as incentives:
        before = samples((await incentives.get("/metrics")).text)
        response = await incentives.put(
            f"/v1/products/{sku}",
            json={"name": "Observed product", "category": "software", "rebate_eligible": True,
                  "standalone_software": False},
            headers=admin_headers(),
        )
        assert response.status_code in (200, 201), response.text
        after = samples((await incentives.get("/metrics")).text)
    name = "partnerhub_recalculation_duration_seconds_count"
    labels = {"service": "incentives", "trigger": "product.changed"}
    assert (sample(after, name, **labels) or 0) == (sample(before, name, **labels) or 0) + 1
    # Latency is labelled with the route template as the gateway and the OpenAPI document name it.
    route = {"service": "incentives", "method": "PUT", "route": "/v1/products/{sku}",
             "status": str(response.status_code)}
    assert (sample(after, "partnerhub_http_request_duration_seconds_count", **route) or 0) >= 1


def admin_headers() -> dict[str, str]:
    from partnerhub.auth import issue_token

    return {"Authorization": f"Bearer {issue_token(get_settings(), 'admin', None, None)}"}

