"""Accounts SQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from partnerhub.db import compiled, parameter
from services.accounts.models import account_classifications, account_owners, accounts, partners, registrations

# The replica's `source` of a partner state that came by event: "event <event id>".
EVENT_SOURCE = "event "


def classification_at(at: datetime | sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    """The classification in force at `at`, for the account of the enclosing query."""
    return (
        sa.select(account_classifications.c.classification)
        .where(
            account_classifications.c.account_id == accounts.c.id,
            account_classifications.c.effective_from <= at,
        )
        .order_by(account_classifications.c.effective_from.desc(), account_classifications.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def owner_at(at: datetime | sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    """The owner (a partner id, or null) in force at `at`, for the account of the enclosing query."""
    return (
        sa.select(account_owners.c.partner_id)
        .where(account_owners.c.account_id == accounts.c.id, account_owners.c.effective_from <= at)
        .order_by(account_owners.c.effective_from.desc(), account_owners.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _as_of(at: datetime | sa.ColumnElement[Any]) -> sa.Select[Any]:
    return sa.select(
        accounts,
        classification_at(at).label("classification"),
        owner_at(at).label("owner_partner_id"),
    )


# One account as it stands now, for a read outside a transaction (Database.read_one): one precompiled statement.
ONE_ACCOUNT = compiled(_as_of(sa.func.now()).where(accounts.c.id == parameter(1, "uuid")))


async def read_account(connection: asyncpg.Connection, account_id: uuid.UUID) -> dict[str, Any] | None:
    row = await connection.fetchrow(ONE_ACCOUNT, account_id)
    return dict(row) if row is not None else None


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: dict[str, Any]) -> None:
        await self.session.execute(accounts.insert().values(**row))

    async def add_classification(self, **entry: Any) -> None:
        await self.session.execute(account_classifications.insert().values(**entry))

    async def add_owners(self, entries: list[dict[str, Any]]) -> None:
        if entries:
            await self.session.execute(account_owners.insert(), entries)

    async def lock(self, account_id: uuid.UUID) -> sa.Row[Any] | None:
        query = sa.select(accounts).where(accounts.c.id == account_id).with_for_update()
        return (await self.session.execute(query)).one_or_none()

    async def touch(self, account_ids: list[uuid.UUID]) -> None:
        """Every change to an account's timelines is a new version of the account."""
        await self.session.execute(
            accounts.update()
            .where(accounts.c.id.in_(account_ids))
            .values(updated_at=sa.func.now(), version=accounts.c.version + 1)
        )

    async def get(self, account_id: uuid.UUID, at: datetime) -> dict[str, Any] | None:
        row = (await self.session.execute(_as_of(at).where(accounts.c.id == account_id))).one_or_none()
        return dict(row._mapping) if row else None

    async def get_many(self, account_ids: list[uuid.UUID], at: datetime) -> list[dict[str, Any]]:
        query = _as_of(at).where(accounts.c.id.in_(account_ids)).order_by(accounts.c.id)
        return [dict(r._mapping) for r in (await self.session.execute(query)).all()]

    async def page(
        self,
        *,
        owner_partner_id: uuid.UUID | None,
        classification: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        at: datetime,
    ) -> list[dict[str, Any]]:
        source = _as_of(at)
        if owner_partner_id is not None:
            # Only accounts that partner ever owned can be owned by it now; the index finds those.
            ever_owned = sa.select(account_owners.c.account_id).where(
                account_owners.c.partner_id == owner_partner_id
            )
            source = source.where(accounts.c.id.in_(ever_owned))
        current = source.subquery()
        query = sa.select(current)
        if owner_partner_id is not None:
            query = query.where(current.c.owner_partner_id == owner_partner_id)
        if classification:
            query = query.where(current.c.classification == classification)
        if after:
            query = query.where(sa.tuple_(current.c.created_at, current.c.id) > sa.tuple_(*after))
        query = query.order_by(current.c.created_at, current.c.id).limit(limit)
        return [dict(r._mapping) for r in (await self.session.execute(query)).all()]

    async def classification_timeline(self, account_id: uuid.UUID) -> list[sa.Row[Any]]:
        return list(
            (
                await self.session.execute(
                    sa.select(account_classifications)
                    .where(account_classifications.c.account_id == account_id)
                    .order_by(account_classifications.c.effective_from, account_classifications.c.id)
                )
            ).all()
        )

    async def owner_timeline(self, account_id: uuid.UUID) -> list[sa.Row[Any]]:
        return list(
            (
                await self.session.execute(
                    sa.select(account_owners)
                    .where(account_owners.c.account_id == account_id)
                    .order_by(account_owners.c.effective_from, account_owners.c.id)
                )
            ).all()
        )

    async def lock_accounts_ever_owned_by(self, partner_id: uuid.UUID) -> list[uuid.UUID]:
        """Locks every account the partner ever owned, in id order so concurrent writers cannot deadlock."""
        ever_owned = sa.select(account_owners.c.account_id).where(account_owners.c.partner_id == partner_id)
        rows = await self.session.execute(
            sa.select(accounts.c.id).where(accounts.c.id.in_(ever_owned)).order_by(accounts.c.id).with_for_update()
        )
        return list(rows.scalars().all())

    async def ownerships_from(self, partner_id: uuid.UUID, at: datetime) -> list[sa.Row[Any, Any]]:
        """Each (account_id, at) from which the partner owns an account at or after `at`.

        That is the moment `at` itself for an account the partner owns then, and the start of each later
        entry naming the partner that is still in force when it starts.
        """
        candidates = (
            sa.select(
                account_owners.c.account_id.label("account_id"),
                sa.func.greatest(account_owners.c.effective_from, at).label("at"),
            )
            .where(account_owners.c.partner_id == partner_id)
            .distinct()
            .subquery()
        )
        in_force = (
            sa.select(account_owners.c.partner_id)
            .where(
                account_owners.c.account_id == candidates.c.account_id,
                account_owners.c.effective_from <= candidates.c.at,
            )
            .order_by(account_owners.c.effective_from.desc(), account_owners.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = (
            sa.select(candidates.c.account_id, candidates.c.at)
            .where(in_force == partner_id)
            .order_by(candidates.c.account_id, candidates.c.at)
        )
        return list((await self.session.execute(query)).all())

    async def partner(self, partner_id: uuid.UUID, *, lock: bool = False) -> sa.Row[Any] | None:
        query = sa.select(partners).where(partners.c.id == partner_id)
        if lock:
            # Shared: owner assignments to one partner run side by side, but not beside its termination.
            query = query.with_for_update(read=True)
        return (await self.session.execute(query)).one_or_none()

    async def replicate_partner(
        self, partner_id: uuid.UUID, name: str, status: str, updated_at: datetime, source: str
    ) -> None:
        """Keeps the newest state seen, whether it came by event or by asking the registry.

        Events about one partner arrive in the order they happened (one key, one partition), so a later event
        always wins over an earlier one; against a state read through, the registry's updated_at decides.
        """
        statement = insert(partners).values(
            id=partner_id, name=name, status=status, updated_at=updated_at, source=source
        )
        both_events = sa.and_(
            partners.c.source.startswith(EVENT_SOURCE), statement.excluded.source.startswith(EVENT_SOURCE)
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[partners.c.id],
                set_={
                    "name": statement.excluded.name,
                    "status": statement.excluded.status,
                    "updated_at": statement.excluded.updated_at,
                    "source": statement.excluded.source,
                    "replicated_at": sa.func.now(),
                },
                where=sa.or_(both_events, statement.excluded.updated_at >= partners.c.updated_at),
            )
        )


PENDING = "pending"
LAPSED = sa.and_(registrations.c.status == PENDING, registrations.c.expires_at <= sa.func.now())
OPEN = sa.and_(registrations.c.status == PENDING, registrations.c.expires_at > sa.func.now())
# What a registration's status is now: a pending one past its expiry reads as expired before the sweep marks it.
STATUS_NOW = sa.case((LAPSED, "expired"), else_=registrations.c.status)


def _status_is(status: str) -> sa.ColumnElement[bool]:
    if status == PENDING:
        return OPEN
    if status == "expired":
        return sa.or_(registrations.c.status == "expired", LAPSED)
    return registrations.c.status == status


class RegistrationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_partner(self, partner_id: uuid.UUID) -> None:
        """Serialises one partner's preregistrations, so its count of pending ones stays within the limit."""
        await self.session.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"accounts:registrations:{partner_id}"},
        )

    async def add(self, row: dict[str, Any]) -> None:
        await self.session.execute(registrations.insert().values(**row))

    async def get(self, registration_id: uuid.UUID) -> dict[str, Any] | None:
        columns = [c for c in registrations.c if c.name != "status"]
        query = sa.select(*columns, STATUS_NOW.label("status")).where(registrations.c.id == registration_id)
        row = (await self.session.execute(query)).one_or_none()
        return dict(row._mapping) if row else None

    async def lock(self, registration_id: uuid.UUID) -> Any:
        query = (
            sa.select(registrations, sa.func.now().label("now"))
            .where(registrations.c.id == registration_id)
            .with_for_update()
        )
        return (await self.session.execute(query)).one_or_none()

    async def lapse_pending_of_account(self, account_id: uuid.UUID) -> None:
        """Marks the account's lapsed pending registration expired, so the one-pending index admits a new one."""
        await self.session.execute(
            registrations.update().where(registrations.c.account_id == account_id, LAPSED).values(status="expired")
        )

    async def pending_holder(self, account_id: uuid.UUID) -> uuid.UUID | None:
        query = sa.select(registrations.c.partner_id).where(registrations.c.account_id == account_id, OPEN)
        return (await self.session.execute(query)).scalar()

    async def pending_count(self, partner_id: uuid.UUID) -> int:
        query = sa.select(sa.func.count()).where(registrations.c.partner_id == partner_id, OPEN)
        return int((await self.session.execute(query)).scalar_one())

    async def decide(
        self, registration_id: uuid.UUID, status: str, decided_by: str, reason: str | None
    ) -> None:
        await self.session.execute(
            registrations.update()
            .where(registrations.c.id == registration_id)
            .values(
                status=status, decided_at=sa.func.now(), decided_by=decided_by, reason=reason,
                version=registrations.c.version + 1,
            )
        )

    async def reject_pending_of(self, partner_id: uuid.UUID, decided_by: str, reason: str) -> int:
        result = await self.session.execute(
            registrations.update()
            .where(registrations.c.partner_id == partner_id, OPEN)
            .values(
                status="rejected", decided_at=sa.func.now(), decided_by=decided_by, reason=reason,
                version=registrations.c.version + 1,
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def expire_lapsed(self) -> int:
        # The version stays: the registration already read as expired, so its representation does not change.
        result = await self.session.execute(registrations.update().where(LAPSED).values(status="expired"))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def page(
        self,
        *,
        partner_id: uuid.UUID | None,
        status: str | None,
        account_id: uuid.UUID | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        columns = [c for c in registrations.c if c.name != "status"]
        query = sa.select(*columns, STATUS_NOW.label("status"))
        if partner_id is not None:
            query = query.where(registrations.c.partner_id == partner_id)
        if account_id is not None:
            query = query.where(registrations.c.account_id == account_id)
        if status is not None:
            query = query.where(_status_is(status))
        if after:
            query = query.where(sa.tuple_(registrations.c.created_at, registrations.c.id) > sa.tuple_(*after))
        query = query.order_by(registrations.c.created_at, registrations.c.id).limit(limit)
        return [dict(r._mapping) for r in (await self.session.execute(query)).all()]
