"""Funds event handlers: accruals move earned balances; the registry's partners say who may request."""

from __future__ import annotations

from partnerhub.consumer import BatchHandler, Handler, Rejected, Subscription
from partnerhub.db import Transaction
from partnerhub.events import CloudEvent
from services.funds import usecases
from services.funds.domain import SaleAccrual, SaleMismatch
from services.funds.schemas import AccrualData, PartnerData, PartnerStatusChangedData


def _accrual(event: CloudEvent) -> SaleAccrual:
    """accrual.recorded and accrual.adjusted both carry the sale's whole current state."""
    data = AccrualData.model_validate(event.data)
    return usecases.sale_accrual(data, event.id, event.type, event.time)


async def on_accruals(tx: Transaction, events: list[CloudEvent]) -> None:
    """A run of accrual events in a few set-based statements; any bad one fails the run, which the runner
    then retries one event at a time, so only the bad one is dead-lettered."""
    accruals = [_accrual(event) for event in events]
    try:
        await usecases.record_accruals(tx, accruals)
    except SaleMismatch as exc:
        raise Rejected(str(exc)) from exc


async def on_accrual(tx: Transaction, event: CloudEvent) -> None:
    await on_accruals(tx, [event])


async def on_partner_changed(tx: Transaction, event: CloudEvent) -> None:
    partner = PartnerData.model_validate(event.data)
    await usecases.replicate_partner(tx, partner.id, partner.status, event.id, None)


async def on_partner_status_changed(tx: Transaction, event: CloudEvent) -> None:
    change = PartnerStatusChangedData.model_validate(event.data)
    await usecases.replicate_partner(tx, change.id, change.to, event.id, change.changed_at)


def subscriptions() -> list[Subscription]:
    # recalculation.completed also flows on incentives.accruals; its sales arrive as accrual.adjusted.
    accruals: dict[str, Handler] = {"accrual.recorded": on_accrual, "accrual.adjusted": on_accrual}
    accrual_runs: dict[str, BatchHandler] = {"accrual.recorded": on_accruals, "accrual.adjusted": on_accruals}
    partners: dict[str, Handler] = {
        "partner.registered": on_partner_changed,
        "partner.status_changed": on_partner_status_changed,
        "partner.tier_changed": on_partner_changed,
        "partner.certification_granted": on_partner_changed,
        "partner.certification_revoked": on_partner_changed,
        "partner.certification_expired": on_partner_changed,
    }
    return [
        # A partner's accruals come on its partition and everything a run writes is the partner's (its sales,
        # credits, balances upserted in key order, ledger entries): batches of different partitions are applied
        # in concurrent transactions.
        Subscription("incentives.accruals", accruals, batch_handlers=accrual_runs, parallel=True),
        Subscription("registry.partners", partners),
    ]
