"""The raw limit of a single-resource GET: a bare FastAPI app whose one handler reads one partner row by key
with asyncpg and answers it as JSON (no auth, no middleware, no ORM). Run by bench/api.py as

    BENCH_BARE_DSN=postgresql://... .venv/bin/python -m uvicorn bench.bare:app --port PORT
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException

POOL: dict[str, asyncpg.Pool] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    POOL["db"] = await asyncpg.create_pool(os.environ["BENCH_BARE_DSN"], min_size=2, max_size=10)
    yield
    await POOL["db"].close()


app = FastAPI(lifespan=lifespan)


@app.get("/v1/partners/{partner_id}")
async def get_partner(partner_id: uuid.UUID) -> dict[str, Any]:
    row = await POOL["db"].fetchrow("SELECT * FROM partners WHERE id = $1", partner_id)
    if row is None:
        raise HTTPException(404)
    return dict(row)
