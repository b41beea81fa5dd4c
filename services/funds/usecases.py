"""Funds use cases: each runs inside the caller's transaction and records the events it causes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi.encoders import jsonable_encoder

from partnerhub.auth import Principal, Role
from partnerhub.db import Transaction
from partnerhub.events import OutgoingEvent
from partnerhub.http import check_if_match
from partnerhub.problems import Problem, conflict, illegal_move, not_found
from partnerhub.timeutil import utcnow
from services.funds import domain
from services.funds.domain import (
    ZERO,
    BalanceFigures,
    ClaimStatus,
    FundFigures,
    LedgerEntry,
    Policy,
    PolicyBreach,
    RequestStatus,
    SaleAccrual,
)
from services.funds.repository import LOCK_CATALOGUE, FundsRepository, Row
from services.funds.schemas import (
    EVENT_TYPES,
    AccrualData,
    Claim,
    ClaimIn,
    DecisionIn,
    Fund,
    FundIn,
    FundRequest,
    FundRequestIn,
)

TOPIC = "funds.funds"
AUTO = "auto"
CLAIM_DEADLINE = "claim deadline"


# --- views --------------------------------------------------------------------------------------
def policy_of(fund: Row) -> Policy:
    return Policy(
        request_lead_working_days=fund.request_lead_working_days,
        claim_window_days=fund.claim_window_days,
        resubmission_window_days=fund.resubmission_window_days,
        lapse_unused=fund.lapse_unused,
    )


def fund_view(fund: Row, principal: Principal, now: datetime) -> Fund:
    admin = principal.role is Role.ADMIN
    accrual = fund.accrual_rate is not None
    return Fund.model_validate({
        "code": fund.code, "kind": fund.kind, "currency": fund.currency, "budget": fund.budget,
        "valid_from": fund.valid_from, "valid_to": fund.valid_to, "accrual_rate": fund.accrual_rate,
        "per_partner_limit": fund.per_partner_limit, "policy": policy_of(fund).__dict__,
        "open": fund.valid_from <= now < fund.valid_to,
        "committed": fund.committed if admin else None,
        "paid": fund.paid if admin else None,
        "available": fund.budget - fund.committed - fund.paid,
        "earned": fund.earned if admin and accrual else None,
        "lapsed": fund.lapsed if admin and accrual else None,
        "created_at": fund.created_at, "updated_at": fund.updated_at,
    })


def visible_to(fund: Row, principal: Principal, now: datetime) -> bool:
    """Admins see every fund; partners and systems see the funds open to apply for."""
    return principal.role is Role.ADMIN or fund.valid_from <= now < fund.valid_to


def request_view(request: Row, claims: list[Row]) -> FundRequest:
    return FundRequest.model_validate({
        **request._mapping, "claims": [Claim.model_validate(dict(c._mapping)) for c in claims]
    })


async def _request(repo: FundsRepository, request_id: uuid.UUID) -> tuple[FundRequest, int]:
    row = await repo.get_request(request_id)
    assert row is not None
    claims = await repo.claims_of([request_id])
    return request_view(row, claims.get(request_id, [])), row.version


async def _claim(repo: FundsRepository, claim_id: uuid.UUID) -> tuple[Claim, int]:
    row = await repo.get_claim(claim_id)
    assert row is not None
    return Claim.model_validate(dict(row._mapping)), row.version


def _breach(exc: PolicyBreach) -> Problem:
    return Problem(
        422, "Policy Rule Breached", exc.detail, rule=exc.rule, errors=[{"loc": ["body", exc.field], "msg": exc.detail}]
    )


def _currency_check(given: str | None, fund_currency: str) -> None:
    if given is not None and given != fund_currency:
        raise Problem(
            422, detail=f"the fund is in {fund_currency}, not {given}",
            errors=[{"loc": ["body", "currency"], "msg": f"must be {fund_currency}"}],
        )


def _ledger(
    partner_id: uuid.UUID, fund_code: str, kind: str, amount: Decimal, cause: str, cause_type: str,
    request_id: uuid.UUID | None = None,
) -> LedgerEntry:
    return LedgerEntry(partner_id, fund_code, kind, amount, cause, cause_type, request_id=request_id)


# --- funds --------------------------------------------------------------------------------------
async def create_fund(tx: Transaction, command: FundIn) -> Row:
    """Creates a fund; an accrual fund is earned at once from the eligible sales already known in its window."""
    repo = FundsRepository(tx.session)
    await repo.lock(LOCK_CATALOGUE)
    policy = command.policy
    inserted = await repo.add_fund({
        "code": command.code, "kind": command.kind.value, "currency": command.currency, "budget": command.budget,
        "valid_from": command.valid_from, "valid_to": command.valid_to, "accrual_rate": command.accrual_rate,
        "per_partner_limit": command.per_partner_limit,
        "request_lead_working_days": policy.request_lead_working_days,
        "claim_window_days": policy.claim_window_days,
        "resubmission_window_days": policy.resubmission_window_days,
        "lapse_unused": policy.lapse_unused,
    })
    if not inserted:
        raise conflict(f"fund {command.code!r} already exists")
    if command.accrual_rate is not None:
        rate = command.accrual_rate
        sales = await repo.eligible_sales(command.currency, command.valid_from, command.valid_to)
        await repo.add_credits([
            {"fund_code": command.code, "sale_id": s.sale_id, "partner_id": s.partner_id,
             "amount": domain.earned_credit(rate, s.eligible_revenue)}
            for s in sales
        ])
        await repo.open_balances_from_credits(command.code, command.per_partner_limit)
        await repo.ledger_from_credits(command.code, command.code)
    fund = await repo.get_fund(command.code)
    assert fund is not None
    return fund


async def get_fund(tx: Transaction, principal: Principal, code: str) -> Row:
    fund = await FundsRepository(tx.session).get_fund(code)
    if fund is None or not visible_to(fund, principal, utcnow()):
        raise not_found(f"fund {code!r}")
    return fund


# --- committing money ---------------------------------------------------------------------------
async def _try_commit(repo: FundsRepository, fund_code: str, partner_id: uuid.UUID, amount: Decimal) -> list[str]:
    """Commits `amount` when it fits the fund and the partner's balance; else says why not. Locks fund, then balance."""
    fund = await repo.lock_fund(fund_code)
    assert fund is not None
    balance = await repo.lock_balance(partner_id, fund_code, fund.per_partner_limit)
    accrual = fund.accrual_rate is not None
    reasons = domain.shortfalls(
        FundFigures(fund.budget, fund.committed, fund.paid),
        BalanceFigures(balance.earned if accrual else None, balance.committed, balance.paid, balance.lapsed,
                       fund.per_partner_limit),
        amount,
    )
    if reasons:
        return reasons
    # The checks above ran under row locks; the conditional updates hold the invariant on their own as well.
    if not await repo.commit_to_fund(fund_code, amount):
        raise RuntimeError(f"fund {fund_code} refused a commitment its locked figures allowed")
    if not await repo.commit_to_balance(partner_id, fund_code, amount, accrual):
        raise RuntimeError(f"balance of {partner_id} in {fund_code} refused a commitment its locked figures allowed")
    return []


async def _release(repo: FundsRepository, request: Row, amount: Decimal, cause_type: str) -> LedgerEntry | None:
    """Gives `amount` of an approved request back to the fund and the partner (fund and balance locked)."""
    if amount <= 0:
        return None
    await repo.move_fund(request.fund_code, committed=-amount)
    await repo.move_balance(request.partner_id, request.fund_code, committed=-amount)
    return _ledger(request.partner_id, request.fund_code, "release", amount, str(request.id), cause_type,
                   request_id=request.id)


def _decided_event(request: FundRequest, decision: str) -> OutgoingEvent:
    data = jsonable_encoder(request.model_dump(mode="json", exclude={"claims"}))
    data["decision"] = decision
    return OutgoingEvent(topic=TOPIC, type="fund.request_decided", key=str(request.partner_id),
                         data=EVENT_TYPES["fund.request_decided"].checked(data))


async def _check_partner_may_request(repo: FundsRepository, partner_id: uuid.UUID) -> None:
    status = await repo.partner_status(partner_id)
    if status in domain.BLOCKED_PARTNER_STATUSES:
        raise conflict(
            f"partner {partner_id} is {status}: a suspended or terminated partner cannot have funds committed",
            partner_status=status,
        )


# --- requests -----------------------------------------------------------------------------------
async def request_funds(
    tx: Transaction, principal: Principal, fund_code: str, command: FundRequestIn
) -> tuple[FundRequest, int]:
    """A partner applies; approved at once when it fits every limit, else submitted for an admin's review."""
    repo = FundsRepository(tx.session)
    now = utcnow()
    fund = await repo.get_fund(fund_code)
    if fund is None or not visible_to(fund, principal, now):
        raise not_found(f"fund {fund_code!r}")
    _currency_check(command.currency, fund.currency)
    await _check_partner_may_request(repo, command.partner_id)
    policy = policy_of(fund)
    try:
        domain.check_fund_open(fund.valid_from, fund.valid_to, now)
        domain.check_lead_time(policy, now.date(), command.planned_start)
        if command.resubmission_of is not None:
            await _check_resubmission(repo, policy, command, fund_code, now)
    except PolicyBreach as exc:
        raise _breach(exc) from exc

    reasons = await _try_commit(repo, fund_code, command.partner_id, command.amount)
    request_id = uuid.uuid4()
    approved = not reasons
    await repo.add_request({
        "id": request_id, "fund_code": fund_code, "partner_id": command.partner_id, "amount": command.amount,
        "currency": fund.currency, "activity": command.activity, "planned_start": command.planned_start,
        "planned_end": command.planned_end, "claim_deadline": domain.claim_deadline(policy, command.planned_end),
        "status": (RequestStatus.APPROVED if approved else RequestStatus.SUBMITTED).value,
        "resubmission_of": command.resubmission_of,
        "review_reason": None if approved else "exceeds what is available now: " + "; ".join(reasons),
        "decision_reason": "fits the available balance and budget" if approved else None,
        "decided_by": AUTO if approved else None, "decided_at": now if approved else None,
        "created_by": principal.sub, "created_at": now, "updated_at": now,
    })
    if approved:
        await repo.post([_ledger(command.partner_id, fund_code, "commitment", command.amount, str(request_id),
                                 "request.approved", request_id=request_id)])
    request, version = await _request(repo, request_id)
    if approved:
        tx.emit(_decided_event(request, "approve"))
    return request, version


async def _check_resubmission(
    repo: FundsRepository, policy: Policy, command: FundRequestIn, fund_code: str, now: datetime
) -> None:
    assert command.resubmission_of is not None
    original = await repo.get_request(command.resubmission_of, lock=True)
    if original is None or original.partner_id != command.partner_id or original.fund_code != fund_code:
        raise PolicyBreach(
            "resubmission",
            f"resubmission_of must name a rejected request of this partner in fund {fund_code}",
            "resubmission_of",
        )
    if original.status != RequestStatus.REJECTED.value:
        raise PolicyBreach(
            "resubmission", f"only a rejected request may be resubmitted; {original.id} is {original.status}",
            "resubmission_of",
        )
    domain.check_resubmission_window(policy, original.decided_at, now)
    if await repo.resubmission_exists(original.id):
        raise conflict(f"request {original.id} was already resubmitted")


async def get_request(tx: Transaction, principal: Principal, request_id: uuid.UUID) -> tuple[FundRequest, int]:
    repo = FundsRepository(tx.session)
    row = await repo.get_request(request_id)
    if row is None or not principal.may_see_partner(row.partner_id):
        raise not_found(f"fund request {request_id}")
    return await _request(repo, request_id)


async def list_requests(
    tx: Transaction, *, partner_id: uuid.UUID | None, status: str | None, fund_code: str | None,
    after: tuple[datetime, uuid.UUID] | None, limit: int,
) -> list[FundRequest]:
    repo = FundsRepository(tx.session)
    rows = await repo.search_requests(
        partner_id=partner_id, status=status, fund_code=fund_code, after=after, limit=limit
    )
    claims = await repo.claims_of([r.id for r in rows])
    return [request_view(r, claims.get(r.id, [])) for r in rows]


async def _locked_request(
    repo: FundsRepository, principal: Principal, request_id: uuid.UUID, if_match: str | None
) -> Row:
    row = await repo.get_request(request_id, lock=True)
    if row is None or not principal.may_see_partner(row.partner_id):
        raise not_found(f"fund request {request_id}")
    check_if_match(if_match, row.version)
    return row


async def decide_request(
    tx: Transaction, principal: Principal, request_id: uuid.UUID, command: DecisionIn, if_match: str | None
) -> tuple[FundRequest, int]:
    repo = FundsRepository(tx.session)
    row = await _locked_request(repo, principal, request_id, if_match)
    wanted = RequestStatus.APPROVED if command.decision == "approve" else RequestStatus.REJECTED
    try:
        domain.check_request_move(RequestStatus(row.status), wanted)
    except domain.IllegalMove as exc:
        raise illegal_move(exc.current, exc.wanted, exc.allowed) from exc
    now = utcnow()
    if wanted is RequestStatus.APPROVED:
        await _check_partner_may_request(repo, row.partner_id)
        reasons = await _try_commit(repo, row.fund_code, row.partner_id, row.amount)
        if reasons:
            raise conflict(
                f"approving {row.amount:.2f} would over-commit: " + "; ".join(reasons), reasons=reasons
            )
        await repo.post([_ledger(row.partner_id, row.fund_code, "commitment", row.amount, str(row.id),
                                 "request.approved", request_id=row.id)])
    await repo.update_request(
        request_id, status=wanted.value, decision_reason=command.reason, decided_by=principal.sub, decided_at=now
    )
    request, version = await _request(repo, request_id)
    tx.emit(_decided_event(request, command.decision))
    return request, version


async def complete_request(
    tx: Transaction, principal: Principal, request_id: uuid.UUID, if_match: str | None
) -> tuple[FundRequest, int]:
    """Ends an approved request: what no claim took is released to the fund and the partner's balance."""
    repo = FundsRepository(tx.session)
    row = await _locked_request(repo, principal, request_id, if_match)
    try:
        domain.check_request_move(RequestStatus(row.status), RequestStatus.COMPLETED)
    except domain.IllegalMove as exc:
        raise illegal_move(exc.current, exc.wanted, exc.allowed) from exc
    await repo.lock_funds([row.fund_code])
    await repo.lock_balances([(row.partner_id, row.fund_code)])
    await _complete(repo, row, principal.sub, "request.completed")
    return await _request(repo, request_id)


async def _complete(repo: FundsRepository, row: Row, by: str, cause_type: str) -> None:
    unclaimed = row.amount - row.claimed
    entry = await _release(repo, row, unclaimed, cause_type)
    await repo.post([entry] if entry else [])
    await repo.update_request(
        row.id, status=RequestStatus.COMPLETED.value, released=row.released + max(unclaimed, ZERO),
        completed_by=by, completed_at=utcnow(),
    )


# --- claims -------------------------------------------------------------------------------------
async def file_claim(
    tx: Transaction, principal: Principal, request_id: uuid.UUID, command: ClaimIn, if_match: str | None = None
) -> tuple[Claim, int]:
    repo = FundsRepository(tx.session)
    row = await _locked_request(repo, principal, request_id, if_match)
    if row.status != RequestStatus.APPROVED.value:
        raise conflict(
            f"claims are filed against an approved request; this one is {row.status}", request_status=row.status
        )
    fund = await repo.get_fund(row.fund_code)
    assert fund is not None
    _currency_check(command.currency, fund.currency)
    try:
        domain.check_claim_window(row.claim_deadline, utcnow(), fund.claim_window_days)
    except PolicyBreach as exc:
        raise _breach(exc) from exc
    remaining = row.amount - row.claimed
    if command.amount > remaining:
        raise conflict(
            f"the claims of a request together stay within its approved {row.amount:.2f}: "
            f"{remaining:.2f} is left to claim",
            remaining=f"{remaining:.2f}",
        )
    claim_id = uuid.uuid4()
    await repo.add_claim({
        "id": claim_id, "request_id": row.id, "fund_code": row.fund_code, "partner_id": row.partner_id,
        "amount": command.amount, "currency": fund.currency, "proof_uri": command.proof_uri,
        "status": ClaimStatus.SUBMITTED.value, "created_by": principal.sub,
    })
    await repo.update_request(row.id, claimed=row.claimed + command.amount)
    return await _claim(repo, claim_id)


async def get_claim(tx: Transaction, principal: Principal, claim_id: uuid.UUID) -> tuple[Claim, int]:
    repo = FundsRepository(tx.session)
    row = await repo.get_claim(claim_id)
    if row is None or not principal.may_see_partner(row.partner_id):
        raise not_found(f"fund claim {claim_id}")
    return await _claim(repo, claim_id)


async def list_claims(
    tx: Transaction, *, partner_id: uuid.UUID | None, status: str | None,
    after: tuple[datetime, uuid.UUID] | None, limit: int,
) -> list[Claim]:
    rows = await FundsRepository(tx.session).search_claims(
        partner_id=partner_id, status=status, after=after, limit=limit
    )
    return [Claim.model_validate(dict(r._mapping)) for r in rows]


async def decide_claim(
    tx: Transaction, principal: Principal, claim_id: uuid.UUID, command: DecisionIn, if_match: str | None
) -> tuple[Claim, int]:
    """Loads the claim and its request locked, lets the domain decide what moves, saves that."""
    repo = FundsRepository(tx.session)
    loaded = await repo.lock_claim_and_request(claim_id)
    if loaded is None:
        raise not_found(f"fund claim {claim_id}")
    request, claim = loaded
    check_if_match(if_match, claim.version)
    now = utcnow()
    try:
        decision = domain.decide_claim(
            domain.ClaimState(claim.id, ClaimStatus(claim.status), claim.amount),
            domain.RequestState(request.id, request.partner_id, request.fund_code, RequestStatus(request.status),
                                request.claimed, request.paid, request.released),
            command.decision == "approve",
            now,
        )
    except domain.IllegalMove as exc:
        raise illegal_move(exc.current, exc.wanted, exc.allowed) from exc
    saved_claim, saved_request = await repo.save_claim_decision(
        request, claim_id, decision, decided_by=principal.sub, reason=command.reason, decided_at=now
    )
    result = Claim.model_validate(dict(saved_claim._mapping))
    for paid in decision.events:
        tx.emit(_claim_paid_event(paid, result, request_view(saved_request, [])))
    return result, saved_claim.version


def _claim_paid_event(paid: domain.ClaimPaid, claim: Claim, request: FundRequest) -> OutgoingEvent:
    data = jsonable_encoder(claim.model_dump(mode="json"))
    data["request"] = jsonable_encoder(request.model_dump(mode="json", exclude={"claims"}))
    # Key and subject are the partner id (CONTRACT §2); the claim and its request are in the data.
    return OutgoingEvent(topic=TOPIC, type="fund.claim_paid", key=str(paid.partner_id),
                         data=EVENT_TYPES["fund.claim_paid"].checked(data))


# --- balances and ledger ------------------------------------------------------------------------
def balance_view(row: Row) -> dict[str, Any]:
    accrual = row.accrual_rate is not None
    fund = FundFigures(row.budget, row.fund_committed, row.fund_paid)
    figures = BalanceFigures(row.earned if accrual else None, row.committed, row.paid, row.lapsed,
                             row.per_partner_limit)
    if accrual:
        available = figures.available_earned
    elif figures.available_limit is not None:
        available = min(figures.available_limit, fund.available)
    else:
        available = fund.available
    return {
        "fund_code": row.fund_code, "kind": row.kind, "currency": row.currency, "earned": figures.earned,
        "committed": row.committed, "paid": row.paid, "lapsed": row.lapsed,
        "per_partner_limit": row.per_partner_limit, "available": available,
    }


# --- events in ----------------------------------------------------------------------------------
def sale_accrual(
    accrual: AccrualData, event_id: str, event_type: str, event_time: datetime | None
) -> SaleAccrual:
    return SaleAccrual(
        event_id=event_id, event_type=event_type, event_time=event_time, sale_id=accrual.sale_id,
        partner_id=accrual.partner_id, currency=accrual.currency, booked_at=accrual.booked_at,
        amount=accrual.amount, status=accrual.status, eligible_revenue=accrual.eligible_revenue,
    )


async def record_accruals(tx: Transaction, accruals: Sequence[SaleAccrual]) -> domain.AccrualPosting:
    """Keeps each sale's latest eligible revenue and moves what it earns in each accrual fund, for a run of
    accrual events at once: four statements, whatever the run's length.

    A sale's events come in order on its partner's partition and the inbox absorbs redeliveries, so the
    latest event applied is the sale's current state. Raises SaleMismatch (nothing is written) when an event
    changes a sale's facts.
    """
    repo = FundsRepository(tx.session)
    # Shared: accrual runs go side by side; creating a fund, which reads every sale, waits for them.
    await repo.lock(LOCK_CATALOGUE, shared=True)
    known, credited = await repo.lock_sales(sorted({a.sale_id for a in accruals}))
    funds = await repo.accrual_funds(sorted({a.currency for a in accruals}))
    posting = domain.post_accruals(accruals, known, credited, funds)
    await repo.save_accruals(posting, known)
    return posting


async def record_accrual(
    tx: Transaction, accrual: AccrualData, event_id: str, event_type: str, event_time: datetime | None
) -> str:
    """One accrual event on its own (a run of one)."""
    posting = await record_accruals(tx, [sale_accrual(accrual, event_id, event_type, event_time)])
    return f"{len(posting.entries)} fund balances moved"


async def replicate_partner(
    tx: Transaction, partner_id: uuid.UUID, status: str, event_id: str, changed_at: datetime | None
) -> None:
    await FundsRepository(tx.session).replicate_partner(partner_id, status, event_id, changed_at)


# --- sweeps -------------------------------------------------------------------------------------
async def complete_overdue_requests(tx: Transaction) -> int:
    """Approved requests past their claim deadline are completed, releasing what was not claimed."""
    repo = FundsRepository(tx.session)
    rows = await repo.overdue_requests(utcnow(), limit=500)
    if not rows:
        return 0
    await repo.lock_funds([r.fund_code for r in rows])
    await repo.lock_balances([(r.partner_id, r.fund_code) for r in rows])
    for row in rows:
        await _complete(repo, row, CLAIM_DEADLINE, "request.claim_deadline")
    return len(rows)


async def lapse_unused_balances(tx: Transaction) -> int:
    """After an accrual fund's valid_to, the earned balance nobody committed lapses (and follows later debits)."""
    repo = FundsRepository(tx.session)
    codes = await repo.accrual_funds_due_to_lapse(utcnow())
    if not codes:
        return 0
    entries: list[LedgerEntry] = []
    for row in await repo.balances_to_lapse(codes):
        delta = domain.lapse_target(row.earned, row.committed, row.paid) - row.lapsed
        await repo.move_balance(row.partner_id, row.fund_code, lapsed=delta)
        entries.append(_ledger(row.partner_id, row.fund_code, "lapse", delta, row.fund_code, "fund.lapsed"))
    await repo.post(entries)
    return len(entries)
