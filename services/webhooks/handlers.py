"""Event handlers: every public event of CONTRACT §2 is kept and queued for the subscriptions owed it."""

from __future__ import annotations

from collections.abc import Mapping

from partnerhub.consumer import Handler, Subscription
from partnerhub.db import Transaction
from partnerhub.events import CloudEvent
from services.webhooks import usecases

# The public topics and the event types each carries (CONTRACT §2); `sales.recorded` is inbound, not public.
PUBLIC_EVENTS: dict[str, tuple[str, ...]] = {
    "registry.partners": (
        "partner.registered", "partner.status_changed", "partner.tier_changed", "partner.certification_granted",
        "partner.certification_revoked", "partner.certification_expired",
    ),
    "accounts.accounts": ("account.created", "account.reclassified", "account.ownership_changed"),
    "incentives.accruals": ("accrual.recorded", "accrual.adjusted", "recalculation.completed"),
    "incentives.statements": ("statement.closed", "statement.confirmed", "dispute.opened", "dispute.resolved"),
    "funds.funds": ("fund.request_decided", "fund.claim_paid"),
}
EVENT_TYPES = frozenset(t for types in PUBLIC_EVENTS.values() for t in types)


async def on_event(tx: Transaction, event: CloudEvent) -> None:
    await usecases.take_in(tx, [event])


async def on_events(tx: Transaction, events: list[CloudEvent]) -> Mapping[str, str]:
    """Everything one fetch brought, kept and queued together (a recalculation brings thousands); none refused."""
    await usecases.take_in(tx, events)
    return {}


def subscriptions() -> list[Subscription]:
    handlers: dict[str, Handler] = {t: on_event for t in EVENT_TYPES}
    return [Subscription(topic, {t: handlers[t] for t in types}, batch=on_events)
            for topic, types in PUBLIC_EVENTS.items()]
