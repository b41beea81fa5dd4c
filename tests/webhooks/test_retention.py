"""Events and deliveries are kept 30 days (replay reaches back as far), then the retention sweep forgets them."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import httpx

from partnerhub.config import Settings
from partnerhub.db import Database, asyncpg_dsn
from services.webhooks import usecases
from tests.conftest import Infrastructure
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import Tokens, deliveries, new_path, subscribe


async def test_the_sweep_forgets_what_is_older_than_the_retention_and_keeps_the_rest(
    webhooks: httpx.AsyncClient, receiver: Receiver, tokens: Tokens, infrastructure: Infrastructure,
    webhook_settings: Settings,
) -> None:
    subscription = await subscribe(webhooks, tokens(), receiver.url(new_path()), ["*"], uuid.uuid4())
    url = infrastructure.database_urls["webhooks"]
    connection = await asyncpg.connect(asyncpg_dsn(url))
    old, recent = f"old-{uuid.uuid4()}", f"recent-{uuid.uuid4()}"
    try:
        for event_id, age in ((old, timedelta(days=31)), (recent, timedelta(days=29))):
            await connection.execute(
                "INSERT INTO events (event_id, type, partners, payload, occurred_at, received_at) "
                "VALUES ($1, 'accrual.recorded', '{}', '{}', now() - $2::interval, now() - $2::interval)",
                event_id, age)
            await connection.execute(
                "INSERT INTO deliveries (id, subscription_id, event_id, event_type, status, schedule_started_at, "
                "created_at, updated_at) VALUES ($1, $2, $3, 'accrual.recorded', 'delivered', "
                "now() - $4::interval, now() - $4::interval, now() - $4::interval)",
                uuid.uuid4(), uuid.UUID(subscription["id"]), event_id, age)
        assert {d["event_id"] for d in await deliveries(webhooks, tokens(), subscription["id"])} == {old, recent}

        db = Database(url, "webhooks")
        try:
            async with db.transaction() as tx:
                assert await usecases.prune(tx, webhook_settings.webhook_retention_days) >= 1
        finally:
            await db.dispose()

        kept = await connection.fetch("SELECT event_id FROM events WHERE event_id = ANY($1::text[])", [old, recent])
        assert [r["event_id"] for r in kept] == [recent]
        assert {d["event_id"] for d in await deliveries(webhooks, tokens(), subscription["id"])} == {recent}
    finally:
        await connection.close()
