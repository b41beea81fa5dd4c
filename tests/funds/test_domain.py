"""The funds rules without I/O: working days, deadlines, rounding per sale, what fits, the state machines,
deciding a claim, and what runs of accrual events earn."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.funds.domain import (
    AccrualFund,
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
    SaleAccrual,
    SaleFacts,
    SaleMismatch,
    add_working_days,
    check_claim_move,
    check_lead_time,
    check_request_move,
    check_resubmission_window,
    decide_claim,
    earned_credit,
    lapse_target,
    post_accruals,
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


# --- what runs of accrual events earn -----------------------------------------------------------
JAN = datetime(2026, 1, 1, tzinfo=UTC)
APR = datetime(2026, 4, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)
MDF = AccrualFund("MDF", "USD", JAN, END, D("0.05"))
JMF = AccrualFund("JMF", "USD", APR, END, D("0.025"))
EUR = AccrualFund("EUR-MDF", "EUR", JAN, END, D("0.1"))
FUNDS = [EUR, JMF, MDF]
OTHER = uuid.UUID("00000000-0000-0000-0000-00000000000b")


def _accrual(
    sale: str, amount: str, *, status: str = "accrued", booked_at: datetime = datetime(2026, 5, 1, tzinfo=UTC),
    currency: str = "USD", partner: uuid.UUID = PARTNER, event_type: str = "accrual.adjusted",
) -> SaleAccrual:
    value = D(amount)
    return SaleAccrual(
        event_id=f"E-{uuid.uuid4().hex[:8]}", event_type=event_type, event_time=None, sale_id=sale,
        partner_id=partner, currency=currency, booked_at=booked_at, amount=value, status=status,
        eligible_revenue=value if status == "accrued" else D("0.00"),
    )


def _entries(posting_entries: list[LedgerEntry]) -> list[tuple[str | None, str, str, Decimal, str]]:
    return [(e.sale_id, e.fund_code, e.kind, e.amount, e.cause) for e in posting_entries]


def test_a_new_sale_earns_in_every_fund_counting_its_currency_and_booking_time_rounded_once() -> None:
    may = _accrual("S-1", "333.35", event_type="accrual.recorded")
    march = _accrual("S-2", "100.00", booked_at=datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    euro = _accrual("S-3", "10.00", currency="EUR")
    before = _accrual("S-4", "10.00", booked_at=datetime(2025, 12, 31, tzinfo=UTC))
    ineligible = _accrual("S-5", "80.00", status="not_eligible")
    posting = post_accruals([may, march, euro, before, ineligible], {}, {}, FUNDS)
    assert _entries(posting.entries) == [
        ("S-1", "JMF", "credit", D("8.33"), may.event_id),  # 8.33375
        ("S-1", "MDF", "credit", D("16.67"), may.event_id),  # 16.6675
        ("S-2", "MDF", "credit", D("5.00"), march.event_id),
        ("S-3", "EUR-MDF", "credit", D("1.00"), euro.event_id),
    ]
    assert posting.entries[0].cause_type == "accrual.recorded"
    assert [(c.fund_code, c.sale_id, c.amount) for c in posting.credits] == [
        ("EUR-MDF", "S-3", D("1.00")), ("JMF", "S-1", D("8.33")), ("MDF", "S-1", D("16.67")),
        ("MDF", "S-2", D("5.00")),
    ]
    assert {(m.fund_code, m.delta) for m in posting.earned} == {
        ("EUR-MDF", D("1.00")), ("JMF", D("8.33")), ("MDF", D("21.67"))
    }
    assert [s.sale_id for s in posting.sales] == ["S-1", "S-2", "S-3", "S-4", "S-5"]


def test_several_events_for_one_sale_in_a_run_post_each_move_and_the_last_one_wins() -> None:
    recorded = _accrual("S-1", "1000.00", event_type="accrual.recorded")
    conflict = _accrual("S-1", "1000.00", status="channel_conflict")
    repriced = _accrual("S-1", "500.00")
    posting = post_accruals([recorded, conflict, repriced], {}, {}, [MDF])
    assert _entries(posting.entries) == [
        ("S-1", "MDF", "credit", D("50.00"), recorded.event_id),
        ("S-1", "MDF", "debit", D("-50.00"), conflict.event_id),
        ("S-1", "MDF", "credit", D("25.00"), repriced.event_id),
    ]
    assert [(c.sale_id, c.amount) for c in posting.credits] == [("S-1", D("25.00"))]
    assert [(m.partner_id, m.fund_code, m.delta) for m in posting.earned] == [(PARTNER, "MDF", D("25.00"))]
    assert posting.sales == [repriced]


def test_a_known_sale_moves_from_what_it_earns_now() -> None:
    facts = SaleFacts(PARTNER, "USD", datetime(2026, 5, 1, tzinfo=UTC))
    cancelled = _accrual("S-1", "1000.00", status="cancelled")
    same = _accrual("S-2", "400.00")
    posting = post_accruals(
        [cancelled, same], {"S-1": facts, "S-2": facts}, {"S-1": {"MDF": D("50.00")}, "S-2": {"MDF": D("20.00")}},
        [MDF],
    )
    assert _entries(posting.entries) == [("S-1", "MDF", "debit", D("-50.00"), cancelled.event_id)]
    assert [(c.sale_id, c.amount) for c in posting.credits] == [("S-1", D("0.00"))]
    assert [m.delta for m in posting.earned] == [D("-50.00")]
    assert posting.sales == [cancelled, same]


def test_a_run_posts_what_applying_its_events_one_at_a_time_posts() -> None:
    sales = [f"S-{i}" for i in range(4)]
    amounts = ["10.10", "0.10", "999.99", "250.00"]
    statuses = ["accrued", "cancelled", "accrued", "on_hold", "accrued"]
    run = [
        _accrual(sales[i % 4], amounts[(i * 3) % 4], status=statuses[i % 5],
                 partner=PARTNER if i % 4 < 2 else OTHER)
        for i in range(17)
    ]
    at_once = post_accruals(run, {}, {}, FUNDS)

    known: dict[str, SaleFacts] = {}
    credited: dict[str, dict[str, Decimal]] = {}
    one_by_one: list[LedgerEntry] = []
    earned: dict[tuple[uuid.UUID, str], Decimal] = {}
    for accrual in run:
        posting = post_accruals([accrual], known, credited, FUNDS)
        known[accrual.sale_id] = accrual.facts
        for credit in posting.credits:
            credited.setdefault(credit.sale_id, {})[credit.fund_code] = credit.amount
        for move in posting.earned:
            earned[(move.partner_id, move.fund_code)] = earned.get((move.partner_id, move.fund_code), D(0)) + move.delta
        one_by_one += posting.entries
    assert at_once.entries == one_by_one
    assert {(c.sale_id, c.fund_code): c.amount for c in at_once.credits} == {
        (s, f): a for s, funds in credited.items() for f, a in funds.items()
    }
    assert {(m.partner_id, m.fund_code): m.delta for m in at_once.earned} == earned
    # Balances are moved in the lock order: by partner id as PostgreSQL sorts UUIDs, then fund code.
    assert [(m.partner_id, m.fund_code) for m in at_once.earned] == sorted(
        earned, key=lambda k: (str(k[0]), k[1])
    )


def test_an_event_changing_a_sales_facts_is_refused() -> None:
    known = {"S-1": SaleFacts(PARTNER, "USD", datetime(2026, 5, 1, tzinfo=UTC))}
    with pytest.raises(SaleMismatch, match="S-1 is known with partner"):
        post_accruals([_accrual("S-1", "10.00", partner=OTHER)], known, {}, FUNDS)
    with pytest.raises(SaleMismatch):
        post_accruals([_accrual("S-1", "10.00", currency="EUR")], known, {}, FUNDS)
    moved = [_accrual("S-2", "10.00"), _accrual("S-2", "10.00", booked_at=datetime(2026, 5, 2, tzinfo=UTC))]
    with pytest.raises(SaleMismatch, match="S-2"):
        post_accruals(moved, {}, {}, FUNDS)
