"""Settlement currencies and effective-dated FX rates (CONTRACT §5 v2), over the broker and PostgreSQL.

Rates are one timeline per pair for the whole test database: each test here uses a pair of its own."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import eventually
from tests.incentives.support import World


async def put_rate(incentives: Any, tokens: Any, pair: str, rate: str, effective_from: str) -> dict[str, Any]:
    response = await incentives.put(f"/v1/fx-rates/{pair}", headers=tokens(),
                                    json={"rate": rate, "effective_from": effective_from})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def item_becomes(world: World, sale_id: str, amount: str, status: str = "accrued") -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        items = await world.accruals(sale_id)
        return items[0] if items and (items[0]["amount"], items[0]["status"]) == (amount, status) else None

    try:
        found: dict[str, Any] = await eventually(check)
    except AssertionError as exc:
        raise AssertionError(f"{sale_id} never became {amount} {status}: {await world.accruals(sale_id)}") from exc
    return found


async def test_a_usd_programme_pays_a_thb_sale_at_the_rate_as_of_booked_at_and_reprices_on_corrections(
    incentives, publish, tokens
) -> None:
    world = await World(incentives, publish, tokens).setup(program=False)
    await world.create_program(world.program, [("*", "0.05")], settlement_currency="USD")
    first, second = f"FX1-{uuid.uuid4()}", f"FX2-{uuid.uuid4()}"
    await world.publish_sale(world.sale(first, "100000.00", "2026-09-10T10:00:00Z", currency="THB"))

    waiting = await item_becomes(world, first, "0.00", status="unpriced")
    assert (waiting["base_currency"], waiting["currency"], waiting["fx_rate"]) == ("THB", "USD", None)
    assert "THB/USD exchange rate as of 2026-09-10T10:00:00Z is not known yet" in waiting["explanation"]

    entered = await put_rate(incentives, tokens, "THB/USD", "0.0283", "2026-09-01T00:00:00Z")
    assert [(r["effective_from"], r["rate"], r["replaced_rate"]) for r in entered["rates"]] == [
        ("2026-09-01T00:00:00Z", "0.0283", None)]
    assert entered["recalculation"]["sales_changed"] >= 1
    priced = await item_becomes(world, first, "141.50")  # 100000 x 0.0283 x 0.05, rounded once
    assert (priced["base_amount"], priced["base_currency"], priced["fx_rate"], priced["rate"], priced["currency"]) == (
        "100000.00", "THB", "0.0283", "0.05", "USD")
    assert "0.05 x 100000.00 THB at 0.0283 USD per THB" in priced["explanation"]

    # The same rate again changes nothing; a correction at the same moment reprices as an adjustment.
    again = await put_rate(incentives, tokens, "THB/USD", "0.0283", "2026-09-01T00:00:00Z")
    assert again["recalculation"] is None
    corrected = await put_rate(incentives, tokens, "THB/USD", "0.029", "2026-09-01T00:00:00Z")
    assert [(r["rate"], r["replaced_rate"]) for r in corrected["rates"]] == [("0.029", "0.0283")]
    await item_becomes(world, first, "145.00")
    ledger = await world.ledger(first)
    assert [(e["kind"], e["amount"], e["currency"]) for e in ledger] == [
        ("original", "141.50", "USD"), ("adjustment", "3.50", "USD")]
    assert ledger[1]["cause"] == corrected["recalculation"]["trigger_event_id"]
    runs = (await incentives.get("/v1/recalculations", headers=tokens())).json()["items"]
    run = next(r for r in runs if r["trigger_event_id"] == ledger[1]["cause"])
    assert (run["trigger_type"], run["fx_pair"], run["effective_from"]) == (
        "fx_rate.changed", "THB/USD", "2026-09-01T00:00:00Z")
    assert {"currency": "USD", "amount": "3.50"} in run["delta"]

    # A later sale, then a rate entered late for a moment between the two: inserted into the timeline, it
    # reprices only the sales it governs (from its moment until the next rate).
    await world.publish_sale(world.sale(second, "10000.00", "2026-09-20T10:00:00Z", currency="THB"))
    await item_becomes(world, second, "14.50")
    await put_rate(incentives, tokens, "THB/USD", "0.03", "2026-09-15T00:00:00Z")
    await item_becomes(world, second, "15.00")
    assert (await world.accruals(first))[0]["amount"] == "145.00"
    timeline = (await incentives.get("/v1/fx-rates", params={"base": "THB", "quote": "USD"},
                                     headers=tokens("partner", world.partner_id))).json()["items"]
    assert [(t["base"], t["quote"], [(r["effective_from"], r["rate"]) for r in t["rates"]]) for t in timeline] == [
        ("THB", "USD", [("2026-09-01T00:00:00Z", "0.029"), ("2026-09-15T00:00:00Z", "0.03")])]
    history = (await incentives.get("/v1/fx-rates", params={"base": "THB", "quote": "USD", "history": "true"},
                                    headers=tokens())).json()["items"][0]["rates"]
    assert [r["rate"] for r in history] == ["0.0283", "0.029", "0.03"]

    # Statements total by the entries' currency: the rebate in USD, the eligible revenue in the sale's THB.
    statement = (await incentives.get(f"/v1/partners/{world.partner_id}/statements/2026-09",
                                      headers=tokens())).json()
    totals = {t["currency"]: t for t in statement["totals"]}
    assert (totals["USD"]["rebate"], totals["USD"]["total"]) == ("160.00", "160.00")
    assert (totals["THB"]["eligible_revenue"], totals["THB"]["total"]) == ("110000.00", "0.00")
    sale = (await incentives.get(f"/v1/sales/{first}", headers=tokens())).json()
    assert (sale["currency"], sale["items"][0]["currency"], sale["items"][0]["fx_rate"]) == ("THB", "USD", "0.029")


async def test_bip_months_and_targets_count_in_the_settlement_currency(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup(program=False)
    bip = f"BIPFX-{uuid.uuid4().hex[:6]}"
    await world.create_program(bip, [("*", "0.02")], kind="bip", target="1000.00", settlement_currency="USD")
    await put_rate(incentives, tokens, "TRY/USD", "0.03", "2026-01-01T00:00:00Z")
    first, second = f"BF1-{uuid.uuid4()}", f"BF2-{uuid.uuid4()}"

    async def progress(revenue: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            response = await incentives.get(f"/v1/partners/{world.partner_id}/bip", params={"period": "2026-08"},
                                            headers=tokens("partner", world.partner_id))
            found = [p for p in response.json() if p["program_code"] == bip and p["revenue"] == revenue]
            return found[0] if found else None

        result: dict[str, Any] = await eventually(check)
        return result

    await world.publish_sale(world.sale(first, "20000.00", "2026-08-03T10:00:00Z", currency="TRY"))
    below = await progress("600.00")
    assert (below["currency"], below["bonus"], below["reached"]) == ("USD", "0.00", False)
    await world.publish_sale(world.sale(second, "20000.00", "2026-08-04T10:00:00Z", currency="TRY"))
    reached = await progress("1200.00")
    assert (reached["currency"], reached["bonus"], reached["reached"]) == ("USD", "24.00", True)

    # A correction that takes the month under its target takes the bonus back, in USD.
    await put_rate(incentives, tokens, "TRY/USD", "0.02", "2026-01-01T00:00:00Z")
    under = await progress("800.00")
    assert (under["bonus"], under["reached"]) == ("0.00", False)
    ledger = (await incentives.get(f"/v1/partners/{world.partner_id}/ledger", params={"period": "2026-08"},
                                   headers=tokens())).json()["items"]
    assert [(e["kind"], e["amount"], e["currency"]) for e in ledger if e["program_code"] == bip] == [
        ("bip", "24.00", "USD"), ("bip", "-24.00", "USD")]


async def test_a_programme_in_the_sales_own_currency_converts_nothing(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup(program=False)
    await world.create_program(world.program, [("*", "0.05")], settlement_currency="USD")
    sale_id = f"FXS-{uuid.uuid4()}"
    await world.publish_sale(world.sale(sale_id, "1000.00", "2026-09-10T10:00:00Z"))
    item = await item_becomes(world, sale_id, "50.00")
    assert (item["base_currency"], item["fx_rate"], item["currency"]) == ("USD", "1", "USD")
    program = (await incentives.get(f"/v1/programs/{world.program}", headers=tokens())).json()
    assert program["settlement_currency"] == "USD"


async def test_rates_are_admin_only_positive_and_between_two_currencies(incentives, tokens) -> None:
    body = {"rate": "1.1", "effective_from": "2026-01-01T00:00:00Z"}
    same = await incentives.put("/v1/fx-rates/EUR/EUR", headers=tokens(), json=body)
    assert same.status_code == 422 and "must differ" in same.json()["detail"]
    partner = tokens("partner", str(uuid.uuid4()))
    assert (await incentives.put("/v1/fx-rates/EUR/CHF", headers=partner, json=body)).status_code == 403
    for rate in ("0", "-1", "1e3", "0.12345678901", 1.1):
        refused = await incentives.put("/v1/fx-rates/EUR/CHF", headers=tokens(), json={**body, "rate": rate})
        assert refused.status_code == 422, (rate, refused.text)
    unknown = await incentives.put("/v1/fx-rates/EUR/XXX", headers=tokens(), json=body)
    assert unknown.status_code == 422 and unknown.headers["content-type"] == "application/problem+json"
    naive = await incentives.put("/v1/fx-rates/EUR/CHF", headers=tokens(),
                                 json={**body, "effective_from": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    listed = await incentives.get("/v1/fx-rates", params={"base": "EUR", "quote": "CHF"}, headers=partner)
    assert listed.status_code == 200 and listed.json() == {"items": []}
