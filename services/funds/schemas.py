"""Funds API models and the upstream event data funds consumes."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from partnerhub.catalog import EventType, by_type
from partnerhub.types import (
    DATE_PATTERN,
    TIMESTAMP_PATTERN,
    Currency,
    FreeText,
    Input,
    Money,
    PositiveMoney,
    PositiveRate,
    Rate,
    UtcDatetime,
    no_control_characters,
)
from services.funds.domain import ClaimStatus, FundKind, RequestStatus

_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date_or_timestamp(raw: object) -> object:
    """A plain date (2026-03-02) is that day's start in UTC; anything else must be an RFC 3339 timestamp."""
    if isinstance(raw, str) and _PLAIN_DATE.match(raw):
        return f"{raw}T00:00:00Z"
    return raw


# A plain date (that day's start in UTC) or an RFC 3339 timestamp, within the contract's bounds.
PlannedTime = Annotated[
    UtcDatetime,
    BeforeValidator(_date_or_timestamp),
    WithJsonSchema({"anyOf": [
        {"type": "string", "pattern": TIMESTAMP_PATTERN},
        {"type": "string", "pattern": DATE_PATTERN},
    ], "examples": ["2026-03-02T00:00:00Z", "2026-03-02"]}),
]


# NUMERIC(18, 2) holds up to 10^16; sums of amounts must fit too.
# Evidence of an activity: any absolute URI without spaces or control characters.
PROOF_URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s\u0000-\u001f\u007f-\u009f]+$"


class PolicyIn(Input):
    request_lead_working_days: StrictInt = Field(default=10, ge=0, le=260)
    claim_window_days: StrictInt = Field(default=90, ge=0, le=3650)
    resubmission_window_days: StrictInt = Field(default=45, ge=0, le=3650)
    lapse_unused: StrictBool = True


class FundIn(Input):
    code: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    kind: FundKind
    currency: Currency
    budget: PositiveMoney
    valid_from: UtcDatetime
    valid_to: UtcDatetime
    accrual_rate: PositiveRate | None = None
    per_partner_limit: PositiveMoney | None = None
    policy: PolicyIn = Field(default_factory=PolicyIn)

    @model_validator(mode="after")
    def consistent(self) -> FundIn:
        if self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from (the window is [valid_from, valid_to))")
        return self


class Policy(BaseModel):
    request_lead_working_days: int
    claim_window_days: int
    resubmission_window_days: int
    lapse_unused: bool


class Fund(BaseModel):
    code: str
    kind: FundKind
    currency: str
    budget: PositiveMoney
    valid_from: UtcDatetime
    valid_to: UtcDatetime
    accrual_rate: Rate | None
    per_partner_limit: Money | None
    policy: Policy
    open: bool = Field(description="takes requests now: valid_from <= now < valid_to")
    committed: Money | None = Field(description="admin only (null for other roles)")
    paid: Money | None = Field(description="admin only (null for other roles)")
    available: Money = Field(description="budget - committed - paid")
    earned: Money | None = Field(description="accrual funds, admin only: earned by all partners together")
    lapsed: Money | None = Field(description="accrual funds, admin only: earned balances that lapsed at valid_to")
    created_at: UtcDatetime
    updated_at: UtcDatetime


class FundRequestIn(Input):
    partner_id: uuid.UUID
    amount: PositiveMoney
    currency: Currency | None = Field(default=None, description="optional; must be the fund's")
    activity: FreeText = Field(min_length=1)
    planned_start: PlannedTime
    planned_end: PlannedTime
    resubmission_of: uuid.UUID | None = Field(default=None, description="the rejected request this one resubmits")

    @model_validator(mode="after")
    def consistent(self) -> FundRequestIn:
        if self.planned_end < self.planned_start:
            raise ValueError("planned_end must not be before planned_start")
        return self


class DecisionIn(Input):
    decision: Literal["approve", "reject"]
    reason: FreeText | None = None


class ClaimIn(Input):
    amount: PositiveMoney
    currency: Currency | None = Field(default=None, description="optional; must be the fund's")
    proof_uri: str = Field(min_length=1, max_length=2000, pattern=PROOF_URI_PATTERN)


class Claim(BaseModel):
    id: uuid.UUID
    request_id: uuid.UUID
    fund_code: str
    partner_id: uuid.UUID
    amount: Money
    currency: str
    proof_uri: str
    status: ClaimStatus
    decision_reason: str | None
    decided_by: str | None
    decided_at: UtcDatetime | None
    paid_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class FundRequest(BaseModel):
    id: uuid.UUID
    fund_code: str
    partner_id: uuid.UUID
    amount: Money
    currency: str
    activity: str
    planned_start: UtcDatetime
    planned_end: UtcDatetime
    claim_deadline: UtcDatetime
    status: RequestStatus
    resubmission_of: uuid.UUID | None
    review_reason: str | None = Field(description="why a submitted request awaits review instead of being approved")
    decision_reason: str | None
    decided_by: str | None = Field(description="the deciding admin, or 'auto' when approved at once")
    decided_at: UtcDatetime | None
    claimed: Money = Field(description="claims submitted or paid")
    paid: Money
    released: Money = Field(description="given back to the fund when completed")
    completed_by: str | None
    completed_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    claims: list[Claim] = []


class Balance(BaseModel):
    fund_code: str
    kind: FundKind
    currency: str
    earned: Money | None = Field(description="accrual funds: accrual_rate x eligible revenue; null for budget funds")
    committed: Money
    paid: Money
    lapsed: Money
    per_partner_limit: Money | None
    available: Money = Field(
        description="accrual funds: earned - committed - paid - lapsed (negative when earned fell below what "
        "is committed); budget funds: what is left of the per-partner limit, else of the fund's budget"
    )


class LedgerEntry(BaseModel):
    id: int
    fund_code: str
    kind: Literal["credit", "debit", "commitment", "release", "payout", "lapse"]
    amount: Money = Field(
        description="credit +, debit - (changes to earned); commitment, release, payout: the amount moved; "
        "lapse: the amount that lapsed (negative when a later debit gives back part of a lapse)"
    )
    currency: str
    sale_id: str | None
    request_id: uuid.UUID | None
    claim_id: uuid.UUID | None
    cause: str = Field(description="the event id, request, claim or sweep that caused it")
    cause_type: str
    at: UtcDatetime


# --- upstream event data ------------------------------------------------------------------------
class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


SaleStatus = Literal["unpriced", "not_eligible", "channel_conflict", "on_hold", "accrued", "cancelled"]


class AccrualItem(Lenient):
    program_code: str | None
    amount: Money
    status: str


class AccrualData(Lenient):
    """accrual.recorded / accrual.adjusted: the sale's whole current state as incentives priced it."""

    sale_id: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(no_control_characters)]
    partner_id: uuid.UUID
    account_id: uuid.UUID | None = None
    booked_at: UtcDatetime
    currency: Currency
    amount: Money
    status: SaleStatus
    eligible: bool
    items: list[AccrualItem] = []
    cause: str | None = None

    @model_validator(mode="after")
    def eligible_means_accrued(self) -> AccrualData:
        if self.eligible != (self.status == "accrued"):
            raise ValueError("eligible must be true exactly when status is accrued")
        return self

    @property
    def eligible_revenue(self) -> Decimal:
        return self.amount if self.eligible else Decimal("0.00")


PartnerStatus = Literal["pending", "active", "suspended", "terminated"]


class PartnerData(Lenient):
    id: uuid.UUID
    status: PartnerStatus


class PartnerStatusChangedData(PartnerData):
    to: PartnerStatus
    changed_at: UtcDatetime | None = None


# --- events on funds.funds (partnerhub.catalog) -----------------------------------------------------------
class RequestDecidedData(FundRequest):
    """The request as decided (its claims are not in the event)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    decision: Literal["approve", "reject"]


class DecidedRequest(FundRequest):
    model_config = ConfigDict(extra="forbid")


class ClaimPaidData(Claim):
    """The claim as paid, with the request it draws on (without its claims)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    request: DecidedRequest


EVENTS = (
    EventType("funds.funds", "fund.request_decided", RequestDecidedData,
              "A fund request was approved (at once or by an admin), rejected, or sent back for changes.", "funds",
              "the partner id", "the partner id"),
    EventType("funds.funds", "fund.claim_paid", ClaimPaidData, "A claim was approved and paid.", "funds",
              "the partner id", "the partner id"),
)
EVENT_TYPES = by_type(EVENTS)
