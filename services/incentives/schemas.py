"""Incentives API models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from partnerhub.catalog import EventData, EventType, by_type
from partnerhub.types import (
    Code,
    Currency,
    ExchangeRate,
    FreeText,
    Input,
    Instant,
    Money,
    Name,
    PositiveMoney,
    Rate,
    UtcDatetime,
)
from services.incentives.domain import ANY, ProgramKind

CLASSIFICATIONS = ("strategic", "key", "commercial", "smb")
TIERS = ("registered", "silver", "gold", "platinum")


class SaleIn(Input):
    sale_id: Code
    partner_id: uuid.UUID
    account_id: uuid.UUID
    sku: Code
    amount: PositiveMoney = Field(description="above zero: a sale that is undone is cancelled instead")
    currency: Currency
    booked_at: UtcDatetime


class CancelIn(Input):
    cancelled_at: UtcDatetime


class SaleCancelled(BaseModel):
    sale_id: Code
    cancelled_at: UtcDatetime


class SaleAccepted(BaseModel):
    sale_id: str
    outcome: str
    status: str | None


class ProductIn(Input):
    name: Name
    category: Code
    rebate_eligible: StrictBool
    standalone_software: StrictBool = False
    effective_from: UtcDatetime | None = None


class Product(BaseModel):
    sku: str
    name: str
    category: str
    rebate_eligible: StrictBool
    standalone_software: bool
    created_at: datetime
    updated_at: datetime


class RuleIn(Input):
    classification: str = Field(default=ANY, json_schema_extra={"enum": [ANY, *CLASSIFICATIONS]})
    tier: str = Field(default=ANY, json_schema_extra={"enum": [ANY, *TIERS]})
    category: Code = ANY
    rate: Rate

    @model_validator(mode="after")
    def known_values(self) -> RuleIn:
        if self.classification not in (ANY, *CLASSIFICATIONS):
            raise ValueError(f"classification must be '*' or one of {', '.join(CLASSIFICATIONS)}")
        if self.tier not in (ANY, *TIERS):
            raise ValueError(f"tier must be '*' or one of {', '.join(TIERS)}")
        return self


class ProgramIn(Input):
    code: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    name: Name
    kind: ProgramKind
    valid_from: UtcDatetime
    valid_to: UtcDatetime | None = None
    required_certification: Code | None = None
    target: PositiveMoney | None = None
    settlement_currency: Currency | None = Field(
        default=None, description="what its items and BIP months pay in, each sale converted at the pair's rate as "
        "of its booked_at; null: each sale's own currency. Fixed once the program exists")
    rules: list[RuleIn] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def consistent(self) -> ProgramIn:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        if self.kind is ProgramKind.CAPABILITY_REBATE and not self.required_certification:
            raise ValueError("a capability_rebate program needs required_certification")
        if self.kind is not ProgramKind.CAPABILITY_REBATE and self.required_certification:
            raise ValueError("only a capability_rebate program takes required_certification")
        if self.kind is ProgramKind.BIP and (self.target is None or self.target <= 0):
            raise ValueError("a bip program needs a positive target (the month's eligible revenue to reach)")
        if self.kind is not ProgramKind.BIP and self.target is not None:
            raise ValueError("only a bip program takes a target")
        return self


class ProgramEnd(Input):
    valid_to: UtcDatetime


class RuleOut(BaseModel):
    classification: str
    tier: str
    category: str
    rate: Rate


class Program(BaseModel):
    code: str
    name: str
    kind: ProgramKind
    valid_from: UtcDatetime
    valid_to: UtcDatetime | None
    required_certification: str | None
    target: Money | None
    settlement_currency: str | None = None
    rules: list[RuleOut]
    created_at: UtcDatetime


class Accrual(BaseModel):
    sale_id: str
    program_code: str | None
    base_amount: Money = Field(description="the sale's amount, in base_currency")
    base_currency: str = Field(description="the sale's currency")
    fx_rate: ExchangeRate | None = Field(
        description="the base/settlement rate as of booked_at the item was converted at; \"1\" for the same "
        "currency; null while that rate is not known (the item is unpriced)")
    rate: Rate | None
    amount: Money = Field(description="base_amount x fx_rate x rate, rounded half-up once, in currency")
    currency: str = Field(description="what the item pays in: its program's settlement currency or the sale's")
    status: str
    classification: str | None
    tier: str | None
    explanation: str
    period: str


class SaleView(BaseModel):
    sale_id: str
    partner_id: uuid.UUID
    account_id: uuid.UUID
    sku: str
    amount: Money
    currency: str
    booked_at: Instant
    status: str = Field(description="the sale's status; received while it waits to be priced; or cancelled")
    cancelled_at: Instant | None
    pricing_error: str | None = Field(
        default=None, description="why the sale could not be priced: it is set aside until a change touches it"
    )
    items: list[Accrual]


class LedgerEntry(BaseModel):
    id: uuid.UUID
    sale_id: str | None
    account_id: uuid.UUID | None
    program_code: str | None
    amount: Money
    currency: str
    kind: str
    revision: int
    cause: str
    period: str
    sale_period: str
    run_id: uuid.UUID | None
    created_at: UtcDatetime


class DeltaOut(BaseModel):
    currency: str
    amount: str


class RunOutcome(BaseModel):
    """What triggered a recalculation run, whom it ran for, and what it changed."""

    trigger_type: str
    trigger_event_id: str
    account_id: uuid.UUID | None
    partner_id: uuid.UUID | None
    sku: str | None
    program_code: str | None
    effective_from: UtcDatetime | None
    fx_pair: str | None = Field(default=None, description="BASE/QUOTE of an fx_rate.changed run")
    status: str
    sales_recomputed: int
    sales_changed: int
    delta: list[DeltaOut]


class RecalculationRun(RunOutcome):
    id: uuid.UUID
    started_at: UtcDatetime
    finished_at: UtcDatetime | None


class BipProgress(BaseModel):
    program_code: str
    period: str
    currency: str
    revenue: Money
    target: Money
    reached: bool
    bonus: Money
    explanation: str


class StatementTotals(BaseModel):
    currency: str
    eligible_revenue: Money
    rebate: Money
    bip_bonus: Money
    adjustments: Money
    total: Money


class Statement(BaseModel):
    partner_id: uuid.UUID
    period: str
    status: str
    totals: list[StatementTotals]
    confirmed_at: Instant | None = Field(default=None, description="when the partner confirmed the closed statement")
    confirmed_by: str | None = Field(default=None, description="who confirmed it (the token's subject)")


class StatementLine(BaseModel):
    entry_id: uuid.UUID
    kind: Literal["original", "adjustment", "bip", "dispute_settlement"]
    sale_id: str | None
    program_code: str | None
    amount: Money = Field(description="signed")
    currency: str
    sale_period: str
    cause: str = Field(description="the event or dispute id that caused the entry")
    explanation: str
    posted_at: Instant


class FxRateIn(Input):
    rate: ExchangeRate = Field(description="from effective_from on, 1 base = rate quote")
    effective_from: UtcDatetime


class FxRatePoint(BaseModel):
    effective_from: UtcDatetime
    rate: ExchangeRate
    recorded_at: UtcDatetime
    recorded_by: str
    event_id: str = Field(description="the trigger_event_id of the recalculation run it caused")
    replaced_rate: ExchangeRate | None = Field(description="the rate this one corrected at the same moment, if any")


class FxTimeline(BaseModel):
    base: str
    quote: str
    rates: list[FxRatePoint] = Field(description="in effective order")


class FxTimelines(BaseModel):
    items: list[FxTimeline]


class FxRun(BaseModel):
    run_id: uuid.UUID | None
    trigger_event_id: str
    sales_recomputed: int
    sales_changed: int
    delta: list[DeltaOut]


class FxRateChanged(FxTimeline):
    recalculation: FxRun | None = Field(
        description="the fx_rate.changed run that repriced the sales the rate governs; null when the same rate was "
        "already in place")


PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class DisputeIn(Input):
    partner_id: uuid.UUID
    period: str = Field(pattern=PERIOD_PATTERN, description="the statement's calendar month, YYYY-MM")
    sale_id: Code | None = None
    program_code: Code | None = None
    currency: Currency
    claimed_amount: Money = Field(description="signed: what the partner believes it is owed beyond the statement")
    reason: FreeText = Field(min_length=1)


class AcceptDispute(Input):
    decision: Literal["accept"]
    amount: Money = Field(description="the settlement, signed (may differ from the claim)")
    reason: FreeText = Field(min_length=1)


class RejectDispute(Input):
    decision: Literal["reject"]
    amount: Money | None = Field(default=None, description="ignored: a rejection settles nothing")
    reason: FreeText = Field(min_length=1)


DisputeDecisionIn = Annotated[AcceptDispute | RejectDispute, Field(discriminator="decision")]


class Settlement(BaseModel):
    entry_id: uuid.UUID
    amount: Money
    period: str = Field(description="the period the settlement was posted into")


class Dispute(BaseModel):
    id: uuid.UUID
    partner_id: uuid.UUID
    period: str
    sale_id: str | None
    program_code: str | None
    currency: str
    claimed_amount: Money
    reason: str
    status: Literal["open", "accepted", "rejected", "withdrawn"]
    decision: Literal["accept", "reject"] | None
    decision_reason: str | None
    decided_by: str | None
    decided_at: Instant | None
    settled_amount: Money | None
    settlement: Settlement | None
    created_at: Instant


class PeriodClosed(BaseModel):
    period: str
    status: str
    closed_through: str
    newly_closed: list[str]


# --- events (partnerhub.catalog) --------------------------------------------------------------------------
class SaleRecorded(SaleIn):
    """sale.recorded as taken in from sales systems: the fields of POST /v1/sales; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")


class AccrualItemData(EventData):
    program_code: str | None = Field(description="null for a sale no program applies to, or not priced yet")
    amount: Money = Field(description="what it pays now, in currency")
    currency: str
    status: str = Field(description="the sale's status, or no_program, unpriced (a missing rate), withdrawn")


class AccrualRecordedData(EventData):
    """The sale's whole current state: all a consumer (funds) needs."""

    sale_id: str
    partner_id: uuid.UUID
    account_id: uuid.UUID
    sku: str
    booked_at: Instant
    currency: str
    amount: Money = Field(description="the sale's amount, in its currency")
    status: str = Field(description="unpriced, not_eligible, channel_conflict, on_hold, accrued or cancelled")
    eligible: bool = Field(description="status is accrued: the amount is eligible revenue")
    items: list[AccrualItemData]


class AccrualAdjustedData(AccrualRecordedData):
    cause: str = Field(description="the id of the event (or run trigger) that moved the items")


class RecalculationCompletedData(RunOutcome):
    model_config = ConfigDict(extra="forbid")

    run_id: uuid.UUID
    status: Literal["completed"]
    finished_at: UtcDatetime


class StatementTotalsData(StatementTotals):
    model_config = ConfigDict(extra="forbid")


class StatementClosedData(EventData):
    partner_id: uuid.UUID
    period: str
    status: Literal["closed"]
    totals: list[StatementTotalsData]


class StatementConfirmedData(EventData):
    partner_id: uuid.UUID
    period: str
    confirmed_at: Instant
    confirmed_by: str
    totals: list[StatementTotalsData]


class DisputeData(Dispute):
    """The dispute as GET /v1/disputes/{id} shows it."""

    model_config = ConfigDict(extra="forbid")


def _accrual_event(type_: str, data: type[BaseModel], summary: str, key: str = "the partner id",
                   subject: str = "the sale_id") -> EventType:
    return EventType("incentives.accruals", type_, data, summary, "incentives", key, subject)


def _statement_event(type_: str, data: type[BaseModel], summary: str, subject: str) -> EventType:
    return EventType("incentives.statements", type_, data, summary, "incentives", "the partner id", subject)


EVENTS = (
    EventType("sales.recorded", "sale.recorded", SaleRecorded, "A sale booked by a partner, to be priced.",
              "the vendor's sales systems", "the account id", "the sale_id", inbound=True),
    EventType("sales.recorded", "sale.cancelled", SaleCancelled, "A sale undone: its accruals are reversed.",
              "the vendor's sales systems", "the account id", "the sale_id", inbound=True),
    _accrual_event("accrual.recorded", AccrualRecordedData, "A sale priced for the first time."),
    _accrual_event("accrual.adjusted", AccrualAdjustedData, "A sale whose items moved (a change repriced it)."),
    _accrual_event("recalculation.completed", RecalculationCompletedData,
                   "A recalculation run finished: what triggered it, how many sales it repriced, the delta.",
                   key="the account, partner, sku, program or FX pair it ran for", subject="the run id"),
    _statement_event("statement.closed", StatementClosedData, "A partner's statement was closed, with its totals.",
                     "the period"),
    _statement_event("statement.confirmed", StatementConfirmedData, "The partner confirmed a closed statement.",
                     "the period"),
    _statement_event("dispute.opened", DisputeData, "A partner disputed a statement, a sale or a sale under one "
                     "program.", "the dispute id"),
    _statement_event("dispute.resolved", DisputeData, "A dispute was accepted (with its settlement) or rejected.",
                     "the dispute id"),
)
EVENT_TYPES = by_type(EVENTS)
