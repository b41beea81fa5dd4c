"""Subscriptions: partner scoping (never another partner's event, nor its subscription), the URL rules at creation
and again at each delivery, and the problem answers for bad input."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from partnerhub.db import asyncpg_dsn
from tests.conftest import Infrastructure, Publish, eventually
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import Tokens, accrual, deliveries, event_ids, new_path, subscribe


@pytest.mark.parametrize(("url", "rule"), [
    ("https://10.0.0.1/hook", "10.0.0.1, a private address"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254, a cloud metadata address"),
    ("https://[::1]:8443/hook", "::1, a loopback address"),
    ("http://example.com/hook", "only https:// URLs are accepted"),
    ("https://user:pw@example.com/hook", "must not carry credentials"),
    ("ftp://127.0.0.1/hook", "only https:// URLs are accepted"),
])
async def test_a_url_breaking_a_delivery_rule_is_refused_naming_the_rule(
    webhooks: httpx.AsyncClient, tokens: Tokens, url: str, rule: str,
) -> None:
    answer = await webhooks.post("/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=tokens())
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert rule in answer.json()["detail"]
    assert answer.json()["errors"][0]["loc"] == ["body", "url"]


async def test_a_url_change_is_checked_too(webhooks: httpx.AsyncClient, receiver: Receiver, tokens: Tokens) -> None:
    subscription = await subscribe(webhooks, tokens(), receiver.url(new_path()), ["*"], uuid.uuid4())
    answer = await webhooks.patch(f"/v1/webhooks/{subscription['id']}", json={"url": "https://192.168.0.10/x"},
                                  headers=tokens())
    assert answer.status_code == 422 and "a private address" in answer.json()["detail"]


async def test_bad_input_is_a_problem_never_a_500(webhooks: httpx.AsyncClient, receiver: Receiver,
                                                 tokens: Tokens) -> None:
    url = receiver.url(new_path())
    for body in [{"url": url, "event_types": []}, {"url": url, "event_types": ["no spaces allowed"]},
                 {"url": url}, {"url": url, "event_types": ["*"], "extra": 1},
                 {"url": "https://ok.example.com/\u0000", "event_types": ["*"]}]:
        answer = await webhooks.post("/v1/webhooks", json=body, headers=tokens())
        assert answer.status_code == 422, (body, answer.text)
    typo = await webhooks.post("/v1/webhooks", json={"url": url, "event_types": ["accrual.adjust"]}, headers=tokens())
    assert typo.status_code == 422 and "'accrual.adjust' is not an event type" in typo.json()["detail"]
    subscription = await subscribe(webhooks, tokens(), url, ["*"], uuid.uuid4())
    disabled = await webhooks.patch(f"/v1/webhooks/{subscription['id']}", json={"status": "disabled"},
                                    headers=tokens())
    assert disabled.status_code == 422 and "active or paused" in disabled.json()["detail"]
    assert (await webhooks.get(f"/v1/webhooks/{uuid.uuid4()}", headers=tokens())).status_code == 404
    assert (await webhooks.get("/v1/webhooks", params={"cursor": "nonsense"}, headers=tokens())).status_code == 422
    stale = await webhooks.patch(f"/v1/webhooks/{subscription['id']}", json={"status": "paused"},
                                 headers={**tokens(), "If-Match": '"999"'})
    assert stale.status_code == 412
    assert (await webhooks.get("/v1/webhooks", headers=tokens("system"))).status_code == 403


async def test_a_partner_sees_and_changes_only_its_own_subscriptions(
    webhooks: httpx.AsyncClient, receiver: Receiver, tokens: Tokens,
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    mine = await subscribe(webhooks, tokens("partner", a), receiver.url(new_path()), ["*"])
    assert mine["partner_id"] == str(a)
    theirs = await subscribe(webhooks, tokens("partner", b), receiver.url(new_path()), ["*"])
    everyone = await subscribe(webhooks, tokens(), receiver.url(new_path()), ["*"])
    assert everyone["partner_id"] is None

    headers = tokens("partner", a)
    listed = (await webhooks.get("/v1/webhooks", headers=headers, params={"limit": 500})).json()["items"]
    assert [s["id"] for s in listed] == [mine["id"]]
    for other in (theirs, everyone):
        assert (await webhooks.get(f"/v1/webhooks/{other['id']}", headers=headers)).status_code == 404
        assert (await webhooks.delete(f"/v1/webhooks/{other['id']}", headers=headers)).status_code == 404
        assert (await webhooks.post(f"/v1/webhooks/{other['id']}/secret", headers=headers)).status_code == 404
        assert (await webhooks.get(f"/v1/webhooks/{other['id']}/deliveries", headers=headers)).status_code == 404
    forbidden = await webhooks.post("/v1/webhooks", headers=headers, json={
        "url": receiver.url(new_path()), "event_types": ["*"], "partner_id": str(b)})
    assert forbidden.status_code == 403
    assert (await webhooks.get("/v1/webhooks", params={"partner_id": str(b)}, headers=headers)).status_code == 403


async def test_a_partner_never_receives_another_partners_event(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    a_path, b_path, all_path = new_path(), new_path(), new_path()
    await subscribe(webhooks, tokens("partner", a), receiver.url(a_path), ["*"])
    await subscribe(webhooks, tokens("partner", b), receiver.url(b_path), ["*"])
    # An admin's subscription to every partner sees every event: once it has them all, all were handled.
    await subscribe(webhooks, tokens(), receiver.url(all_path), ["*"])

    account = str(uuid.uuid4())

    def account_data(owner: uuid.UUID | None, **change: object) -> dict[str, object]:
        return {"id": account, "name": "Acme", "country": "DE", "industry": "retail", "classification": "smb",
                "owner_partner_id": str(owner) if owner else None, "created_at": "2026-11-01T00:00:00Z",
                "updated_at": "2026-11-01T00:00:00Z", **change}

    about_b = [
        await accrual(publish, b),
        await publish("registry.partners", "partner.tier_changed", str(b), {"id": str(b), "tier": "gold"}),
        await publish("incentives.statements", "statement.closed", str(b),
                      {"partner_id": str(b), "period": "2026-11", "totals": []}, subject="2026-11"),
        await publish("funds.funds", "fund.claim_paid", str(b), {"id": str(uuid.uuid4()), "partner_id": str(b)}),
        await publish("accounts.accounts", "account.reclassified", account,
                      account_data(b, **{"from": "commercial", "to": "smb"})),
    ]
    # The account moves from b to a: both hear of it (a owns it now, b owned it before the change).
    moved = await publish("accounts.accounts", "account.ownership_changed", account,
                          account_data(a, **{"from": str(b), "to": str(a)}))
    about_none = await publish("incentives.accruals", "recalculation.completed", account,
                               {"run_id": str(uuid.uuid4()), "account_id": account, "partner_id": None})
    about_a = [await accrual(publish, a), moved]

    everything = {*about_b, *about_a, about_none}
    await eventually(lambda: everything <= set(event_ids(receiver, all_path)), within=60)
    await eventually(lambda: set(about_a) <= set(event_ids(receiver, a_path)))
    await eventually(lambda: {*about_b, moved} <= set(event_ids(receiver, b_path)))
    assert sorted(event_ids(receiver, a_path)) == sorted(about_a)
    assert sorted(event_ids(receiver, b_path)) == sorted([*about_b, moved])


async def test_the_url_rules_are_checked_again_at_each_delivery(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
    infrastructure: Infrastructure,
) -> None:
    partner = uuid.uuid4()
    subscription = await subscribe(webhooks, tokens(), receiver.url(new_path()), ["accrual.recorded"], partner)
    # A URL that was accepted under other rules (the allowed hosts changed since): stored as it was.
    connection = await asyncpg.connect(asyncpg_dsn(infrastructure.database_urls["webhooks"]))
    try:
        await connection.execute("UPDATE subscriptions SET url = 'http://10.0.0.1/hook' WHERE id = $1",
                                 uuid.UUID(subscription["id"]))
    finally:
        await connection.close()
    await accrual(publish, partner)

    async def refused() -> list[dict[str, object]]:
        found = await deliveries(webhooks, tokens(), subscription["id"])
        return found if found and found[0]["attempts"] else []

    [log] = await eventually(refused)
    attempt = log["attempts"][0]
    assert attempt["response_status"] is None and "only https:// URLs are accepted" in attempt["error"]
    assert log["status"] == "pending"
