"""The pure pricing rules: most-specific rule matching, statuses in contract order, items and explanations."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.incentives.domain import (
    ItemView,
    Pricing,
    Program,
    ProgramKind,
    Rule,
    Sale,
    SaleFacts,
    SaleStatus,
    bip_bonus,
    explain,
    find_tie,
    most_specific,
    price_sale,
)

SELLER = uuid.uuid4()
BOOKED = datetime(2026, 3, 5, 10, tzinfo=UTC)
SALE = Sale("S-1", SELLER, uuid.uuid4(), "SKU", Decimal("1000.00"), "USD", BOOKED, "2026-03", "evt-1")
FACTS = SaleFacts(
    sale=SALE, product_known=True, rebate_eligible=True, category="software", account_known=True,
    classification="commercial", owner_partner_id=SELLER, partner_known=True, tier="gold", partner_status="active",
    certifications=frozenset(),
)


def facts(**changes: Any) -> SaleFacts:
    sale_changes = {k: changes.pop(k) for k in list(changes) if k in Sale.__dataclass_fields__}
    return replace(FACTS, sale=replace(FACTS.sale, **sale_changes), **changes)


def program(code: str, *rules: Rule, kind: ProgramKind = ProgramKind.BASE_REBATE, cert: str | None = None,
            valid_to: datetime | None = None) -> Program:
    return Program(code, code, kind, datetime(2026, 1, 1, tzinfo=UTC), valid_to, cert, rules)


def rule(classification: str = "*", tier: str = "*", category: str = "*", rate: str = "0.01") -> Rule:
    return Rule(classification, tier, category, Decimal(rate))


def explanations(priced: Pricing, programs: list[Program]) -> list[str]:
    """The sentences the API renders for these items when they are read."""
    by_code = {p.code: p for p in programs}
    sale = priced.facts.sale
    return [
        explain(ItemView(sale.sale_id, item.program_code, sale.amount, item.rate, item.amount, sale.currency,
                         item.status, priced.status.value, priced.facts.classification, priced.facts.tier,
                         priced.facts.category, priced.detail, sale.sku, sale.account_id, sale.booked_at,
                         sale.sale_period),
                by_code.get(item.program_code or ""))
        for item in priced.items
    ]


def test_the_most_specific_matching_rule_applies() -> None:
    rules = (rule(rate="0.01"), rule("commercial", rate="0.02"), rule("commercial", "gold", rate="0.03"))
    chosen = most_specific(rules, "commercial", "gold", "software")
    assert chosen is not None and chosen.rate == Decimal("0.03")
    assert most_specific(rules, "key", "gold", "software") == rules[0]
    assert most_specific((rule("key"),), "commercial", "gold", "software") is None


def test_rules_that_could_tie_are_found() -> None:
    assert find_tie([rule("key"), rule(tier="gold")]) == (0, 1)
    assert find_tie([rule("key"), rule("commercial")]) is None
    assert find_tie([rule("key", "gold"), rule("key")]) is None
    assert find_tie([rule("key"), rule("key")]) == (0, 1)


def test_base_rebate_pays_from_the_first_dollar_rounded_half_up() -> None:
    priced = price_sale(facts(amount=Decimal("0.10")), [program("B", rule(rate="0.05"))])
    assert priced.status is SaleStatus.ACCRUED and priced.eligible
    assert [(i.program_code, i.amount) for i in priced.items] == [("B", Decimal("0.01"))]


def test_programs_stack_and_capability_needs_the_certification() -> None:
    programs = [program("B", rule(rate="0.05")), program("CAP", rule(rate="0.02"), kind=ProgramKind.CAPABILITY_REBATE,
                                                       cert="CLOUD-PRO")]
    without = price_sale(FACTS, programs)
    assert [i.program_code for i in without.items] == ["B"]
    with_cert = price_sale(facts(certifications=frozenset({"CLOUD-PRO"})), programs)
    assert [(i.program_code, str(i.amount)) for i in with_cert.items] == [("B", "50.00"), ("CAP", "20.00")]
    assert "CLOUD-PRO" in explanations(with_cert, programs)[1]


def test_validity_windows_are_half_open() -> None:
    ends = program("B", rule(), valid_to=BOOKED)
    assert price_sale(FACTS, [ends]).items[0].status == "no_program"


def test_statuses_in_contract_order() -> None:
    programs = [program("B", rule(rate="0.05"))]
    rival = uuid.uuid4()
    cases = [
        (facts(product_known=False, rebate_eligible=False, partner_status="suspended"), SaleStatus.UNPRICED),
        (facts(rebate_eligible=False, owner_partner_id=rival), SaleStatus.NOT_ELIGIBLE),
        (facts(owner_partner_id=rival, partner_status="suspended"), SaleStatus.CHANNEL_CONFLICT),
        (facts(partner_status="terminated"), SaleStatus.ON_HOLD),
        (facts(partner_status="pending"), SaleStatus.ACCRUED),
        (facts(owner_partner_id=None, classification="strategic"), SaleStatus.ACCRUED),
        (facts(cancelled_at=BOOKED), SaleStatus.CANCELLED),
    ]
    for case, status in cases:
        priced = price_sale(case, programs)
        assert priced.status is status, (case, priced.status)


def test_zero_items_explain_what_they_would_have_paid() -> None:
    programs = [program("B", rule(rate="0.05"))]
    rival = uuid.uuid4()
    priced = price_sale(facts(owner_partner_id=rival), programs)
    item = priced.items[0]
    assert item.amount == Decimal("0.00") and item.status == "channel_conflict"
    sentence = explanations(priced, programs)[0]
    assert "would pay" in sentence and "50.00" in sentence and str(rival) in sentence
    on_hold = explanations(price_sale(facts(partner_status="suspended"), programs), programs)[0]
    assert "suspended" in on_hold and "on hold" in on_hold


def test_unpriced_and_no_program_items() -> None:
    unpriced = price_sale(facts(account_known=False, classification=None), [program("B", rule())])
    assert [(i.program_code, i.status) for i in unpriced.items] == [(None, "unpriced")]
    sentence = explanations(unpriced, [])[0]
    assert "not known yet" in sentence and str(SALE.account_id) in sentence
    nothing = price_sale(FACTS, [program("K", rule("key"))])
    assert [(i.program_code, i.status, i.amount) for i in nothing.items] == [(None, "no_program", Decimal("0.00"))]
    assert explanations(nothing, [])[0].startswith("No rebate program applies")


def test_the_readme_worked_example() -> None:
    base = program("BASE-2026", rule("commercial", rate="0.05"), rule("key", rate="0.08"))
    bip = Program("BIP-Q", "BIP-Q", ProgramKind.BIP, datetime(2026, 1, 1, tzinfo=UTC), None, None,
                  (rule(rate="0.01"),), Decimal("10000.00"))
    sale_1 = facts(sale_id="SALE-1", amount=Decimal("4000.00"), booked_at=datetime(2026, 3, 5, tzinfo=UTC))
    sale_2 = facts(sale_id="SALE-2", amount=Decimal("7000.00"), booked_at=datetime(2026, 3, 20, tzinfo=UTC))
    assert [i.amount for i in price_sale(sale_1, [base, bip]).items] == [Decimal("200.00")]
    assert [i.amount for i in price_sale(sale_2, [base, bip]).items] == [Decimal("350.00")]
    assert bip_bonus(Decimal("11000.00"), Decimal("110.00"), Decimal("10000.00")) == Decimal("110.00")
    rekeyed = price_sale(replace(sale_2, classification="key"), [base, bip])
    assert rekeyed.items[0].amount - Decimal("350.00") == Decimal("210.00")
    cancelled = price_sale(replace(sale_1, sale=replace(sale_1.sale, cancelled_at=BOOKED)), [base, bip])
    assert cancelled.items[0].amount == Decimal("0.00") and cancelled.bip == ()
    assert bip_bonus(Decimal("7000.00"), Decimal("70.00"), Decimal("10000.00")) == Decimal("0.00")
    assert [c for c, *_ in rekeyed.bip] == ["BIP-Q"]
