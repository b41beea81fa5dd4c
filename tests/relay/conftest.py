"""A database of the relay tests' own: the shared outbox, inbox and dead-letter tables, and nothing else."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from partnerhub.db import add_shared_tables, make_engine
from partnerhub.embedded import create_databases, drop_databases
from tests.conftest import Infrastructure


@dataclass(frozen=True)
class Outbox:
    url: str
    dsn: str


@pytest.fixture(scope="module")
async def outbox(infrastructure: Infrastructure) -> AsyncIterator[Outbox]:
    """A database of the relay's own holding the shared outbox and inbox tables, and nothing else."""
    name = f"ph_relay_{secrets.token_hex(4)}"
    await create_databases(infrastructure.admin_dsn, [name])
    head, _, query = infrastructure.admin_dsn.partition("?")
    dsn = head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = make_engine(url)
    metadata = sa.MetaData()
    add_shared_tables(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    yield Outbox(url, dsn)
    await drop_databases(infrastructure.admin_dsn, [name])


