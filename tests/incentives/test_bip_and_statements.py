"""BIP bonuses, statements and period close on real PostgreSQL and the broker."""

from __future__ import annotations

import uuid

from tests.conftest import eventually
from tests.incentives.support import World, account_data


async def test_bip_pays_from_the_first_dollar_once_the_target_is_reached(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup()
    bip = f"BIP-{uuid.uuid4().hex[:6]}"
    await world.create_program(bip, [("*", "0.02")], kind="bip", target="1000.00")
    first, second = f"B1-{uuid.uuid4()}", f"B2-{uuid.uuid4()}"
    await world.publish_sale(world.sale(first, "600.00", "2026-04-03T10:00:00Z"))
    await world.amount_becomes(first, "30.00")

    async def progress() -> list[dict]:
        response = await incentives.get(f"/v1/partners/{world.partner_id}/bip", params={"period": "2026-04"},
                                        headers=tokens("partner", world.partner_id))
        return [p for p in response.json() if p["program_code"] == bip]

    below = (await eventually(progress))[0]
    assert (below["revenue"], below["bonus"], below["reached"]) == ("600.00", "0.00", False)
    assert "400.00 short" in below["explanation"]

    await world.publish_sale(world.sale(second, "500.00", "2026-04-20T10:00:00Z"))
    await world.amount_becomes(second, "25.00")
    reached = (await progress())[0]
    assert (reached["revenue"], reached["bonus"], reached["reached"]) == ("1100.00", "22.00", True)

    await publish("sales.recorded", "sale.cancelled", world.account_id,
                  {"sale_id": second, "cancelled_at": "2026-04-25T00:00:00Z"}, subject=second)
    await world.amount_becomes(second, "0.00", status="cancelled")
    again = (await progress())[0]
    assert (again["revenue"], again["bonus"]) == ("600.00", "0.00")

    ledger = (await incentives.get(f"/v1/partners/{world.partner_id}/ledger", params={"period": "2026-04"},
                                   headers=tokens())).json()["items"]
    bip_entries = [(e["sale_id"], e["revision"], e["amount"]) for e in ledger if e["program_code"] == bip]
    assert bip_entries == [(None, 1, "22.00"), (None, 2, "-22.00")]

    statement = (await incentives.get(f"/v1/partners/{world.partner_id}/statements/2026-04",
                                      headers=tokens())).json()
    assert statement["status"] == "open"
    assert statement["totals"] == [{"currency": "USD", "eligible_revenue": "600.00", "rebate": "30.00",
                                    "bip_bonus": "0.00", "adjustments": "0.00", "total": "30.00"}]


async def test_closing_freezes_statements_and_later_changes_post_into_the_open_period(
    incentives, publish, tokens
) -> None:
    # Periods close as a prefix for the whole ledger: this test works in 2025, before every other test's sales.
    world = await World(incentives, publish, tokens).setup(valid_from="2024-01-01T00:00:00Z")
    sale_id = f"C-{uuid.uuid4()}"
    await world.publish_sale(world.sale(sale_id, "1000.00", "2025-02-10T10:00:00Z"))
    await world.amount_becomes(sale_id, "50.00")
    url = f"/v1/partners/{world.partner_id}/statements/2025-02"
    before = (await incentives.get(url, headers=tokens())).json()
    assert before["status"] == "open" and before["totals"][0]["rebate"] == "50.00"

    closed = await incentives.post("/v1/periods/2025-02/close", headers=tokens())
    assert closed.status_code == 200 and closed.json()["closed_through"] >= "2025-02"
    frozen = (await incentives.get(url, headers=tokens())).json()
    assert frozen["status"] == "closed" and frozen["totals"] == before["totals"]
    assert (await incentives.post("/v1/periods/2025-01/close", headers=tokens())).json()["newly_closed"] == []

    await publish("accounts.accounts", "account.reclassified", world.account_id, {
        **account_data(world.account_id, "key", world.partner_id),
        "from": "commercial", "to": "key", "effective_from": "2025-02-01T00:00:00Z",
    })
    await world.amount_becomes(sale_id, "80.00")
    late = f"CL-{uuid.uuid4()}"
    await world.publish_sale(world.sale(late, "100.00", "2025-02-20T10:00:00Z"))
    await world.amount_becomes(late, "8.00")

    assert (await incentives.get(url, headers=tokens())).json() == frozen
    ledger = await world.ledger(sale_id)
    assert [(e["amount"], e["period"], e["sale_period"]) for e in ledger] == [
        ("50.00", "2025-02", "2025-02"), ("30.00", "2025-03", "2025-02")]
    assert [(e["period"], e["sale_period"]) for e in await world.ledger(late)] == [("2025-03", "2025-02")]
    march = (await incentives.get(f"/v1/partners/{world.partner_id}/statements/2025-03", headers=tokens())).json()
    assert march["status"] == "open"
    assert march["totals"] == [{"currency": "USD", "eligible_revenue": "0.00", "rebate": "0.00",
                                "bip_bonus": "0.00", "adjustments": "38.00", "total": "38.00"}]


async def test_statements_are_scoped_and_future_periods_cannot_close(incentives, tokens) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    forbidden = await incentives.get(f"/v1/partners/{other}/statements/2026-03", headers=tokens("partner", me))
    assert forbidden.status_code == 403
    assert (await incentives.post("/v1/periods/2099-01/close", headers=tokens())).status_code == 422
    assert (await incentives.post("/v1/periods/2026-13/close", headers=tokens())).status_code == 422
    assert (await incentives.post("/v1/periods/2025-01/close", headers=tokens("partner", me))).status_code == 403
