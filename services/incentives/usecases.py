"""Incentives use cases: recording sales, replicating upstream state, and repricing what a change touches."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from partnerhub.catalog import checked
from partnerhub.db import OutboxRecord, Transaction, is_transient, lost_race, outbox_records
from partnerhub.http import check_if_match
from partnerhub.metrics import RECALCULATION_SECONDS, SALES_SET_ASIDE
from partnerhub.money import format_money
from partnerhub.problems import Problem, conflict, not_found, unprocessable
from partnerhub.timeutil import BEGINNING, isoformat, period_of, utcnow
from services.incentives import models as m
from services.incentives.domain import (
    NO_RATES,
    ZERO,
    BipGroup,
    Dispute,
    DisputeClosed,
    DisputeStatus,
    FxRates,
    Periods,
    Position,
    Posting,
    Pricer,
    Program,
    Replicas,
    Rule,
    Sale,
    Trigger,
    decide_dispute,
    delta_view,
    dispute_event,
    find_tie,
    fx_window,
    line_explanation,
    next_period,
    post_bip,
    post_sales,
    recalculation_completed,
    statement_event,
    withdraw_dispute,
)
from services.incentives.repository import (
    LOCK_PROGRAMS,
    IncentivesRepository,
    PostingRows,
    SaleScope,
    StatementsRepository,
)
from services.incentives.schemas import EVENT_TYPES, DisputeIn, ProductIn, ProgramIn, SaleIn

PRICING_BATCH = 5000
# A recalculation streams its sales in chunks of this many: memory stays bounded however many it touches.
CHUNK = 5000
# Pricing yields to the event loop after this many sales, so a chunk's writes go on meanwhile.
SLICE = 100
log = logging.getLogger(__name__)


class SaleConflict(Exception):
    """The same sale_id arrived with other content."""


def same_sale(known: Any, sale: SaleIn) -> bool:
    """The same sale recorded again: every fact the same (a sale is identified by its sale_id)."""
    return (known.partner_id, known.account_id, known.sku, known.amount, known.currency, known.booked_at) == (
        sale.partner_id, sale.account_id, sale.sku, sale.amount, sale.currency, sale.booked_at)


def recorded_cause(sale: Sale) -> str:
    """Pricing a sale as recorded (or cancelled): its entries are caused by its own event."""
    return sale.cancel_event_id or sale.recorded_event_id


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"pricing failed: {text or type(exc).__name__}"


@dataclass
class RunResult:
    sales_recomputed: int
    sales_changed: int
    delta: list[dict[str, str]]
    run_id: uuid.UUID | None


@dataclass
class Computed:
    """A chunk priced and posted, waiting to be saved."""

    sales: list[Sale]
    positions: dict[str, dict[str, Position]]
    priced: list[Sale] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    posting: Posting = field(default_factory=Posting)
    rows: PostingRows = field(default_factory=PostingRows)  # what the save writes, encoded ahead
    records: list[OutboxRecord] = field(default_factory=list)  # its events, encoded ahead
    failure: Exception | None = None


class PricingPass:
    """One transaction's pricing: load → price → post → save, chunk by chunk, then BIP once for every month the
    chunks touched. A sale that cannot be priced is set aside with its reason; the others go on."""

    def __init__(self, tx: Transaction, programs: list[Program], closed_through: str | None,
                 cause: Callable[[Sale], str], run_id: uuid.UUID | None = None, fx: FxRates = NO_RATES) -> None:
        self.tx = tx
        self.repo = IncentivesRepository(tx.session)
        self.pricer = Pricer(programs, fx)
        self.targets = {p.code: p.target for p in programs if p.target is not None}
        self.periods = Periods(closed_through)
        self.cause = cause
        self.run_id = run_id
        self.replicas = Replicas()
        self.recomputed = 0
        self.changed = 0
        self.delta: dict[str, Decimal] = {}
        self.bip_groups: dict[BipGroup, str] = {}
        self.set_aside: dict[str, str] = {}

    @classmethod
    async def start(cls, tx: Transaction, cause: Callable[[Sale], str], run_id: uuid.UUID | None = None
                    ) -> PricingPass:
        repo = IncentivesRepository(tx.session)
        return cls(tx, await repo.programs(), await repo.closed_through(), cause, run_id, await repo.fx_rates())

    async def price_scope(self, scope: SaleScope) -> None:
        """Streams the scope chunk by chunk, keeping PostgreSQL and Python each busy on a core instead of taking
        turns: while one chunk is written and the one after next fetched (one connection, one after the other),
        the next chunk is priced, posted and encoded here."""
        await self.repo.open_scope(scope)
        chunk = await self._next_chunk()
        computed = await self._compute(*chunk, new=False) if chunk[0] else None
        following = await self._next_chunk() if computed is not None else ([], {})
        while computed is not None:
            writing = asyncio.ensure_future(self._save_then_fetch(computed))
            try:
                upcoming = await self._compute(*following, new=False) if following[0] else None
            finally:
                fetched = await writing
            computed, following = upcoming, fetched
        await self.repo.close_scope()

    async def _save_then_fetch(self, computed: Computed) -> tuple[list[Sale], dict[str, dict[str, Position]]]:
        await self._save(computed, new=False)
        return await self._next_chunk()

    async def _next_chunk(self) -> tuple[list[Sale], dict[str, dict[str, Position]]]:
        chunk = await self.repo.fetch_scope(CHUNK)
        sales = [sale for sale, _ in chunk]
        await self.repo.load_replicas(self.replicas, sales)
        return sales, {sale.sale_id: held for sale, held in chunk if held}

    async def price_new(self, sales: Sequence[Sale]) -> None:
        """Prices sales being recorded now, in the transaction that records them."""
        await self.repo.load_replicas(self.replicas, sales)
        await self._save(await self._compute(list(sales), {}, new=True), new=True)

    async def _compute(self, sales: list[Sale], positions: dict[str, dict[str, Position]], *, new: bool
                       ) -> Computed:
        """Prices and posts, a slice at a time, letting the event loop run a pending save in between."""
        computed = Computed(sales, positions)
        for start in range(0, len(sales), SLICE):
            pricings = []
            for sale in sales[start:start + SLICE]:
                try:
                    pricings.append(self.pricer.price(self.replicas.facts(sale)))
                    computed.priced.append(sale)
                except Exception as exc:
                    computed.errors[sale.sale_id] = _reason(exc)
            try:
                posting = post_sales(pricings, positions, self.periods, self.cause, self.pricer.bip_currencies)
                computed.posting.merge(posting)
                computed.rows.add(posting, self.run_id)
                computed.records += outbox_records(self.tx.source, posting.events)
            except Exception as exc:
                computed.failure = exc  # the save splits the chunk and finds the sale behind it
            if len(sales) > SLICE:
                await asyncio.sleep(0)
        return computed

    async def _save(self, computed: Computed, *, new: bool) -> None:
        posting = computed.posting
        try:
            if computed.failure is not None:
                raise computed.failure
            async with self.tx.session.begin_nested():
                if new:
                    await self.repo.add_sales(computed.priced, posting.statuses, {})
                await self.repo.save_posting(computed.rows, computed.priced, replace=not new,
                                             bip=self.pricer.has_bip)
        except Exception as exc:
            if is_transient(exc) or lost_race(exc):
                raise
            priced = computed.priced
            if len(priced) > 1:
                # Split until the one sale that fails is alone; every other sale is posted as usual.
                middle = len(priced) // 2
                for half in (priced[:middle], priced[middle:]):
                    await self._save(await self._compute(half, computed.positions, new=new), new=new)
            elif priced:
                computed.errors[priced[0].sale_id] = _reason(exc)
            posting = Posting()
            computed.records = []
        await self._set_aside(computed.sales, computed.errors, new)
        self.tx.emit_records(computed.records)
        if self.tx.pending >= CHUNK:
            await self.tx.flush_events()
        self.recomputed += posting.recomputed
        self.changed += posting.changed
        for currency, amount in posting.delta.items():
            self.delta[currency] = self.delta.get(currency, ZERO) + amount
        self.bip_groups.update(posting.bip_groups)

    async def _set_aside(self, sales: list[Sale], errors: dict[str, str], new: bool) -> None:
        if not errors:
            return
        for sale_id, error in errors.items():
            log.warning("sale %s set aside: %s", sale_id, error,
                        extra={"fields": {"sale_id": sale_id, "error": error}})
        SALES_SET_ASIDE.labels("incentives").inc(len(errors))
        self.set_aside.update(errors)
        if new:
            await self.repo.add_sales([s for s in sales if s.sale_id in errors], {}, errors)
        else:
            await self.repo.set_aside(errors)

    async def settle_bip(self) -> None:
        """Each BIP month the priced sales touched: its outcome now, and one entry where its bonus moved."""
        if not (self.pricer.has_bip and self.bip_groups):
            return
        # A month's bonus is read and rewritten: one transaction at a time settles it (sales of the partner's
        # other accounts may be priced in another at the same time).
        await self.repo.lock(f"bip:{partner}:{month}:{currency}" for partner, month, currency in self.bip_groups)
        figures = await self.repo.bip_figures(self.bip_groups)
        outcomes, entries = post_bip(figures, self.targets, self.periods, self.bip_groups)
        await self.repo.save_bip(outcomes, entries, self.run_id)
        for entry in entries:
            self.delta[entry.currency] = self.delta.get(entry.currency, ZERO) + entry.amount


async def reprice(tx: Transaction, scope: SaleScope, trigger: Trigger) -> RunResult:
    """A recalculation run: every sale in scope priced again from the state as of its booked_at; each difference
    becomes a ledger entry caused by the trigger, and the run completes with `recalculation.completed`.
    The caller holds the locks that keep the scope's upstream state still."""
    started = time.perf_counter()
    started_at = utcnow()
    run_id = uuid.uuid4()
    pricing = await PricingPass.start(tx, lambda _sale: trigger.event_id, run_id)
    await pricing.price_scope(scope)
    await pricing.settle_bip()
    finished = utcnow()
    delta = delta_view(pricing.delta)
    await pricing.repo.record_run({
        "id": run_id, "trigger_type": trigger.type, "trigger_event_id": trigger.event_id,
        "account_id": trigger.account_id, "partner_id": trigger.partner_id, "sku": trigger.sku,
        "program_code": trigger.program_code, "effective_from": trigger.effective_from,
        "fx_pair": trigger.fx_pair, "status": "completed",
        "sales_recomputed": pricing.recomputed, "sales_changed": pricing.changed, "delta": delta,
        "started_at": started_at, "finished_at": finished,
    })
    tx.emit(checked(recalculation_completed(run_id, trigger, pricing.recomputed, pricing.changed, pricing.delta,
                                            finished), EVENT_TYPES))
    RECALCULATION_SECONDS.labels("incentives", trigger.type).observe(time.perf_counter() - started)
    log.info("recalculation completed", extra={"fields": {
        "run_id": str(run_id), "trigger_type": trigger.type, "trigger_event_id": trigger.event_id,
        "sales_recomputed": pricing.recomputed, "sales_changed": pricing.changed}})
    return RunResult(pricing.recomputed, pricing.changed, delta, run_id)


# --- statements and periods ---------------------------------------------------------------------
async def close_period(tx: Transaction, period: str) -> dict[str, Any]:
    """Closes the period and every earlier open one, freezing their statements forever."""
    repo = IncentivesRepository(tx.session)
    await repo.lock([LOCK_PROGRAMS])  # exclusive: no sale is priced while the open/closed line moves
    closed = await repo.closed_through()
    if closed is not None and period <= closed:
        return {"period": period, "status": "closed", "closed_through": closed, "newly_closed": []}
    if period > period_of(utcnow()):
        raise unprocessable(f"{period} has not begun yet; a period can be closed once it has begun", ["path"])
    earliest = await repo.earliest_period()
    month = next_period(closed) if closed else min(earliest or period, period)
    first = month
    newly_closed = []
    while month <= period:
        newly_closed.append(month)
        month = next_period(month)
    if newly_closed:
        rows = await repo.live_statements(first, period, None)
        await repo.freeze_statements([dict(row._mapping) for row in rows])
        tx.emit_all([checked(event, EVENT_TYPES) for event in _statement_closed_events(rows)])
    await repo.set_closed_through(period)
    return {"period": period, "status": "closed", "closed_through": period, "newly_closed": newly_closed}


async def statement(tx: Transaction, partner_id: uuid.UUID, period: str) -> dict[str, Any]:
    repo = IncentivesRepository(tx.session)
    closed = await repo.closed_through()
    if closed is not None and period <= closed:
        rows = await repo.frozen_statement(partner_id, period)
        status = "closed"
    else:
        rows = await repo.live_statements(period, period, partner_id)
        status = "open"
    confirmation = await StatementsRepository(tx.session).confirmation(partner_id, period)
    return {"partner_id": partner_id, "period": period, "status": status,
            "totals": [{k: v for k, v in row._mapping.items() if k not in {"period", "partner_id", "closed_at"}}
                       for row in rows],
            "confirmed_at": confirmation.confirmed_at if confirmation else None,
            "confirmed_by": confirmation.confirmed_by if confirmation else None}


def bip_explanation(row: Any) -> str:
    if row.reached:
        return (f"{row.program_code}: {row.period} eligible revenue {format_money(row.revenue)} {row.currency} "
                f"reached the target {format_money(row.target)}, so the bonus of {format_money(row.bonus)} "
                "pays from the first dollar.")
    return (f"{row.program_code}: {row.period} eligible revenue {format_money(row.revenue)} {row.currency} is "
            f"{format_money(row.target - row.revenue)} short of the target {format_money(row.target)}; "
            "nothing is paid until it is reached, then all of it counts.")


# --- sales ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cancellation:
    sale_id: str
    cancelled_at: datetime
    event_id: str


@dataclass
class Recording:
    """What recording a batch did: an outcome per sale event, and the events refused with their reason."""

    outcomes: dict[str, str] = field(default_factory=dict)  # event id -> received, duplicate, cancelled, ...
    rejected: dict[str, str] = field(default_factory=dict)  # event id -> reason


def _lock_keys(accounts: Iterable[uuid.UUID], partners: Iterable[uuid.UUID], skus: Iterable[str]) -> set[str]:
    return ({f"account:{a}" for a in set(accounts)} | {f"partner:{p}" for p in set(partners)}
            | {f"sku:{s}" for s in set(skus)})


async def _try_sale_locks(repo: IncentivesRepository, keys: set[str]) -> set[str]:
    """Tries the locks of sales about to be priced; returns the keys held elsewhere. An account's is taken
    exclusive (its sales are recorded, cancelled and repriced one transaction at a time); a partner's and a
    product's shared: only recalculating the partner or the product takes them exclusive, so batches of
    different accounts price side by side (the BIP months they share are locked when they are settled)."""
    accounts = {key for key in keys if key.startswith("account:")}
    busy = await repo.try_lock(accounts)
    return busy | await repo.try_lock(keys - accounts, shared=True)


async def record_sales(
    tx: Transaction, recorded: Sequence[tuple[SaleIn, str]], cancelled: Sequence[Cancellation] = ()
) -> Recording:
    """Records sales and cancellations and prices them in the same transaction, set-based.

    A sale is identified by its sale_id: seen before with the same content it changes nothing, with other
    content it is refused. A cancellation before its sale is kept until the sale arrives. Locks are only tried:
    a sale whose account, partner or sku is busy (a recalculation holds it) is recorded as received and the
    pricer prices it moments later, so a long recalculation never stalls the intake and no wait can deadlock.
    """
    repo = IncentivesRepository(tx.session)
    result = Recording()
    ids = [sale.sale_id for sale, _ in recorded] + [c.sale_id for c in cancelled]
    # A cancellation's keys are its sale's: known only from the table, so read before locking.
    before = await repo.known_sales(ids) if cancelled else {}
    rows: list[Any] = [*(sale for sale, _ in recorded), *before.values()]
    keys = _lock_keys((r.account_id for r in rows), (r.partner_id for r in rows), (r.sku for r in rows))
    busy = await repo.try_lock([LOCK_PROGRAMS], shared=True)
    busy |= keys if busy else await _try_sale_locks(repo, keys)
    known = await repo.known_sales(ids)

    new: dict[str, Sale] = {}
    for sale, event_id in recorded:
        first = known.get(sale.sale_id) or new.get(sale.sale_id)
        if first is None:
            new[sale.sale_id] = Sale(sale.sale_id, sale.partner_id, sale.account_id, sale.sku, sale.amount,
                                     sale.currency, sale.booked_at, period_of(sale.booked_at), event_id)
            result.outcomes[event_id] = "received"
        elif not same_sale(first, sale):
            result.rejected[event_id] = (
                f"sale {sale.sale_id} was already recorded with other content (first by event "
                f"{first.recorded_event_id}); a sale is identified by its sale_id"
            )
        else:
            result.outcomes[event_id] = "duplicate"

    for waiting in await repo.take_pending_cancellations(list(new)):
        new[waiting.sale_id] = replace(new[waiting.sale_id], cancelled_at=waiting.cancelled_at,
                                       cancel_event_id=waiting.event_id)
    to_cancel: dict[str, Cancellation] = {}
    for cancel in cancelled:
        if cancel.sale_id in new:
            if not new[cancel.sale_id].cancelled:
                new[cancel.sale_id] = replace(new[cancel.sale_id], cancelled_at=cancel.cancelled_at,
                                              cancel_event_id=cancel.event_id)
            result.outcomes[cancel.event_id] = "cancelled"
        elif cancel.sale_id in known:
            to_cancel.setdefault(cancel.sale_id, cancel)
        else:
            await repo.keep_cancellation(cancel.sale_id, cancel.cancelled_at, cancel.event_id)
            result.outcomes[cancel.event_id] = "kept until the sale arrives"

    busy_accounts = {key.partition(":")[2] for key in busy if key.startswith("account:")}
    busy_partners = {key.partition(":")[2] for key in busy if key.startswith("partner:")}
    busy_skus = {key.partition(":")[2] for key in busy if key.startswith("sku:")}

    def priceable(account_id: uuid.UUID, partner_id: uuid.UUID, sku: str) -> bool:
        if not busy:
            return True
        return not (str(account_id) in busy_accounts or str(partner_id) in busy_partners or sku in busy_skus)

    waiting = [s for s in new.values() if not priceable(s.account_id, s.partner_id, s.sku)]
    if waiting:
        await repo.add_sales(waiting, {}, {})
    newly_cancelled = await repo.cancel_sales(list(to_cancel.values()))
    for cancel in cancelled:
        if cancel.sale_id in to_cancel:
            applied = to_cancel[cancel.sale_id] is cancel and cancel.sale_id in newly_cancelled
            result.outcomes[cancel.event_id] = "cancelled" if applied else "already cancelled"
    cancelled_now = [row.sale_id for row in newly_cancelled.values()
                     if priceable(row.account_id, row.partner_id, row.sku)]
    await repo.mark_received([sale_id for sale_id in newly_cancelled if sale_id not in cancelled_now])
    ready = sorted((s for s in new.values() if s.sale_id not in {w.sale_id for w in waiting}),
                   key=lambda s: s.sale_id)
    if ready or cancelled_now:
        pricing = await PricingPass.start(tx, recorded_cause)
        if ready:
            await pricing.price_new(ready)
        if cancelled_now:
            await pricing.price_scope(SaleScope(sale_ids=sorted(cancelled_now)))
        await pricing.settle_bip()
    return result


async def receive_sale(tx: Transaction, sale: SaleIn, event_id: str) -> str:
    """One sale from REST: the same path as a batch from the topic; other content under its id is a conflict."""
    recording = await record_sales(tx, [(sale, event_id)])
    if event_id in recording.rejected:
        raise SaleConflict(recording.rejected[event_id])
    return recording.outcomes[event_id]


async def cancel_sale(tx: Transaction, sale_id: str, cancelled_at: datetime, event_id: str) -> str:
    recording = await record_sales(tx, [], [Cancellation(sale_id, cancelled_at, event_id)])
    return recording.outcomes[event_id]


async def price_received_sales(tx: Transaction, limit: int = PRICING_BATCH) -> int:
    """Prices up to `limit` sales waiting as received (their locks were busy when they arrived); 0 when none
    wait or another replica prices. Sales whose locks are still busy wait for the next round."""
    repo = IncentivesRepository(tx.session)
    if await repo.try_lock(["incentives:pricer"]):
        return 0
    waiting = await repo.received_sales(limit)
    if not waiting:
        return 0
    await repo.lock([LOCK_PROGRAMS], shared=True)
    keys = await repo.sale_lock_keys(waiting)
    busy = await _try_sale_locks(repo, {key for row_keys in keys.values() for key in row_keys})
    ready = sorted(sale_id for sale_id, row_keys in keys.items() if not busy.intersection(row_keys))
    if ready:
        pricing = await PricingPass.start(tx, recorded_cause)
        await pricing.price_scope(SaleScope(sale_ids=ready))
        await pricing.settle_bip()
    return len(ready)


# --- replicas of accounts and partners ----------------------------------------------------------
async def account_created(tx: Transaction, event_id: str, account_id: uuid.UUID, classification: str,
                          owner: uuid.UUID | None) -> None:
    repo = IncentivesRepository(tx.session)
    await repo.lock([LOCK_PROGRAMS], shared=True)
    await repo.lock([f"account:{account_id}"])
    if await repo.knows(m.account_classifications, "account_id", account_id):
        return
    await _seed_account(repo, account_id, classification, owner, event_id)
    await reprice(tx, SaleScope(account_id=account_id),
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
    await repo.lock([LOCK_PROGRAMS], shared=True)
    await repo.lock([f"account:{account_id}"])
    if not await repo.knows(m.account_classifications, "account_id", account_id):
        await _seed_account(repo, account_id, before[0], before[1], event_id)
    entry = {"account_id": account_id, "effective_from": effective_from, "event_id": event_id}
    if classification is not None:
        await repo.add_timeline(m.account_classifications, [{**entry, "classification": classification}])
    if owner is not None:
        await repo.add_timeline(m.account_owners, [{**entry, "owner_partner_id": owner[0]}])
    await reprice(
        tx, SaleScope(account_id=account_id, booked_from=effective_from),
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
    await repo.lock([LOCK_PROGRAMS], shared=True)
    await repo.lock([f"partner:{partner_id}"])
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
        tx, SaleScope(partner_id=partner_id, booked_from=reprice_from),
        Trigger(event_type, event_id, partner_id=partner_id, effective_from=reprice_from),
    )


# --- catalogue ----------------------------------------------------------------------------------
async def put_product(
    tx: Transaction, sku: str, product: ProductIn, if_match: str | None = None
) -> tuple[dict[str, Any], bool]:
    repo = IncentivesRepository(tx.session)
    await repo.lock([LOCK_PROGRAMS], shared=True)
    await repo.lock([f"sku:{sku}"])
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
        await reprice(tx, SaleScope(sku=sku, booked_from=booked_from),
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
    await repo.lock([LOCK_PROGRAMS])
    if await repo.get_program_row(program.code) is not None:
        raise conflict(f"program {program.code!r} already exists; programs are immutable, a change is a new code")
    await repo.add_program(
        {"code": program.code, "name": program.name, "kind": program.kind.value, "valid_from": program.valid_from,
         "valid_to": program.valid_to, "required_certification": program.required_certification,
         "target": program.target, "settlement_currency": program.settlement_currency},
        [{"program_code": program.code, "position": i, "classification": r.classification, "tier": r.tier,
          "category": r.category, "rate": r.rate} for i, r in enumerate(program.rules)],
    )
    cause = str(uuid.uuid4())
    await reprice(tx, SaleScope(booked_from=program.valid_from, booked_before=program.valid_to),
                  Trigger("program.created", cause, program_code=program.code, effective_from=program.valid_from))
    return await get_program(tx, program.code)


async def end_program(tx: Transaction, code: str, valid_to: datetime, if_match: str | None = None) -> dict[str, Any]:
    repo = IncentivesRepository(tx.session)
    await repo.lock([LOCK_PROGRAMS])
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
        await reprice(tx, SaleScope(booked_from=valid_to, booked_before=row.valid_to),
                      Trigger("program.ended", cause, program_code=code, effective_from=valid_to))
    return await get_program(tx, code)


async def get_program(tx: Transaction, code: str) -> dict[str, Any]:
    rows = await IncentivesRepository(tx.session).program_rows([code])
    if not rows:
        raise not_found(f"program {code!r}")
    row, rules = rows[0]
    return {**row._mapping, "rules": [dict(r._mapping) for r in rules]}


# --- exchange rates -----------------------------------------------------------------------------
def fx_point(row: Any) -> dict[str, Any]:
    return {"effective_from": row.effective_from, "rate": row.rate, "recorded_at": row.recorded_at,
            "recorded_by": row.recorded_by, "event_id": row.event_id, "replaced_rate": row.replaced}


async def fx_timelines(tx: Transaction, base: str | None, quote: str | None, history: bool = False
                       ) -> list[dict[str, Any]]:
    """Each pair's timeline: the rates that hold now, or with `history` every rate entered (corrections after
    what they corrected, each with the rate it replaced)."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in await IncentivesRepository(tx.session).fx_history(base, quote, current=not history):
        pairs.setdefault((row.base, row.quote), []).append(fx_point(row))
    return [{"base": b, "quote": q, "rates": rates} for (b, q), rates in pairs.items()]


async def put_fx_rate(tx: Transaction, base: str, quote: str, rate: Decimal, effective_from: datetime, by: str
                      ) -> dict[str, Any]:
    """From effective_from on, 1 base = rate quote: a new point of the pair's timeline, or a correction of the
    one at that moment. The sales it governs are repriced as a recalculation run (`fx_rate.changed`); the same
    rate again changes nothing."""
    if base == quote:
        raise unprocessable("a rate converts one currency into another: base and quote must differ",
                            ["path", "quote"])
    repo = IncentivesRepository(tx.session)
    await repo.lock([LOCK_PROGRAMS])  # exclusive, as a program change: no sale is priced while a rate moves
    timeline = await repo.fx_history(base, quote, current=True)
    held = next((row for row in timeline if row.effective_from == effective_from), None)
    run = None
    if held is None or held.rate != rate:
        cause = str(uuid.uuid4())
        await repo.add_fx_rate({"base": base, "quote": quote, "effective_from": effective_from, "rate": rate,
                                "event_id": cause, "recorded_by": by})
        window = fx_window([row.effective_from for row in timeline], effective_from, await repo.programs(), quote)
        scope = (SaleScope(currency=base, booked_from=window[0], booked_before=window[1]) if window is not None
                 else SaleScope(sale_ids=[]))
        result = await reprice(tx, scope, Trigger("fx_rate.changed", cause, effective_from=effective_from,
                                                  fx_pair=f"{base}/{quote}"))
        run = {"run_id": result.run_id, "trigger_event_id": cause, "sales_recomputed": result.sales_recomputed,
               "sales_changed": result.sales_changed, "delta": result.delta}
    rates = [fx_point(row) for row in await repo.fx_history(base, quote, current=True)]
    return {"base": base, "quote": quote, "rates": rates, "recalculation": run}


def sale_problem(exc: SaleConflict) -> Problem:
    return conflict(str(exc))


# --- statement lines, confirmations and disputes ------------------------------------------------
def line_view(row: Any) -> dict[str, Any]:
    return {
        "entry_id": row.entry_id, "kind": row.kind, "sale_id": row.sale_id, "program_code": row.program_code,
        "amount": row.amount, "currency": row.currency, "sale_period": row.sale_period, "cause": row.cause,
        "explanation": line_explanation(row.kind, row.sale_id, row.program_code, row.amount, row.currency,
                                        row.period, row.sale_period, row.cause),
        "posted_at": row.created_at,
    }


async def statement_lines(tx: Transaction, partner_id: uuid.UUID, period: str, currency: str | None,
                          after: int | None, limit: int | None) -> list[tuple[int, dict[str, Any]]]:
    """Every ledger entry posted into the period, in posting order, each with its position (for a cursor)."""
    rows = await StatementsRepository(tx.session).lines(partner_id, period, currency, after, limit)
    return [(row.id, line_view(row)) for row in rows]


async def confirm_statement(tx: Transaction, partner_id: uuid.UUID, period: str, by: str) -> dict[str, Any]:
    """The partner confirms a closed statement, once; confirming again changes nothing."""
    repo = IncentivesRepository(tx.session)
    await repo.lock([LOCK_PROGRAMS], shared=True)  # closing takes it exclusive: the open/closed line stays still
    closed = await repo.closed_through()
    if closed is None or period > closed:
        raise conflict(f"the statement for {period} is still open; only a closed statement can be confirmed",
                       statement_status="open")
    made = await StatementsRepository(tx.session).confirm(partner_id, period, by)
    view = await statement(tx, partner_id, period)
    if made:
        tx.emit(checked(statement_event("statement.confirmed", partner_id, period, {
            "confirmed_at": isoformat(view["confirmed_at"]), "confirmed_by": view["confirmed_by"],
            "totals": _totals_json(view["totals"])}), EVENT_TYPES))
    return view


def _totals_json(totals: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    return [{key: (format_money(value) if isinstance(value, Decimal) else value) for key, value in row.items()}
            for row in totals]


def _statement_closed_events(rows: Iterable[Any]) -> list[Any]:
    """statement.closed per partner and newly closed period, with the frozen totals."""
    by_statement: dict[tuple[uuid.UUID, str], list[dict[str, Any]]] = {}
    for row in rows:
        values = dict(row._mapping)
        by_statement.setdefault((values["partner_id"], values["period"]), []).append(
            {k: v for k, v in values.items() if k not in {"partner_id", "period", "closed_at"}})
    return [statement_event("statement.closed", partner_id, period, {"status": "closed",
                                                                      "totals": _totals_json(totals)})
            for (partner_id, period), totals in sorted(by_statement.items(), key=lambda item: (item[0][1],
                                                                                            str(item[0][0])))]


def dispute_view(row: Any) -> dict[str, Any]:
    decision = {"accepted": "accept", "rejected": "reject"}.get(row.status)
    settlement = None
    if row.settlement_entry_id is not None:
        settlement = {"entry_id": row.settlement_entry_id, "amount": row.settled_amount,
                      "period": row.settlement_period}
    return {
        "id": row.id, "partner_id": row.partner_id, "period": row.period, "sale_id": row.sale_id,
        "program_code": row.program_code, "currency": row.currency, "claimed_amount": row.claimed_amount,
        "reason": row.reason, "status": row.status, "decision": decision, "decision_reason": row.decision_reason,
        "decided_by": row.decided_by, "decided_at": row.decided_at, "settled_amount": row.settled_amount,
        "settlement": settlement, "created_at": row.created_at,
    }


def _dispute(row: Any) -> Dispute:
    return Dispute(row.id, row.partner_id, row.period, row.sale_id, row.program_code, row.currency,
                   row.claimed_amount, row.reason, row.status)


async def open_dispute(tx: Transaction, body: DisputeIn, opened_by: str,
                       encode: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A partner disputes a statement, a sale on it, or a sale under one program; one open dispute per
    (partner, period, sale, program). `encode` renders the view as its event data."""
    repo = StatementsRepository(tx.session)
    if body.sale_id is not None:
        sale = await IncentivesRepository(tx.session).get_sale(body.sale_id)
        if sale is None or sale.partner_id != body.partner_id:
            raise unprocessable(f"sale {body.sale_id!r} is not a sale of partner {body.partner_id}",
                                ["body", "sale_id"])
    dispute_id = uuid.uuid4()
    made = await repo.add_dispute({
        "id": dispute_id, "partner_id": body.partner_id, "period": body.period, "sale_id": body.sale_id,
        "program_code": body.program_code, "currency": body.currency, "claimed_amount": body.claimed_amount,
        "reason": body.reason, "status": DisputeStatus.OPEN.value, "opened_by": opened_by,
    })
    if not made:
        same = await repo.open_dispute_like(body.partner_id, body.period, body.sale_id, body.program_code)
        raise conflict(f"dispute {same.id if same else ''} is already open on this statement"
                       f"{' for sale ' + body.sale_id if body.sale_id else ''}"
                       f"{' under ' + body.program_code if body.program_code else ''}; decide or withdraw it first",
                       dispute_id=str(same.id) if same else None)
    row = await repo.dispute(dispute_id)
    view = dispute_view(row)
    tx.emit(checked(dispute_event("dispute.opened", encode(view)), EVENT_TYPES))
    return view


async def get_dispute(tx: Transaction, dispute_id: uuid.UUID) -> dict[str, Any]:
    row = await StatementsRepository(tx.session).dispute(dispute_id)
    if row is None:
        raise not_found(f"dispute {dispute_id}")
    return dispute_view(row)


async def list_disputes(tx: Transaction, partner_id: uuid.UUID | None, status: str | None, period: str | None,
                        after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[dict[str, Any]]:
    rows = await StatementsRepository(tx.session).list_disputes(partner_id, status, period, after, limit)
    return [dispute_view(row) for row in rows]


async def resolve_dispute(tx: Transaction, dispute_id: uuid.UUID, by: str,
                          encode: Callable[[dict[str, Any]], dict[str, Any]], *, accept: bool | None,
                          amount: Decimal | None = None, reason: str | None = None,
                          partner_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Decides a dispute (accept or reject: admin) or withdraws it (accept None: its partner). An accepted one
    posts its settlement into the earliest open period, in this transaction."""
    repo = StatementsRepository(tx.session)
    incentives = IncentivesRepository(tx.session)
    await incentives.lock([LOCK_PROGRAMS], shared=True)  # closing takes it exclusive: the open period stays open
    row = await repo.dispute(dispute_id, lock=True)
    if row is None or (partner_id is not None and row.partner_id != partner_id):
        raise not_found(f"dispute {dispute_id}")
    try:
        if accept is None:
            decision = withdraw_dispute(_dispute(row))
        else:
            decision = decide_dispute(_dispute(row), accept, amount,
                                      Periods(await incentives.closed_through()))
    except DisputeClosed as exc:
        raise conflict(str(exc), dispute_status=exc.status) from exc
    values: dict[str, Any] = {"status": decision.status.value, "decided_by": by, "decided_at": utcnow(),
                              "decision_reason": reason}
    if decision.status == DisputeStatus.ACCEPTED:
        values["settled_amount"] = amount
    if decision.settlement is not None:
        values["settlement_entry_id"] = await repo.post_entry(decision.settlement)
        values["settlement_period"] = decision.settlement.period
    await repo.resolve_dispute(dispute_id, values)
    view = dispute_view(await repo.dispute(dispute_id))
    tx.emit(checked(dispute_event("dispute.resolved", encode(view)), EVENT_TYPES))
    return view
