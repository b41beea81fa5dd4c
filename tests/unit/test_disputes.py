"""Dispute rules and statement-line sentences, without a database."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from partnerhub.exports import csv_bytes, preferred
from services.incentives.domain import (
    Dispute,
    DisputeClosed,
    DisputeStatus,
    EntryKind,
    Periods,
    decide_dispute,
    line_explanation,
    withdraw_dispute,
)

PARTNER = uuid.uuid4()


def dispute(status: str = "open", sale_id: str | None = "S-1", period: str = "2026-03") -> Dispute:
    return Dispute(uuid.uuid4(), PARTNER, period, sale_id, "BASE", "USD", Decimal("5.00"), "rate", status)


def test_an_accepted_dispute_posts_its_settled_amount_into_the_earliest_open_period() -> None:
    claim = dispute()
    decision = decide_dispute(claim, True, Decimal("4.00"), Periods("2026-04"))
    assert decision.status == DisputeStatus.ACCEPTED
    entry = decision.settlement
    assert entry is not None
    assert (entry.kind, entry.amount, entry.period, entry.sale_period) == (
        EntryKind.DISPUTE_SETTLEMENT, Decimal("4.00"), "2026-05", "2026-03")
    assert (entry.cause, entry.sale_id, entry.program_code, entry.partner_id) == (str(claim.id), "S-1", "BASE", PARTNER)


def test_a_dispute_on_a_month_still_open_settles_into_that_month() -> None:
    entry = decide_dispute(dispute(), True, Decimal("-2.50"), Periods("2026-01")).settlement
    assert entry is not None and (entry.period, entry.amount) == ("2026-03", Decimal("-2.50"))
    assert decide_dispute(dispute(), True, Decimal("1.00"), Periods(None)).settlement.period == "2026-03"  # type: ignore[union-attr]


def test_rejecting_or_settling_at_zero_posts_nothing() -> None:
    assert decide_dispute(dispute(), False, None, Periods("2026-04")).settlement is None
    accepted = decide_dispute(dispute(), True, Decimal("0.00"), Periods("2026-04"))
    assert accepted.status == DisputeStatus.ACCEPTED and accepted.settlement is None


@pytest.mark.parametrize("status", ["accepted", "rejected", "withdrawn"])
def test_only_an_open_dispute_is_decided_or_withdrawn(status: str) -> None:
    with pytest.raises(DisputeClosed) as refused:
        decide_dispute(dispute(status), True, Decimal("1.00"), Periods(None))
    assert refused.value.status == status and status in str(refused.value)
    with pytest.raises(DisputeClosed):
        withdraw_dispute(dispute(status))
    assert withdraw_dispute(dispute()).status == DisputeStatus.WITHDRAWN


def test_every_line_says_what_it_is_and_why_it_is_in_its_period() -> None:
    def line(kind: str, sale: str | None = "S-1", period: str = "2026-04", sale_period: str = "2026-04") -> str:
        return line_explanation(kind, sale, "BASE", Decimal("12.50"), "USD", period, sale_period, "ev-1")

    assert line("original") == "Sale S-1 accrues 12.50 USD under BASE."
    assert "after that period closed" in line("original", sale_period="2026-03")
    assert line("adjustment") == "Sale S-1 was repriced under BASE: 12.50 USD, caused by event ev-1."
    assert "a sale of 2026-03, posted here because that period is closed" in line("adjustment", sale_period="2026-03")
    assert line("bip", None).startswith("Business incentive bonus under BASE for 2026-04")
    assert line("dispute_settlement") == (
        "Settlement of dispute ev-1 on the 2026-04 statement about sale S-1 under BASE: 12.50 USD.")


def test_the_preferred_media_type_follows_q_values_then_exact_types() -> None:
    offers = ("application/json", "text/csv", "application/pdf")
    assert preferred(None, offers) == "application/json"
    assert preferred("text/csv", offers) == "text/csv"
    assert preferred("application/pdf, */*;q=0.1", offers) == "application/pdf"
    assert preferred("text/html,application/xhtml+xml,*/*;q=0.8", offers) == "application/json"
    assert preferred("text/csv;q=0.4, application/json", offers) == "application/json"
    assert preferred("image/png", offers) == "application/json"


def test_csv_quotes_what_needs_quoting_and_keeps_empty_cells() -> None:
    text = csv_bytes(["a", "b", "c"], [["1,5", None, 'say "hi"']]).decode()
    assert text == 'a,b,c\r\n"1,5",,"say ""hi"""\r\n'
