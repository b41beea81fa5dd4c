"""Each service's Alembic head creates exactly the schema its models describe (no drift)."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from partnerhub import SERVICES
from tests.conftest import Infrastructure


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_the_models(infrastructure: Infrastructure, service: str) -> None:
    metadata = importlib.import_module(f"services.{service}.models").metadata
    engine = create_async_engine(infrastructure.database_urls[service])
    try:
        async with engine.connect() as connection:
            drift = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    assert drift == [], f"{service}: models and migrations differ: {drift}"
