"""Helpers for the registry and accounts tests: partners, the outbox, sweeps, and one session-wide event log."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from partnerhub.sweeps import Sweep, run_sweep_once

PARTNER = {"name": "Acme Distribution", "country": "DE", "region": "EMEA", "types": ["sales", "service"]}

Tokens = Callable[..., dict[str, str]]


async def new_partner(registry: httpx.AsyncClient, tokens: Tokens, *moves: str, **fields: Any) -> dict[str, Any]:
    """A partner registered in the registry, then moved through the given statuses."""
    response = await registry.post("/v1/partners", json={**PARTNER, **fields}, headers=tokens())
    assert response.status_code == 201, response.text
    partner = dict(response.json())
    for status in moves:
        moved = await registry.post(
            f"/v1/partners/{partner['id']}/status",
            json={"status": status, "reason": f"test: {status}"},
            headers=tokens(),
        )
        assert moved.status_code == 200, moved.text
        partner = dict(moved.json())
    return partner


def database(client: httpx.AsyncClient) -> Any:
    return client.app.state.ctx.db  # type: ignore[attr-defined]


async def run_sql(client: httpx.AsyncClient, statement: str, **params: Any) -> list[Any]:
    async with database(client).transaction() as tx:
        result = await tx.session.execute(sa.text(statement), params)
        return list(result.all()) if result.returns_rows else []


async def outbox(client: httpx.AsyncClient, key: str, type_: str | None = None) -> list[dict[str, Any]]:
    """The events the service recorded (committed with their change) under `key`, oldest first."""
    rows = await run_sql(client, "SELECT payload FROM outbox WHERE key = :key ORDER BY id", key=key)
    events = [row.payload if isinstance(row.payload, dict) else json.loads(row.payload) for row in rows]
    return [e for e in events if type_ is None or e["type"] == type_]


async def sweep(client: httpx.AsyncClient, name: str, job: Sweep) -> int:
    """Runs a periodic sweep now, waiting out a run of the service's own background loop."""
    for _ in range(200):
        done = await run_sweep_once(database(client), name, job)
        if done is not None:
            return done
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sweep {name} stayed locked")


class EventLog:
    """Every message of some topics, read from their start by one consumer without a group (no join wait)."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[str]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = list(topics)
        self.messages: list[ConsumerRecord] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        await consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                self.messages += messages

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def events(self, topic: str, key: str) -> list[dict[str, Any]]:
        return [json.loads(m.value) for m in self.messages if m.topic == topic and m.key == key.encode()]

    async def wait_for(
        self, topic: str, key: str, until: Callable[[list[dict[str, Any]]], bool], within: float = 30.0
    ) -> list[dict[str, Any]]:
        """The events published under `key` (in order), once `until` holds for them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not until(seen := self.events(topic, key)):
            assert loop.time() < deadline, f"not published to {topic} within {within}s; seen under {key}: {seen}"
            await asyncio.sleep(0.05)
        return seen

    async def wait_for_message(
        self, topic: str, match: Callable[[ConsumerRecord], bool], within: float = 30.0
    ) -> ConsumerRecord:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            found = next((m for m in self.messages if m.topic == topic and match(m)), None)
            if found is not None:
                return found
            assert loop.time() < deadline, f"no matching message on {topic} within {within}s"
            await asyncio.sleep(0.05)
