"""The funds rules without I/O: working days, deadlines, rounding per sale, what fits, the state machines,
and deciding a claim."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.funds.domain import (
    BalanceFigures,
    ClaimPaid,
    ClaimState,
    ClaimStatus,
    FundFigures,
    IllegalMove,
    LedgerEntry,
    Movement,
    Policy,
    PolicyBreach,
    RequestState,
    RequestStatus,
    add_working_days,
    check_claim_move,
    check_lead_time,
    check_request_move,
    check_resubmission_window,
    decide_claim,
    earned_credit,
    lapse_target,
    shortfalls,
)

D = Decimal


def test_working_days_skip_weekends_and_count_from_the_day_after() -> None:
    monday = date(2026, 3, 2)
    assert add_working_days(monday, 1) == date(2026, 3, 3)
    assert add_working_days(monday, 10) == date(2026, 3, 16)
    friday = date(2026, 3, 6)
    assert add_working_days(friday, 1) == date(2026, 3, 9)
    saturday = date(2026, 3, 7)
    assert add_working_days(saturday, 10) == date(2026, 3, 20)


def test_a_request_needs_ten_working_days_before_planned_start() -> None:
    policy = Policy()
    today = date(2026, 3, 2)
    check_lead_time(policy, today, datetime(2026, 3, 16, tzinfo=UTC))
    with pytest.raises(PolicyBreach) as raised:
        check_lead_time(policy, today, datetime(2026, 3, 13, 23, 59, tzinfo=UTC))
    assert raised.value.rule == "request_lead_time" and "2026-03-16" in raised.value.detail
    check_lead_time(Policy(request_lead_working_days=0), today, datetime(2026, 3, 2, tzinfo=UTC))


def test_resubmission_is_open_for_45_days_after_the_rejection() -> None:
    rejected = datetime(2026, 3, 1, tzinfo=UTC)
    check_resubmission_window(Policy(), rejected, datetime(2026, 4, 15, tzinfo=UTC))
    with pytest.raises(PolicyBreach) as raised:
        check_resubmission_window(Policy(), rejected, datetime(2026, 4, 15, 0, 0, 1, tzinfo=UTC))
    assert raised.value.rule == "resubmission_window"


def test_earned_is_rounded_half_up_once_per_sale() -> None:
    assert earned_credit(D("0.05"), D("333.35")) == D("16.67")
    assert earned_credit(D("0.05"), D("0.10")) == D("0.01")
    assert earned_credit(D("0.05"), D("0.00")) == D("0.00")
    assert earned_credit(D("0.025"), D("100.20")) == D("2.51")


def test_shortfalls_name_every_limit_a_request_would_break() -> None:
    fund = FundFigures(budget=D("1000"), committed=D("900"), paid=D("50"))
    assert fund.available == D("50")
    budget_only = BalanceFigures(None, D("0"), D("0"), D("0"), None)
    assert shortfalls(fund, budget_only, D("50")) == []
    assert shortfalls(fund, budget_only, D("50.01")) == ["the fund has 50.00 of its budget available"]

    roomy = FundFigures(D("100000"), D("0"), D("0"))
    earned = BalanceFigures(D("200"), D("100"), D("50"), D("0"), None)
    assert earned.available_earned == D("50")
    assert shortfalls(roomy, earned, D("50")) == []
    assert shortfalls(roomy, earned, D("51")) == ["the partner's available earned balance is 50.00"]

    limited = BalanceFigures(None, D("200"), D("100"), D("0"), D("500"))
    assert shortfalls(roomy, limited, D("200")) == []
    assert "per-partner limit of 500.00" in shortfalls(roomy, limited, D("200.01"))[0]
    assert limited.available(fund) == D("50")


def test_unused_earned_balance_lapses_and_never_below_zero() -> None:
    assert lapse_target(D("100"), D("30"), D("20")) == D("50")
    assert lapse_target(D("10"), D("30"), D("20")) == D("0")


def test_request_and_claim_moves_name_the_allowed_ones() -> None:
    check_request_move(RequestStatus.SUBMITTED, RequestStatus.APPROVED)
    check_request_move(RequestStatus.APPROVED, RequestStatus.COMPLETED)
    with pytest.raises(IllegalMove) as raised:
        check_request_move(RequestStatus.SUBMITTED, RequestStatus.COMPLETED)
    assert raised.value.allowed == ["approved", "rejected"]
    with pytest.raises(IllegalMove) as raised:
        check_request_move(RequestStatus.REJECTED, RequestStatus.APPROVED)
    assert raised.value.allowed == []
    check_claim_move(ClaimStatus.SUBMITTED, ClaimStatus.PAID)
    with pytest.raises(IllegalMove):
        check_claim_move(ClaimStatus.PAID, ClaimStatus.REJECTED)


# --- deciding a claim ---------------------------------------------------------------------------
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
PARTNER = uuid.UUID("00000000-0000-0000-0000-00000000000a")


def _request(status: RequestStatus = RequestStatus.APPROVED) -> RequestState:
    return RequestState(uuid.uuid4(), PARTNER, "MDF-1", status, claimed=D("900.00"), paid=D("100.00"),
                        released=D("0.00"))


def test_approving_a_claim_pays_it_from_the_request_commitment() -> None:
    request = _request()
    claim = ClaimState(uuid.uuid4(), ClaimStatus.SUBMITTED, D("600.00"))
    decision = decide_claim(claim, request, approve=True, now=NOW)
    assert (decision.status, decision.paid_at) == (ClaimStatus.PAID, NOW)
    assert (decision.claimed, decision.paid, decision.released) == (D("900.00"), D("700.00"), D("0.00"))
    assert decision.money == Movement(committed=D("-600.00"), paid=D("600.00"))
    assert decision.entries == (
        LedgerEntry(PARTNER, "MDF-1", "payout", D("600.00"), str(claim.id), "claim.paid", request_id=request.id,
                    claim_id=claim.id),
    )
    assert decision.events == (ClaimPaid(claim.id, request.id, PARTNER),)


def test_rejecting_a_claim_frees_its_amount_to_claim_again_and_moves_no_money() -> None:
    claim = ClaimState(uuid.uuid4(), ClaimStatus.SUBMITTED, D("300.00"))
    decision = decide_claim(claim, _request(), approve=False, now=NOW)
    assert (decision.status, decision.paid_at) == (ClaimStatus.REJECTED, None)
    assert (decision.claimed, decision.paid, decision.released) == (D("600.00"), D("100.00"), D("0.00"))
    assert not decision.money.moves and decision.entries == () and decision.events == ()


def test_rejecting_a_claim_of_a_completed_request_releases_it_to_the_fund() -> None:
    request = _request(RequestStatus.COMPLETED)
    claim = ClaimState(uuid.uuid4(), ClaimStatus.SUBMITTED, D("150.00"))
    decision = decide_claim(claim, request, approve=False, now=NOW)
    assert (decision.claimed, decision.released) == (D("750.00"), D("150.00"))
    assert decision.money == Movement(committed=D("-150.00"))
    assert decision.entries == (
        LedgerEntry(PARTNER, "MDF-1", "release", D("150.00"), str(request.id), "claim.rejected",
                    request_id=request.id, claim_id=claim.id),
    )
    assert decision.events == ()


def test_a_decided_claim_cannot_be_decided_again() -> None:
    for status in (ClaimStatus.PAID, ClaimStatus.REJECTED):
        with pytest.raises(IllegalMove) as raised:
            decide_claim(ClaimState(uuid.uuid4(), status, D("1.00")), _request(), approve=True, now=NOW)
        assert raised.value.current == status.value and raised.value.allowed == []
