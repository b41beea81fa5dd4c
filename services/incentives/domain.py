"""Pricing and posting rules: sale facts as of booked_at, rule matching, items, ledger entries, BIP and the
events they imply. Pure: no I/O."""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, Generic, TypeVar

from partnerhub.events import OutgoingEvent
from partnerhub.money import format_money, format_rate, round_money
from partnerhub.timeutil import isoformat, utcnow

ANY = "*"
ZERO = Decimal("0.00")
TOPIC = "incentives.accruals"
# What a NUMERIC(18, 2) ledger column holds: a rebate at or beyond it cannot be booked.
LARGEST_AMOUNT = Decimal("1e16")

T = TypeVar("T")


class ProgramKind(StrEnum):
    BASE_REBATE = "base_rebate"
    CAPABILITY_REBATE = "capability_rebate"
    BIP = "bip"


class SaleStatus(StrEnum):
    UNPRICED = "unpriced"
    NOT_ELIGIBLE = "not_eligible"
    CHANNEL_CONFLICT = "channel_conflict"
    ON_HOLD = "on_hold"
    ACCRUED = "accrued"
    CANCELLED = "cancelled"


class EntryKind(StrEnum):
    ORIGINAL = "original"
    ADJUSTMENT = "adjustment"
    BIP = "bip"
    DISPUTE_SETTLEMENT = "dispute_settlement"


# Module-level copies: reading an enum member off its class goes through a descriptor, on every sale.
_ORIGINAL, _ADJUSTMENT = EntryKind.ORIGINAL, EntryKind.ADJUSTMENT
_UNPRICED, _NOT_ELIGIBLE, _CHANNEL_CONFLICT = SaleStatus.UNPRICED, SaleStatus.NOT_ELIGIBLE, SaleStatus.CHANNEL_CONFLICT
_ON_HOLD, _ACCRUED, _CANCELLED = SaleStatus.ON_HOLD, SaleStatus.ACCRUED, SaleStatus.CANCELLED
RECEIVED = "received"
NO_PROGRAM = "no_program"
# A (sale, program) that no longer applies but has ledger entries: kept so its revisions continue.
WITHDRAWN = "withdrawn"
_WITHDRAWN = WITHDRAWN
ON_HOLD_STATUSES = frozenset({"suspended", "terminated"})
NO_CERTIFICATIONS: frozenset[str] = frozenset()


class PricingError(Exception):
    """A sale that cannot be priced; it is set aside with this sentence and never blocks another."""


# --- rules and programs -------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    classification: str
    tier: str
    category: str
    rate: Decimal

    @property
    def specificity(self) -> int:
        return sum(value != ANY for value in (self.classification, self.tier, self.category))

    def matches(self, classification: str, tier: str, category: str) -> bool:
        return all(
            want in (ANY, have)
            for want, have in ((self.classification, classification), (self.tier, tier), (self.category, category))
        )

    def could_tie_with(self, other: Rule) -> bool:
        """Both could match one sale at the same specificity, so neither would be the most specific."""
        if self.specificity != other.specificity:
            return False
        pairs = ((self.classification, other.classification), (self.tier, other.tier), (self.category, other.category))
        return all(a == b or ANY in (a, b) for a, b in pairs)

    def describe(self) -> str:
        return f"classification={self.classification}, tier={self.tier}, category={self.category}"


def find_tie(rules: list[Rule]) -> tuple[int, int] | None:
    for i, first in enumerate(rules):
        for j in range(i + 1, len(rules)):
            if first.could_tie_with(rules[j]):
                return i, j
    return None


def most_specific(rules: tuple[Rule, ...], classification: str, tier: str, category: str) -> Rule | None:
    matching = [rule for rule in rules if rule.matches(classification, tier, category)]
    return max(matching, key=lambda rule: rule.specificity, default=None)


@dataclass(frozen=True)
class Program:
    code: str
    name: str
    kind: ProgramKind
    valid_from: datetime
    valid_to: datetime | None
    required_certification: str | None
    rules: tuple[Rule, ...]
    target: Decimal | None = None
    # What its items and BIP months are paid in; None: each sale's own currency.
    settlement_currency: str | None = None

    def valid_at(self, moment: datetime) -> bool:
        return self.valid_from <= moment and (self.valid_to is None or moment < self.valid_to)


# --- upstream state over time -------------------------------------------------------------------
class Timeline(Generic[T]):
    """Effective-dated values: at t holds the latest entry (in effective order) starting at or before t; the
    state an aggregate was created with (its first entry) also holds for all time before it."""

    __slots__ = ("starts", "values")

    def __init__(self, entries: Iterable[tuple[datetime, T]]) -> None:
        ordered = list(entries)  # in (effective_from, recorded order)
        self.starts = [start for start, _ in ordered]
        self.values = [value for _, value in ordered]

    def at(self, moment: datetime) -> T:
        index = bisect_right(self.starts, moment)
        return self.values[index - 1 if index else 0]

    def since(self, moment: datetime) -> T | None:
        """The value at `moment` when an entry starts at or before it; None before the first."""
        index = bisect_right(self.starts, moment)
        return self.values[index - 1] if index else None


ONE = Decimal("1")
Pair = tuple[str, str]  # (base, quote): 1 base = rate quote


class FxRates:
    """Effective-dated exchange rates per (base, quote) pair. Only the pair named is used: no inverse or cross
    rate is derived, and before a pair's first rate there is none."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: Mapping[Pair, Timeline[Decimal]] | None = None) -> None:
        self.pairs = dict(pairs or {})

    def rate(self, base: str, quote: str, moment: datetime) -> Decimal | None:
        if base == quote:
            return ONE
        timeline = self.pairs.get((base, quote))
        return timeline.since(moment) if timeline is not None else None


NO_RATES = FxRates()


@dataclass(frozen=True)
class Grant:
    code: str
    valid_from: datetime
    valid_to: datetime | None

    def covers(self, moment: datetime) -> bool:
        return self.valid_from <= moment and (self.valid_to is None or moment < self.valid_to)


@dataclass(frozen=True)
class Product:
    category: str
    eligibility: Timeline[bool]


@dataclass
class Replicas:
    """What incentives knows of accounts, partners and products, each over time."""

    classifications: dict[uuid.UUID, Timeline[str]] = field(default_factory=dict)
    owners: dict[uuid.UUID, Timeline[uuid.UUID | None]] = field(default_factory=dict)
    tiers: dict[uuid.UUID, Timeline[str]] = field(default_factory=dict)
    statuses: dict[uuid.UUID, Timeline[str]] = field(default_factory=dict)
    certifications: dict[uuid.UUID, list[Grant]] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    accounts_seen: set[uuid.UUID] = field(default_factory=set)
    partners_seen: set[uuid.UUID] = field(default_factory=set)
    skus_seen: set[str] = field(default_factory=set)

    def missing(self, sales: Iterable[Sale]) -> tuple[set[uuid.UUID], set[uuid.UUID], set[str]]:
        """The accounts, partners and skus of these sales not loaded yet."""
        accounts, partners, skus = set(), set(), set()
        for sale in sales:
            accounts.add(sale.account_id)
            partners.add(sale.partner_id)
            skus.add(sale.sku)
        accounts -= self.accounts_seen
        partners -= self.partners_seen
        skus -= self.skus_seen
        self.accounts_seen |= accounts
        self.partners_seen |= partners
        self.skus_seen |= skus
        return accounts, partners, skus

    def facts(self, sale: Sale) -> SaleFacts:
        at = sale.booked_at
        product = self.products.get(sale.sku)
        classification = self.classifications.get(sale.account_id)
        owner = self.owners.get(sale.account_id)
        tier = self.tiers.get(sale.partner_id)
        status = self.statuses.get(sale.partner_id)
        grants = self.certifications.get(sale.partner_id)
        return SaleFacts(
            sale=sale,
            product_known=product is not None,
            rebate_eligible=product.eligibility.at(at) if product is not None else None,
            category=product.category if product is not None else None,
            account_known=classification is not None,
            classification=classification.at(at) if classification is not None else None,
            owner_partner_id=owner.at(at) if owner is not None else None,
            partner_known=tier is not None,
            tier=tier.at(at) if tier is not None else None,
            partner_status=status.at(at) if status is not None else None,
            certifications=frozenset(g.code for g in grants if g.covers(at)) if grants else NO_CERTIFICATIONS,
        )


# --- sales and their pricing ---
# The values made once per sale are slotted and not frozen: a frozen dataclass sets each field through
# object.__setattr__, which made creating them a tenth of the cost of pricing a sale. Nothing mutates them.
@dataclass(slots=True)
class Sale:
    sale_id: str
    partner_id: uuid.UUID
    account_id: uuid.UUID
    sku: str
    amount: Decimal
    currency: str
    booked_at: datetime
    sale_period: str
    recorded_event_id: str
    cancelled_at: datetime | None = None
    cancel_event_id: str | None = None
    status: str = RECEIVED
    set_aside: bool = False  # its last pricing failed

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None


@dataclass(slots=True)
class SaleFacts:
    """A sale and the state of everything it is priced with, as of its booked_at."""

    sale: Sale
    product_known: bool
    rebate_eligible: bool | None
    category: str | None
    account_known: bool
    classification: str | None
    owner_partner_id: uuid.UUID | None
    partner_known: bool
    tier: str | None
    partner_status: str | None
    certifications: frozenset[str]


@dataclass(slots=True)
class Item:
    """The current value of a (sale, program); program_code is None for a sale's single no-program item.
    `currency` is what it pays in (the program's settlement currency, or the sale's); `fx_rate` the rate it was
    converted at (None: not converted); `detail` what keeps it unpriced when only its exchange rate is missing."""

    program_code: str | None
    rate: Decimal | None
    amount: Decimal
    status: str
    currency: str
    fx_rate: Decimal | None = None
    detail: str | None = None


@dataclass(slots=True)
class Pricing:
    facts: SaleFacts
    status: SaleStatus
    items: tuple[Item, ...]
    # The BIP programs the sale counts towards (eligible sales only): each with its matching rule's rate, the
    # currency its month counts in and the sale's revenue in that currency.
    bip: tuple[tuple[str, Decimal, str, Decimal], ...]
    # What explains a zero: the missing upstream state, the conflicting owner or the partner's status.
    detail: str | None

    @property
    def eligible(self) -> bool:
        return self.status is _ACCRUED


def sale_status(facts: SaleFacts) -> SaleStatus:
    if facts.sale.cancelled:
        return _CANCELLED
    if not (facts.product_known and facts.account_known and facts.partner_known):
        return _UNPRICED
    if not facts.rebate_eligible:
        return _NOT_ELIGIBLE
    if facts.owner_partner_id is not None and facts.owner_partner_id != facts.sale.partner_id:
        return _CHANNEL_CONFLICT
    if facts.partner_status in ON_HOLD_STATUSES:
        return _ON_HOLD
    return _ACCRUED


def _detail(facts: SaleFacts, status: SaleStatus) -> str | None:
    if status is _UNPRICED:
        missing = []
        if not facts.product_known:
            missing.append(f"product {facts.sale.sku}")
        if not facts.account_known:
            missing.append(f"account {facts.sale.account_id}")
        if not facts.partner_known:
            missing.append(f"partner {facts.sale.partner_id}")
        return " and ".join(missing)
    if status is _CHANNEL_CONFLICT:
        return str(facts.owner_partner_id)
    if status is _ON_HOLD:
        return facts.partner_status
    return None


class Pricer:
    """Prices sales under a fixed set of programs. Which rule of which program applies depends only on a few
    facts, so it is decided once per combination and reused across a batch."""

    def __init__(self, programs: Sequence[Program], fx: FxRates = NO_RATES) -> None:
        self.programs = list(programs)
        self.rebates = [p for p in programs if p.kind is not ProgramKind.BIP]
        self.bips = [p for p in programs if p.kind is ProgramKind.BIP]
        self.required = frozenset(p.required_certification for p in self.rebates if p.required_certification)
        self.fx = fx
        # The currencies BIP months are kept in besides the sales' own: a sale's month is settled in each.
        self.bip_currencies = frozenset(p.settlement_currency for p in self.bips if p.settlement_currency)
        bounds = {p.valid_from for p in programs} | {p.valid_to for p in programs if p.valid_to is not None}
        self.bounds = sorted(bounds)
        self._matches: dict[tuple[Any, ...], tuple[tuple[Match, ...], tuple[Match, ...]]] = {}

    @property
    def has_bip(self) -> bool:
        return bool(self.bips)

    def _match(self, facts: SaleFacts) -> tuple[tuple[Match, ...], tuple[Match, ...]]:
        """(program, rate, settlement currency) of the rebate and the BIP programs whose most specific rule
        matches the facts."""
        at = facts.sale.booked_at
        held = facts.certifications & self.required
        key = (bisect_right(self.bounds, at), facts.classification, facts.tier, facts.category, held)
        found = self._matches.get(key)
        if found is None:
            classification, tier, category = facts.classification or "", facts.tier or "", facts.category or ""
            rebates: list[Match] = []
            for program in self.rebates:
                if not program.valid_at(at):
                    continue
                if program.kind is ProgramKind.CAPABILITY_REBATE and program.required_certification not in held:
                    continue
                rule = most_specific(program.rules, classification, tier, category)
                if rule is not None:
                    rebates.append((program.code, rule.rate, program.settlement_currency))
            bips: list[Match] = []
            for program in self.bips:
                if program.valid_at(at):
                    rule = most_specific(program.rules, classification, tier, category)
                    if rule is not None:
                        bips.append((program.code, rule.rate, program.settlement_currency))
            found = self._matches[key] = (tuple(rebates), tuple(bips))
        return found

    def price(self, facts: SaleFacts) -> Pricing:
        """Prices one sale under every program valid at its booked_at; programs stack. An item of a program
        settling in another currency pays `amount x fx_rate x rate` in it, rounded once, with the pair's rate as
        of booked_at; without such a rate the item is unpriced until one is entered."""
        sale = facts.sale
        status = sale_status(facts)
        amount, currency = sale.amount, sale.currency
        if status is _UNPRICED:
            return Pricing(facts, status, (Item(None, None, ZERO, status.value, currency),), (),
                           _detail(facts, status))
        rebates, bips = self._match(facts)
        accrued = status is _ACCRUED
        items = []
        for code, rate, settles in rebates:
            if settles is None or settles == currency:
                value = round_money(rate * amount) if accrued else ZERO
                fx = None
                settles = currency
            else:
                fx = self.fx.rate(currency, settles, sale.booked_at)
                if fx is None:
                    items.append(Item(code, rate, ZERO, _UNPRICED.value, settles, None,
                                      missing_rate(currency, settles, sale.booked_at)))
                    continue
                value = round_money(_converted(amount, fx, code, settles) * rate) if accrued else ZERO
            if not -LARGEST_AMOUNT < value < LARGEST_AMOUNT:
                raise PricingError(f"{code} would pay {value} {settles}, more than a ledger entry can hold")
            items.append(Item(code, rate, value, status.value, settles, fx))
        if not items:
            items.append(Item(None, None, ZERO, NO_PROGRAM, currency))
        if not accrued:
            return Pricing(facts, status, tuple(items), (), _detail(facts, status))
        counted = []
        for code, rate, settles in bips:
            if settles is None or settles == currency:
                counted.append((code, rate, currency, amount))
                continue
            fx = self.fx.rate(currency, settles, sale.booked_at)
            if fx is not None:  # without a rate the sale counts towards the month once one is entered
                counted.append((code, rate, settles, _converted(amount, fx, code, settles)))
        return Pricing(facts, status, tuple(items), tuple(counted), None)


Match = tuple[str, Decimal, str | None]  # program, rate, settlement currency


def missing_rate(base: str, quote: str, moment: datetime) -> str:
    return f"the {base}/{quote} exchange rate as of {isoformat(moment)}"


def _converted(amount: Decimal, fx: Decimal, code: str, currency: str) -> Decimal:
    value = amount * fx
    if not value < LARGEST_AMOUNT:
        raise PricingError(f"converted for {code}, the sale would be {value} {currency}, more than a ledger entry "
                           "can hold")
    return value


def price_sale(facts: SaleFacts, programs: Sequence[Program], fx: FxRates = NO_RATES) -> Pricing:
    return Pricer(programs, fx).price(facts)


# --- explanations, rendered when read -----------------------------------------------------------
@dataclass(frozen=True)
class ItemView:
    """An item as stored, with its sale: all an explanation needs."""

    sale_id: str
    program_code: str | None
    base_amount: Decimal
    rate: Decimal | None
    amount: Decimal
    currency: str
    status: str
    sale_status: str
    classification: str | None
    tier: str | None
    category: str | None
    detail: str | None
    sku: str
    account_id: uuid.UUID
    booked_at: datetime
    sale_period: str
    # The sale's currency, when the item pays in another one at fx_rate (None: the same currency).
    base_currency: str | None = None
    fx_rate: Decimal | None = None


def _why_zero(view: ItemView, status: str) -> str:
    day = isoformat(view.booked_at)
    reasons: dict[str, str] = {
        SaleStatus.NOT_ELIGIBLE: f"product {view.sku} is not rebate-eligible as of {day}",
        SaleStatus.CHANNEL_CONFLICT: (
            f"account {view.account_id} is owned by another partner ({view.detail}) as of {day} (channel conflict)"
        ),
        SaleStatus.ON_HOLD: f"the partner was {view.detail} at {day} (on hold)",
        SaleStatus.CANCELLED: "the sale was cancelled",
    }
    return reasons.get(status, "")


def explain(view: ItemView, program: Program | None) -> str:
    """The sentence a partner reads beside an item: what it pays and why, or why it pays nothing."""
    day = isoformat(view.booked_at)
    if view.status == SaleStatus.UNPRICED:
        return f"Not priced yet: {view.detail} is not known yet; it is priced automatically once known."
    base_currency = view.base_currency or view.currency
    if view.program_code is None or program is None or view.rate is None:
        reason = f"no rebate program applies to this sale as of {day}"
        if view.sale_status != SaleStatus.ACCRUED:
            reason += f"; besides, {_why_zero(view, view.sale_status)}"
        return reason[0].upper() + reason[1:] + "."
    rule = most_specific(program.rules, view.classification or "", view.tier or "", view.category or "")
    described = rule.describe() if rule is not None else "no longer matching"
    basis = (
        f"rule ({described}) matched classification {view.classification}, tier {view.tier}, "
        f"category {view.category} as of {day}"
    )
    if program.kind is ProgramKind.CAPABILITY_REBATE:
        basis += f", with certification {program.required_certification} held"
    if view.fx_rate is not None and base_currency != view.currency:
        full = round_money(view.base_amount * view.fx_rate * view.rate)
        sale = (f"{format_money(view.base_amount)} {base_currency} at {format_rate(view.fx_rate)} {view.currency} "
                f"per {base_currency} (the rate as of {day})")
    else:
        full = round_money(view.rate * view.base_amount)
        sale = f"{format_money(view.base_amount)} {base_currency}"
    if view.status == SaleStatus.ACCRUED:
        return f"{program.code} pays {format_rate(view.rate)} x {sale} = {format_money(full)} {view.currency}: {basis}."
    return (
        f"0.00 because {_why_zero(view, view.status)}; otherwise {program.code} would pay "
        f"{format_rate(view.rate)} x {sale} = {format_money(full)} {view.currency} ({basis})."
    )


# --- the ledger ---------------------------------------------------------------------------------
def next_period(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


@dataclass(frozen=True)
class Periods:
    """Periods up to closed_through are closed for good; whatever changes them posts into the first open one."""

    closed_through: str | None

    @property
    def first_open(self) -> str | None:
        return next_period(self.closed_through) if self.closed_through else None

    def post_into(self, period: str) -> str:
        if self.closed_through is None or period > self.closed_through:
            return period
        return next_period(self.closed_through)


@dataclass(slots=True)
class Position:
    """What the ledger holds for a (sale, program) now: its current item and how many entries it has."""

    amount: Decimal
    status: str
    revision: int
    # The item's stored facts (rate, classification, tier, category, detail, fx_rate): an item is rewritten only
    # when something it shows moved. None: not known, always rewritten.
    shown: tuple[Any, ...] | None = None
    currency: str | None = None  # what it pays in (None: the sale's currency)


@dataclass(slots=True)
class Entry:
    partner_id: uuid.UUID
    account_id: uuid.UUID | None
    sale_id: str | None
    program_code: str | None
    amount: Decimal
    currency: str
    kind: EntryKind
    revision: int
    cause: str
    period: str
    sale_period: str


@dataclass(slots=True)
class ItemRow:
    """The new current state of a (sale, program), as saved."""

    sale_id: str
    program_code: str  # '' for the single no-program or unpriced item
    partner_id: uuid.UUID
    base_amount: Decimal
    rate: Decimal | None
    amount: Decimal
    currency: str
    status: str
    classification: str | None
    tier: str | None
    category: str | None
    detail: str | None
    sale_period: str
    revision: int
    base_currency: str
    fx_rate: Decimal | None


BipGroup = tuple[uuid.UUID, str, str]  # partner, month, currency
BipKey = tuple[uuid.UUID, str, str, str]  # partner, program, month, currency


@dataclass
class Posting:
    """What pricing some sales means for the books: new items, ledger entries, sale statuses and events."""

    items: list[ItemRow] = field(default_factory=list)  # new (sale, program) items
    updated: list[ItemRow] = field(default_factory=list)  # items that exist and moved
    moved: set[str] = field(default_factory=set)  # which ITEM_FIELDS any of the updated items moved in
    removed: list[tuple[str, str]] = field(default_factory=list)  # (sale, program) items that no longer exist
    entries: list[Entry] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)  # sales whose own status moved
    events: list[OutgoingEvent] = field(default_factory=list)
    # (sale, program, partner, month, currency, revenue in that currency, rate) per BIP program a sale counts for.
    contributions: list[tuple[str, str, uuid.UUID, str, str, Decimal, Decimal]] = field(default_factory=list)
    # Each BIP group the sales touch, with the cause its moved bonus carries.
    bip_groups: dict[BipGroup, str] = field(default_factory=dict)
    recomputed: int = 0
    changed: int = 0
    delta: dict[str, Decimal] = field(default_factory=dict)
    # When its events happened: one time for all of them (they are recorded together).
    at: datetime = field(default_factory=utcnow)

    def add_delta(self, currency: str, amount: Decimal) -> None:
        self.delta[currency] = self.delta.get(currency, ZERO) + amount

    def merge(self, other: Posting) -> None:
        self.items += other.items
        self.updated += other.updated
        self.moved |= other.moved
        self.removed += other.removed
        self.entries += other.entries
        self.statuses.update(other.statuses)
        self.events += other.events
        self.contributions += other.contributions
        self.bip_groups.update(other.bip_groups)
        self.recomputed += other.recomputed
        self.changed += other.changed
        for currency, amount in other.delta.items():
            self.add_delta(currency, amount)


@lru_cache(maxsize=65536)
def _text(value: uuid.UUID) -> str:
    """A few partners and accounts recur across thousands of events: their text is made once."""
    return str(value)


def accrual_event(pricing: Pricing, type_: str, cause: str | None, at: datetime) -> OutgoingEvent:
    sale = pricing.facts.sale
    partner = _text(sale.partner_id)
    data: dict[str, Any] = {
        "sale_id": sale.sale_id,
        "partner_id": partner,
        "account_id": _text(sale.account_id),
        "sku": sale.sku,
        "booked_at": isoformat(sale.booked_at),
        "currency": sale.currency,
        "amount": str(sale.amount),
        "status": pricing.status.value,
        "eligible": pricing.eligible,
        "items": [{"program_code": i.program_code, "amount": str(i.amount), "currency": i.currency,
                   "status": i.status} for i in pricing.items],
    }
    if cause is not None:
        data["cause"] = cause
    return OutgoingEvent(topic=TOPIC, type=type_, key=partner, subject=sale.sale_id, data=data, time=at)


def post_sales(
    pricings: Sequence[Pricing], positions: Mapping[str, Mapping[str, Position]], periods: Periods,
    cause: Callable[[Sale], str], bip_currencies: Iterable[str] = (),
) -> Posting:
    """Compares each sale's new items with what the ledger holds and appends one entry per difference.

    An entry is `original` while the sale has no entry yet, else an `adjustment`; each (sale, program) counts
    its revisions from 1; an entry for a sale of a closed period is posted into the first open one. A sale
    priced for the first time is `accrual.recorded`; one whose items moved is `accrual.adjusted`. Entries are in
    their item's currency. Every BIP month a sale falls in, in its own currency and in each of `bip_currencies`,
    is named in `bip_groups` to be settled again.
    """
    posting = Posting()
    currencies = tuple(bip_currencies)
    for pricing in pricings:
        _post_sale(posting, pricing, positions.get(pricing.facts.sale.sale_id, {}), periods, cause, currencies)
    return posting


def _post_sale(
    posting: Posting, pricing: Pricing, held: Mapping[str, Position], periods: Periods, cause: Callable[[Sale], str],
    bip_currencies: tuple[str, ...],
) -> None:
    facts = pricing.facts
    sale = facts.sale
    posting.recomputed += 1
    why = cause(sale)
    post_into = periods.post_into(sale.sale_period)
    if not held:
        # Priced for the first time: every item that pays is an original at revision 1.
        for item in pricing.items:
            revision = 0
            if item.amount:
                revision = 1
                posting.entries.append(Entry(
                    sale.partner_id, sale.account_id, sale.sale_id, item.program_code, item.amount, item.currency,
                    _ORIGINAL, 1, why, post_into, sale.sale_period,
                ))
                posting.add_delta(item.currency, item.amount)
            posting.items.append(_item_row(pricing, item.program_code or "", item, revision))
        posting.changed += 1
        posting.events.append(accrual_event(pricing, "accrual.recorded", None, posting.at))
    else:
        _post_change(posting, pricing, held, why, post_into)
    if pricing.status.value != sale.status:
        posting.statuses[sale.sale_id] = pricing.status.value
    for code, rate, currency, revenue in pricing.bip:
        posting.contributions.append((sale.sale_id, code, sale.partner_id, sale.sale_period, currency, revenue,
                                      rate))
    posting.bip_groups[(sale.partner_id, sale.sale_period, sale.currency)] = why
    for currency in bip_currencies:
        posting.bip_groups[(sale.partner_id, sale.sale_period, currency)] = why


def _item_row(pricing: Pricing, code: str, item: Item, revision: int) -> ItemRow:
    facts, sale = pricing.facts, pricing.facts.sale
    detail = None if item.status == WITHDRAWN else item.detail or pricing.detail
    return ItemRow(sale.sale_id, code, sale.partner_id, sale.amount, item.rate, item.amount, item.currency,
                   item.status, facts.classification, facts.tier, facts.category, detail, sale.sale_period, revision,
                   sale.currency, item.fx_rate)


def _post_change(posting: Posting, pricing: Pricing, held: Mapping[str, Position], why: str, post_into: str) -> None:
    """A sale priced before: each (sale, program) whose amount moved gets the difference as its next revision;
    one that no longer applies is reversed and kept, withdrawn, so its revisions go on counting."""
    sale = pricing.facts.sale
    kind = _ORIGINAL if all(position.revision == 0 for position in held.values()) else _ADJUSTMENT
    changed = False
    seen = set()
    for item in pricing.items:
        code = item.program_code or ""
        seen.add(code)
        position = held.get(code)
        revision = position.revision if position is not None else 0
        if position is None:
            changed = True
            difference = item.amount
        else:
            difference = item.amount - position.amount
            changed = changed or difference != 0 or position.status != item.status
        if difference:
            revision += 1
            posting.entries.append(Entry(
                sale.partner_id, sale.account_id, sale.sale_id, item.program_code, difference, item.currency, kind,
                revision, why, post_into, sale.sale_period,
            ))
            posting.add_delta(item.currency, difference)
        row = _item_row(pricing, code, item, revision)
        if position is None:
            posting.items.append(row)
        elif moved := _moved(position, row):
            posting.updated.append(row)
            posting.moved.update(moved)
    for code, position in held.items():
        if code in seen:
            continue
        if position.status == _WITHDRAWN:
            continue  # already reversed and kept; nothing moves
        changed = True
        revision = position.revision
        currency = position.currency or sale.currency
        if position.amount:
            revision += 1
            posting.entries.append(Entry(
                sale.partner_id, sale.account_id, sale.sale_id, code or None, -position.amount, currency,
                kind, revision, why, post_into, sale.sale_period,
            ))
            posting.add_delta(currency, -position.amount)
        if revision:
            row = _item_row(pricing, code, Item(code, None, ZERO, WITHDRAWN, currency), revision)
            if moved := _moved(position, row):
                posting.updated.append(row)
                posting.moved.update(moved)
        else:
            posting.removed.append((sale.sale_id, code))
    if changed:
        posting.changed += 1
        posting.events.append(accrual_event(pricing, "accrual.adjusted", why, posting.at))


# What repricing can move in an item that exists: its sale's own facts (amount, currency, period) never change.
ITEM_FIELDS = ("amount", "status", "revision", "rate", "classification", "tier", "category", "detail", "fx_rate")


def _moved(position: Position, row: ItemRow) -> tuple[str, ...]:
    """The fields in which the stored item differs from the new one, in anything it shows or counts (every field
    when what it shows is not known); empty when it did not move."""
    new = (row.amount, row.status, row.revision, row.rate, row.classification, row.tier, row.category, row.detail,
           row.fx_rate)
    if position.shown is None:
        return ITEM_FIELDS
    old = (position.amount, position.status, position.revision, *position.shown)
    if old == new:
        return ()
    return tuple(name for name, was, now in zip(ITEM_FIELDS, old, new, strict=True) if was != now)



# --- business incentive programs ----------------------------------------------------------------
@dataclass(frozen=True)
class BipFigures:
    """A BIP outcome's month as its contributions bring it now, and what the ledger booked for it so far."""

    revenue: Decimal
    weighted: Decimal
    booked_bonus: Decimal | None  # None: never booked
    revision: int


@dataclass(frozen=True)
class BipOutcome:
    key: BipKey
    revenue: Decimal
    target: Decimal
    bonus: Decimal
    reached: bool


def bip_bonus(revenue: Decimal, weighted_revenue: Decimal, target: Decimal) -> Decimal:
    """Once the month's matching eligible revenue reaches the target, the rate applies from the first dollar."""
    return round_money(weighted_revenue) if revenue >= target else ZERO


def post_bip(
    figures: Mapping[BipKey, BipFigures], targets: Mapping[str, Decimal], periods: Periods,
    causes: Mapping[BipGroup, str],
) -> tuple[list[BipOutcome], list[Entry]]:
    """Each BIP outcome the sales touched, and one `bip` entry per outcome whose bonus moved."""
    outcomes, entries = [], []
    for key in sorted(figures, key=str):
        partner_id, code, month, currency = key
        figure = figures[key]
        target = targets[code]
        bonus = bip_bonus(figure.revenue, figure.weighted, target)
        # Revenue converted from other currencies is exact; it is shown to the cent.
        outcomes.append(BipOutcome(key, round_money(figure.revenue), target, bonus, figure.revenue >= target))
        before = figure.booked_bonus or ZERO
        if bonus != before:
            entries.append(Entry(
                partner_id, None, None, code, bonus - before, currency, EntryKind.BIP, figure.revision + 1,
                causes[(partner_id, month, currency)], periods.post_into(month), month,
            ))
    return outcomes, entries


# --- recalculation runs -------------------------------------------------------------------------
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
    fx_pair: str | None = None  # "BASE/QUOTE"

    @property
    def key(self) -> str:
        return str(self.account_id or self.partner_id or self.sku or self.program_code or self.fx_pair)


def fx_window(starts: Sequence[datetime], effective_from: datetime, programs: Sequence[Program], quote: str
              ) -> tuple[datetime, datetime | None] | None:
    """The booked_at window whose sales a pair's rate effective from T governs, under the programs settling in
    the quote currency: from T until the pair's next rate, within those programs' validity. None: no sale."""
    later = [start for start in starts if start > effective_from]
    until = min(later) if later else None
    settling = [p for p in programs if p.settlement_currency == quote]
    if not settling:
        return None
    start = max(effective_from, min(p.valid_from for p in settling))
    ends = [p.valid_to for p in settling]
    if all(end is not None for end in ends):
        last = max(end for end in ends if end is not None)
        until = last if until is None else min(until, last)
    if until is not None and until <= start:
        return None
    return start, until


def delta_view(delta: Mapping[str, Decimal]) -> list[dict[str, str]]:

    return [{"currency": c, "amount": format_money(a)} for c, a in sorted(delta.items()) if a]


def recalculation_completed(
    run_id: uuid.UUID, trigger: Trigger, recomputed: int, changed: int, delta: Mapping[str, Decimal],
    finished_at: datetime,
) -> OutgoingEvent:
    return OutgoingEvent(
        topic=TOPIC, type="recalculation.completed", key=trigger.key, subject=str(run_id),
        data={
            "run_id": str(run_id), "trigger_type": trigger.type, "trigger_event_id": trigger.event_id,
            "account_id": str(trigger.account_id) if trigger.account_id else None,
            "partner_id": str(trigger.partner_id) if trigger.partner_id else None,
            "sku": trigger.sku, "program_code": trigger.program_code, "fx_pair": trigger.fx_pair,

            "effective_from": isoformat(trigger.effective_from) if trigger.effective_from else None,
            "sales_recomputed": recomputed, "sales_changed": changed, "delta": delta_view(delta),
            "status": "completed", "finished_at": isoformat(finished_at),
        },
    )


# --- statements and disputes --------------------------------------------------------------------
STATEMENTS_TOPIC = "incentives.statements"


class DisputeStatus(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class DisputeClosed(Exception):
    """A dispute that is no longer open cannot be decided or withdrawn."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the dispute is {status}; only an open dispute can be decided or withdrawn")
        self.status = status


@dataclass(frozen=True)
class Dispute:
    id: uuid.UUID
    partner_id: uuid.UUID
    period: str
    sale_id: str | None
    program_code: str | None
    currency: str
    claimed_amount: Decimal
    reason: str
    status: str


@dataclass(frozen=True)
class Decision:
    """What deciding (or withdrawing) a dispute changes: its new status and, when accepted, the one ledger
    entry that settles it."""

    status: DisputeStatus
    settlement: Entry | None = None


def decide_dispute(dispute: Dispute, accept: bool, amount: Decimal | None, periods: Periods) -> Decision:
    """An open dispute accepted posts one `dispute_settlement` entry of the settled amount (which may differ from
    the claim), caused by the dispute, into the earliest open period (the disputed one while it is still open);
    rejected, it posts nothing. A settlement is not eligible revenue: it moves no item, no BIP month and no fund."""
    if dispute.status != DisputeStatus.OPEN:
        raise DisputeClosed(dispute.status)
    if not accept:
        return Decision(DisputeStatus.REJECTED)
    if amount is None:
        raise ValueError("accepting a dispute needs the settled amount")
    entry = Entry(dispute.partner_id, None, dispute.sale_id, dispute.program_code, amount, dispute.currency,
                  EntryKind.DISPUTE_SETTLEMENT, 1, str(dispute.id), periods.post_into(dispute.period),
                  dispute.period)
    return Decision(DisputeStatus.ACCEPTED, entry if amount else None)


def withdraw_dispute(dispute: Dispute) -> Decision:
    if dispute.status != DisputeStatus.OPEN:
        raise DisputeClosed(dispute.status)
    return Decision(DisputeStatus.WITHDRAWN)


def line_explanation(kind: str, sale_id: str | None, program_code: str | None, amount: Decimal, currency: str,
                     period: str, sale_period: str, cause: str) -> str:
    """The sentence a statement line shows: what the entry is and why it is in this period."""
    money = f"{format_money(amount)} {currency}"
    program = f" under {program_code}" if program_code else ""
    late = f", booked in {sale_period} after that period closed" if sale_period != period else ""
    if kind == EntryKind.ORIGINAL:
        return f"Sale {sale_id} accrues {money}{program}{late}."
    if kind == EntryKind.ADJUSTMENT:
        where = f" (a sale of {sale_period}, posted here because that period is closed)" if late else ""
        return f"Sale {sale_id} was repriced{program}: {money}{where}, caused by event {cause}."
    if kind == EntryKind.BIP:
        where = f" for {sale_period}, posted here because that period is closed" if late else f" for {sale_period}"
        return f"Business incentive bonus{program}{where}: {money}, caused by event {cause}."
    if kind == EntryKind.DISPUTE_SETTLEMENT:
        about = f" about sale {sale_id}" if sale_id else ""
        return f"Settlement of dispute {cause} on the {sale_period} statement{about}{program}: {money}."
    return f"{kind} entry of {money}{program}, caused by {cause}."


def statement_event(type_: str, partner_id: uuid.UUID, period: str, data: dict[str, Any]) -> OutgoingEvent:
    return OutgoingEvent(topic=STATEMENTS_TOPIC, type=type_, key=str(partner_id), subject=period,
                         data={"partner_id": str(partner_id), "period": period, **data})


def dispute_event(type_: str, view: dict[str, Any]) -> OutgoingEvent:
    return OutgoingEvent(topic=STATEMENTS_TOPIC, type=type_, key=str(view["partner_id"]), subject=str(view["id"]),
                         data=view)
