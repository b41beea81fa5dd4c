"""HTTP conventions shared by the services: pagination, ETags, Idempotency-Key replay."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from partnerhub.config import get_settings
from partnerhub.db import Database, Transaction, rerun_lost_races
from partnerhub.problems import Problem

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


Limit = Annotated[int, Query(ge=1, le=500, description="page size (max 500)")]
Cursor = Annotated[str | None, Query(description="the next_cursor of the previous page")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def idempotency_ttl_seconds() -> float:
    return get_settings().idempotency_ttl_hours * 3600


async def prune_idempotency_keys(tx: Transaction) -> int:
    """Forgets Idempotency-Keys older than their lifetime (PARTNERHUB_IDEMPOTENCY_TTL_HOURS, 24 by default)."""
    result = await tx.session.execute(
        sa.text("DELETE FROM idempotency_keys WHERE created_at <= now() - make_interval(secs => :ttl)"),
        {"ttl": idempotency_ttl_seconds()},
    )
    return int(getattr(result, "rowcount", 0) or 0)


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(422, detail="the cursor is not one this service issued", errors=[
            {"loc": ["query", "cursor"], "msg": "invalid cursor"}
        ]) from exc
    if not isinstance(values, list):
        raise Problem(422, detail="the cursor is not one this service issued")
    return values


def time_and_id(after: list[Any] | None) -> tuple[datetime, uuid.UUID] | None:
    """A decoded (timestamp, id) cursor, the position of lists ordered newest or oldest first."""
    if not after:
        return None
    try:
        return datetime.fromisoformat(str(after[0])), uuid.UUID(str(after[1]))
    except (ValueError, IndexError) as exc:
        raise Problem(422, detail="the cursor is not one this service issued") from exc


def etag_of(version: int) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, current_version: int) -> None:
    """A stale If-Match means the client edits something that changed since it read it: 412."""
    if if_match is None:
        return
    candidates = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if "*" in candidates or etag_of(current_version) in candidates:
        return
    raise Problem(
        412, detail=f"the resource changed since it was read; its current ETag is {etag_of(current_version)}"
    )


class EncodedJSONResponse(JSONResponse):
    """A JSONResponse whose body was encoded ahead (bytes pass through as they are)."""

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else super().render(content)


def json_response(
    body: Any, status_code: int = 200, etag_version: int | None = None, derived_etag: bool = False
) -> JSONResponse:
    """A JSON answer; with an ETag from the resource's version, or for a derived resource (a statement) from a
    digest of its content."""
    headers = {"ETag": etag_of(etag_version)} if etag_version is not None else None
    if isinstance(body, BaseModel) and not derived_etag:
        # Encoded by pydantic's own serialiser in one pass (jsonable_encoder and json.dumps walk it in Python).
        return EncodedJSONResponse(body.model_dump_json(by_alias=True).encode(), status_code, headers)
    content = body.model_dump(mode="json", by_alias=True) if isinstance(body, BaseModel) else jsonable_encoder(body)
    if derived_etag:
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]
        headers = {"ETag": f'W/"{digest}"'}
    return JSONResponse(content, status_code=status_code, headers=headers)


async def idempotent(
    db: Database,
    request: Request,
    key: str | None,
    payload: BaseModel | dict[str, Any],
    operation: Callable[[Transaction], Awaitable[tuple[Any, int | None]]],
    status_code: int = 201,
) -> JSONResponse:
    """Runs a creating operation once per Idempotency-Key; a replay answers the first response.

    A transaction that lost a race to a concurrent one (LostRace: the same new key written there first) runs
    again, and answers as if it had come after it."""
    return await rerun_lost_races(lambda: _idempotent_once(db, request, key, payload, operation, status_code))


async def _idempotent_once(db: Database, request: Request, key: str | None, payload: BaseModel | dict[str, Any],
                           operation: Callable[[Transaction], Awaitable[tuple[Any, int | None]]],
                           status_code: int) -> JSONResponse:
    async with db.transaction() as tx:
        if key is None:
            body, version = await operation(tx)
            return json_response(body, status_code, version)
        scope = f"{request.method} {request.url.path}"
        document = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        digest = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
        # Serialise requests carrying the same key, so exactly one of them runs the operation.
        await tx.session.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"), {"lock": f"{scope}\n{key}"}
        )
        stored = (
            await tx.session.execute(
                sa.text(
                    "SELECT request_hash, status_code, response, "
                    "created_at <= now() - make_interval(secs => :ttl) AS expired FROM idempotency_keys "
                    "WHERE scope = :scope AND key = :key"
                ),
                {"scope": scope, "key": key, "ttl": idempotency_ttl_seconds()},
            )
        ).one_or_none()
        if stored is not None and stored.expired:
            # Past its lifetime the key is forgotten (the sweep deletes such rows in bulk): this request is new.
            await tx.session.execute(sa.text("DELETE FROM idempotency_keys WHERE scope = :scope AND key = :key"),
                                     {"scope": scope, "key": key})
            stored = None
        if stored is not None:
            if stored.request_hash != digest:
                raise Problem(409, detail="this Idempotency-Key was already used with a different request body")
            return JSONResponse(
                stored.response, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"}
            )
        body, version = await operation(tx)
        encoded = jsonable_encoder(body)
        await tx.session.execute(
            sa.text(
                "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response) "
                "VALUES (:scope, :key, :hash, :status, CAST(:response AS jsonb))"
            ),
            {"scope": scope, "key": key, "hash": digest, "status": status_code, "response": json.dumps(encoded)},
        )
    return json_response(encoded, status_code, version)
