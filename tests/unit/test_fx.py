"""Settlement currencies in the one pure posting: conversion as of booked_at, rounded once; a missing rate leaves
the item unpriced; entries and BIP months in the settlement currency; the window a rate governs."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from services.incentives.domain import (
    FxRates,
    ItemView,
    Position,
    Pricer,
    Program,
    ProgramKind,
    Rule,
    Timeline,
    explain,
    fx_window,
    post_sales,
)
from tests.unit.test_posting import ACCOUNT, OPEN, PARTNER, cause_of, replicas, sale

JAN, MAR, MAY = (datetime(2026, month, 1, tzinfo=UTC) for month in (1, 3, 5))
USD_BASE = Program("USD-BASE", "base", ProgramKind.BASE_REBATE, JAN, None, None,
                   (Rule("*", "*", "*", Decimal("0.05")),), settlement_currency="USD")
LOCAL = Program("LOCAL", "local", ProgramKind.BASE_REBATE, JAN, None, None, (Rule("*", "*", "*", Decimal("0.01")),))
USD_BIP = Program("USD-BIP", "bip", ProgramKind.BIP, JAN, None, None, (Rule("*", "*", "*", Decimal("0.02")),),
                  Decimal("1000.00"), settlement_currency="USD")


def rates(*points: tuple[datetime, str]) -> FxRates:
    return FxRates({("THB", "USD"): Timeline([(at, Decimal(rate)) for at, rate in points])})


def thb_sale(amount: str = "100000.00", month: int = 3, **changes: object):  # type: ignore[no-untyped-def]
    return replace(sale(amount=amount, month=month, currency="THB"), **changes)


def test_a_rate_holds_from_its_moment_on_and_only_for_the_pair_named() -> None:
    fx = rates((MAR, "0.028"), (MAY, "0.03"))
    assert fx.rate("THB", "USD", JAN) is None  # before the first rate there is none
    assert fx.rate("THB", "USD", MAR) == Decimal("0.028")
    assert fx.rate("THB", "USD", datetime(2026, 4, 30, tzinfo=UTC)) == Decimal("0.028")
    assert fx.rate("THB", "USD", MAY) == Decimal("0.03")
    assert fx.rate("USD", "THB", MAY) is None  # no inverse is derived
    assert fx.rate("THB", "EUR", MAY) is None  # nor a cross rate
    assert fx.rate("THB", "THB", JAN) == Decimal("1")


def test_an_item_pays_base_times_fx_times_rate_in_the_settlement_currency_rounded_once() -> None:
    pricer = Pricer([USD_BASE, LOCAL], rates((JAN, "0.0283337")))
    pricing = pricer.price(replicas().facts(thb_sale("333.33")))
    by_code = {i.program_code: i for i in pricing.items}
    # 333.33 x 0.0283337 x 0.05 = 0.472227... -> 0.47 (rounding the converted amount first would give 9.44 x 0.05)
    assert (by_code["USD-BASE"].amount, by_code["USD-BASE"].currency, by_code["USD-BASE"].fx_rate) == (
        Decimal("0.47"), "USD", Decimal("0.0283337"))
    assert (by_code["LOCAL"].amount, by_code["LOCAL"].currency, by_code["LOCAL"].fx_rate) == (
        Decimal("3.33"), "THB", None)
    posting = post_sales([pricing], {}, OPEN, cause_of("rec"))
    assert sorted((e.program_code, e.amount, e.currency) for e in posting.entries) == [
        ("LOCAL", Decimal("3.33"), "THB"), ("USD-BASE", Decimal("0.47"), "USD")]
    assert posting.delta == {"USD": Decimal("0.47"), "THB": Decimal("3.33")}
    rows = {row.program_code: row for row in posting.items}
    assert (rows["USD-BASE"].base_currency, rows["USD-BASE"].currency, rows["USD-BASE"].base_amount) == (
        "THB", "USD", Decimal("333.33"))
    assert posting.events[0].data["items"][0]["currency"] in {"THB", "USD"}


def test_without_a_rate_the_item_is_unpriced_and_says_which_rate_it_waits_for() -> None:
    pricing = Pricer([USD_BASE, LOCAL], rates((MAY, "0.03"))).price(replicas().facts(thb_sale()))
    waiting = next(i for i in pricing.items if i.program_code == "USD-BASE")
    assert (waiting.status, waiting.amount, waiting.fx_rate) == ("unpriced", Decimal("0.00"), None)
    assert waiting.detail == "the THB/USD exchange rate as of 2026-03-05T00:00:00Z"
    assert pricing.status == "accrued"  # the sale itself is eligible: its other program pays
    posting = post_sales([pricing], {}, OPEN, cause_of("rec"))
    row = next(r for r in posting.items if r.program_code == "USD-BASE")
    assert (row.revision, row.detail) == (0, waiting.detail)
    assert [e.program_code for e in posting.entries] == ["LOCAL"]
    view = ItemView("S-1", "USD-BASE", Decimal("100000.00"), Decimal("0.05"), Decimal("0.00"), "USD", "unpriced",
                    "accrued", "commercial", "gold", "software", row.detail, "SKU", ACCOUNT,
                    datetime(2026, 3, 5, tzinfo=UTC), "2026-03", "THB", None)
    assert explain(view, USD_BASE) == ("Not priced yet: the THB/USD exchange rate as of 2026-03-05T00:00:00Z is not "
                                       "known yet; it is priced automatically once known.")


def test_a_corrected_rate_posts_the_difference_in_the_settlement_currency() -> None:
    before = Pricer([USD_BASE], rates((JAN, "0.028"))).price(replicas().facts(thb_sale()))
    assert before.items[0].amount == Decimal("140.00")
    held = {"S-1": {"USD-BASE": Position(Decimal("140.00"), "accrued", 1, None, "USD")}}
    after = Pricer([USD_BASE], rates((JAN, "0.029"))).price(replicas().facts(thb_sale(status="accrued")))
    posting = post_sales([after], held, OPEN, cause_of("fx-1"))
    assert [(e.kind, e.amount, e.currency, e.revision, e.cause) for e in posting.entries] == [
        ("adjustment", Decimal("5.00"), "USD", 2, "fx-1")]
    assert [row.fx_rate for row in posting.updated] == [Decimal("0.029")]


def test_a_withdrawn_item_is_reversed_in_the_currency_it_paid_in() -> None:
    held = {"S-1": {"USD-BASE": Position(Decimal("140.00"), "accrued", 1, None, "USD")}}
    ended = replace(USD_BASE, valid_to=datetime(2026, 2, 1, tzinfo=UTC))
    pricing = Pricer([ended], rates((JAN, "0.028"))).price(replicas().facts(thb_sale(status="accrued")))
    posting = post_sales([pricing], held, OPEN, cause_of("ended"))
    assert [(e.program_code, e.amount, e.currency) for e in posting.entries] == [
        ("USD-BASE", Decimal("-140.00"), "USD")]


def test_bip_months_count_converted_revenue_in_the_settlement_currency() -> None:
    pricer = Pricer([USD_BIP], rates((JAN, "0.03")))
    pricing = pricer.price(replicas().facts(thb_sale("20000.00")))
    assert pricing.bip == (("USD-BIP", Decimal("0.02"), "USD", Decimal("600.0000")),)
    posting = post_sales([pricing], {}, OPEN, cause_of("rec"), pricer.bip_currencies)
    assert posting.contributions == [("S-1", "USD-BIP", PARTNER, "2026-03", "USD", Decimal("600.0000"),
                                      Decimal("0.02"))]
    # The month is settled in the sale's currency and in the programme's, so a sale that stops counting
    # moves the USD month too.
    assert set(posting.bip_groups) == {(PARTNER, "2026-03", "THB"), (PARTNER, "2026-03", "USD")}
    missing = Pricer([USD_BIP], FxRates()).price(replicas().facts(thb_sale("20000.00")))
    assert missing.bip == ()  # counted once a rate is entered (the rate reprices the sale)


def test_a_rate_governs_the_sales_from_its_moment_until_the_pairs_next_rate_under_programs_settling_in_it() -> None:
    assert fx_window([JAN, MAY], MAR, [USD_BASE], "USD") == (MAR, MAY)
    assert fx_window([JAN, MAR], MAR, [USD_BASE], "USD") == (MAR, None)  # a correction of the last rate
    assert fx_window([], datetime(2025, 6, 1, tzinfo=UTC), [USD_BASE], "USD") == (JAN, None)  # from the programme on
    ended = replace(USD_BASE, valid_to=MAR)
    assert fx_window([], JAN, [ended], "USD") == (JAN, MAR)
    assert fx_window([], MAY, [ended], "USD") is None  # no programme settling in USD then
    assert fx_window([], JAN, [LOCAL], "USD") is None
    assert fx_window([], JAN, [ended, USD_BASE], "USD") == (JAN, None)
