"""Incentives event handlers: sales in, account and partner replicas, each a use case in the runner's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from partnerhub.consumer import Handler, Rejected, Subscription, validation_reason
from partnerhub.db import Transaction
from partnerhub.events import CloudEvent
from partnerhub.types import Code, UtcDatetime
from services.incentives import usecases
from services.incentives.schemas import SaleCancelled, SaleRecorded


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Account(Lenient):
    id: uuid.UUID
    classification: str = Field(pattern="^(strategic|key|commercial|smb)$")
    owner_partner_id: uuid.UUID | None = None


class AccountReclassified(Account):
    from_: str = Field(alias="from", pattern="^(strategic|key|commercial|smb)$")
    to: str = Field(pattern="^(strategic|key|commercial|smb)$")
    effective_from: UtcDatetime


class AccountOwnershipChanged(Account):
    from_: uuid.UUID | None = Field(alias="from")
    to: uuid.UUID | None
    effective_from: UtcDatetime


class Certification(Lenient):
    code: Code
    issued_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None


class Partner(Lenient):
    id: uuid.UUID
    tier: str = Field(pattern="^(registered|silver|gold|platinum)$")
    status: str = Field(pattern="^(pending|active|suspended|terminated)$")
    certifications: list[Certification] = []

    def held(self) -> list[tuple[str, datetime, datetime | None]]:
        return [(c.code, c.issued_at, c.expires_at) for c in self.certifications if c.issued_at is not None]


class PartnerStatusChanged(Partner):
    from_: str = Field(alias="from")
    to: str = Field(pattern="^(pending|active|suspended|terminated)$")
    changed_at: UtcDatetime


class PartnerTierChanged(Partner):
    from_: str | None = Field(default=None, alias="from")
    to: str = Field(pattern="^(registered|silver|gold|platinum)$")
    effective_from: UtcDatetime


class CertificationChange(Partner):
    certification: Certification
    revoked_at: UtcDatetime | None = None


async def on_sales(tx: Transaction, events: list[CloudEvent]) -> dict[str, str]:
    """A partition's batch of sale.recorded and sale.cancelled events, recorded and priced together; an event
    whose data is invalid, or a sale recorded again with other content, is refused alone."""
    refused: dict[str, str] = {}
    recorded: list[tuple[SaleRecorded, str]] = []
    cancelled: list[usecases.Cancellation] = []
    for event in events:
        try:
            if event.type == "sale.recorded":
                recorded.append((SaleRecorded.model_validate(event.data), event.id))
            else:
                cancel = SaleCancelled.model_validate(event.data)
                cancelled.append(usecases.Cancellation(cancel.sale_id, cancel.cancelled_at, event.id))
        except ValidationError as exc:
            refused[event.id] = validation_reason(exc)
    recording = await usecases.record_sales(tx, recorded, cancelled)
    return refused | recording.rejected


async def on_sale(tx: Transaction, event: CloudEvent) -> None:
    refused = await on_sales(tx, [event])
    if event.id in refused:
        raise Rejected(refused[event.id])


async def on_account_created(tx: Transaction, event: CloudEvent) -> None:
    account = Account.model_validate(event.data)
    await usecases.account_created(tx, event.id, account.id, account.classification, account.owner_partner_id)


async def on_account_reclassified(tx: Transaction, event: CloudEvent) -> None:
    change = AccountReclassified.model_validate(event.data)
    await usecases.account_changed(
        tx, event.type, event.id, change.id, change.effective_from,
        before=(change.from_, change.owner_partner_id), classification=change.to,
    )


async def on_account_ownership_changed(tx: Transaction, event: CloudEvent) -> None:
    change = AccountOwnershipChanged.model_validate(event.data)
    await usecases.account_changed(
        tx, event.type, event.id, change.id, change.effective_from,
        before=(change.classification, change.from_), owner=(change.to,),
    )


async def on_partner_registered(tx: Transaction, event: CloudEvent) -> None:
    partner = Partner.model_validate(event.data)
    await usecases.partner_changed(
        tx, event.type, event.id, partner.id, seed_tier=partner.tier, seed_status=partner.status,
        certifications=partner.held(), effective_from=None,
    )


async def on_partner_status_changed(tx: Transaction, event: CloudEvent) -> None:
    change = PartnerStatusChanged.model_validate(event.data)
    await usecases.partner_changed(
        tx, event.type, event.id, change.id, seed_tier=change.tier, seed_status=change.from_,
        certifications=change.held(), effective_from=change.changed_at, status=change.to,
    )


async def on_partner_tier_changed(tx: Transaction, event: CloudEvent) -> None:
    change = PartnerTierChanged.model_validate(event.data)
    await usecases.partner_changed(
        tx, event.type, event.id, change.id, seed_tier=change.from_ or change.tier, seed_status=change.status,
        certifications=change.held(), effective_from=change.effective_from, tier=change.to,
    )


async def on_certification_granted(tx: Transaction, event: CloudEvent) -> None:
    change = CertificationChange.model_validate(event.data)
    cert = change.certification
    if cert.issued_at is None:
        raise Rejected("a granted certification needs issued_at")
    await usecases.partner_changed(
        tx, event.type, event.id, change.id, seed_tier=change.tier, seed_status=change.status,
        certifications=[c for c in change.held() if c[0] != cert.code], effective_from=cert.issued_at,
        grant=(cert.code, cert.issued_at, cert.expires_at),
    )


async def on_certification_ended(tx: Transaction, event: CloudEvent) -> None:
    change = CertificationChange.model_validate(event.data)
    cert = change.certification
    ended_at = change.revoked_at or cert.expires_at or event.time
    if ended_at is None:
        raise Rejected("a revoked or expired certification needs revoked_at or expires_at")
    await usecases.partner_changed(
        tx, event.type, event.id, change.id, seed_tier=change.tier, seed_status=change.status,
        certifications=change.held(), effective_from=ended_at, close=(cert.code, ended_at),
    )


def subscriptions() -> list[Subscription]:
    sales: dict[str, Handler] = {"sale.recorded": on_sale, "sale.cancelled": on_sale}
    accounts: dict[str, Handler] = {
        "account.created": on_account_created,
        "account.reclassified": on_account_reclassified,
        "account.ownership_changed": on_account_ownership_changed,
    }
    partners: dict[str, Handler] = {
        "partner.registered": on_partner_registered,
        "partner.status_changed": on_partner_status_changed,
        "partner.tier_changed": on_partner_tier_changed,
        "partner.certification_granted": on_certification_granted,
        "partner.certification_revoked": on_certification_ended,
        "partner.certification_expired": on_certification_ended,
    }
    return [
        # A sale row is unique by its sale_id and a cancellation applies once: no inbox row per event needed.
        # Batches of different partitions (accounts) are priced in concurrent transactions.
        Subscription("sales.recorded", sales, batch=on_sales, inbox=False, parallel=True),
        Subscription("accounts.accounts", accounts),
        Subscription("registry.partners", partners),
    ]
