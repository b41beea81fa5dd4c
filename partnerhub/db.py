"""Async SQLAlchemy on PostgreSQL: engine, transactions that carry their outbox, shared tables."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from partnerhub.events import OutgoingEvent, dumps
from partnerhub.logs import current_traceparent

OUTBOX_CHANNEL = "partnerhub_outbox"
READ_POOL_SIZE = 10
READ_ATTEMPTS = 3
T = TypeVar("T")
COPY_THRESHOLD = 200
# A transaction writing at least COPY_THRESHOLD events writes them in bundles of up to this many per row (the
# relay reads up to its batch size of messages at a time, so a bundle should not be larger).
BUNDLE_SIZE = 500


def add_shared_tables(metadata: sa.MetaData) -> None:
    """The outbox, inbox and idempotency tables every service database holds."""
    sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        # The JSON text the relay sends, as the service's encoder wrote it (text: not parsed again on the way in;
        # query it with payload::json).
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        # A dead letter is the consumed message verbatim: the relay sends these instead of key and payload.
        sa.Column("raw_key", sa.LargeBinary),
        sa.Column("raw_value", sa.LargeBinary),
        sa.Column("headers", JSONB),
        # A bundle: many events of one transaction and topic, sent in order as one message each (key, payload
        # unused); the row is published once all of them are. Query them with unnest(keys, payloads).
        sa.Column("keys", sa.ARRAY(sa.Text)),
        sa.Column("payloads", sa.ARRAY(sa.Text)),
        sa.Index("outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
    )
    sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Index("inbox_processed", "processed_at"),
    )
    sa.Table(
        # Every message a consumer dead-lettered, by position: written with the letter, so a redelivery of the
        # message (the consumer died before committing its offset) is not lettered again.
        "dead_letters",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        sa.Column("event_id", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("lettered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Index("dead_letters_lettered", "lettered_at"),
    )
    sa.Table(
        "idempotency_keys",
        metadata,
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Index("idempotency_keys_created", "created_at"),
    )


# Serialization failure, deadlock, lock timeout, admin shutdown, cannot connect now: try again.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P03"})


async def _reset_read(connection: asyncpg.Connection) -> None:
    """What a read connection needs before it goes back to the pool: nothing, unless a read left a transaction
    open (asyncpg's default reset would cost a round trip per request)."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class LostRace(Exception):
    """A transaction lost a race: a concurrent one wrote the same key first and committed. Run again, it sees
    what the winner wrote and answers as if it had come after it (a duplicate, a conflict), so it is retried
    like a transient failure, never shown as an error."""


def lost_race(exc: BaseException) -> bool:
    return isinstance(exc, LostRace) or isinstance(exc.__cause__, LostRace)


RACE_ATTEMPTS = 3


async def rerun_lost_races(attempt: Callable[[], Awaitable[T]]) -> T:
    """Runs a transaction (attempt opens and commits its own), again while it loses races, up to RACE_ATTEMPTS."""
    for _ in range(RACE_ATTEMPTS - 1):
        try:
            return await attempt()
        except Exception as exc:
            if not lost_race(exc):
                raise
    return await attempt()


def _connection_lost(exc: BaseException) -> bool:
    """A plain asyncpg connection that can no longer be used: dropped by the database, or left by the drop in a
    protocol state asyncpg refuses to go on from ("cannot switch to state …")."""
    return is_transient(exc) or isinstance(exc, asyncpg.InternalClientError)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | OSError | ConnectionError | TimeoutError):
        return True
    original = getattr(exc, "orig", None)
    if (getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
            or getattr(exc, "sqlstate", None)) in TRANSIENT_SQLSTATES:
        return True
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return True  # a plain asyncpg connection the database dropped
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return type(exc).__name__ in {"ConnectionDoesNotExistError", "CannotConnectNowError", "TooManyConnectionsError"}


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=kwargs.pop("pool_size", 10),
        max_overflow=kwargs.pop("max_overflow", 10),
        pool_pre_ping=True,
        json_serializer=lambda obj: json.dumps(obj, default=str),
        # Statements are prepared and cached per connection; a generic plan chosen while a table was small (a
        # sequential scan matching a batch of keys) would be kept as it grows. Plans made for each execution
        # cost a fraction of a millisecond and follow the data.
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
        **kwargs,
    )


OutboxRecord = tuple[str, str, str, str]  # (event_id, topic, key, payload): an event encoded for the outbox


@dataclass
class Transaction:
    """One database transaction and the events it records; both commit together."""

    session: AsyncSession
    source: str = ""
    events: list[OutgoingEvent] = field(default_factory=list)
    # Events already encoded (outbox_records), waiting to be written with the others.
    records: list[OutboxRecord] = field(default_factory=list)

    def emit(self, event: OutgoingEvent) -> None:
        self.events.append(event)

    def emit_all(self, events: list[OutgoingEvent]) -> None:
        self.events.extend(events)

    def emit_records(self, records: list[OutboxRecord]) -> None:
        """Events a use case encoded ahead (outbox_records), e.g. while the database wrote what came before."""
        self.records.extend(records)

    @property
    def pending(self) -> int:
        return len(self.events) + len(self.records)

    async def flush_events(self) -> None:
        """Writes the events recorded so far into the outbox now, still uncommitted: a long use case streaming
        through many rows keeps its memory bounded this way."""
        events, self.events = self.events, []
        records, self.records = self.records, []
        await write_outbox(self.session, self.source, events, records)


async def advisory_lock(session: AsyncSession, keys: Iterable[str], *, shared: bool = False) -> None:
    """Transaction-scoped advisory locks on the keys, taken in sorted order in one round trip, so that any two
    callers locking overlapping sets cannot deadlock."""
    ordered = sorted(set(keys))
    if not ordered:
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await session.execute(
        sa.text(f"SELECT count({function}(hashtextextended(k, 0))) FROM "
                "(SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS ordered"),
        {"keys": ordered},
    )


async def try_advisory_lock(session: AsyncSession, keys: Iterable[str], *, shared: bool = False) -> set[str]:
    """Tries each key without waiting; returns the keys it could not take (the others are held to the commit)."""
    ordered = sorted(set(keys))
    if not ordered:
        return set()
    function = "pg_try_advisory_xact_lock_shared" if shared else "pg_try_advisory_xact_lock"
    rows = await session.execute(
        sa.text(f"SELECT k, {function}(hashtextextended(k, 0)) AS taken FROM "
                "(SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS ordered"),
        {"keys": ordered},
    )
    return {row.k for row in rows if not row.taken}


async def driver(session: AsyncSession) -> asyncpg.Connection:
    """The session's asyncpg connection, in its transaction: for bulk reads and writes where per-row result
    objects would cost more than the database work."""
    raw = await (await session.connection()).get_raw_connection()
    connection: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    return connection


async def copy_rows(
    session: AsyncSession, table: str, columns: Sequence[str], records: Sequence[Sequence[object]]
) -> None:
    """COPY into a table within the session's transaction: one round trip, no per-row binds."""
    if not records:
        return
    await (await driver(session)).copy_records_to_table(table, records=records, columns=list(columns))


class Database:
    def __init__(self, url: str, service: str, **engine_kwargs: Any) -> None:
        self.service = service
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # Single-statement reads go through a plain asyncpg pool, opened at the first one.
        self._reads: asyncpg.Pool | None = None
        self._reads_opening = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Commits state and outbox rows together on success, rolls both back on any exception."""
        async with self.sessionmaker() as session, session.begin():
            tx = Transaction(session, self.service)
            yield tx
            await write_outbox(session, self.service, tx.events, tx.records)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for a read of one statement (compiled ahead: see `compiled`), outside any
        transaction: one statement sees one snapshot on its own, so a single-resource GET costs one round trip
        (no BEGIN, no COMMIT, no liveness ping, no reset) and no statement building per request. A connection
        the database dropped fails its statement and leaves the pool; the caller's read is retried (see
        `read_one`)."""
        pool = self._reads or await self._open_reads()
        async with pool.acquire() as connection:
            try:
                yield connection
            except BaseException as exc:
                if _connection_lost(exc):
                    # Never back into the pool: it is replaced by a fresh one (the pool may have let go of it
                    # already when the database closed it).
                    with contextlib.suppress(asyncpg.InterfaceError):
                        connection.terminate()
                raise

    async def read_one(self, operation: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Runs a one-statement read on a pooled connection, and again on another (up to READ_ATTEMPTS in all)
        when the database had dropped the one it got (a restart or failover closes every pooled connection)."""
        for attempt in range(READ_ATTEMPTS):
            try:
                async with self.read() as connection:
                    return await operation(connection)
            except Exception as exc:
                if attempt + 1 == READ_ATTEMPTS or not _connection_lost(exc):
                    raise
        raise AssertionError("unreachable")

    async def _open_reads(self) -> asyncpg.Pool:
        async with self._reads_opening:
            if self._reads is None:
                self._reads = await asyncpg.create_pool(
                    asyncpg_dsn(self.url), min_size=0, max_size=READ_POOL_SIZE, reset=_reset_read,
                    server_settings={"plan_cache_mode": "force_custom_plan"})
        return self._reads

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        if self._reads is not None:
            await self._reads.close()
            self._reads = None
        await self.engine.dispose()


def outbox_records(source: str, events: Sequence[OutgoingEvent]) -> list[OutboxRecord]:
    """The events as outbox rows: the envelope encoded once, to the text the relay sends."""
    traceparent = current_traceparent()
    return [(event.id, event.topic, event.key, dumps(event.envelope(source, traceparent)).decode())
            for event in events]


def bundles(rows: Sequence[OutboxRecord], size: int = BUNDLE_SIZE) -> list[tuple[str, str, str, str, list[str],
                                                                             list[str]]]:
    """Outbox rows as bundle rows: per topic, in order, up to `size` events each (event_id: the first one's)."""
    by_topic: dict[str, list[OutboxRecord]] = {}
    for row in rows:
        by_topic.setdefault(row[1], []).append(row)
    found = []
    for topic, records in by_topic.items():
        for start in range(0, len(records), size):
            part = records[start:start + size]
            found.append((part[0][0], topic, "", "", [r[2] for r in part], [r[3] for r in part]))
    return found


async def write_outbox(session: AsyncSession, source: str, events: list[OutgoingEvent],
                       records: Sequence[OutboxRecord] = ()) -> None:
    if not (events or records):
        return
    rows = [*records, *outbox_records(source, events)]
    if len(rows) >= COPY_THRESHOLD:
        # Large batches (an ingest batch, a recalculation of many sales) go in as bundles, with COPY: a row per
        # BUNDLE_SIZE events instead of one per event.
        await copy_rows(session, "outbox", ["event_id", "topic", "key", "payload", "keys", "payloads"],
                        bundles(rows))
    else:
        await session.execute(
            sa.text("INSERT INTO outbox (event_id, topic, key, payload) VALUES (:event_id, :topic, :key, :payload)"),
            [{"event_id": r[0], "topic": r[1], "key": r[2], "payload": r[3]} for r in rows],
        )
    # Delivered at commit, so the relay wakes the moment the rows become visible.
    await session.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})


async def write_letter(session: AsyncSession, event_id: str | None, topic: str, key: bytes | None,
                       value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> None:
    """A message to publish exactly as given (a dead letter: the consumed bytes, whatever they are), in the
    session's transaction; header values travel base64-encoded in the row."""
    await session.execute(
        sa.text("INSERT INTO outbox (event_id, topic, key, payload, raw_key, raw_value, headers) "
                "VALUES (:event_id, :topic, '', '', :raw_key, :raw_value, CAST(:headers AS jsonb))"),
        {"event_id": event_id or "", "topic": topic, "raw_key": key, "raw_value": value,
         "headers": json.dumps([[name, base64.b64encode(content).decode()] for name, content in headers])},
    )
    await session.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})


def compiled(statement: sa.ClauseElement) -> str:
    """A SQLAlchemy statement as the SQL asyncpg runs, its constants inline and its parameters written with
    `parameter`: built and compiled once, at import, for the reads `Database.read` serves."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    return str(statement.compile(dialect=dialect(), compile_kwargs={"literal_binds": True}))


def parameter(position: int, sql_type: str) -> sa.ColumnElement[Any]:
    """The asyncpg parameter `$position` of the given type, in a statement made for `compiled`."""
    return sa.literal_column(f"${position}::{sql_type}")


def asyncpg_dsn(url: str) -> str:
    """The plain DSN asyncpg takes, from a SQLAlchemy URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
