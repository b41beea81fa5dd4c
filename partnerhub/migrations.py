"""One Alembic tree per service, under services/<name>/migrations; run online on asyncpg."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import create_async_engine

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
MIGRATION_LOCK_ID = 0x5048_0002


def alembic_config(service: str, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["database_url"] = url
    return config


def upgrade(service: str, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


def run_env(context: Any, target_metadata: sa.MetaData) -> None:
    """Body of every service's migrations/env.py."""
    url = context.config.attributes.get("database_url") or context.config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: sa.Connection) -> None:
        # Replicas started together migrate one at a time.
        connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())


def lean_outbox_upgrade(op: Any) -> None:
    """Every service's outbox v2: the payload kept as the JSON text the relay sends (`json`, checked on the way
    in but never converted to jsonb and back), and no unique index on event_id (ids are random 128-bit values,
    consumers deduplicate by their inbox): each event costs the database one random index insertion fewer when
    written and again when marked published.

    Rewrites the outbox under an exclusive lock: on a large outbox, run it when writes can pause for that long."""
    op.drop_constraint("outbox_event_id_key", "outbox", type_="unique")
    op.execute("ALTER TABLE outbox ALTER COLUMN payload TYPE json USING payload::json")


def lean_outbox_downgrade(op: Any) -> None:
    op.execute("ALTER TABLE outbox ALTER COLUMN payload TYPE jsonb USING payload::jsonb")
    op.create_unique_constraint("outbox_event_id_key", "outbox", ["event_id"])


def idempotency_expiry_upgrade(op: Any) -> None:
    """Idempotency-Keys expire: the sweep finds the old ones by their creation time."""
    op.create_index("idempotency_keys_created", "idempotency_keys", ["created_at"])


def idempotency_expiry_downgrade(op: Any) -> None:
    op.drop_index("idempotency_keys_created", table_name="idempotency_keys")


def text_outbox_upgrade(op: Any) -> None:
    """Every service's outbox v3: the payload is the text the service's own JSON encoder wrote, stored as `text`
    (PostgreSQL no longer parses every payload to check it: 0.2 s of a 100,000-event recalculation). Read it as
    JSON with a cast: `payload::json ->> 'type'`. The column keeps its bytes, so no rewrite."""
    op.execute("ALTER TABLE outbox ALTER COLUMN payload TYPE text")


def text_outbox_downgrade(op: Any) -> None:
    op.execute("ALTER TABLE outbox ALTER COLUMN payload TYPE json USING payload::json")


def dead_letters_upgrade(op: Any) -> None:
    """Every service's dead letters are transactional (v4): a letter is an outbox row carrying the consumed message
    verbatim (`raw_key`, `raw_value` and `headers` set; the relay sends those instead of `key` and `payload`),
    written in the same transaction as the message's record in `dead_letters` (by position: topic, partition and
    offset), so however a consumer dies, each bad message is lettered exactly once."""
    op.add_column("outbox", sa.Column("raw_key", sa.LargeBinary()))
    op.add_column("outbox", sa.Column("raw_value", sa.LargeBinary()))
    op.add_column("outbox", sa.Column("headers", JSONB()))
    op.create_table(
        "dead_letters",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Text()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lettered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "topic", "partition", "offset"),
    )
    op.create_index("dead_letters_lettered", "dead_letters", ["lettered_at"])


def dead_letters_downgrade(op: Any) -> None:
    op.drop_index("dead_letters_lettered", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.execute("DELETE FROM outbox WHERE headers IS NOT NULL")
    for column in ("headers", "raw_value", "raw_key"):
        op.drop_column("outbox", column)


def bundled_outbox_upgrade(op: Any) -> None:
    """Every service's outbox v5: a transaction writing many events (an ingest batch, a recalculation) writes them
    as bundles, one row per topic and up to BUNDLE_SIZE events, their keys and envelopes in `keys` and `payloads`
    (in order; the relay sends each as its own message and marks the row published once all of them are
    acknowledged). One row instead of one per event: fewer rows and index entries to write, read and mark. The
    arrays are stored uncompressed (compressing megabytes of JSON per transaction costs more than it saves)."""
    op.add_column("outbox", sa.Column("keys", sa.ARRAY(sa.Text())))
    op.add_column("outbox", sa.Column("payloads", sa.ARRAY(sa.Text())))
    op.execute("ALTER TABLE outbox ALTER COLUMN keys SET STORAGE EXTERNAL, "
               "ALTER COLUMN payloads SET STORAGE EXTERNAL")


def bundled_outbox_downgrade(op: Any) -> None:
    # A bundle cannot be one row of the older shape: unbundle the unpublished ones, drop the published ones.
    op.execute("INSERT INTO outbox (event_id, topic, key, payload, created_at) "
               "SELECT b.payload::json ->> 'id', o.topic, b.key, b.payload, o.created_at "
               "FROM outbox o, unnest(o.keys, o.payloads) AS b(key, payload) "
               "WHERE o.keys IS NOT NULL AND o.published_at IS NULL ORDER BY o.id")
    op.execute("DELETE FROM outbox WHERE keys IS NOT NULL")
    op.drop_column("outbox", "payloads")
    op.drop_column("outbox", "keys")


def shared_tables_upgrade(op: Any) -> None:
    """A new service's first migration: the shared outbox, inbox, dead letters and idempotency keys in the shape
    the first services' migrations reach step by step (0001 to 0007: lean, text, dead-lettering, bundled outbox)."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw_key", sa.LargeBinary(), nullable=True),
        sa.Column("raw_value", sa.LargeBinary(), nullable=True),
        sa.Column("headers", JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("keys", sa.ARRAY(sa.Text()), nullable=True),
        sa.Column("payloads", sa.ARRAY(sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("ALTER TABLE outbox ALTER COLUMN keys SET STORAGE EXTERNAL, "
               "ALTER COLUMN payloads SET STORAGE EXTERNAL")
    op.create_index("outbox_unpublished", "outbox", ["id"], unique=False,
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_index("inbox_processed", "inbox", ["processed_at"], unique=False)
    op.create_table(
        "dead_letters",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lettered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "topic", "partition", "offset"),
    )
    op.create_index("dead_letters_lettered", "dead_letters", ["lettered_at"])
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    op.create_index("idempotency_keys_created", "idempotency_keys", ["created_at"])


def shared_tables_downgrade(op: Any) -> None:
    for table in ("idempotency_keys", "dead_letters", "inbox", "outbox"):
        op.drop_table(table)
