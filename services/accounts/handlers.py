"""Event handlers: registry partners, replicated to validate owners; a termination releases accounts and claims."""

from __future__ import annotations

from partnerhub.consumer import Handler
from partnerhub.db import Transaction
from partnerhub.events import CloudEvent
from services.accounts import usecases
from services.accounts.domain import PartnerStatus
from services.accounts.schemas import PartnerData, PartnerStatusChangedData


async def on_partner_changed(tx: Transaction, event: CloudEvent) -> None:
    """Every `partner.*` event carries the whole partner: keep its newest state."""
    partner = PartnerData.model_validate(event.data)
    await usecases.replicate_partner(tx, partner, event.id)


async def on_partner_status_changed(tx: Transaction, event: CloudEvent) -> None:
    change = PartnerStatusChangedData.model_validate(event.data)
    await usecases.replicate_partner(tx, change, event.id)
    if change.to is PartnerStatus.TERMINATED:
        await usecases.release_accounts_of_terminated_partner(tx, change.id, change.changed_at, event.source)
        await usecases.reject_registrations_of_terminated_partner(tx, change.id, event.source)


PARTNER_HANDLERS: dict[str, Handler] = {
    "partner.registered": on_partner_changed,
    "partner.status_changed": on_partner_status_changed,
    "partner.tier_changed": on_partner_changed,
    "partner.certification_granted": on_partner_changed,
    "partner.certification_revoked": on_partner_changed,
    "partner.certification_expired": on_partner_changed,
}
