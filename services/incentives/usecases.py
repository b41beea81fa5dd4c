"""Incentives use cases: recording sales, replicating upstream state, and repricing what a change touches."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from partnerhub.db import Transaction
from partnerhub.events import OutgoingEvent
from partnerhub.http import check_if_match
from partnerhub.metrics import RECALCULATION_SECONDS
from partnerhub.money import format_money
from partnerhub.problems import Problem, conflict, not_found, unprocessable
from partnerhub.timeutil import BEGINNING, isoformat, period_of, utcnow
from services.incentives import models as m
from services.incentives.domain import (
    Pricing,
    Program,
    ProgramKind,
    Rule,
    bip_bonus,
    bip_rates,
    find_tie,
    price_sale,
)
from services.incentives.repository import LOCK_PROGRAMS, IncentivesRepository, SaleScope
from services.incentives.schemas import ProductIn, ProgramIn, SaleIn

TOPIC = "incentives.accruals"
RECEIVED = "received"
PRICING_BATCH = 1000


class SaleConflict(Exception):
    """The same sale_id arrived with other content."""


def next_period(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def sale_fingerprint(sale: SaleIn) -> str:
    canonical = json.dumps(sale.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def accrual_event(pricing: Pricing, type_: str, cause: str | None) -> OutgoingEvent:
    facts = pricing.facts
    data: dict[str, Any] = {
        "sale_id": facts.sale_id,
        "partner_id": str(facts.partner_id),
        "account_id": str(facts.account_id),
        "sku": facts.sku,
        "booked_at": isoformat(facts.booked_at),
        "currency": facts.currency,
        "amount": format_money(facts.amount),
        "status": pricing.status.value,
        "eligible": pricing.eligible,
        "items": [
            {"program_code": item.program_code, "amount": format_money(item.amount), "status": item.status}
            for item in pricing.items
        ],
    }
    if cause is not None:
        data["cause"] = cause
    return OutgoingEvent(topic=TOPIC, type=type_, key=str(facts.partner_id), subject=facts.sale_id, data=data)


@dataclass(frozen=True)
class Trigger:
    """What caused a recalculation run, and whom it ran for."""

    type: str
    event_id: str
    account_id: uuid.UUID | None = None
    partner_id: uuid.UUID | None = None
    sku: str | None = None
    program_code: str | None = None
    effective_from: datetime | None = None

    @property
    def key(self) -> str:
        return str(self.account_id or self.partner_id or self.sku or self.program_code)


@dataclass(frozen=True)
class RepriceResult:
    sales_recomputed: int
    sales_changed: int
    delta: list[dict[str, Any]]
    run_id: uuid.UUID | None


async def reprice(
    tx: Transaction, scope: SaleScope, cause: str | None, trigger: Trigger | None = None
) -> RepriceResult:
    """Prices every sale in scope from the state as of its booked_at; each difference becomes a ledger entry.

    The cause is the event behind the change; None when pricing received sales, whose cause is each one's own
    sale.recorded event.
    """
    repo = IncentivesRepository(tx.session)
    started = time.perf_counter()
    run_id = uuid.uuid4() if trigger else None
    if trigger is not None:
        await repo.start_run({
            "id": run_id, "trigger_type": trigger.type, "trigger_event_id": trigger.event_id,
            "account_id": trigger.account_id, "partner_id": trigger.partner_id, "sku": trigger.sku,
            "program_code": trigger.program_code, "effective_from": trigger.effective_from,
            "status": "running", "started_at": utcnow(),
        })
    programs = await repo.programs()
    facts = await repo.lock_and_load_facts(scope)
    pricings = [price_sale(f, programs) for f in facts]
    closed = await repo.closed_through()
    first_open = next_period(closed) if closed else None
    changed, first_time, delta = await repo.write_pricings(pricings, cause, run_id, closed, first_open)
    recorded_causes = await repo.recorded_causes(list(changed - first_time)) if cause is None else {}
    if pricings and any(p.kind is ProgramKind.BIP for p in programs):
        bip_delta = await settle_bip(repo, pricings, programs, cause, run_id, closed, first_open)
        delta = _merge(delta, bip_delta)
    for pricing in pricings:
        sale_id = pricing.facts.sale_id
        if sale_id in first_time:
            tx.emit(accrual_event(pricing, "accrual.recorded", None))
        elif sale_id in changed:
            tx.emit(accrual_event(pricing, "accrual.adjusted", cause or recorded_causes.get(sale_id)))
    delta_json = [{"currency": d["currency"], "amount": format_money(d["amount"])} for d in delta]
    if trigger is not None and run_id is not None:
        finished = utcnow()
        await repo.finish_run(
            run_id, status="completed", sales_recomputed=len(pricings), sales_changed=len(changed),
            delta=delta_json, finished_at=finished,
        )
        tx.emit(OutgoingEvent(
            topic=TOPIC, type="recalculation.completed", key=trigger.key, subject=str(run_id),
            data={
                "run_id": str(run_id), "trigger_type": trigger.type, "trigger_event_id": trigger.event_id,
                "account_id": str(trigger.account_id) if trigger.account_id else None,
                "partner_id": str(trigger.partner_id) if trigger.partner_id else None,
                "sku": trigger.sku, "program_code": trigger.program_code,
                "effective_from": isoformat(trigger.effective_from) if trigger.effective_from else None,
                "sales_recomputed": len(pricings), "sales_changed": len(changed), "delta": delta_json,
                "status": "completed", "finished_at": isoformat(finished),
            },
        ))
        RECALCULATION_SECONDS.labels("incentives", trigger.type).observe(time.perf_counter() - started)
    return RepriceResult(len(pricings), len(changed), delta_json, run_id)


def _merge(*deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, Decimal] = {}
    for delta in deltas:
        for entry in delta:
            totals[entry["currency"]] = totals.get(entry["currency"], Decimal("0.00")) + entry["amount"]
    return [{"currency": c, "amount": a} for c, a in sorted(totals.items()) if a]


async def settle_bip(
    repo: IncentivesRepository, pricings: list[Pricing], programs: list[Program], cause: str | None,
    run_id: uuid.UUID | None, closed: str | None, first_open: str | None,
) -> list[dict[str, Any]]:
    """Recomputes each BIP outcome the priced sales touch; a moved bonus becomes one ledger entry."""
    await repo.replace_bip_contributions([
        (p.facts.sale_id, code, p.facts.partner_id, period_of(p.facts.booked_at), p.facts.currency,
         p.facts.amount, rate)
        for p in pricings
        for code, rate in bip_rates(p, programs)
    ])
    groups = {(p.facts.partner_id, period_of(p.facts.booked_at), p.facts.currency) for p in pricings}
    group_causes: dict[tuple[uuid.UUID, str, str], str] = {}
    if cause is None:
        # Priced as received: a moved bonus is caused by the last sale of its month in this batch.
        recorded = await repo.recorded_causes([p.facts.sale_id for p in pricings])
        for p in sorted(pricings, key=lambda p: p.facts.sale_id):
            group_causes[(p.facts.partner_id, period_of(p.facts.booked_at), p.facts.currency)] = recorded[
                p.facts.sale_id]
    figures, booked = await repo.bip_figures(groups)
    now = {(r.partner_id, r.program_code, r.period, r.currency): (r.revenue, r.weighted) for r in figures}
    before = {(r.partner_id, r.program_code, r.period, r.currency): r.bonus for r in booked}
    targets = {p.code: p.target for p in programs if p.target is not None}
    outcomes, entries = [], []
    revisions = await repo.bip_revisions(sorted(now.keys() | before.keys(), key=str))
    for key in sorted(now.keys() | before.keys(), key=str):
        partner_id, code, month, currency = key
        revenue, weighted = now.get(key, (Decimal("0.00"), Decimal("0")))
        bonus = bip_bonus(revenue, weighted, targets[code])
        outcomes.append({"partner_id": partner_id, "program_code": code, "period": month, "currency": currency,
                         "revenue": revenue, "target": targets[code], "bonus": bonus,
                         "reached": revenue >= targets[code]})
        if bonus != before.get(key, Decimal("0.00")):
            entries.append({
                "partner_id": partner_id, "account_id": None, "sale_id": None, "program_code": code,
                "amount": bonus - before.get(key, Decimal("0.00")), "currency": currency,
                "kind": "adjustment" if key in before else "original", "revision": revisions.get(key, 0) + 1,
                "cause": cause or group_causes[(partner_id, month, currency)],
                "period": month if closed is None or month > closed else first_open, "sale_period": month,
                "run_id": run_id,
            })
    await repo.save_bip(outcomes, entries)
    return _merge([{"currency": e["currency"], "amount": e["amount"]} for e in entries])


# --- statements and periods ---------------------------------------------------------------------
async def close_period(tx: Transaction, period: str) -> dict[str, Any]:
    """Closes the period and every earlier open one, freezing their statements forever."""
    repo = IncentivesRepository(tx.session)
    await repo.lock(LOCK_PROGRAMS)  # exclusive: no sale is priced while the open/closed line moves
    closed = await repo.closed_through()
    if closed is not None and period <= closed:
        return {"period": period, "status": "closed", "closed_through": closed, "newly_closed": []}
    if period > period_of(utcnow()):
        raise unprocessable(f"{period} has not begun yet; a period can be closed once it has begun", ["path"])
    earliest = await repo.earliest_period()
    month = next_period(closed) if closed else min(earliest or period, period)
    newly_closed = []
    while month <= period:
        rows = await repo.live_statements(month, None)
        await repo.freeze_statements([{**row._mapping, "period": month} for row in rows])
        newly_closed.append(month)
        month = next_period(month)
    await repo.set_closed_through(period)
    return {"period": period, "status": "closed", "closed_through": period, "newly_closed": newly_closed}


async def statement(tx: Transaction, partner_id: uuid.UUID, period: str) -> dict[str, Any]:
    repo = IncentivesRepository(tx.session)
    closed = await repo.closed_through()
    if closed is not None and period <= closed:
        rows = await repo.frozen_statement(partner_id, period)
        status = "closed"
    else:
        rows = await repo.live_statements(period, partner_id)
        status = "open"
    return {"partner_id": partner_id, "period": period, "status": status,
            "totals": [dict(row._mapping) for row in rows]}


def bip_explanation(row: Any) -> str:
    if row.reached:
        return (f"{row.program_code}: {row.period} eligible revenue {format_money(row.revenue)} {row.currency} "
                f"reached the target {format_money(row.target)}, so the bonus of {format_money(row.bonus)} "
                "pays from the first dollar.")
    return (f"{row.program_code}: {row.period} eligible revenue {format_money(row.revenue)} {row.currency} is "
            f"{format_money(row.target - row.revenue)} short of the target {format_money(row.target)}; "
            "nothing is paid until it is reached, then all of it counts.")


# --- sales ------------------------------------------------------------------------------------
async def receive_sale(tx: Transaction, sale: SaleIn, event_id: str) -> str:
    return (await receive_sales(tx, [(sale, event_id)]))[0]


async def receive_sales(tx: Transaction, sales: Sequence[tuple[SaleIn, str]]) -> list[str]:
    """Records sales for pricing, set-based; a sale seen before changes nothing, other content is a conflict.

    Pricing happens in batches (price_received_sales), so taking in a sale costs a share of a few statements.
    Returns "received" or "duplicate" per sale.
    """
    repo = IncentivesRepository(tx.session)
    rows: list[dict[str, Any]] = [{
        "sale_id": sale.sale_id, "partner_id": sale.partner_id, "account_id": sale.account_id, "sku": sale.sku,
        "amount": sale.amount, "currency": sale.currency, "booked_at": sale.booked_at,
        "sale_period": period_of(sale.booked_at), "fingerprint": sale_fingerprint(sale), "status": RECEIVED,
        "recorded_event_id": event_id,
    } for sale, event_id in sales]
    inserted = await repo.add_sales(rows)
    known = await repo.fingerprints([r["sale_id"] for r in rows])
    outcomes = []
    for row in rows:
        first_event, fingerprint = known[row["sale_id"]]
        if fingerprint != row["fingerprint"]:
            raise SaleConflict(
                f"sale {row['sale_id']} was already recorded with other content (first by event {first_event}); "
                "a sale is identified by its sale_id"
            )
        fresh = row["sale_id"] in inserted and first_event == row["recorded_event_id"]
        outcomes.append("received" if fresh else "duplicate")
    for waiting in await repo.take_pending_cancellations(list(inserted)):
        await repo.cancel_sale(waiting.sale_id, waiting.cancelled_at, waiting.event_id)
    if inserted:
        await repo.wake_pricer()
    return outcomes


async def price_received_sales(tx: Transaction, limit: int = PRICING_BATCH) -> int:
    """Prices up to `limit` received sales in one set-based pass; 0 when none wait or another replica prices."""
    repo = IncentivesRepository(tx.session)
    if not await repo.try_lock("incentives:pricer"):
        return 0
    waiting = await repo.received_sales(limit)
    if not waiting:
        return 0
    # Advisory locks before any row lock, in the one order every writer uses: programs, accounts, partners, skus.
    await repo.lock(LOCK_PROGRAMS, shared=True)
    await repo.lock(*sorted({f"account:{row.account_id}" for row in waiting}))
    await repo.lock(*sorted({f"partner:{row.partner_id}" for row in waiting}))
    await repo.lock(*sorted({f"sku:{row.sku}" for row in waiting}))
    await reprice(tx, SaleScope(sale_ids=[row.sale_id for row in waiting]), None)
    return len(waiting)


async def cancel_sale(tx: Transaction, sale_id: str, cancelled_at: datetime, event_id: str) -> str:
    repo = IncentivesRepository(tx.session)
    sale = await repo.get_sale(sale_id)
    if sale is None:
        await repo.keep_cancellation(sale_id, cancelled_at, event_id)
        return "kept until the sale arrives"
    await repo.lock(LOCK_PROGRAMS, shared=True)
    await repo.lock(f"account:{sale.account_id}", f"partner:{sale.partner_id}", f"sku:{sale.sku}")
    if not await repo.cancel_sale(sale_id, cancelled_at, event_id):
        return "already cancelled"
    await reprice(tx, SaleScope(sale_ids=[sale_id]), event_id)
    return "cancelled"


# --- replicas of accounts and partners ----------------------------------------------------------
async def account_created(tx: Transaction, event_id: str, account_id: uuid.UUID, classification: str,
                          owner: uuid.UUID | None) -> None:
    repo = IncentivesRepository(tx.session)
    await repo.lock(LOCK_PROGRAMS, shared=True)
    await repo.lock(f"account:{account_id}")
    if await repo.knows(m.account_classifications, "account_id", account_id):
        return
    await _seed_account(repo, account_id, classification, owner, event_id)
    await reprice(tx, SaleScope(account_id=account_id), event_id,
                  Trigger("account.created", event_id, account_id=account_id))


async def _seed_account(repo: IncentivesRepository, account_id: uuid.UUID, classification: str,
                        owner: uuid.UUID | None, event_id: str) -> None:
    base = {"account_id": account_id, "effective_from": BEGINNING, "event_id": event_id}
    await repo.add_timeline(m.account_classifications, [{**base, "classification": classification}])
    await repo.add_timeline(m.account_owners, [{**base, "owner_partner_id": owner}])


async def account_changed(
    tx: Transaction, event_type: str, event_id: str, account_id: uuid.UUID, effective_from: datetime,
    *, before: tuple[str, uuid.UUID | None], classification: str | None = None,
    owner: tuple[uuid.UUID | None] | None = None,
) -> None:
    """A reclassification or ownership change effective from a moment, inserted into the timeline."""
    repo = IncentivesRepository(tx.session)
    await repo.lock(LOCK_PROGRAMS, shared=True)
    await repo.lock(f"account:{account_id}")
    if not await repo.knows(m.account_classifications, "account_id", account_id):
        await _seed_account(repo, account_id, before[0], before[1], event_id)
    entry = {"account_id": account_id, "effective_from": effective_from, "event_id": event_id}
    if classification is not None:
        await repo.add_timeline(m.account_classifications, [{**entry, "classification": classification}])
    if owner is not None:
        await repo.add_timeline(m.account_owners, [{**entry, "owner_partner_id": owner[0]}])
    await reprice(
        tx, SaleScope(account_id=account_id, booked_from=effective_from), event_id,
        Trigger(event_type, event_id, account_id=account_id, effective_from=effective_from),
    )


async def partner_changed(
    tx: Transaction, event_type: str, event_id: str, partner_id: uuid.UUID, *,
    seed_tier: str, seed_status: str, certifications: list[tuple[str, datetime, datetime | None]],
    effective_from: datetime | None, tier: str | None = None, status: str | None = None,
    grant: tuple[str, datetime, datetime | None] | None = None, close: tuple[str, datetime] | None = None,
) -> None:
    """Any partner.* event: seeds the replica if the partner is new here, applies the change, reprices."""
    repo = IncentivesRepository(tx.session)
    await repo.lock(LOCK_PROGRAMS, shared=True)
    await repo.lock(f"partner:{partner_id}")
    reprice_from = effective_from
    if not await repo.knows(m.partner_tiers, "partner_id", partner_id):
        base = {"partner_id": partner_id, "effective_from": BEGINNING, "event_id": event_id}
        await repo.add_timeline(m.partner_tiers, [{**base, "tier": seed_tier}])
        await repo.add_timeline(m.partner_statuses, [{**base, "status": seed_status}])
        for code, issued_at, expires_at in certifications:
            await repo.grant_certification(partner_id, code, issued_at, expires_at, event_id)
        reprice_from = None  # a partner new here: all its waiting sales are priced
    if effective_from is not None:
        entry = {"partner_id": partner_id, "effective_from": effective_from, "event_id": event_id}
        if tier is not None:
            await repo.add_timeline(m.partner_tiers, [{**entry, "tier": tier}])
        if status is not None:
            await repo.add_timeline(m.partner_statuses, [{**entry, "status": status}])
    if grant is not None:
        await repo.grant_certification(partner_id, *grant, event_id)
    if close is not None:
        await repo.close_certification(partner_id, *close)
    await reprice(
        tx, SaleScope(partner_id=partner_id, booked_from=reprice_from), event_id,
        Trigger(event_type, event_id, partner_id=partner_id, effective_from=reprice_from),
    )


# --- catalogue ----------------------------------------------------------------------------------
async def put_product(
    tx: Transaction, sku: str, product: ProductIn, if_match: str | None = None
) -> tuple[dict[str, Any], bool]:
    repo = IncentivesRepository(tx.session)
    await repo.lock(LOCK_PROGRAMS, shared=True)
    await repo.lock(f"sku:{sku}")
    existing = await repo.get_product(sku, lock=True)
    if existing is not None:
        check_if_match(if_match, existing.version)
    values = {"sku": sku, "name": product.name, "category": product.category,
              "rebate_eligible": product.rebate_eligible, "standalone_software": product.standalone_software}
    await repo.save_product(values, exists=existing is not None)
    cause = str(uuid.uuid4())
    category_changed = existing is not None and existing.category != product.category
    timeline_changed = (
        existing is None or existing.rebate_eligible != product.rebate_eligible or product.effective_from is not None
    )
    if timeline_changed:
        await repo.set_eligibility(sku, product.rebate_eligible, None if existing is None else product.effective_from)
    if timeline_changed or category_changed:
        # A new sku prices its waiting sales; an eligibility change reprices from its date (or all of them).
        booked_from = None if existing is None or category_changed else product.effective_from
        await reprice(tx, SaleScope(sku=sku, booked_from=booked_from), cause,
                      Trigger("product.changed", cause, sku=sku, effective_from=booked_from))
    row = await repo.get_product(sku)
    assert row is not None
    return dict(row._mapping), existing is None


async def create_program(tx: Transaction, program: ProgramIn) -> dict[str, Any]:
    repo = IncentivesRepository(tx.session)
    rules = [Rule(r.classification, r.tier, r.category, r.rate) for r in program.rules]
    tie = find_tie(rules)
    if tie is not None:
        i, j = tie
        raise unprocessable(
            f"rules {i} ({rules[i].describe()}) and {j} ({rules[j].describe()}) could both be the most specific "
            "match for one sale; make one of them more specific",
            ["body", "rules", j],
        )
    await repo.lock(LOCK_PROGRAMS)
    if await repo.get_program_row(program.code) is not None:
        raise conflict(f"program {program.code!r} already exists; programs are immutable, a change is a new code")
    await repo.add_program(
        {"code": program.code, "name": program.name, "kind": program.kind.value, "valid_from": program.valid_from,
         "valid_to": program.valid_to, "required_certification": program.required_certification,
         "target": program.target},
        [{"program_code": program.code, "position": i, "classification": r.classification, "tier": r.tier,
          "category": r.category, "rate": r.rate} for i, r in enumerate(program.rules)],
    )
    cause = str(uuid.uuid4())
    await reprice(tx, SaleScope(booked_from=program.valid_from, booked_before=program.valid_to), cause,
                  Trigger("program.created", cause, program_code=program.code, effective_from=program.valid_from))
    return await get_program(tx, program.code)


async def end_program(tx: Transaction, code: str, valid_to: datetime, if_match: str | None = None) -> dict[str, Any]:
    repo = IncentivesRepository(tx.session)
    await repo.lock(LOCK_PROGRAMS)
    row = await repo.get_program_row(code)
    if row is None:
        raise not_found(f"program {code!r}")
    check_if_match(if_match, row.version)
    if valid_to < row.valid_from or (row.valid_to is not None and valid_to > row.valid_to):
        raise unprocessable(
            "valid_to may only end a program earlier: between its valid_from and its current valid_to",
            ["body", "valid_to"],
        )
    if row.valid_to != valid_to:
        await repo.end_program(code, valid_to)
        cause = str(uuid.uuid4())
        await reprice(tx, SaleScope(booked_from=valid_to, booked_before=row.valid_to), cause,
                      Trigger("program.ended", cause, program_code=code, effective_from=valid_to))
    return await get_program(tx, code)


async def get_program(tx: Transaction, code: str) -> dict[str, Any]:
    rows = await IncentivesRepository(tx.session).program_rows([code])
    if not rows:
        raise not_found(f"program {code!r}")
    row, rules = rows[0]
    return {**row._mapping, "rules": [dict(r._mapping) for r in rules]}


def sale_problem(exc: SaleConflict) -> Problem:
    return conflict(str(exc))


def parse_time(raw: object) -> datetime:
    try:
        return datetime.fromisoformat(str(raw))
    except ValueError as exc:
        raise Problem(422, detail="the cursor is not one this service issued") from exc
