"""Funds on real PostgreSQL: creating funds, who sees what, validation."""

from __future__ import annotations

from tests.funds.support import OPEN_FROM, OPEN_TO, code, new_fund, partner


async def test_create_and_read_a_fund_with_its_figures(funds, tokens) -> None:
    created = await new_fund(funds, tokens, kind="jmf", budget="5000.00", per_partner_limit="1000.00")
    assert created["kind"] == "jmf" and created["currency"] == "USD" and created["budget"] == "5000.00"
    assert (created["committed"], created["paid"], created["available"]) == ("0.00", "0.00", "5000.00")
    assert created["per_partner_limit"] == "1000.00" and created["accrual_rate"] is None
    assert created["earned"] is None and created["open"] is True
    assert created["valid_from"] == OPEN_FROM and created["valid_to"] == OPEN_TO
    assert created["policy"] == {
        "request_lead_working_days": 10, "claim_window_days": 90, "resubmission_window_days": 45,
        "lapse_unused": True,
    }
    got = await funds.get(f"/v1/funds/{created['code']}", headers=tokens())
    assert got.status_code == 200 and got.json() == created and got.headers["etag"] == '"1"'

    again = await funds.post("/v1/funds", json={**_body(created["code"])}, headers=tokens())
    assert again.status_code == 409


async def test_policy_overrides_and_an_accrual_fund(funds, tokens) -> None:
    created = await new_fund(funds, tokens, kind="gpif", accrual_rate="0.025", currency="NOK",
                             policy={"request_lead_working_days": 5, "claim_window_days": 60})
    assert created["accrual_rate"] == "0.025" and created["earned"] == "0.00" and created["lapsed"] == "0.00"
    assert created["policy"]["request_lead_working_days"] == 5 and created["policy"]["claim_window_days"] == 60
    assert created["policy"]["resubmission_window_days"] == 45


async def test_invalid_funds_are_422_never_500(funds, tokens) -> None:
    cases = [
        {"kind": "xdf"},
        {"currency": "JPY"},
        {"currency": "usd"},
        {"budget": 1000.0},
        {"budget": "10.001"},
        {"budget": "0.00"},
        {"valid_to": OPEN_FROM},
        {"valid_from": "2026-01-01T00:00:00"},
        {"accrual_rate": "1.5"},
        {"accrual_rate": "0.0000001"},
        {"budget": "1e20"},
        {"accrual_rate": 0.05},
        {"per_partner_limit": "-1.00"},
        {"policy": {"claim_window_days": -1}},
        {"surprise": True},
    ]
    for override in cases:
        response = await funds.post("/v1/funds", json={**_body(code()), **override}, headers=tokens())
        assert response.status_code == 422, (override, response.text)
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem["status"] == 422 and problem["errors"], problem


async def test_partners_and_systems_see_open_funds_without_the_admin_figures(funds, tokens) -> None:
    open_fund = await new_fund(funds, tokens)
    closed = await new_fund(funds, tokens, valid_from="2020-01-01T00:00:00Z", valid_to="2021-01-01T00:00:00Z")
    future = await new_fund(funds, tokens, valid_from="2099-01-01T00:00:00Z", valid_to="2100-01-01T00:00:00Z")
    for headers in (tokens("partner", partner()), tokens("system")):
        seen = await funds.get(f"/v1/funds/{open_fund['code']}", headers=headers)
        assert seen.status_code == 200
        assert seen.json()["available"] == "10000.00" and seen.json()["committed"] is None
        for hidden in (closed, future):
            assert (await funds.get(f"/v1/funds/{hidden['code']}", headers=headers)).status_code == 404
        listed = await _all_codes(funds, headers)
        assert open_fund["code"] in listed and closed["code"] not in listed and future["code"] not in listed
    admin_listed = await _all_codes(funds, tokens())
    assert {open_fund["code"], closed["code"], future["code"]} <= admin_listed
    closed_view = await funds.get(f"/v1/funds/{closed['code']}", headers=tokens())
    assert closed_view.json()["open"] is False


async def test_only_admins_create_funds_and_tokens_are_required(funds, tokens) -> None:
    assert (await funds.get("/v1/funds")).status_code == 401
    for headers in (tokens("partner", partner()), tokens("system")):
        assert (await funds.post("/v1/funds", json=_body(code()), headers=headers)).status_code == 403


async def test_fund_creation_is_idempotent_by_key(funds, tokens) -> None:
    body = _body(code())
    headers = {**tokens(), "Idempotency-Key": f"create-{body['code']}"}
    first = await funds.post("/v1/funds", json=body, headers=headers)
    replay = await funds.post("/v1/funds", json=body, headers=headers)
    assert first.status_code == replay.status_code == 201 and first.json() == replay.json()
    other = await funds.post("/v1/funds", json={**body, "budget": "1.00"}, headers=headers)
    assert other.status_code == 409


def _body(fund_code: str) -> dict[str, object]:
    return {"code": fund_code, "kind": "mdf", "currency": "USD", "budget": "10000.00", "valid_from": OPEN_FROM,
            "valid_to": OPEN_TO, "accrual_rate": None, "per_partner_limit": None}


async def _all_codes(funds, headers) -> set[str]:  # type: ignore[no-untyped-def]
    codes: set[str] = set()
    cursor = None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = (await funds.get("/v1/funds", params=params, headers=headers)).json()
        codes |= {f["code"] for f in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return codes


async def test_the_contract_is_published_and_health_needs_no_token(funds) -> None:
    spec = (await funds.get("/openapi.json")).json()
    for path in ("/v1/funds", "/v1/funds/{code}", "/v1/funds/{code}/requests", "/v1/fund-requests",
                 "/v1/fund-requests/{request_id}/claims", "/v1/fund-claims/{claim_id}/decision",
                 "/v1/partners/{partner_id}/fund-balances", "/v1/partners/{partner_id}/fund-ledger"):
        assert path in spec["paths"], path
    assert (await funds.get("/healthz")).status_code == 200
    assert (await funds.get("/readyz")).json()["status"] == "ready"
