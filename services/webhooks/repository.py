"""Webhooks SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.webhooks.domain import ANY_TYPE, DeliveryStatus, Due, SubscriptionStatus
from services.webhooks.models import deliveries, delivery_attempts, events, subscriptions

Row = sa.Row[Any]
# One advisory lock serialises claiming across replicas, so the per-subscription limit counts every replica's
# deliveries in flight; a claim is a few short statements.
CLAIM_LOCK = "webhooks.claim"
# Notified at the commit of anything that makes deliveries due now: idle workers wake at once instead of at their
# next poll.
DUE_CHANNEL = "webhooks_due"
# Events per INSERT (six parameters each: well under PostgreSQL's 32,767 per statement).
STORE_CHUNK = 1000


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- subscriptions -----------------------------------------------------------------------------------------

    async def add_subscription(self, values: dict[str, Any]) -> Row:
        query = subscriptions.insert().values(**values).returning(subscriptions)
        return (await self.session.execute(query)).one()

    async def get_subscription(self, subscription_id: uuid.UUID, *, lock: bool = False) -> Row | None:
        query = sa.select(subscriptions).where(subscriptions.c.id == subscription_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).one_or_none()

    async def list_subscriptions(self, *, partner_id: uuid.UUID | None, status: str | None,
                                 after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[Row]:
        query = sa.select(subscriptions).order_by(subscriptions.c.created_at, subscriptions.c.id).limit(limit)
        if partner_id is not None:
            query = query.where(subscriptions.c.partner_id == partner_id)
        if status is not None:
            query = query.where(subscriptions.c.status == status)
        if after is not None:
            query = query.where(sa.tuple_(subscriptions.c.created_at, subscriptions.c.id) > sa.tuple_(*after))
        return list((await self.session.execute(query)).all())

    async def update_subscription(self, subscription_id: uuid.UUID, values: dict[str, Any]) -> Row:
        query = (subscriptions.update().where(subscriptions.c.id == subscription_id)
                 .values(**values, version=subscriptions.c.version + 1).returning(subscriptions))
        return (await self.session.execute(query)).one()

    async def delete_subscription(self, subscription_id: uuid.UUID) -> None:
        # Its deliveries and their attempts go with it (ON DELETE CASCADE): nothing more is sent.
        await self.session.execute(subscriptions.delete().where(subscriptions.c.id == subscription_id))

    async def receiving(self, types: Sequence[str], partners: Sequence[uuid.UUID]) -> list[Row]:
        """The active subscriptions that may be owed one of these events (of one of the types, or `*`; of one of
        the partners, or of every partner): the candidates domain.receives decides among."""
        s = subscriptions.c
        query = sa.select(s.id, s.partner_id, s.event_types, s.status).where(
            s.status == SubscriptionStatus.ACTIVE.value,
            sa.or_(s.event_types.overlap(sa.cast(list(types), sa.ARRAY(sa.Text))),
                   s.event_types.any_() == ANY_TYPE),
            sa.or_(s.partner_id.is_(None), s.partner_id.in_(list(partners))),
        )
        return cast(list[Row], list((await self.session.execute(query)).all()))

    # --- events and the queue ----------------------------------------------------------------------------------

    async def store_events(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Keeps the events (an id kept already is left as it was); returns the ids stored now."""
        stored: set[str] = set()
        for start in range(0, len(rows), STORE_CHUNK):
            query = (insert(events).values(list(rows[start:start + STORE_CHUNK]))
                     .on_conflict_do_nothing(index_elements=["event_id"]).returning(events.c.event_id))
            stored |= {r.event_id for r in await self.session.execute(query)}
        return stored

    async def enqueue(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(deliveries.insert(), list(rows))
            await self.notify_due()

    async def notify_due(self) -> None:
        await self.session.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": DUE_CHANNEL})

    async def enqueue_replay(self, subscription: Row, since: datetime, now: datetime) -> int:
        """A new delivery, due now, of every kept event since `since` the subscription would receive: the rule
        of domain.receives, set-based here because a replay may reach back over a month of events."""
        e = events.c
        match = sa.or_(e.type == sa.any_(sa.cast(list(subscription.event_types), sa.ARRAY(sa.Text))),
                       sa.literal(ANY_TYPE in subscription.event_types))
        scope = (sa.true() if subscription.partner_id is None
                 else e.partners.any_() == subscription.partner_id)
        chosen = sa.select(
            sa.func.gen_random_uuid(), sa.literal(subscription.id, sa.UUID), e.event_id, e.type,
            sa.literal(DeliveryStatus.PENDING.value), sa.literal(now), sa.literal(now),
            sa.literal(now), sa.literal(now),
        ).where(e.occurred_at >= since, match, scope).order_by(e.occurred_at, e.event_id)
        query = deliveries.insert().from_select(
            ["id", "subscription_id", "event_id", "event_type", "status", "schedule_started_at", "next_attempt_at",
             "created_at", "updated_at"], chosen)
        result = await self.session.execute(query)
        await self.notify_due()
        return int(getattr(result, "rowcount", 0) or 0)

    # --- claiming ----------------------------------------------------------------------------------------------

    async def lock_claims(self) -> None:
        await self.session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                                   {"k": CLAIM_LOCK})

    async def in_flight(self, now: datetime) -> dict[uuid.UUID, int]:
        d = deliveries.c
        query = (sa.select(d.subscription_id, sa.func.count()).where(
            d.status == DeliveryStatus.PENDING.value, d.lease_until > now).group_by(d.subscription_id))
        return {r[0]: int(r[1]) for r in await self.session.execute(query)}

    async def due(self, now: datetime, per_subscription: int) -> list[Due]:
        """Up to `per_subscription` due, unleased deliveries of each active subscription, oldest first, locked
        (SKIP LOCKED: rows another transaction holds are passed over, not waited for)."""
        rows = await self.session.execute(sa.text(
            "SELECT d.id, d.subscription_id, d.next_attempt_at, s.failing_since IS NOT NULL AS failing "
            "FROM subscriptions s CROSS JOIN LATERAL ("
            "  SELECT id, subscription_id, next_attempt_at FROM deliveries"
            "  WHERE subscription_id = s.id AND status = 'pending' AND next_attempt_at <= :now"
            "    AND (lease_until IS NULL OR lease_until <= :now)"
            "  ORDER BY next_attempt_at, id LIMIT :per FOR UPDATE SKIP LOCKED) AS d "
            "WHERE s.status = 'active'"), {"now": now, "per": per_subscription})
        return [Due(r.id, r.subscription_id, r.next_attempt_at, r.failing) for r in rows]

    async def lease(self, delivery_ids: Sequence[uuid.UUID], until: datetime) -> list[Row]:
        """Leases the deliveries and returns what sending them takes: the event, the URL and the secrets."""
        if not delivery_ids:
            return []
        rows = await self.session.execute(sa.text(
            "UPDATE deliveries d SET lease_until = :until FROM subscriptions s, events e "
            "WHERE d.id = ANY(CAST(:ids AS uuid[])) AND s.id = d.subscription_id AND e.event_id = d.event_id "
            "RETURNING d.id, d.subscription_id, d.event_id, d.attempts, d.schedule_started_at, s.url, s.secret, "
            "s.previous_secret, s.previous_secret_until, e.payload"),
            {"ids": list(delivery_ids), "until": until})
        return list(rows)

    # --- outcomes ----------------------------------------------------------------------------------------------

    async def lock_deliveries(self, delivery_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Row]:
        """The deliveries still there (a deleted subscription takes its own along), locked, in id order."""
        query = (sa.select(deliveries.c.id, deliveries.c.attempts, deliveries.c.schedule_started_at)
                 .where(deliveries.c.id.in_(list(delivery_ids))).order_by(deliveries.c.id).with_for_update())
        return {r.id: cast(Row, r) for r in await self.session.execute(query)}

    async def add_attempts(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(delivery_attempts.insert(), list(rows))

    async def settle_deliveries(self, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        """Each delivery's new status, attempt count, next attempt and delivery time, its lease released."""
        if not rows:
            return
        await self.session.execute(sa.text(
            "UPDATE deliveries d SET status = u.status, attempts = u.attempts, next_attempt_at = u.next_attempt_at, "
            "delivered_at = coalesce(u.delivered_at, d.delivered_at), lease_until = NULL, updated_at = :now "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:attempts AS int[]), "
            "CAST(:next AS timestamptz[]), CAST(:delivered AS timestamptz[])) "
            "AS u(id, status, attempts, next_attempt_at, delivered_at) WHERE d.id = u.id"),
            {"ids": [r["id"] for r in rows], "statuses": [r["status"] for r in rows],
             "attempts": [r["attempts"] for r in rows], "next": [r["next_attempt_at"] for r in rows],
             "delivered": [r["delivered_at"] for r in rows], "now": now})

    async def mark_failing(self, changes: Sequence[tuple[uuid.UUID, bool, datetime | None]]) -> list[Row]:
        """Applies (subscription, reset, since) to `failing_since`; returns each one's status and failing_since."""
        if not changes:
            return []
        rows = await self.session.execute(sa.text(
            "UPDATE subscriptions s SET failing_since = CASE WHEN u.reset THEN u.since "
            "ELSE coalesce(s.failing_since, u.since) END "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:resets AS boolean[]), CAST(:sinces AS timestamptz[])) "
            "AS u(id, reset, since) WHERE s.id = u.id RETURNING s.id, s.status, s.failing_since"),
            {"ids": [c[0] for c in changes], "resets": [c[1] for c in changes], "sinces": [c[2] for c in changes]})
        return list(rows)

    async def update_delivery(self, delivery_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(**values))

    async def disable(self, subscription_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(subscriptions.update().where(
            subscriptions.c.id == subscription_id, subscriptions.c.status == SubscriptionStatus.ACTIVE.value)
            .values(status=SubscriptionStatus.DISABLED.value, disabled_at=at, updated_at=at,
                    version=subscriptions.c.version + 1))

    # --- the log -----------------------------------------------------------------------------------------------

    async def list_deliveries(self, subscription_id: uuid.UUID, *, status: str | None,
                              after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[Row]:
        d = deliveries.c
        query = sa.select(deliveries).where(d.subscription_id == subscription_id)
        if status is not None:
            query = query.where(d.status == status)
        if after is not None:
            query = query.where(sa.tuple_(d.created_at, d.id) > sa.tuple_(*after))
        query = query.order_by(d.created_at, d.id).limit(limit)
        return list((await self.session.execute(query)).all())

    async def get_delivery(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID,
                           *, lock: bool = False) -> Row | None:
        query = sa.select(deliveries).where(deliveries.c.id == delivery_id,
                                            deliveries.c.subscription_id == subscription_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).one_or_none()

    async def attempts_of(self, delivery_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Row]]:
        found: dict[uuid.UUID, list[Row]] = {i: [] for i in delivery_ids}
        if not delivery_ids:
            return found
        a = delivery_attempts.c
        query = sa.select(delivery_attempts).where(a.delivery_id.in_(list(delivery_ids))).order_by(a.id)
        for row in await self.session.execute(query):
            found[row.delivery_id].append(row)
        return found

    # --- retention ---------------------------------------------------------------------------------------------

    async def prune(self, before: datetime, limit: int) -> int:
        """Forgets up to `limit` events received before `before`, with their deliveries and attempts, and the
        deliveries created before then (replays of events kept longer)."""
        gone = await self.session.execute(sa.text(
            "DELETE FROM events WHERE event_id IN (SELECT event_id FROM events WHERE received_at < :before "
            "ORDER BY received_at LIMIT :limit)"), {"before": before, "limit": limit})
        old = await self.session.execute(sa.text(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE created_at < :before "
            "ORDER BY created_at LIMIT :limit)"), {"before": before, "limit": limit})
        return int(getattr(gone, "rowcount", 0) or 0) + int(getattr(old, "rowcount", 0) or 0)
