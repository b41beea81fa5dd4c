"""Customer preregistration over real PostgreSQL and the broker: claim, decide, expire, race, scope."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.accounts.app import REGISTRATION_EXPIRY_SWEEP
from services.accounts.usecases import expire_registrations
from tests.accounts.support import assign, decide, new_account, new_partner, preregister, replica
from tests.conftest import eventually
from tests.registry.support import database, outbox, run_sql, sweep

PROSPECT = {"name": "Umbrella Retail", "country": "FR", "industry": "retail"}
REGISTRATION_FIELDS = {"id", "partner_id", "account_id", "status", "expires_at"}


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


async def claimed(accounts, tokens, partner_id: str, **body: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    response = await preregister(accounts, tokens, partner_id, **body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_prospect_becomes_an_unowned_commercial_account_at_once(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    response = await accounts.post(
        "/v1/registrations", json={"prospect": PROSPECT}, headers=tokens("partner", partner["id"], sub="pia")
    )
    assert response.status_code == 201, response.text
    registration = response.json()
    assert REGISTRATION_FIELDS <= set(registration)
    assert registration["partner_id"] == partner["id"] and registration["status"] == "pending"
    assert registration["prospect"] is True and registration["decided_at"] is None
    assert at(registration["expires_at"]) - at(registration["created_at"]) == timedelta(days=15)
    assert registration["expires_at"].endswith("Z")

    account = (await accounts.get(f"/v1/accounts/{registration['account_id']}", headers=tokens())).json()
    assert {k: account[k] for k in PROSPECT} == PROSPECT
    assert account["classification"] == "commercial" and account["owner_partner_id"] is None
    [created] = await outbox(accounts, account["id"])
    assert created["type"] == "account.created" and created["data"] == account
    history = (await accounts.get(f"/v1/accounts/{account['id']}/history", headers=tokens())).json()
    assert {(e["kind"], e["cause"], e["actor"]) for e in history} == {
        ("classification", "created", "pia"), ("ownership", "created", "pia")
    }
    # Not its account until approved: the partner sees its registration, not the account.
    as_partner = tokens("partner", partner["id"])
    assert (await accounts.get(f"/v1/accounts/{account['id']}", headers=as_partner)).status_code == 404
    got = await accounts.get(f"/v1/registrations/{registration['id']}", headers=as_partner)
    assert got.status_code == 200 and got.json() == registration and got.headers["etag"] == '"1"'


async def test_an_owned_strategic_or_claimed_account_is_refused_with_the_reason(accounts, registry, tokens) -> None:
    mine = await new_partner(registry, tokens, "active")
    theirs = await new_partner(registry, tokens, "active")
    owned_by_them = await new_account(accounts, tokens)
    owned_by_me = await new_account(accounts, tokens)
    assert (await assign(accounts, tokens, owned_by_them["id"], theirs["id"])).status_code == 200
    assert (await assign(accounts, tokens, owned_by_me["id"], mine["id"])).status_code == 200
    strategic = await new_account(accounts, tokens, classification="strategic")
    claimed_by_them = await new_account(accounts, tokens)
    await claimed(accounts, tokens, theirs["id"], account_id=claimed_by_them["id"])
    claimed_by_me = await new_account(accounts, tokens)
    await claimed(accounts, tokens, mine["id"], account_id=claimed_by_me["id"])

    for account, reason, words in [
        (owned_by_them, "owned", "owned by another partner"),
        (owned_by_me, "owned", "already owned by this partner"),
        (strategic, "strategic", "strategic"),
        (claimed_by_them, "preregistered", "preregistered (pending) by another partner"),
        (claimed_by_me, "preregistered", "already has a pending registration"),
    ]:
        response = await preregister(accounts, tokens, mine["id"], account_id=account["id"])
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["reason"] == reason and words in problem["detail"]
        assert theirs["id"] not in problem["detail"]

    for body, loc in [
        ({"account_id": str(uuid.uuid4())}, ["body", "account_id"]),
        ({}, ["body"]),
        ({"account_id": claimed_by_me["id"], "prospect": PROSPECT}, ["body"]),
        ({"prospect": {**PROSPECT, "country": "France"}}, ["body", "prospect", "country"]),
        ({"prospect": PROSPECT, "partner_id": theirs["id"]}, ["body", "partner_id"]),
    ]:
        response = await preregister(accounts, tokens, mine["id"], **body)
        assert response.status_code == 422, (body, response.text)
        assert any(e["loc"][: len(loc)] == loc for e in response.json()["errors"]), response.json()


async def test_a_partner_holds_at_most_100_pending(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    first = await claimed(accounts, tokens, partner["id"], prospect=PROSPECT)
    for i in range(99):
        await claimed(accounts, tokens, partner["id"], prospect={**PROSPECT, "name": f"Prospect {i}"})
    spare = await new_account(accounts, tokens)
    for body in ({"prospect": PROSPECT}, {"account_id": spare["id"]}):
        response = await preregister(accounts, tokens, partner["id"], **body)
        assert response.status_code == 409 and response.json()["reason"] == "limit", response.text
        assert "100 pending" in response.json()["detail"]
    listed = await accounts.get("/v1/registrations", params={"status": "pending", "limit": 500},
                                headers=tokens("partner", partner["id"]))
    assert len(listed.json()["items"]) == 100
    # A decided one no longer counts.
    assert (await decide(accounts, tokens, str(first["id"]), "reject", reason="duplicate")).status_code == 200
    assert (await preregister(accounts, tokens, partner["id"], account_id=spare["id"])).status_code == 201


async def test_approval_makes_the_partner_the_owner_from_now(accounts, registry, tokens, event_log) -> None:
    partner = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    registration = await claimed(accounts, tokens, partner["id"], account_id=account["id"])
    before = datetime.now(UTC)
    approved = await decide(accounts, tokens, str(registration["id"]), "approve", reason="first to register")
    assert approved.status_code == 200, approved.text
    decided = approved.json()
    assert decided["status"] == "approved" and decided["decided_by"] == "admin-user"
    assert decided["reason"] == "first to register" and at(decided["decided_at"]) >= before
    assert approved.headers["etag"] == '"2"'

    as_partner = tokens("partner", partner["id"])
    now_owned = await accounts.get(f"/v1/accounts/{account['id']}", headers=as_partner)
    assert now_owned.status_code == 200 and now_owned.json()["owner_partner_id"] == partner["id"]
    listed = await accounts.get("/v1/accounts", headers=as_partner)
    assert account["id"] in [a["id"] for a in listed.json()["items"]]

    events = await event_log.wait_for(
        "accounts.accounts", account["id"], lambda seen: any(e["type"] == "account.ownership_changed" for e in seen)
    )
    change = events[-1]["data"]
    assert (change["from"], change["to"], change["cause"]) == (None, partner["id"], "registration_approved")
    assert change["registration_id"] == registration["id"] and change["owner_partner_id"] == partner["id"]
    assert before <= at(change["effective_from"]) <= at(decided["decided_at"]) + timedelta(seconds=1)
    history = (await accounts.get(f"/v1/accounts/{account['id']}/history", headers=as_partner)).json()
    last = [e for e in history if e["kind"] == "ownership"][-1]
    assert (last["to"], last["cause"], last["reason"]) == (partner["id"], "registration_approved", "first to register")

    for decision in ("approve", "reject"):
        again = await decide(accounts, tokens, str(registration["id"]), decision)
        assert again.status_code == 409
        assert again.json()["detail"].endswith("allowed moves from 'approved': none (final)")
    assert (await decide(accounts, tokens, str(uuid.uuid4()), "approve")).status_code == 404


async def test_rejection_leaves_the_account_open_to_others(accounts, registry, tokens) -> None:
    first = await new_partner(registry, tokens, "active")
    second = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    registration = await claimed(accounts, tokens, first["id"], account_id=account["id"])
    rejected = await decide(accounts, tokens, str(registration["id"]), "reject", reason="vendor-led deal")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert rejected.json()["reason"] == "vendor-led deal"
    got = (await accounts.get(f"/v1/accounts/{account['id']}", headers=tokens())).json()
    assert got["owner_partner_id"] is None and got["updated_at"] == account["updated_at"]
    assert [e["type"] for e in await outbox(accounts, account["id"])] == ["account.created"]
    assert (await preregister(accounts, tokens, second["id"], account_id=account["id"])).status_code == 201


async def test_approval_needs_the_partner_still_active(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    registration = await claimed(accounts, tokens, partner["id"], account_id=account["id"])
    status_path = f"/v1/partners/{partner['id']}/status"
    await registry.post(status_path, json={"status": "suspended", "reason": "audit"}, headers=tokens())
    await eventually(lambda: _replica_says(accounts, partner["id"], "suspended"))
    refused = await decide(accounts, tokens, str(registration["id"]), "approve")
    assert refused.status_code == 422, refused.text
    assert "is suspended" in refused.json()["detail"]
    still = await accounts.get(f"/v1/registrations/{registration['id']}", headers=tokens())
    assert still.json()["status"] == "pending"
    # Reactivated a moment ago: the reactivation need not have reached this service's replica yet.
    await registry.post(status_path, json={"status": "active"}, headers=tokens())
    approved = await decide(accounts, tokens, str(registration["id"]), "approve")
    assert approved.status_code == 200, approved.text


async def test_a_suspended_partner_claims_nothing_and_a_terminated_ones_claims_end(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    other = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    registration = await claimed(accounts, tokens, partner["id"], account_id=account["id"])
    status_path = f"/v1/partners/{partner['id']}/status"
    await registry.post(status_path, json={"status": "suspended", "reason": "audit"}, headers=tokens())
    await eventually(lambda: _replica_says(accounts, partner["id"], "suspended"))
    refused = await preregister(accounts, tokens, partner["id"], prospect=PROSPECT)
    assert refused.status_code == 409 and refused.json()["reason"] == "partner_inactive"

    await registry.post(status_path, json={"status": "terminated", "reason": "fraud"}, headers=tokens())

    async def rejected() -> bool:
        got = await accounts.get(f"/v1/registrations/{registration['id']}", headers=tokens())
        return bool(got.json()["status"] == "rejected")

    await eventually(rejected)
    ended = (await accounts.get(f"/v1/registrations/{registration['id']}", headers=tokens())).json()
    assert ended["reason"] == "the partner was terminated" and ended["decided_by"] == "registry"
    assert (await decide(accounts, tokens, str(registration["id"]), "approve")).status_code == 409
    assert (await preregister(accounts, tokens, other["id"], account_id=account["id"])).status_code == 201


async def test_an_account_taken_or_made_strategic_meanwhile_is_not_approved(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    rival = await new_partner(registry, tokens, "active")
    taken = await new_account(accounts, tokens)
    made_strategic = await new_account(accounts, tokens)
    first = await claimed(accounts, tokens, partner["id"], account_id=taken["id"])
    second = await claimed(accounts, tokens, partner["id"], account_id=made_strategic["id"])
    assert (await assign(accounts, tokens, taken["id"], rival["id"])).status_code == 200
    reclassified = await accounts.put(
        f"/v1/accounts/{made_strategic['id']}/classification", json={"classification": "strategic"}, headers=tokens()
    )
    assert reclassified.status_code == 200
    for registration, reason in ((first, "owned"), (second, "strategic")):
        response = await decide(accounts, tokens, str(registration["id"]), "approve")
        assert response.status_code == 409 and response.json()["reason"] == reason, response.text
        still = await accounts.get(f"/v1/registrations/{registration['id']}", headers=tokens())
        assert still.json()["status"] == "pending"
    assert (await decide(accounts, tokens, str(first["id"]), "reject")).status_code == 200


async def test_pending_registrations_expire_after_15_days(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    other = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    registration = await claimed(accounts, tokens, partner["id"], account_id=account["id"])
    lapsing = await claimed(accounts, tokens, partner["id"], prospect=PROSPECT)
    await run_sql(
        accounts, "UPDATE registrations SET expires_at = now() - interval '1 second' WHERE id IN (:a, :b)",
        a=uuid.UUID(str(registration["id"])), b=uuid.UUID(str(lapsing["id"])),
    )
    # Past expires_at it is expired, before any sweep has marked it.
    got = await accounts.get(f"/v1/registrations/{registration['id']}", headers=tokens("partner", partner["id"]))
    assert got.json()["status"] == "expired"
    refused = await decide(accounts, tokens, str(registration["id"]), "approve")
    assert refused.status_code == 409
    assert "cannot move from 'expired' to 'approved'" in refused.json()["detail"]
    as_partner = tokens("partner", partner["id"])
    pending = await accounts.get("/v1/registrations", params={"status": "pending"}, headers=as_partner)
    assert pending.json()["items"] == []
    expired = await accounts.get("/v1/registrations", params={"status": "expired"}, headers=as_partner)
    assert {r["id"] for r in expired.json()["items"]} == {registration["id"], lapsing["id"]}

    # The account is open again: another partner's claim succeeds.
    assert (await preregister(accounts, tokens, other["id"], account_id=account["id"])).status_code == 201
    await sweep(accounts, REGISTRATION_EXPIRY_SWEEP, expire_registrations)
    rows = await run_sql(
        accounts, "SELECT id, status, version FROM registrations WHERE id IN (:a, :b) ORDER BY status",
        a=uuid.UUID(str(registration["id"])), b=uuid.UUID(str(lapsing["id"])),
    )
    assert [(r.status, r.version) for r in rows] == [("expired", 1), ("expired", 1)]
    assert await sweep(accounts, REGISTRATION_EXPIRY_SWEEP, expire_registrations) == 0


async def test_two_partners_preregistering_one_account_at_once_one_wins(accounts, registry, tokens) -> None:
    partners = [await new_partner(registry, tokens, "active") for _ in range(4)]
    for _ in range(5):
        account = await new_account(accounts, tokens)
        responses = await asyncio.gather(
            *[preregister(accounts, tokens, p["id"], account_id=account["id"]) for p in partners[:2]]
        )
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        loser = next(r for r in responses if r.status_code == 409)
        assert loser.json()["reason"] == "preregistered"
    account = await new_account(accounts, tokens)
    responses = await asyncio.gather(
        *[preregister(accounts, tokens, p["id"], account_id=account["id"]) for p in partners]
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    rows = await run_sql(
        accounts, "SELECT count(*) AS n FROM registrations WHERE account_id = :id AND status = 'pending'",
        id=uuid.UUID(account["id"]),
    )
    assert rows[0].n == 1


async def test_the_database_itself_refuses_a_second_pending_registration(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    registration = await claimed(accounts, tokens, partner["id"], prospect=PROSPECT)
    with pytest.raises(IntegrityError, match="registrations_one_pending_per_account"):
        async with database(accounts).transaction() as tx:
            await tx.session.execute(
                sa.text(
                    "INSERT INTO registrations (id, partner_id, account_id, status, created_at, expires_at, created_by)"
                    " SELECT gen_random_uuid(), gen_random_uuid(), account_id, 'pending', now(), expires_at, 'x'"
                    " FROM registrations WHERE id = :id"
                ),
                {"id": uuid.UUID(str(registration["id"]))},
            )


async def test_a_partner_never_sees_another_partners_registrations(accounts, registry, tokens) -> None:
    first = await new_partner(registry, tokens, "active")
    second = await new_partner(registry, tokens, "active")
    theirs = await claimed(accounts, tokens, first["id"], prospect=PROSPECT)
    mine = await claimed(accounts, tokens, second["id"], prospect=PROSPECT)
    as_second = tokens("partner", second["id"])

    hidden = await accounts.get(f"/v1/registrations/{theirs['id']}", headers=as_second)
    assert hidden.status_code == 404 and hidden.headers["content-type"].startswith("application/problem+json")
    assert (await accounts.get(f"/v1/registrations/{uuid.uuid4()}", headers=as_second)).status_code == 404
    listed = await accounts.get("/v1/registrations", headers=as_second)
    assert [r["id"] for r in listed.json()["items"]] == [mine["id"]]
    named = await accounts.get("/v1/registrations", params={"partner_id": first["id"]}, headers=as_second)
    assert named.status_code == 403
    by_account = await accounts.get(
        "/v1/registrations", params={"account_id": theirs["account_id"]}, headers=as_second
    )
    assert by_account.json()["items"] == []
    admin_view = await accounts.get("/v1/registrations", params={"partner_id": first["id"]}, headers=tokens())
    assert [r["id"] for r in admin_view.json()["items"]] == [theirs["id"]]

    # Approved, the account is the first partner's: to the second it stays invisible, history included.
    assert (await decide(accounts, tokens, str(theirs["id"]), "approve")).status_code == 200
    for path in (f"/v1/accounts/{theirs['account_id']}", f"/v1/accounts/{theirs['account_id']}/history"):
        assert (await accounts.get(path, headers=as_second)).status_code == 404
        assert (await accounts.get(path, headers=tokens("partner", first["id"]))).status_code == 200
    owned = await accounts.get("/v1/accounts", headers=as_second)
    assert theirs["account_id"] not in [a["id"] for a in owned.json()["items"]]

    # Only partners preregister (for themselves), only admins decide; system tokens do neither.
    assert (await accounts.post("/v1/registrations", json={"prospect": PROSPECT}, headers=tokens())).status_code == 403
    assert (await accounts.post("/v1/registrations", json={"prospect": PROSPECT},
                                headers=tokens("system"))).status_code == 403
    assert (await accounts.get("/v1/registrations", headers=tokens("system"))).status_code == 403
    for headers in (as_second, tokens("system")):
        response = await accounts.post(
            f"/v1/registrations/{mine['id']}/decision", json={"decision": "approve"}, headers=headers
        )
        assert response.status_code == 403
    assert (await accounts.get("/v1/registrations")).status_code == 401


async def test_list_filters_and_cursor_pagination(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    made = [await claimed(accounts, tokens, partner["id"], prospect={**PROSPECT, "name": f"P{i}"}) for i in range(5)]
    await decide(accounts, tokens, str(made[1]["id"]), "approve")
    await decide(accounts, tokens, str(made[3]["id"]), "reject")

    async def listed(**params: object) -> list[object]:
        ids: list[object] = []
        cursor = None
        while True:
            query = {"partner_id": partner["id"], "limit": 2, **params}
            if cursor:
                query["cursor"] = cursor
            page = (await accounts.get("/v1/registrations", params=query, headers=tokens())).json()
            assert len(page["items"]) <= 2
            ids += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return ids

    ids = [r["id"] for r in made]
    assert await listed() == ids
    assert await listed(status="pending") == [ids[0], ids[2], ids[4]]
    assert await listed(status="approved") == [ids[1]]
    assert await listed(status="rejected") == [ids[3]]
    assert await listed(account_id=made[2]["account_id"]) == [ids[2]]
    for params in ({"status": "won"}, {"cursor": "nonsense!"}, {"limit": 501}, {"partner_id": "x"}):
        assert (await accounts.get("/v1/registrations", params=params, headers=tokens())).status_code == 422


async def test_idempotency_keys_replay_and_never_cross_partners(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    other = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await preregister(accounts, tokens, partner["id"], key, account_id=account["id"])
    again = await preregister(accounts, tokens, partner["id"], key, account_id=account["id"])
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert (await preregister(accounts, tokens, partner["id"], key, prospect=PROSPECT)).status_code == 409
    # The same key and body from another partner is not a replay of the first partner's registration.
    crossed = await preregister(accounts, tokens, other["id"], key, account_id=account["id"])
    assert crossed.status_code == 409 and partner["id"] not in crossed.text

    decision_key = {**tokens(), "Idempotency-Key": str(uuid.uuid4())}
    path = f"/v1/registrations/{first.json()['id']}/decision"
    approved = await accounts.post(path, json={"decision": "approve"}, headers=decision_key)
    retried = await accounts.post(path, json={"decision": "approve"}, headers=decision_key)
    assert approved.status_code == retried.status_code == 200 and approved.json() == retried.json()
    ownership = await outbox(accounts, account["id"], "account.ownership_changed")
    assert len(ownership) == 1


async def test_a_stale_if_match_on_a_decision_is_412(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    registration = await claimed(accounts, tokens, partner["id"], prospect=PROSPECT)
    path = f"/v1/registrations/{registration['id']}/decision"
    etag = (await accounts.get(f"/v1/registrations/{registration['id']}", headers=tokens())).headers["etag"]
    stale = await accounts.post(path, json={"decision": "reject"}, headers={**tokens(), "If-Match": '"7"'})
    assert stale.status_code == 412 and etag in stale.json()["detail"]
    fresh = await accounts.post(path, json={"decision": "reject"}, headers={**tokens(), "If-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag


async def _replica_says(accounts, partner_id: str, status: str) -> bool:  # type: ignore[no-untyped-def]
    row = await replica(accounts, partner_id)
    return row is not None and row.status == status
