"""Registry SQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.models import certifications, partner_history, partner_tiers, partners

CURRENT_TIER = (
    sa.select(partner_tiers.c.tier)
    .where(partner_tiers.c.partner_id == partners.c.id, partner_tiers.c.effective_from <= sa.func.now())
    .order_by(partner_tiers.c.effective_from.desc(), partner_tiers.c.id.desc())
    .limit(1)
    .scalar_subquery()
)


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

    async def tier_at(self, partner_id: uuid.UUID, at: datetime) -> str | None:
        return (
            await self.session.execute(
                sa.select(partner_tiers.c.tier)
                .where(partner_tiers.c.partner_id == partner_id, partner_tiers.c.effective_from <= at)
                .order_by(partner_tiers.c.effective_from.desc(), partner_tiers.c.id.desc())
                .limit(1)
            )
        ).scalar()

    async def lock(self, partner_id: uuid.UUID) -> sa.Row[Any] | None:
        return (
            await self.session.execute(sa.select(partners).where(partners.c.id == partner_id).with_for_update())
        ).one_or_none()

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
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        current = sa.select(partners, CURRENT_TIER.label("tier")).subquery()
        query = sa.select(current)
        if type_:
            query = query.where(current.c.types.any(type_))
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
            .where(certifications.c.partner_id.in_([r["id"] for r in rows]), certifications.c.revoked_at.is_(None))
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

    async def upsert_certification(
        self, partner_id: uuid.UUID, code: str, issued_at: datetime, expires_at: datetime | None
    ) -> None:
        from sqlalchemy.dialects.postgresql import insert

        statement = insert(certifications).values(
            partner_id=partner_id, code=code, issued_at=issued_at, expires_at=expires_at, revoked_at=None
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["partner_id", "code"],
                set_={"issued_at": issued_at, "expires_at": expires_at, "revoked_at": None},
            )
        )

    async def revoke_certification(self, partner_id: uuid.UUID, code: str, at: datetime) -> bool:
        result = await self.session.execute(
            certifications.update()
            .where(
                certifications.c.partner_id == partner_id,
                certifications.c.code == code,
                certifications.c.revoked_at.is_(None),
            )
            .values(revoked_at=at)
            .returning(certifications.c.code)
        )
        return result.scalar() is not None

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
