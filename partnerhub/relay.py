"""Outbox relay: publishes committed outbox rows in order, once elected, and keeps them for replay."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from partnerhub import tracing
from partnerhub.config import Settings
from partnerhub.db import OUTBOX_CHANNEL, asyncpg_dsn
from partnerhub.events import STRUCTURED_HEADERS
from partnerhub.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE

log = logging.getLogger(__name__)

# One relay per service database publishes, so order per key holds with several replicas.
RELAY_LOCK_ID = 0x5048_0001
PRUNE_EVERY_SECONDS = 600.0
SAFETY_POLL_SECONDS = 1.0
# Counting the backlog reads every unpublished row: while a large backlog drains it is recounted this often
# and otherwise kept by subtracting what was marked published.
MEASURE_EVERY_SECONDS = 1.0
# Rows read ahead of the ones in flight, in reads of outbox_batch_size: when a partition's batch is
# acknowledged its next batch is already waiting, so the broker is never left idle for a database read.
READ_AHEAD_READS = 16

# The key and payload arrive as the bytes Kafka sends (no str per row, no encode); a row with headers (a dead
# letter) is sent as its raw key and value, a bundle as one message per element of its keys and payloads. Rows
# are read past a cursor, so reads go on while earlier rows are still in flight and not yet marked published,
# up to $2 messages at a time (however many bundles that takes, at least one row).
FETCH_UNPUBLISHED = (
    "SELECT id, topic, "
    "CASE WHEN headers IS NULL THEN convert_to(key, 'UTF8') ELSE raw_key END AS key, "
    "CASE WHEN headers IS NULL THEN convert_to(payload, 'UTF8') ELSE raw_value END AS payload, "
    "headers::text AS headers, keys, payloads "
    "FROM outbox WHERE published_at IS NULL AND id > $1 AND id <= ("
    "SELECT CASE WHEN min(upto) > $2 THEN min(id) ELSE max(id) FILTER (WHERE upto <= $2) END FROM ("
    "SELECT id, sum(coalesce(cardinality(keys), 1)) OVER (ORDER BY id) AS upto "
    "FROM outbox WHERE published_at IS NULL AND id > $1 ORDER BY id LIMIT $2) AS next) "
    "ORDER BY id"
)
# Messages waiting: a bundle counts as many as it carries.
MEASURE_BACKLOG = (
    "SELECT coalesce(sum(coalesce(cardinality(keys), 1)), 0) AS backlog, "
    "coalesce(extract(epoch FROM now() - min(created_at)), 0)::float AS age "
    "FROM outbox WHERE published_at IS NULL"
)
MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"


class OutboxRow(NamedTuple):
    id: int
    topic: str
    key: bytes | None
    payload: bytes | None
    # A service's own event goes out in CloudEvents structured mode, saying so in its content-type header (a
    # dead letter with the headers it came with). aiokafka's record builder takes a list; the shared one is
    # never changed.
    headers: list[tuple[str, bytes]] = STRUCTURED_HEADERS


def _headers(text: str | None) -> list[tuple[str, bytes]]:
    """A row's headers ([name, base64 value] pairs) as Kafka takes them; an event's own: its content type."""
    if text is None:
        return STRUCTURED_HEADERS
    return [(name, base64.b64decode(value)) for name, value in json.loads(text)]


class RecordBatch(Protocol):
    """What the relay needs of aiokafka's BatchBuilder: append answers None once the batch is full."""

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes]]) -> object | None: ...


def kafka_partition(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition every Kafka client's default partitioner picks for a key (murmur2), so a key lands where
    any other producer of the topic would put it (a message without a key, to any of them)."""
    return int(DefaultPartitioner()(key, list(partitions), list(partitions)))


_TRACEPARENT = re.compile(rb'"traceparent":\s*"(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})"')


def _traceparents(rows: Iterable[OutboxRow]) -> list[str | None]:
    """The traceparents the first rows' envelopes carry (a send span links to the spans that wrote them)."""
    found: list[str | None] = []
    for row in itertools.islice(rows, tracing.MAX_LINKS):
        match = _TRACEPARENT.search(row.payload) if row.payload is not None else None
        found.append(match.group(1).decode() if match else None)
    return found


class Lane:
    """One partition's unpublished rows in id order. Only one batch of them is out at a time: a batch that
    fails is never overtaken by a later one of the same partition, so a key's order survives retries."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.waiting: deque[OutboxRow] = deque()
        self.busy = False

    def fill(self, batch: RecordBatch) -> list[int]:
        """Moves rows from the head into the batch until it is full; returns their ids (at least one: an empty
        batch takes any first row, however large)."""
        ids: list[int] = []
        waiting = self.waiting
        while waiting:
            row = waiting[0]
            if batch.append(timestamp=None, key=row.key, value=row.payload, headers=row.headers) is None:
                break
            waiting.popleft()
            ids.append(row.id)
        return ids


class Publication:
    """One pass over the outbox: rows are routed to their partition's lane as they are read, every lane sends
    its next batch the moment the broker acknowledged its previous one, and acknowledged ids queue up to be
    marked published."""

    def __init__(self, producer: AIOKafkaProducer, service: str) -> None:
        self.producer = producer
        self.service = service
        self.lanes: dict[TopicPartition, Lane] = {}
        self.waiting = 0
        self.failure: BaseException | None = None
        self.closed = False
        self._acknowledged: list[int] = []
        self._acknowledged_messages = 0
        # A bundle row's messages not acknowledged yet: it is marked published once none is left.
        self._parts: dict[int, int] = {}
        self._partitions: dict[str, list[int]] = {}
        self._routes: dict[tuple[str, bytes | None], Lane] = {}
        self._drivers: set[asyncio.Task[None]] = set()
        # The reader waits for room to read ahead, the marker for acknowledged ids: each clears its own.
        self._progress = asyncio.Event()
        self._acknowledgement = asyncio.Event()

    @property
    def sending(self) -> bool:
        return self.failure is None and not self.closed

    @property
    def settled(self) -> bool:
        """Nothing is in flight, and nothing waits to go out that still will."""
        return not self._drivers and (self.waiting == 0 or not self.sending)

    def read(self, records: Iterable[Sequence[Any]]) -> list[OutboxRow]:
        """Outbox rows as read by FETCH_UNPUBLISHED, as the messages they send: a bundle's one per element."""
        rows: list[OutboxRow] = []
        for r in records:
            keys = r[5]
            if keys is None:
                rows.append(OutboxRow(r[0], r[1], r[2], r[3], _headers(r[4])))
            elif keys:
                if len(keys) > 1:
                    self._parts[r[0]] = len(keys)
                rows.extend(OutboxRow(r[0], r[1], key.encode(), payload.encode())
                            for key, payload in zip(keys, r[6], strict=True))
            else:
                self._acknowledge([r[0]], 0)  # an empty bundle sends nothing and is done
        return rows

    def _acknowledge(self, ids: list[int], messages: int) -> None:
        if self._parts:
            done = []
            parts = self._parts
            for row_id in ids:
                left = parts.get(row_id)
                if left is None:
                    done.append(row_id)
                elif left == 1:
                    del parts[row_id]
                    done.append(row_id)
                else:
                    parts[row_id] = left - 1
            ids = done
        self._acknowledged.extend(ids)
        self._acknowledged_messages += messages
        self._acknowledgement.set()

    async def add(self, rows: Iterable[OutboxRow]) -> None:
        for row in rows:
            route = (row.topic, row.key)
            lane = self._routes.get(route)
            if lane is None:
                partitions = self._partitions.get(row.topic)
                if partitions is None:
                    partitions = sorted(await self.producer.partitions_for(row.topic))
                    self._partitions[row.topic] = partitions
                tp = TopicPartition(row.topic, kafka_partition(row.key, partitions))
                lane = self.lanes.get(tp)
                if lane is None:
                    lane = self.lanes[tp] = Lane(tp)
                self._routes[route] = lane
            lane.waiting.append(row)
            self.waiting += 1
        for lane in self.lanes.values():
            if lane.waiting and not lane.busy and self.sending:
                lane.busy = True
                driver = asyncio.create_task(self._drive(lane), name=f"relay-{lane.tp.topic}-{lane.tp.partition}")
                self._drivers.add(driver)
                driver.add_done_callback(self._driver_done)

    async def progress(self) -> None:
        """Waits until a batch was acknowledged or a lane stopped."""
        await self._progress.wait()
        self._progress.clear()

    async def acknowledged(self) -> tuple[list[int], int] | None:
        """The ids of the rows whose every message was acknowledged since the last call, and how many messages
        were, waiting for some; None once closed and all were taken."""
        while not self._acknowledged_messages and not self._acknowledged:
            if self.closed:
                return None
            await self._acknowledgement.wait()
            self._acknowledgement.clear()
        ids, self._acknowledged = self._acknowledged, []
        messages, self._acknowledged_messages = self._acknowledged_messages, 0
        return ids, messages

    def interrupt(self) -> None:
        """Wakes the reader, e.g. because marking failed."""
        self._progress.set()

    async def close(self) -> None:
        """Stops sending further batches and waits for those in flight (bounded by the producer's request
        timeout), so the next pass never races a stale batch of the same partition."""
        self.closed = True
        await asyncio.gather(*self._drivers, return_exceptions=True)
        self._acknowledgement.set()

    def abandon(self) -> None:
        """Stops at once, without waiting for the batches in flight."""
        self.closed = True
        for driver in self._drivers:
            driver.cancel()
        self._acknowledgement.set()

    def _driver_done(self, driver: asyncio.Task[None]) -> None:
        self._drivers.discard(driver)
        self._progress.set()

    async def _drive(self, lane: Lane) -> None:
        try:
            while lane.waiting and self.sending:
                batch = self.producer.create_batch()
                heads = _traceparents(lane.waiting) if tracing.enabled() else []
                ids = lane.fill(batch)
                self.waiting -= len(ids)
                # Closed, it takes nothing from the producer's own send() and goes out without lingering.
                batch.close()
                try:
                    with tracing.span(f"{lane.tp.topic} send", self.service, tracing.PRODUCER, None, {
                            "messaging.system": "kafka", "messaging.destination.name": lane.tp.topic,
                            "messaging.kafka.destination.partition": lane.tp.partition,
                            "messaging.batch.message_count": len(ids)}, heads[:len(ids)]):
                        delivery = await self.producer.send_batch(batch, lane.tp.topic, partition=lane.tp.partition)
                        await delivery
                except Exception as exc:
                    if self.failure is None:
                        self.failure = exc
                    return
                self._acknowledge(ids, len(ids))
                EVENTS_PUBLISHED.labels(self.service, lane.tp.topic).inc(len(ids))
                self._progress.set()
        finally:
            lane.busy = False


class OutboxRelay:
    def __init__(self, service: str, database_url: str, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.service = service
        self.dsn = asyncpg_dsn(database_url)
        self.producer = producer
        self.settings = settings
        self.batch_size = settings.outbox_batch_size
        self.read_ahead = settings.outbox_batch_size * READ_AHEAD_READS
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
            marks: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn)
                if not await self._elect(conn):
                    continue
                # Marking rows published on a connection of its own lets reads go on meanwhile.
                marks = await asyncpg.connect(self.dsn)
                await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
                if self._replay_pending:
                    replayed = await conn.execute("UPDATE outbox SET published_at = NULL")
                    log.info("outbox replay into a fresh broker", extra={"fields": {"rows": replayed}})
                    self._replay_pending = False
                await self._publish_loop(conn, marks)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay failed; retrying", extra={"fields": {"error": repr(exc)}})
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.is_leader = False
                for connection in (marks, conn):
                    if connection is not None:
                        with contextlib.suppress(Exception):
                            await connection.close()

    async def _elect(self, conn: asyncpg.Connection) -> bool:
        while not self._stopping.is_set():
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_ID):
                self.is_leader = True
                return True
            await self._sleep(2.0)
        return False

    async def _publish_loop(self, conn: asyncpg.Connection, marks: asyncpg.Connection) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            self._wake.clear()
            await self._measure(conn)
            published = await self.publish_pending(conn, marks) if self.backlog else 0
            if loop.time() >= next_prune:
                await self._prune(conn)
                next_prune = loop.time() + PRUNE_EVERY_SECONDS
            if published:
                # Rows committed meanwhile under lower ids (a longer transaction) are only seen by a new pass.
                continue
            if self._stopping.is_set():
                if self.backlog == 0:
                    return
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SAFETY_POLL_SECONDS)

    async def publish_pending(self, conn: asyncpg.Connection, marks: asyncpg.Connection) -> int:
        """Publishes the unpublished rows in id order, reading on `conn` while earlier rows are in flight, and
        marks each published on `marks` once the broker acknowledged it; returns how many were. Raises the
        first failure once the batches in flight have settled."""
        publication = Publication(self.producer, self.service)
        marking = asyncio.create_task(self._mark_published(marks, publication))
        marking.add_done_callback(lambda _: publication.interrupt())
        try:
            try:
                await self._read(conn, publication, marking)
            finally:
                # Also after a failure: the next pass must not send a partition's rows behind a stale batch of them.
                await publication.close()
                published = await marking
        except asyncio.CancelledError:
            # Stopping for good: whatever was not marked is published again by the next relay.
            publication.abandon()
            marking.cancel()
            raise
        if publication.failure is not None:
            raise publication.failure
        return published

    async def _read(self, conn: asyncpg.Connection, publication: Publication, marking: asyncio.Task[int]) -> None:
        loop = asyncio.get_running_loop()
        after, exhausted = 0, False
        next_measure = loop.time() + MEASURE_EVERY_SECONDS
        while not marking.done():
            if not exhausted and publication.sending and publication.waiting < self.read_ahead:
                records = await conn.fetch(FETCH_UNPUBLISHED, after, self.batch_size)
                # Fewer single rows than asked for: none left (a read with bundles cannot tell, so reads on).
                exhausted = not records or (len(records) < self.batch_size and all(r[5] is None for r in records))
                if records:
                    after = records[-1][0]
                    await publication.add(publication.read(records))
            elif publication.settled:
                return
            else:
                await publication.progress()
            if loop.time() >= next_measure:
                await self._measure(conn)
                next_measure = loop.time() + MEASURE_EVERY_SECONDS

    async def _mark_published(self, marks: asyncpg.Connection, publication: Publication) -> int:
        published = 0
        while (acknowledged := await publication.acknowledged()) is not None:
            ids, messages = acknowledged
            if ids:
                await marks.execute(MARK_PUBLISHED, ids)
            published += messages
            self._published(messages)
        return published

    def _published(self, messages: int) -> None:
        # Rows committed since the last count are not in it yet; the next count brings them in.
        self.backlog = max(self.backlog - messages, 0)
        OUTBOX_BACKLOG.labels(self.service).set(self.backlog)

    async def _measure(self, conn: asyncpg.Connection) -> None:
        row: Any = await conn.fetchrow(MEASURE_BACKLOG)
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
        # An inbox row must outlive every replay that could bring its event back: twice the outbox retention;
        # a dead letter's record too.
        await conn.execute(
            "DELETE FROM inbox WHERE processed_at < now() - make_interval(days => $1)",
            2 * self.settings.outbox_retention_days,
        )
        await conn.execute(
            "DELETE FROM dead_letters WHERE lettered_at < now() - make_interval(days => $1)",
            2 * self.settings.outbox_retention_days,
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
