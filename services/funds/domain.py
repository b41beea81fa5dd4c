"""Funds rules: kinds, the request and claim state machines, policy deadlines, what fits and deciding a
claim. Pure, no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from partnerhub.money import round_money

ZERO = Decimal("0.00")


class FundKind(StrEnum):
    MDF = "mdf"  # market development funds
    JMF = "jmf"  # joint marketing funds
    ADIF = "adif"  # ad and demand investment funds
    GPIF = "gpif"  # growth partner investment funds


class RequestStatus(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMPLETED = "completed"


class ClaimStatus(StrEnum):
    SUBMITTED = "submitted"
    PAID = "paid"
    REJECTED = "rejected"


REQUEST_MOVES: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.SUBMITTED: frozenset({RequestStatus.APPROVED, RequestStatus.REJECTED}),
    RequestStatus.APPROVED: frozenset({RequestStatus.COMPLETED}),
    RequestStatus.REJECTED: frozenset(),
    RequestStatus.COMPLETED: frozenset(),
}
CLAIM_MOVES: dict[ClaimStatus, frozenset[ClaimStatus]] = {
    ClaimStatus.SUBMITTED: frozenset({ClaimStatus.PAID, ClaimStatus.REJECTED}),
    ClaimStatus.PAID: frozenset(),
    ClaimStatus.REJECTED: frozenset(),
}
BLOCKED_PARTNER_STATUSES = frozenset({"suspended", "terminated"})


class IllegalMove(Exception):
    def __init__(self, current: str, wanted: str, allowed: frozenset[RequestStatus] | frozenset[ClaimStatus]) -> None:
        super().__init__(f"{current} -> {wanted}")
        self.current = current
        self.wanted = wanted
        self.allowed = sorted(s.value for s in allowed)


def check_request_move(current: RequestStatus, wanted: RequestStatus) -> None:
    if wanted not in REQUEST_MOVES[current]:
        raise IllegalMove(current.value, wanted.value, REQUEST_MOVES[current])


def check_claim_move(current: ClaimStatus, wanted: ClaimStatus) -> None:
    if wanted not in CLAIM_MOVES[current]:
        raise IllegalMove(current.value, wanted.value, CLAIM_MOVES[current])


@dataclass(frozen=True)
class Policy:
    """A fund's rules; the defaults are those of the vendors' real partner programs."""

    request_lead_working_days: int = 10
    claim_window_days: int = 90
    resubmission_window_days: int = 45
    lapse_unused: bool = True


class PolicyBreach(Exception):
    """A request or claim that breaks one of the fund's rules (422, naming the rule)."""

    def __init__(self, rule: str, detail: str, field: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail
        self.field = field


def add_working_days(start: date, days: int) -> date:
    """The date `days` working days (Mon-Fri) after `start`, counting from the day after it."""
    current = start
    counted = 0
    while counted < days:
        current += timedelta(days=1)
        if current.weekday() < 5:
            counted += 1
    return current


def check_fund_open(valid_from: datetime, valid_to: datetime, now: datetime) -> None:
    if not valid_from <= now < valid_to:
        raise PolicyBreach(
            "fund_validity",
            f"the fund takes requests from {valid_from.isoformat()} until {valid_to.isoformat()}, not now",
            "fund_code",
        )


def check_lead_time(policy: Policy, today: date, planned_start: datetime) -> None:
    earliest = add_working_days(today, policy.request_lead_working_days)
    if planned_start.date() < earliest:
        raise PolicyBreach(
            "request_lead_time",
            f"a request must come at least {policy.request_lead_working_days} working days (Mon-Fri) before "
            f"planned_start: requested on {today.isoformat()}, the earliest planned_start is {earliest.isoformat()}",
            "planned_start",
        )


def claim_deadline(policy: Policy, planned_end: datetime) -> datetime:
    return planned_end + timedelta(days=policy.claim_window_days)


def check_claim_window(deadline: datetime, now: datetime, window_days: int) -> None:
    if now > deadline:
        raise PolicyBreach(
            "claim_window",
            f"claims are accepted within {window_days} days after planned_end, until {deadline.isoformat()}",
            "amount",
        )


def check_resubmission_window(policy: Policy, rejected_at: datetime, now: datetime) -> None:
    until = rejected_at + timedelta(days=policy.resubmission_window_days)
    if now > until:
        raise PolicyBreach(
            "resubmission_window",
            f"a rejected request may be resubmitted within {policy.resubmission_window_days} days of its "
            f"rejection, until {until.isoformat()}",
            "resubmission_of",
        )


def earned_credit(rate: Decimal, eligible_revenue: Decimal) -> Decimal:
    """What one sale earns in a fund: rate x its eligible revenue, half-up to the cent once per sale."""
    return round_money(rate * eligible_revenue)


@dataclass(frozen=True)
class FundFigures:
    budget: Decimal
    committed: Decimal
    paid: Decimal

    @property
    def available(self) -> Decimal:
        return self.budget - self.committed - self.paid


@dataclass(frozen=True)
class BalanceFigures:
    """One partner's figures in one fund; `earned` is None in a budget fund."""

    earned: Decimal | None
    committed: Decimal
    paid: Decimal
    lapsed: Decimal
    limit: Decimal | None

    @property
    def available_earned(self) -> Decimal | None:
        if self.earned is None:
            return None
        return self.earned - self.committed - self.paid - self.lapsed

    @property
    def available_limit(self) -> Decimal | None:
        if self.limit is None:
            return None
        return self.limit - self.committed - self.paid

    def available(self, fund: FundFigures) -> Decimal:
        """What this partner may still have approved: its own balance, within what the fund has left."""
        candidates = [fund.available]
        candidates += [v for v in (self.available_earned, self.available_limit) if v is not None]
        return min(candidates)


def shortfalls(fund: FundFigures, balance: BalanceFigures, amount: Decimal) -> list[str]:
    """Why `amount` cannot be committed now; empty when it fits every limit."""
    reasons: list[str] = []
    if amount > fund.available:
        reasons.append(f"the fund has {fund.available:.2f} of its budget available")
    earned = balance.available_earned
    if earned is not None and amount > earned:
        reasons.append(f"the partner's available earned balance is {earned:.2f}")
    limit = balance.available_limit
    if limit is not None and amount > limit:
        reasons.append(f"the partner has {limit:.2f} left of its per-partner limit of {balance.limit:.2f}")
    return reasons


def lapse_target(earned: Decimal, committed: Decimal, paid: Decimal) -> Decimal:
    """After the fund's valid_to, whatever earned balance is not committed or paid has lapsed."""
    return max(earned - committed - paid, ZERO)


@dataclass(frozen=True)
class LedgerEntry:
    """One line of a partner's fund ledger: what moved, by how much, and what caused it."""

    partner_id: uuid.UUID
    fund_code: str
    kind: str
    amount: Decimal
    cause: str
    cause_type: str
    sale_id: str | None = None
    request_id: uuid.UUID | None = None
    claim_id: uuid.UUID | None = None


# --- deciding a claim ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimState:
    id: uuid.UUID
    status: ClaimStatus
    amount: Decimal


@dataclass(frozen=True)
class RequestState:
    """The request a claim draws on, as far as deciding the claim needs it."""

    id: uuid.UUID
    partner_id: uuid.UUID
    fund_code: str
    status: RequestStatus
    claimed: Decimal
    paid: Decimal
    released: Decimal


@dataclass(frozen=True)
class Movement:
    """What is added to committed and paid; a claim moves the fund and the partner's balance alike."""

    committed: Decimal = ZERO
    paid: Decimal = ZERO

    @property
    def moves(self) -> bool:
        return bool(self.committed or self.paid)


@dataclass(frozen=True)
class ClaimPaid:
    """A claim was paid from its request's commitment; published as `fund.claim_paid`."""

    claim_id: uuid.UUID
    request_id: uuid.UUID
    partner_id: uuid.UUID


@dataclass(frozen=True)
class ClaimDecision:
    status: ClaimStatus
    paid_at: datetime | None
    claimed: Decimal
    paid: Decimal
    released: Decimal
    money: Movement
    entries: tuple[LedgerEntry, ...]
    events: tuple[ClaimPaid, ...]


def decide_claim(claim: ClaimState, request: RequestState, approve: bool, now: datetime) -> ClaimDecision:
    """Approving pays the claim from the request's commitment; rejecting frees its amount to claim again,
    or, once the request is completed, gives it back to the fund. Raises IllegalMove for a decided claim."""
    wanted = ClaimStatus.PAID if approve else ClaimStatus.REJECTED
    check_claim_move(claim.status, wanted)
    amount = claim.amount
    if wanted is ClaimStatus.PAID:
        return ClaimDecision(
            status=wanted, paid_at=now, claimed=request.claimed, paid=request.paid + amount,
            released=request.released, money=Movement(committed=-amount, paid=amount),
            entries=(LedgerEntry(request.partner_id, request.fund_code, "payout", amount, str(claim.id), "claim.paid",
                                 request_id=request.id, claim_id=claim.id),),
            events=(ClaimPaid(claim.id, request.id, request.partner_id),),
        )
    if request.status is not RequestStatus.COMPLETED:
        return ClaimDecision(
            status=wanted, paid_at=None, claimed=request.claimed - amount, paid=request.paid,
            released=request.released, money=Movement(), entries=(), events=(),
        )
    # The request is closed: nothing can claim what this claim held back, so it goes back to the fund now.
    return ClaimDecision(
        status=wanted, paid_at=None, claimed=request.claimed - amount, paid=request.paid,
        released=request.released + amount, money=Movement(committed=-amount),
        entries=(LedgerEntry(request.partner_id, request.fund_code, "release", amount, str(request.id),
                             "claim.rejected", request_id=request.id, claim_id=claim.id),),
        events=(),
    )

