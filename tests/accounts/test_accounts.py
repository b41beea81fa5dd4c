"""Accounts over real PostgreSQL and the broker: create, read, list, reclassify, history."""

import asyncio
import uuid
from datetime import datetime

from tests.accounts.support import ACCOUNT, assign, new_account, new_partner


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


async def test_create_and_get(accounts, tokens) -> None:
    created = await accounts.post("/v1/accounts", json=ACCOUNT, headers=tokens())
    assert created.status_code == 201, created.text
    account = created.json()
    assert set(account) == {
        "id", "name", "country", "industry", "classification", "owner_partner_id", "created_at", "updated_at"
    }
    assert account["classification"] == "commercial" and account["owner_partner_id"] is None
    assert account["created_at"].endswith("Z")

    for role in ("admin", "system"):
        got = await accounts.get(f"/v1/accounts/{account['id']}", headers=tokens(role))
        assert got.status_code == 200 and got.json() == account
        assert got.headers["etag"] == '"1"'


async def test_account_created_is_published_with_the_full_account(accounts, tokens, event_log) -> None:
    account = await new_account(accounts, tokens, classification="key")
    events = await event_log.wait_for("accounts.accounts", account["id"], lambda seen: bool(seen))
    created = events[0]
    assert created["type"] == "account.created" and created["source"] == "accounts"
    assert created["subject"] == account["id"] and created["data"] == account


async def test_only_admins_create_and_change(accounts, tokens, registry) -> None:
    assert (await accounts.get("/v1/accounts")).status_code == 401
    partner_id = str(uuid.uuid4())
    for role in ("system", "partner"):
        headers = tokens(role, partner_id if role == "partner" else None)
        assert (await accounts.post("/v1/accounts", json=ACCOUNT, headers=headers)).status_code == 403
    account = await new_account(accounts, tokens)
    reclassify = await accounts.put(
        f"/v1/accounts/{account['id']}/classification",
        json={"classification": "smb"},
        headers=tokens("partner", partner_id),
    )
    assert reclassify.status_code == 403


async def test_partner_sees_only_the_accounts_it_owns(accounts, registry, tokens) -> None:
    mine = await new_partner(registry, tokens, "active")
    theirs = await new_partner(registry, tokens, "active")
    owned = [await new_account(accounts, tokens, name=f"Mine {i}") for i in range(2)]
    other = await new_account(accounts, tokens, name="Theirs")
    unowned = await new_account(accounts, tokens, name="Nobody's")
    for account in owned:
        assert (await assign(accounts, tokens, account["id"], mine["id"])).status_code == 200
    assert (await assign(accounts, tokens, other["id"], theirs["id"])).status_code == 200
    as_partner = tokens("partner", mine["id"])

    got = await accounts.get(f"/v1/accounts/{owned[0]['id']}", headers=as_partner)
    assert got.status_code == 200 and got.json()["owner_partner_id"] == mine["id"]
    for hidden in (other, unowned):
        response = await accounts.get(f"/v1/accounts/{hidden['id']}", headers=as_partner)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert (await accounts.get(f"/v1/accounts/{hidden['id']}/history", headers=as_partner)).status_code == 404

    listed = await accounts.get("/v1/accounts", headers=as_partner)
    assert listed.status_code == 200
    assert sorted(a["id"] for a in listed.json()["items"]) == sorted(a["id"] for a in owned)
    filtered = await accounts.get("/v1/accounts", params={"owner_partner_id": theirs["id"]}, headers=as_partner)
    assert filtered.status_code == 403

    admin_view = await accounts.get("/v1/accounts", params={"owner_partner_id": theirs["id"]}, headers=tokens())
    assert [a["id"] for a in admin_view.json()["items"]] == [other["id"]]


async def test_list_filters_and_pages(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    created = [await new_account(accounts, tokens, name=f"Paged {i}", classification="smb") for i in range(5)]
    for account in created:
        assert (await assign(accounts, tokens, account["id"], partner["id"])).status_code == 200
    await accounts.put(
        f"/v1/accounts/{created[0]['id']}/classification", json={"classification": "key"}, headers=tokens()
    )

    seen: list[str] = []
    cursor = None
    while True:
        params = {"owner_partner_id": partner["id"], "classification": "smb", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await accounts.get("/v1/accounts", params=params, headers=tokens("system"))).json()
        assert len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [a["id"] for a in created[1:]]

    bad = await accounts.get("/v1/accounts", params={"classification": "huge"}, headers=tokens())
    assert bad.status_code == 422
    assert (await accounts.get("/v1/accounts", params={"cursor": "nonsense!"}, headers=tokens())).status_code == 422


async def test_idempotency_key_replays_first_response(accounts, tokens) -> None:
    headers = {**tokens(), "Idempotency-Key": str(uuid.uuid4())}
    first = await accounts.post("/v1/accounts", json=ACCOUNT, headers=headers)
    again = await accounts.post("/v1/accounts", json=ACCOUNT, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = await accounts.post("/v1/accounts", json={**ACCOUNT, "name": "Other"}, headers=headers)
    assert other.status_code == 409


async def test_bad_input_is_problem_json(accounts, tokens) -> None:
    account = await new_account(accounts, tokens)
    cases = [
        ("post", "/v1/accounts", {**ACCOUNT, "country": "de"}, ["body", "country"]),
        ("post", "/v1/accounts", {**ACCOUNT, "classification": "enterprise"}, ["body", "classification"]),
        ("post", "/v1/accounts", {**ACCOUNT, "owner": "me"}, ["body", "owner"]),
        ("post", "/v1/accounts", {"name": "No rest"}, ["body", "country"]),
        (
            "put", f"/v1/accounts/{account['id']}/classification",
            {"classification": "key", "effective_from": "2026-01-01T00:00:00"}, ["body", "effective_from"],
        ),
        (
            "put", f"/v1/accounts/{account['id']}/classification",
            {"classification": "key", "effective_from": "1969-12-31T00:00:00Z"}, ["body", "effective_from"],
        ),
        ("put", f"/v1/accounts/{account['id']}/owner", {"effective_from": "2026-01-01T00:00:00Z"},
         ["body", "partner_id"]),
        ("put", f"/v1/accounts/{account['id']}/owner", {"partner_id": "not-a-uuid"}, ["body", "partner_id"]),
    ]
    for method, path, body, loc in cases:
        response = await accounts.request(method, path, json=body, headers=tokens())
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 422 and problem["detail"]
        assert any(e["loc"][: len(loc)] == loc for e in problem["errors"]), (body, problem)
    assert (await accounts.get("/v1/accounts/not-a-uuid", headers=tokens())).status_code == 422
    missing = await accounts.get(f"/v1/accounts/{uuid.uuid4()}", headers=tokens())
    assert missing.status_code == 404 and missing.json()["title"] == "Not Found"


async def test_reclassify_publishes_from_to_and_effective_from(accounts, tokens, event_log) -> None:
    account = await new_account(accounts, tokens)
    response = await accounts.put(
        f"/v1/accounts/{account['id']}/classification",
        json={"classification": "strategic", "effective_from": "2026-01-01T09:30:00+01:00", "reason": "global deal"},
        headers=tokens(sub="alice"),
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["classification"] == "strategic" and at(changed["updated_at"]) > at(account["updated_at"])
    assert response.headers["etag"] == '"2"'

    events = await event_log.wait_for(
        "accounts.accounts", account["id"],
        lambda seen: any(e["type"] == "account.reclassified" for e in seen),
    )
    assert [e["type"] for e in events] == ["account.created", "account.reclassified"]
    data = events[1]["data"]
    assert data["from"] == "commercial" and data["to"] == "strategic"
    assert data["effective_from"] == "2026-01-01T08:30:00Z" and data["reason"] == "global deal"
    assert {k: data[k] for k in changed} == changed


async def test_reclassifying_to_the_classification_in_force_then_is_a_conflict(accounts, tokens) -> None:
    account = await new_account(accounts, tokens)
    path = f"/v1/accounts/{account['id']}/classification"
    same = await accounts.put(path, json={"classification": "commercial"}, headers=tokens())
    assert same.status_code == 409
    assert same.json()["detail"].endswith("is already commercial from 1970-01-01T00:00:00Z")

    later = {"classification": "key", "effective_from": "2021-06-01T00:00:00Z"}
    assert (await accounts.put(path, json=later, headers=tokens())).status_code == 200
    again = await accounts.put(path, json={**later, "effective_from": "2022-01-01T00:00:00Z"}, headers=tokens())
    assert again.status_code == 409 and "already key from 2021-06-01T00:00:00Z" in again.json()["detail"]
    earlier = await accounts.put(path, json={**later, "effective_from": "2020-01-01T00:00:00Z"}, headers=tokens())
    assert earlier.status_code == 200


async def test_stale_if_match_is_refused(accounts, registry, tokens) -> None:
    account = await new_account(accounts, tokens)
    got = await accounts.get(f"/v1/accounts/{account['id']}", headers=tokens())
    etag = got.headers["etag"]
    path = f"/v1/accounts/{account['id']}/classification"
    first = await accounts.put(path, json={"classification": "key"}, headers={**tokens(), "If-Match": etag})
    assert first.status_code == 200 and first.headers["etag"] != etag

    stale = await accounts.put(path, json={"classification": "smb"}, headers={**tokens(), "If-Match": etag})
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    partner = await new_partner(registry, tokens, "active")
    stale_owner = await assign(accounts, tokens, account["id"], partner["id"])
    assert stale_owner.status_code == 200
    stale_again = await accounts.put(
        f"/v1/accounts/{account['id']}/owner",
        json={"partner_id": None},
        headers={**tokens(), "If-Match": first.headers["etag"]},
    )
    assert stale_again.status_code == 412
    current = await accounts.get(f"/v1/accounts/{account['id']}", headers=tokens())
    assert current.json()["classification"] == "key" and current.json()["owner_partner_id"] == partner["id"]


async def test_history_keeps_effective_order_with_a_late_entered_earlier_change(accounts, tokens) -> None:
    account = await new_account(accounts, tokens)
    path = f"/v1/accounts/{account['id']}/classification"
    march = {"classification": "key", "effective_from": "2020-03-01T00:00:00Z", "reason": "co-sell"}
    assert (await accounts.put(path, json=march, headers=tokens(sub="alice"))).status_code == 200
    future = {"classification": "smb", "effective_from": "2199-01-01T00:00:00Z"}
    assert (await accounts.put(path, json=future, headers=tokens(sub="alice"))).status_code == 200
    # Entered last, effective first: it takes its place in the timeline, it does not override March.
    january = {"classification": "strategic", "effective_from": "2020-01-01T00:00:00Z", "reason": "late"}
    response = await accounts.put(path, json=january, headers=tokens(sub="bob"))
    assert response.status_code == 200
    assert response.json()["classification"] == "key", "March still holds now; 2999 is not here yet"

    history = (await accounts.get(f"/v1/accounts/{account['id']}/history", headers=tokens("system"))).json()
    classifications = [e for e in history if e["kind"] == "classification"]
    assert [(e["from"], e["to"], e["effective_from"]) for e in classifications] == [
        (None, "commercial", "1970-01-01T00:00:00Z"),
        ("commercial", "strategic", "2020-01-01T00:00:00Z"),
        ("strategic", "key", "2020-03-01T00:00:00Z"),
        ("key", "smb", "2199-01-01T00:00:00Z"),
    ]
    assert [e["cause"] for e in classifications] == ["created", "reclassified", "reclassified", "reclassified"]
    assert classifications[1]["actor"] == "bob" and classifications[1]["reason"] == "late"
    assert at(classifications[1]["recorded_at"]) > at(classifications[2]["recorded_at"])
    assert all(e["event_id"] for e in history)
    ownership = [e for e in history if e["kind"] == "ownership"]
    assert [(e["value"], e["cause"]) for e in ownership] == [(None, "created")]
    assert [e["effective_from"] for e in history] == sorted(e["effective_from"] for e in history)


async def test_concurrent_changes_from_the_same_version_have_one_winner(accounts, tokens) -> None:
    account = await new_account(accounts, tokens)
    path = f"/v1/accounts/{account['id']}/classification"
    headers = {**tokens(), "If-Match": '"1"'}
    responses = await asyncio.gather(
        *[accounts.put(path, json={"classification": c}, headers=headers) for c in ("key", "smb", "strategic")]
    )
    assert sorted(r.status_code for r in responses) == [200, 412, 412]
    winner = next(r.json() for r in responses if r.status_code == 200)
    history = (await accounts.get(f"/v1/accounts/{account['id']}/history", headers=tokens())).json()
    assert [e["to"] for e in history if e["kind"] == "classification"] == ["commercial", winner["classification"]]
