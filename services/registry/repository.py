"""Registry SQL."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from partnerhub.db import compiled, parameter
from services.registry.models import certifications, partner_history, partner_tiers, partners

CURRENT_TIER = (
    sa.select(partner_tiers.c.tier)
    .where(partner_tiers.c.partner_id == partners.c.id, partner_tiers.c.effective_from <= sa.func.now())
    .order_by(partner_tiers.c.effective_from.desc(), partner_tiers.c.id.desc())
    .limit(1)
    .scalar_subquery()
)

# Held now: neither revoked nor past its expiry (one issued for a later date is shown, with its issued_at).
HELD = sa.and_(
    certifications.c.revoked_at.is_(None),
    sa.or_(certifications.c.expires_at.is_(None), certifications.c.expires_at > sa.func.now()),
)
EXPIRY_DUE = sa.and_(
    certifications.c.revoked_at.is_(None),
    certifications.c.expiry_announced_at.is_(None),
    certifications.c.expires_at.is_not(None),
    certifications.c.expires_at <= sa.func.now(),
)
# One partner with its current tier and held certifications, in one statement (see Database.read).
HELD_CERTIFICATIONS = (
    sa.select(sa.func.coalesce(
        sa.func.json_agg(aggregate_order_by(
            sa.func.json_build_object("code", certifications.c.code, "issued_at", certifications.c.issued_at,
                                      "expires_at", certifications.c.expires_at),
            certifications.c.code)),
        sa.text("'[]'::json")))
    .where(certifications.c.partner_id == partners.c.id, HELD)
    .scalar_subquery()
)
ONE_PARTNER = compiled(
    sa.select(partners, CURRENT_TIER.label("tier"), HELD_CERTIFICATIONS.label("certifications"))
    .where(partners.c.id == parameter(1, "uuid"))
)
# A parent chain longer than this is not followed further (a guard, not a business rule).
MAX_CHAIN = 1000


async def read_partner(connection: asyncpg.Connection, partner_id: uuid.UUID) -> dict[str, Any] | None:
    row = await connection.fetchrow(ONE_PARTNER, partner_id)
    if row is None:
        return None
    partner = dict(row)
    held = partner["certifications"]  # json arrives as text on a plain asyncpg connection
    partner["certifications"] = json.loads(held) if isinstance(held, str) else held
    return partner


class PartnerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: dict[str, Any], tier: str, since: datetime) -> None:
        await self.session.execute(partners.insert().values(**row))
        await self.add_tier(row["id"], tier, since)

    async def add_tier(self, partner_id: uuid.UUID, tier: str, effective_from: datetime) -> None:
        await self.session.execute(
            partner_tiers.insert().values(partner_id=partner_id, tier=tier, effective_from=effective_from)
        )

    async def tier_at(self, partner_id: uuid.UUID, at: datetime) -> Any:
        """The tier entry in force at `at` (the latest effective at or before it; later-recorded wins a tie)."""
        return (
            await self.session.execute(
                sa.select(partner_tiers.c.tier, partner_tiers.c.effective_from)
                .where(partner_tiers.c.partner_id == partner_id, partner_tiers.c.effective_from <= at)
                .order_by(partner_tiers.c.effective_from.desc(), partner_tiers.c.id.desc())
                .limit(1)
            )
        ).one_or_none()

    async def tier_timeline(self, partner_id: uuid.UUID) -> list[sa.Row[Any]]:
        return list(
            (
                await self.session.execute(
                    sa.select(partner_tiers)
                    .where(partner_tiers.c.partner_id == partner_id)
                    .order_by(partner_tiers.c.effective_from, partner_tiers.c.id)
                )
            ).all()
        )

    async def lock(self, partner_id: uuid.UUID, *, shared: bool = False) -> sa.Row[Any] | None:
        query = sa.select(partners).where(partners.c.id == partner_id).with_for_update(read=shared)
        return (await self.session.execute(query)).one_or_none()

    async def lock_hierarchy(self) -> None:
        """Serialises parent changes, so two of them cannot together close a cycle each alone would not."""
        await self.session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended('registry:hierarchy', 0))"))

    async def ancestors(self, partner_id: uuid.UUID) -> list[uuid.UUID]:
        """The partner's parent, its parent's parent, and so on up the chain (the partner itself excluded)."""
        chain = (
            sa.select(partners.c.parent_partner_id.label("id"), sa.literal(1).label("depth"))
            .where(partners.c.id == partner_id, partners.c.parent_partner_id.is_not(None))
            .cte("chain", recursive=True)
        )
        step = (
            sa.select(partners.c.parent_partner_id, (chain.c.depth + 1).label("depth"))
            .join(chain, partners.c.id == chain.c.id)
            .where(partners.c.parent_partner_id.is_not(None), chain.c.depth < MAX_CHAIN)
        )
        chain = chain.union(step)
        rows = await self.session.execute(sa.select(chain.c.id).order_by(chain.c.depth))
        return list(rows.scalars().all())

    async def update(self, partner_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            partners.update()
            .where(partners.c.id == partner_id)
            .values(**values, updated_at=sa.func.now(), version=partners.c.version + 1)
        )

    async def get(self, partner_id: uuid.UUID) -> dict[str, Any] | None:
        rows = await self._select(sa.select(partners, CURRENT_TIER.label("tier")).where(partners.c.id == partner_id))
        return rows[0] if rows else None

    async def search(
        self,
        *,
        type_: str | None,
        tier: str | None,
        status: str | None,
        country: str | None,
        parent_partner_id: uuid.UUID | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        source = sa.select(partners, CURRENT_TIER.label("tier"))
        if parent_partner_id is not None:
            source = source.where(partners.c.parent_partner_id == parent_partner_id)
        current = source.subquery()
        query = sa.select(current)
        if type_:
            query = query.where(current.c.types.contains([type_]))
        if tier:
            query = query.where(current.c.tier == tier)
        if status:
            query = query.where(current.c.status == status)
        if country:
            query = query.where(current.c.country == country)
        if after:
            query = query.where(sa.tuple_(current.c.created_at, current.c.id) > sa.tuple_(*after))
        return await self._select(query.order_by(current.c.created_at, current.c.id).limit(limit))

    async def _select(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        rows = [dict(r._mapping) for r in (await self.session.execute(query)).all()]
        if not rows:
            return rows
        certs = await self.session.execute(
            sa.select(certifications)
            .where(certifications.c.partner_id.in_([r["id"] for r in rows]), HELD)
            .order_by(certifications.c.code)
        )
        by_partner: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for cert in certs.all():
            by_partner.setdefault(cert.partner_id, []).append(
                {"code": cert.code, "issued_at": cert.issued_at, "expires_at": cert.expires_at}
            )
        for row in rows:
            row["certifications"] = by_partner.get(row["id"], [])
        return rows

    async def certification(self, partner_id: uuid.UUID, code: str) -> sa.Row[Any] | None:
        query = sa.select(certifications).where(
            certifications.c.partner_id == partner_id, certifications.c.code == code
        )
        return (await self.session.execute(query)).one_or_none()

    async def certifications_of(self, partner_id: uuid.UUID) -> list[sa.Row[Any]]:
        query = (
            sa.select(certifications, sa.func.now().label("now"))
            .where(certifications.c.partner_id == partner_id)
            .order_by(certifications.c.code)
        )
        return list((await self.session.execute(query)).all())

    async def upsert_certification(
        self, partner_id: uuid.UUID, code: str, issued_at: datetime, expires_at: datetime | None
    ) -> None:
        """A re-grant of a code replaces its window and makes it held (and its expiry announceable) again."""
        values = {"issued_at": issued_at, "expires_at": expires_at, "revoked_at": None, "expiry_announced_at": None}
        statement = insert(certifications).values(partner_id=partner_id, code=code, **values)
        await self.session.execute(
            statement.on_conflict_do_update(index_elements=["partner_id", "code"], set_=values)
        )

    async def revoke_certification(self, partner_id: uuid.UUID, code: str, at: datetime) -> None:
        await self.session.execute(
            certifications.update()
            .where(certifications.c.partner_id == partner_id, certifications.c.code == code)
            .values(revoked_at=at)
        )

    async def expiries_due(self, limit: int) -> list[Any]:
        """(partner_id, code) of certifications past their expiry whose expiry is not published yet."""
        query = (
            sa.select(certifications.c.partner_id, certifications.c.code)
            .where(EXPIRY_DUE)
            .order_by(certifications.c.partner_id, certifications.c.code)
            .limit(limit)
        )
        return list((await self.session.execute(query)).all())

    async def announce_expiries(self, partner_id: uuid.UUID, codes: list[str]) -> list[Any]:
        """Marks them announced; returns those still due (a re-grant or revocation in between takes them out)."""
        result = await self.session.execute(
            certifications.update()
            .where(certifications.c.partner_id == partner_id, certifications.c.code.in_(codes), EXPIRY_DUE)
            .values(expiry_announced_at=sa.func.now())
            .returning(certifications.c.code, certifications.c.issued_at, certifications.c.expires_at)
        )
        return sorted(result.all(), key=lambda r: r.code)

    async def record(
        self, partner_id: uuid.UUID, change: str, detail: dict[str, Any], actor: str, event_id: str | None
    ) -> None:
        await self.session.execute(
            partner_history.insert().values(
                partner_id=partner_id, change=change, detail=detail, actor=actor, event_id=event_id
            )
        )

    async def history(self, partner_id: uuid.UUID) -> list[sa.Row[Any]]:
        return list(
            (
                await self.session.execute(
                    sa.select(partner_history)
                    .where(partner_history.c.partner_id == partner_id)
                    .order_by(partner_history.c.id)
                )
            ).all()
        )
