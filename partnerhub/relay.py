"""Outbox relay: publishes committed outbox rows in order, once elected, and keeps them for replay."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from aiokafka import AIOKafkaProducer

from partnerhub.config import Settings
from partnerhub.db import OUTBOX_CHANNEL, asyncpg_dsn
from partnerhub.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE

log = logging.getLogger(__name__)

# One relay per service database publishes, so order per key holds with several replicas.
RELAY_LOCK_ID = 0x5048_0001
PRUNE_EVERY_SECONDS = 600.0
SAFETY_POLL_SECONDS = 1.0


class OutboxRelay:
    def __init__(self, service: str, database_url: str, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.service = service
        self.dsn = asyncpg_dsn(database_url)
        self.producer = producer
        self.settings = settings
        self.batch_size = settings.outbox_batch_size
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._replay_pending = settings.outbox_replay
        self.is_leader = False
        self.backlog = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn)
                if not await self._elect(conn):
                    continue
                await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
                if self._replay_pending:
                    replayed = await conn.execute("UPDATE outbox SET published_at = NULL")
                    log.info("outbox replay into a fresh broker", extra={"fields": {"rows": replayed}})
                    self._replay_pending = False
                await self._publish_loop(conn)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay failed; retrying", extra={"fields": {"error": repr(exc)}})
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.is_leader = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def _elect(self, conn: asyncpg.Connection) -> bool:
        while not self._stopping.is_set():
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_ID):
                self.is_leader = True
                return True
            await self._sleep(2.0)
        return False

    async def _publish_loop(self, conn: asyncpg.Connection) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            self._wake.clear()
            published = await self.publish_batch(conn)
            await self._measure(conn)
            if loop.time() >= next_prune:
                await self._prune(conn)
                next_prune = loop.time() + PRUNE_EVERY_SECONDS
            if published >= self.batch_size:
                continue
            if self._stopping.is_set():
                if self.backlog == 0:
                    return
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SAFETY_POLL_SECONDS)

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            "SELECT id, topic, key, payload::text AS payload FROM outbox "
            "WHERE published_at IS NULL ORDER BY id LIMIT $1",
            self.batch_size,
        )
        if not rows:
            return 0
        futures = []
        for row in rows:
            payload = row["payload"].encode()
            futures.append(await self.producer.send(row["topic"], payload, key=row["key"].encode()))
        results = await asyncio.gather(*futures, return_exceptions=True)
        delivered: list[int] = []
        failure: BaseException | None = None
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                failure = result
                break
            delivered.append(row["id"])
            EVENTS_PUBLISHED.labels(self.service, row["topic"]).inc()
        if delivered:
            await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", delivered)
        if failure is not None:
            raise failure
        return len(rows)

    async def _measure(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(
            "SELECT count(*) AS backlog, "
            "coalesce(extract(epoch FROM now() - min(created_at)), 0)::float AS age "
            "FROM outbox WHERE published_at IS NULL"
        )
        assert row is not None
        self.backlog = int(row["backlog"])
        OUTBOX_BACKLOG.labels(self.service).set(self.backlog)
        OUTBOX_OLDEST_AGE.labels(self.service).set(row["age"])

    async def _prune(self, conn: asyncpg.Connection) -> None:
        # Kept long enough to be replayed into a fresh broker; consumers' inboxes absorb the repeats.
        await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(days => $1)",
            self.settings.outbox_retention_days,
        )
        # An inbox row must outlive every replay that could bring its event back: twice the outbox retention.
        await conn.execute(
            "DELETE FROM inbox WHERE processed_at < now() - make_interval(days => $1)",
            2 * self.settings.outbox_retention_days,
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
