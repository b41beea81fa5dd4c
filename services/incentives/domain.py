"""Pricing rules: rule matching, sale status, items and their explanations. Pure, no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from partnerhub.money import format_money, format_rate, round_money
from partnerhub.timeutil import isoformat

ANY = "*"
ZERO = Decimal("0.00")


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


NO_PROGRAM = "no_program"
ON_HOLD_STATUSES = frozenset({"suspended", "terminated"})


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

    def valid_at(self, moment: datetime) -> bool:
        return self.valid_from <= moment and (self.valid_to is None or moment < self.valid_to)


@dataclass(frozen=True)
class SaleFacts:
    """A sale and the state of everything it is priced with, as of its booked_at."""

    sale_id: str
    partner_id: uuid.UUID
    account_id: uuid.UUID
    sku: str
    amount: Decimal
    currency: str
    booked_at: datetime
    cancelled: bool
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


@dataclass(frozen=True)
class Item:
    program_code: str | None
    base_amount: Decimal
    rate: Decimal | None
    amount: Decimal
    status: str
    explanation: str


@dataclass(frozen=True)
class Pricing:
    facts: SaleFacts
    status: SaleStatus
    items: tuple[Item, ...]

    @property
    def eligible(self) -> bool:
        return self.status is SaleStatus.ACCRUED


def sale_status(facts: SaleFacts) -> SaleStatus:
    if facts.cancelled:
        return SaleStatus.CANCELLED
    if not (facts.product_known and facts.account_known and facts.partner_known):
        return SaleStatus.UNPRICED
    if not facts.rebate_eligible:
        return SaleStatus.NOT_ELIGIBLE
    if facts.owner_partner_id is not None and facts.owner_partner_id != facts.partner_id:
        return SaleStatus.CHANNEL_CONFLICT
    if facts.partner_status in ON_HOLD_STATUSES:
        return SaleStatus.ON_HOLD
    return SaleStatus.ACCRUED


def _unknowns(facts: SaleFacts) -> str:
    missing = []
    if not facts.product_known:
        missing.append(f"product {facts.sku}")
    if not facts.account_known:
        missing.append(f"account {facts.account_id}")
    if not facts.partner_known:
        missing.append(f"partner {facts.partner_id}")
    return " and ".join(missing)


def _why_zero(facts: SaleFacts, status: SaleStatus) -> str:
    day = isoformat(facts.booked_at)
    return {
        SaleStatus.NOT_ELIGIBLE: f"product {facts.sku} is not rebate-eligible as of {day}",
        SaleStatus.CHANNEL_CONFLICT: (
            f"account {facts.account_id} is owned by another partner ({facts.owner_partner_id}) as of {day} "
            "(channel conflict)"
        ),
        SaleStatus.ON_HOLD: f"the partner was {facts.partner_status} at {day} (on hold)",
        SaleStatus.CANCELLED: "the sale was cancelled",
    }.get(status, "")


def price_sale(facts: SaleFacts, programs: list[Program]) -> Pricing:
    """Prices one sale under every program valid at its booked_at; programs stack."""
    status = sale_status(facts)
    zero_amount = ZERO
    if status is SaleStatus.UNPRICED:
        item = Item(None, facts.amount, None, zero_amount, status.value,
                    f"Not priced yet: {_unknowns(facts)} is not known yet; it is priced automatically once known.")
        return Pricing(facts, status, (item,))

    items: list[Item] = []
    for program in programs:
        if program.kind is ProgramKind.BIP or not program.valid_at(facts.booked_at):
            continue
        if program.kind is ProgramKind.CAPABILITY_REBATE and program.required_certification not in facts.certifications:
            continue
        rule = most_specific(program.rules, facts.classification or "", facts.tier or "", facts.category or "")
        if rule is None:
            continue
        full = round_money(rule.rate * facts.amount)
        basis = (
            f"rule ({rule.describe()}) matched classification {facts.classification}, tier {facts.tier}, "
            f"category {facts.category} as of {isoformat(facts.booked_at)}"
        )
        if program.kind is ProgramKind.CAPABILITY_REBATE:
            basis += f", with certification {program.required_certification} held"
        if status is SaleStatus.ACCRUED:
            explanation = (
                f"{program.code} pays {format_rate(rule.rate)} x {format_money(facts.amount)} {facts.currency} = "
                f"{format_money(full)} {facts.currency}: {basis}."
            )
            items.append(Item(program.code, facts.amount, rule.rate, full, status.value, explanation))
        else:
            explanation = (
                f"0.00 because {_why_zero(facts, status)}; otherwise {program.code} would pay "
                f"{format_rate(rule.rate)} x {format_money(facts.amount)} = {format_money(full)} {facts.currency} "
                f"({basis})."
            )
            items.append(Item(program.code, facts.amount, rule.rate, zero_amount, status.value, explanation))
    if not items:
        reason = f"no rebate program applies to this sale as of {isoformat(facts.booked_at)}"
        if status is not SaleStatus.ACCRUED:
            reason += f"; besides, {_why_zero(facts, status)}"
        items.append(Item(None, facts.amount, None, zero_amount, NO_PROGRAM, reason[0].upper() + reason[1:] + "."))
    return Pricing(facts, status, tuple(items))


def bip_rates(pricing: Pricing, programs: list[Program]) -> list[tuple[str, Decimal]]:
    """The BIP programs an eligible sale counts towards, each with the rate of its most specific rule."""
    if not pricing.eligible:
        return []
    facts = pricing.facts
    rates = []
    for program in programs:
        if program.kind is not ProgramKind.BIP or not program.valid_at(facts.booked_at):
            continue
        rule = most_specific(program.rules, facts.classification or "", facts.tier or "", facts.category or "")
        if rule is not None:
            rates.append((program.code, rule.rate))
    return rates


def bip_bonus(revenue: Decimal, weighted_revenue: Decimal, target: Decimal) -> Decimal:
    """Once the month's matching eligible revenue reaches the target, the rate applies from the first dollar."""
    return round_money(weighted_revenue) if revenue >= target else ZERO
