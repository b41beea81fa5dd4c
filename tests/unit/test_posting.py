"""The ledger rules, in one pure posting: entry kinds, revisions, closed periods, BIP months, events."""

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from services.incentives.domain import (
    BipFigures,
    EntryKind,
    Periods,
    Position,
    Pricer,
    Pricing,
    Product,
    Program,
    ProgramKind,
    Replicas,
    Rule,
    Sale,
    Timeline,
    post_bip,
    post_sales,
)

PARTNER, RIVAL, ACCOUNT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
T0 = datetime(1970, 1, 1, tzinfo=UTC)
BASE = Program("BASE", "base", ProgramKind.BASE_REBATE, datetime(2026, 1, 1, tzinfo=UTC), None, None,
               (Rule("commercial", "*", "*", Decimal("0.05")), Rule("key", "*", "*", Decimal("0.08"))))
BIP = Program("BIP", "bip", ProgramKind.BIP, datetime(2026, 1, 1, tzinfo=UTC), None, None,
              (Rule("*", "*", "*", Decimal("0.01")),), Decimal("2500.00"))
OPEN = Periods(None)


def replicas(classification: str = "commercial", owner: uuid.UUID | None = PARTNER) -> Replicas:
    world = Replicas()
    world.classifications[ACCOUNT] = Timeline([(T0, classification)])
    world.owners[ACCOUNT] = Timeline([(T0, owner)])
    world.tiers[PARTNER] = Timeline([(T0, "gold")])
    world.statuses[PARTNER] = Timeline([(T0, "active")])
    world.products["SKU"] = Product("software", Timeline([(T0, True)]))
    return world


def sale(sale_id: str = "S-1", amount: str = "1000.00", month: int = 3, **changes: object) -> Sale:
    booked = datetime(2026, month, 5, tzinfo=UTC)
    return replace(Sale(sale_id, PARTNER, ACCOUNT, "SKU", Decimal(amount), "USD", booked, f"2026-{month:02d}",
                        f"recorded-{sale_id}"), **changes)


def priced(world: Replicas, *sales: Sale, programs: tuple[Program, ...] = (BASE,)) -> list[Pricing]:
    pricer = Pricer(list(programs))
    return [pricer.price(world.facts(s)) for s in sales]


def cause_of(event: str) -> Callable[[Sale], str]:
    return lambda _sale: event


def test_a_first_pricing_posts_originals_at_revision_one_and_is_recorded() -> None:
    posting = post_sales(priced(replicas(), sale()), {}, OPEN, lambda s: s.recorded_event_id)
    assert [(e.kind, e.revision, e.amount, e.period, e.cause) for e in posting.entries] == [
        (EntryKind.ORIGINAL, 1, Decimal("50.00"), "2026-03", "recorded-S-1")]
    assert [(i.program_code, i.amount, i.revision) for i in posting.items] == [("BASE", Decimal("50.00"), 1)]
    assert [e.type for e in posting.events] == ["accrual.recorded"]
    assert posting.statuses == {"S-1": "accrued"} and posting.delta == {"USD": Decimal("50.00")}


def test_a_change_posts_the_difference_as_the_next_revision() -> None:
    held = {"S-1": {"BASE": Position(Decimal("50.00"), "accrued", 1)}}
    posting = post_sales(priced(replicas("key"), sale(status="accrued")), held, OPEN, cause_of("reclass"))
    assert [(e.kind, e.revision, e.amount, e.cause) for e in posting.entries] == [
        (EntryKind.ADJUSTMENT, 2, Decimal("30.00"), "reclass")]
    assert [(e.type, e.data["cause"]) for e in posting.events] == [("accrual.adjusted", "reclass")]
    assert posting.changed == 1 and posting.statuses == {}


def test_nothing_moves_when_nothing_changed() -> None:
    held = {"S-1": {"BASE": Position(Decimal("50.00"), "accrued", 1)}}
    posting = post_sales(priced(replicas(), sale(status="accrued")), held, OPEN, cause_of("x"))
    assert posting.entries == [] and posting.events == [] and posting.changed == 0 and posting.recomputed == 1


def test_an_updated_item_names_the_fields_it_moved_in_and_only_those_are_rewritten() -> None:
    shown = (Decimal("0.05"), "commercial", "gold", "software", None, None)  # rate, facts, detail, fx_rate
    held = {"S-1": {"BASE": Position(Decimal("50.00"), "accrued", 1, shown)}}
    posting = post_sales(priced(replicas("key"), sale(status="accrued")), held, OPEN, cause_of("reclass"))
    assert [(i.program_code, i.amount, i.revision, i.classification) for i in posting.updated] == [
        ("BASE", Decimal("80.00"), 2, "key")]
    assert posting.moved == {"amount", "revision", "rate", "classification"}
    # Stored facts unknown: every field is rewritten; the same facts again: nothing is.
    unknown = post_sales(priced(replicas("key"), sale(status="accrued")),
                         {"S-1": {"BASE": Position(Decimal("80.00"), "accrued", 2)}}, OPEN, cause_of("x"))
    assert len(unknown.updated) == 1 and unknown.moved == {"amount", "status", "revision", "rate",
                                                           "classification", "tier", "category", "detail", "fx_rate"}
    same = post_sales(priced(replicas(), sale(status="accrued")), held, OPEN, cause_of("x"))
    assert same.updated == [] and same.moved == set()


def test_a_sale_of_a_closed_period_posts_into_the_first_open_one_and_points_back() -> None:
    held = {"S-1": {"BASE": Position(Decimal("50.00"), "accrued", 1)}}
    posting = post_sales(priced(replicas("key"), sale(status="accrued")), held, Periods("2026-04"), cause_of("c"))
    assert [(e.period, e.sale_period) for e in posting.entries] == [("2026-05", "2026-03")]
    late = post_sales(priced(replicas(), sale("S-2")), {}, Periods("2026-03"), cause_of("c"))
    assert [(e.kind, e.period, e.sale_period) for e in late.entries] == [(EntryKind.ORIGINAL, "2026-04", "2026-03")]


def test_zero_amount_items_post_no_entry_and_a_cancellation_reverses() -> None:
    conflict = post_sales(priced(replicas(owner=RIVAL), sale()), {}, OPEN, cause_of("c"))
    assert conflict.entries == [] and [(i.status, i.amount, i.revision) for i in conflict.items] == [
        ("channel_conflict", Decimal("0.00"), 0)]
    assert conflict.statuses == {"S-1": "channel_conflict"}
    held = {"S-1": {"BASE": Position(Decimal("50.00"), "accrued", 1)}}
    cancelled = sale(status="accrued", cancelled_at=datetime(2026, 4, 1, tzinfo=UTC), cancel_event_id="cancel-1")
    posting = post_sales(priced(replicas(), cancelled), held, OPEN, lambda s: s.cancel_event_id or "")
    assert [(e.kind, e.revision, e.amount, e.cause) for e in posting.entries] == [
        (EntryKind.ADJUSTMENT, 2, Decimal("-50.00"), "cancel-1")]
    assert posting.statuses == {"S-1": "cancelled"}
    assert posting.events[0].data["items"] == [{"program_code": "BASE", "amount": "0.00", "currency": "USD",
                                                 "status": "cancelled"}]


def test_an_item_that_stops_applying_is_reversed_and_keeps_counting_its_revisions() -> None:
    held = {"S-1": {"BASE": Position(Decimal("50.00"), "accrued", 1)}}
    gone = post_sales(priced(replicas("smb"), sale(status="accrued")), held, OPEN, cause_of("c"))
    assert [(e.program_code, e.amount, e.revision) for e in gone.entries] == [("BASE", Decimal("-50.00"), 2)]
    assert sorted((i.program_code, i.status, i.revision) for i in gone.items + gone.updated) == [
        ("", "no_program", 0), ("BASE", "withdrawn", 2)]
    back_held = {"S-1": {"": Position(Decimal("0.00"), "no_program", 0),
                         "BASE": Position(Decimal("0.00"), "withdrawn", 2)}}
    back = post_sales(priced(replicas(), sale(status="accrued")), back_held, OPEN, cause_of("c2"))
    assert [(e.kind, e.amount, e.revision) for e in back.entries] == [(EntryKind.ADJUSTMENT, Decimal("50.00"), 3)]
    assert [e.type for e in back.events] == ["accrual.adjusted"]


def test_bip_contributions_and_one_entry_per_month_whose_bonus_moved() -> None:
    posting = post_sales(priced(replicas(), sale("A", "2000.00"), sale("B", "1000.00"), programs=(BASE, BIP)),
                         {}, OPEN, lambda s: s.recorded_event_id)
    assert [(c[0], c[1], c[5]) for c in posting.contributions] == [
        ("A", "BIP", Decimal("2000.00")), ("B", "BIP", Decimal("1000.00"))]
    assert posting.bip_groups == {(PARTNER, "2026-03", "USD"): "recorded-B"}
    key = (PARTNER, "BIP", "2026-03", "USD")
    reached = {key: BipFigures(Decimal("3000.00"), Decimal("30.00"), None, 0)}
    outcomes, entries = post_bip(reached, {"BIP": Decimal("2500.00")}, OPEN, posting.bip_groups)
    assert [(o.bonus, o.reached) for o in outcomes] == [(Decimal("30.00"), True)]
    assert [(e.kind, e.revision, e.amount, e.sale_id, e.cause) for e in entries] == [
        (EntryKind.BIP, 1, Decimal("30.00"), None, "recorded-B")]
    fell = {key: BipFigures(Decimal("2000.00"), Decimal("20.00"), Decimal("30.00"), 1)}
    _, entries = post_bip(fell, {"BIP": Decimal("2500.00")}, Periods("2026-03"), {(PARTNER, "2026-03", "USD"): "x"})
    assert [(e.amount, e.revision, e.period, e.sale_period) for e in entries] == [
        (Decimal("-30.00"), 2, "2026-04", "2026-03")]
    same = {key: BipFigures(Decimal("3000.00"), Decimal("30.00"), Decimal("30.00"), 1)}
    assert post_bip(same, {"BIP": Decimal("2500.00")}, OPEN, posting.bip_groups)[1] == []
