"""Funds rules: kinds, the request and claim state machines, policy deadlines, what fits, deciding a
claim and what accrual events earn. Pure, no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

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


class LedgerEntry(NamedTuple):
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


# --- what accrual events earn -------------------------------------------------------------------
# Accruals arrive by the thousand per second: their rows are named tuples, cheap to build and compare.
class SaleMismatch(Exception):
    """An accrual event names a sale funds knows with another partner, currency or booking time."""


class SaleFacts(NamedTuple):
    """What never changes about a sale: whose it is, its currency and when it was booked."""

    partner_id: uuid.UUID
    currency: str
    booked_at: datetime


class SaleAccrual(NamedTuple):
    """One accrual.recorded / accrual.adjusted event: the sale's whole current state and the event's identity."""

    event_id: str
    event_type: str
    event_time: datetime | None
    sale_id: str
    partner_id: uuid.UUID
    currency: str
    booked_at: datetime
    amount: Decimal
    status: str
    eligible_revenue: Decimal

    @property
    def facts(self) -> SaleFacts:
        return SaleFacts(self.partner_id, self.currency, self.booked_at)


@dataclass(frozen=True)
class AccrualFund:
    code: str
    currency: str
    valid_from: datetime
    valid_to: datetime
    rate: Decimal

    def counts(self, currency: str, booked_at: datetime) -> bool:
        """A fund counts the sales in its currency booked within its window, whenever it was created."""
        return currency == self.currency and self.valid_from <= booked_at < self.valid_to


class Credit(NamedTuple):
    """What one sale currently earns in one fund."""

    fund_code: str
    sale_id: str
    partner_id: uuid.UUID
    amount: Decimal


class EarnedMove(NamedTuple):
    partner_id: uuid.UUID
    fund_code: str
    delta: Decimal


@dataclass(frozen=True)
class AccrualPosting:
    """What a run of accrual events changes: each sale's latest state, the credits that changed, the earned
    balances (one move per partner and fund, in lock order) and the ledger entries, one per event and fund."""

    sales: list[SaleAccrual] = field(default_factory=list)
    credits: list[Credit] = field(default_factory=list)
    earned: list[EarnedMove] = field(default_factory=list)
    entries: list[LedgerEntry] = field(default_factory=list)


def post_accruals(
    accruals: Sequence[SaleAccrual],
    known: Mapping[str, SaleFacts],
    credited: Mapping[str, Mapping[str, Decimal]],
    funds: Sequence[AccrualFund],
) -> AccrualPosting:
    """Applies accrual events in order, each against the state the ones before it left.

    `known` holds the facts of the sales already replicated, `credited` what each of them earns now per fund.
    Each event moves a sale's credit in each fund that counts it to rate x eligible revenue, rounded once per
    sale; the difference is one ledger entry caused by that event, so a run of several events for one sale
    posts the same entries as applying them one at a time, and the last one is the sale's state.
    Raises SaleMismatch when an event changes a sale's partner, currency or booking time.
    """
    by_currency: dict[str, list[AccrualFund]] = {}
    for fund in sorted(funds, key=lambda f: f.code):
        by_currency.setdefault(fund.currency, []).append(fund)
    current: dict[str, dict[str, Decimal]] = {}
    latest: dict[str, SaleAccrual] = {}
    changed: dict[tuple[str, str], Credit] = {}
    earned: dict[tuple[uuid.UUID, str], Decimal] = {}
    entries: list[LedgerEntry] = []
    for accrual in accruals:
        sale = accrual.sale_id
        before: SaleFacts | SaleAccrual | None = latest.get(sale) or known.get(sale)
        if before is not None and (
            before.partner_id != accrual.partner_id
            or before.currency != accrual.currency
            or before.booked_at != accrual.booked_at
        ):
            raise SaleMismatch(
                f"sale {sale} is known with partner {before.partner_id}, currency {before.currency} and booked_at "
                f"{before.booked_at.isoformat()}; a sale's facts never change"
            )
        latest[sale] = accrual
        credits = current.get(sale)
        if credits is None:
            credits = current[sale] = dict(credited.get(sale, {}))
        news = {
            f.code: earned_credit(f.rate, accrual.eligible_revenue)
            for f in by_currency.get(accrual.currency, ())
            if f.counts(accrual.currency, accrual.booked_at)
        }
        codes: Iterable[str] = news
        if credits:
            # A fund that no longer counts the sale (none does today: funds and facts never change) takes it back.
            codes = sorted(news.keys() | credits.keys())
        for code in codes:
            new = news.get(code, ZERO)
            old = credits.get(code)
            if old == new or (old is None and not new):
                continue
            delta = new - (old or ZERO)
            credits[code] = new
            changed[(code, sale)] = Credit(code, sale, accrual.partner_id, new)
            key = (accrual.partner_id, code)
            earned[key] = earned.get(key, ZERO) + delta
            entries.append(LedgerEntry(accrual.partner_id, code, "credit" if delta > 0 else "debit", delta,
                                       accrual.event_id, accrual.event_type, sale))
    return AccrualPosting(
        sales=[latest[s] for s in sorted(latest)],
        credits=[changed[k] for k in sorted(changed)],
        # UUIDs order by their bytes, as PostgreSQL orders them: this is the balances' lock order.
        earned=[EarnedMove(p, f, earned[(p, f)]) for p, f in sorted(earned)],
        entries=entries,
    )
