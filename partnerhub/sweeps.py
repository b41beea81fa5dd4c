"""Periodic sweeps (expiries, deadlines) that run once per tick however many replicas are up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import sqlalchemy as sa

from partnerhub.db import Database, Transaction

log = logging.getLogger(__name__)

Sweep = Callable[[Transaction], Awaitable[int]]


async def run_sweep_once(db: Database, name: str, sweep: Sweep) -> int | None:
    """Runs the sweep in one transaction if no other replica is running it now; None when skipped.

    The sweep must be conditional on state (e.g. "expire what is past its time and not expired yet"), so a
    second replica running it a moment later finds nothing left to do.
    """
    async with db.transaction() as tx:
        got = await tx.session.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": f"sweep:{name}"}
        )
        if not got.scalar():
            return None
        return await sweep(tx)


def periodic(db: Database, name: str, every_seconds: float, sweep: Sweep) -> Coroutine[Any, Any, None]:
    """A background job for ServiceSpec.background: runs the sweep every `every_seconds`."""

    async def loop() -> None:
        while True:
            try:
                done = await run_sweep_once(db, name, sweep)
                if done:
                    log.info("sweep done", extra={"fields": {"sweep": name, "changed": done}})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; retrying next tick", extra={"fields": {"sweep": name}})
            await asyncio.sleep(every_seconds)

    return loop()
