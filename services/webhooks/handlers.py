"""Event handlers: every public event of CONTRACT §2 is kept and queued for the subscriptions owed it."""

from __future__ import annotations

from collections.abc import Mapping

from partnerhub.consumer import Handler, Subscription
from partnerhub.db import Transaction
from partnerhub.events import CloudEvent
from services.webhooks import usecases
from services.webhooks.domain import EVENT_TYPES, PUBLIC_EVENTS


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
