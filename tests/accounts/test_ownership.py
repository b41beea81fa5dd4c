"""Ownership: only active partners own accounts, checked against the replica or, once, the registry."""

import json
import uuid
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaProducer

from partnerhub.events import dumps
from services.accounts import usecases
from services.accounts.repository import AccountRepository
from services.accounts.schemas import PartnerData
from tests.accounts.support import assign, new_account, new_partner, replica
from tests.conftest import eventually
from tests.registry.support import run_sql


async def test_an_active_partner_takes_ownership_and_it_is_published(accounts, registry, tokens, event_log) -> None:
    partner = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    response = await assign(accounts, tokens, account["id"], partner["id"], effective_from="2026-02-01T00:00:00Z")
    assert response.status_code == 200, response.text
    assert response.json()["owner_partner_id"] == partner["id"]

    events = await event_log.wait_for(
        "accounts.accounts", account["id"],
        lambda seen: any(e["type"] == "account.ownership_changed" for e in seen),
    )
    change = events[-1]["data"]
    assert change["from"] is None and change["to"] == partner["id"] and change["cause"] == "assigned"
    assert change["effective_from"] == "2026-02-01T00:00:00Z" and change["owner_partner_id"] == partner["id"]

    again = await assign(accounts, tokens, account["id"], partner["id"], effective_from="2026-03-01T00:00:00Z")
    assert again.status_code == 409 and partner["id"] in again.json()["detail"]
    released = await assign(accounts, tokens, account["id"], None)
    assert released.status_code == 200 and released.json()["owner_partner_id"] is None


async def test_unknown_pending_suspended_and_terminated_partners_are_refused(accounts, registry, tokens) -> None:
    account = await new_account(accounts, tokens)
    pending = await new_partner(registry, tokens)
    suspended = await new_partner(registry, tokens, "active", "suspended")
    terminated = await new_partner(registry, tokens, "active", "terminated")
    for partner in (suspended, terminated):
        # Wait for the replica, so the registry's own answer is not what decides here.
        await eventually(lambda p=partner: _replica_says(accounts, p["id"], p["status"]))

    for partner_id, why in [
        (str(uuid.uuid4()), "is unknown to the registry"),
        (pending["id"], "is pending"),
        (suspended["id"], "is suspended"),
        (terminated["id"], "is terminated"),
    ]:
        response = await assign(accounts, tokens, account["id"], partner_id)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert why in problem["detail"] and problem["errors"][0]["loc"] == ["body", "partner_id"]
    current = await accounts.get(f"/v1/accounts/{account['id']}", headers=tokens())
    assert current.json()["owner_partner_id"] is None and current.headers["etag"] == '"1"'


async def test_a_partner_activated_a_moment_ago_is_accepted(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    response = await assign(accounts, tokens, account["id"], partner["id"])
    assert response.status_code == 200, response.text


async def test_a_replica_that_still_says_pending_is_read_through(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    await eventually(lambda: _replica_says(accounts, partner["id"], "active"))
    # As if the activation had not arrived yet: the replica holds the state before it.
    await run_sql(
        accounts,
        "UPDATE partners SET status = 'pending', updated_at = updated_at - interval '1 second' WHERE id = :id",
        id=uuid.UUID(partner["id"]),
    )
    account = await new_account(accounts, tokens)
    response = await assign(accounts, tokens, account["id"], partner["id"])
    assert response.status_code == 200, response.text
    row = await replica(accounts, partner["id"])
    assert row.status == "active" and row.source == "registry read-through"


async def test_a_partner_missing_from_the_replica_is_read_through(accounts, registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    await eventually(lambda: _replica_says(accounts, partner["id"], "active"))
    await run_sql(accounts, "DELETE FROM partners WHERE id = :id", id=uuid.UUID(partner["id"]))
    account = await new_account(accounts, tokens)
    assert (await assign(accounts, tokens, account["id"], partner["id"])).status_code == 200
    assert (await replica(accounts, partner["id"])).source == "registry read-through"


async def test_an_unreachable_registry_is_503_and_the_replica_alone_still_decides(
    accounts, registry, tokens
) -> None:
    known = await new_partner(registry, tokens, "active")
    await eventually(lambda: _replica_says(accounts, known["id"], "active"))
    account = await new_account(accounts, tokens)
    ctx = accounts.app.state.ctx
    saved_settings, saved_http = ctx.settings, ctx.http
    ctx.settings = saved_settings.model_copy(update={"registry_url": "http://127.0.0.1:1"})
    ctx.http = httpx.AsyncClient()
    try:
        response = await assign(accounts, tokens, account["id"], str(uuid.uuid4()))
        assert response.status_code == 503
        assert "could not be validated" in response.json()["detail"]
        assert (await assign(accounts, tokens, account["id"], known["id"])).status_code == 200
    finally:
        await ctx.http.aclose()
        ctx.settings, ctx.http = saved_settings, saved_http


async def test_termination_leaves_the_partners_accounts_unowned(accounts, registry, tokens, event_log) -> None:
    partner = await new_partner(registry, tokens, "active")
    owned_now = await new_account(accounts, tokens, name="Owned now")
    owned_later = await new_account(accounts, tokens, name="Owned from 2199")
    assert (await assign(accounts, tokens, owned_now["id"], partner["id"])).status_code == 200
    later = await assign(accounts, tokens, owned_later["id"], partner["id"], effective_from="2199-01-01T00:00:00Z")
    assert later.status_code == 200

    terminated = await registry.post(
        f"/v1/partners/{partner['id']}/status", json={"status": "terminated", "reason": "breach"}, headers=tokens()
    )
    assert terminated.status_code == 200

    async def unowned() -> bool:
        got = await accounts.get(f"/v1/accounts/{owned_now['id']}", headers=tokens())
        return got.json()["owner_partner_id"] is None

    await eventually(unowned)
    events = await event_log.wait_for(
        "accounts.accounts", owned_now["id"],
        lambda seen: any(e["data"].get("cause") == "partner_terminated" for e in seen),
    )
    release = next(e for e in events if e["data"].get("cause") == "partner_terminated")
    assert release["type"] == "account.ownership_changed"
    assert release["data"]["from"] == partner["id"] and release["data"]["to"] is None
    assert release["data"]["owner_partner_id"] is None

    history = (await accounts.get(f"/v1/accounts/{owned_now['id']}/history", headers=tokens())).json()
    last = [e for e in history if e["kind"] == "ownership"][-1]
    assert last["cause"] == "partner_terminated" and last["from"] == partner["id"] and last["value"] is None
    assert last["event_id"] == release["id"]

    # The assignment dated after the termination no longer makes it the owner when 2199 comes.
    future = (await accounts.get(f"/v1/accounts/{owned_later['id']}/history", headers=tokens())).json()
    ownership = [(e["value"], e["effective_from"], e["cause"]) for e in future if e["kind"] == "ownership"]
    assert ownership[-2:] == [
        (partner["id"], "2199-01-01T00:00:00Z", "assigned"),
        (None, "2199-01-01T00:00:00Z", "partner_terminated"),
    ]
    refused = await assign(accounts, tokens, owned_now["id"], partner["id"])
    assert refused.status_code == 422 and "terminated" in refused.json()["detail"]


async def test_history_hides_other_partners_from_a_partner_token(accounts, registry, tokens) -> None:
    first = await new_partner(registry, tokens, "active")
    second = await new_partner(registry, tokens, "active")
    account = await new_account(accounts, tokens)
    await assign(accounts, tokens, account["id"], first["id"], effective_from="2020-01-01T00:00:00Z")
    await assign(accounts, tokens, account["id"], second["id"], effective_from="2021-01-01T00:00:00Z")
    seen = (await accounts.get(f"/v1/accounts/{account['id']}/history", headers=tokens("partner", second["id"])))
    assert seen.status_code == 200
    owners = [(e["from"], e["to"]) for e in seen.json() if e["kind"] == "ownership"]
    assert owners == [(None, None), (None, "another-partner"), ("another-partner", second["id"])]
    assert first["id"] not in seen.text


async def test_a_malformed_partner_event_goes_to_the_dead_letter_topic(accounts, tokens, settings, event_log) -> None:
    event_id = f"poison-{uuid.uuid4()}"
    partner_id = str(uuid.uuid4())
    envelope = {
        "specversion": "1.0", "id": event_id, "source": "registry", "type": "partner.status_changed",
        "subject": partner_id, "data": {"id": partner_id, "status": "retired"},
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait("registry.partners", dumps(envelope), key=partner_id.encode())
    finally:
        await producer.stop()

    message = await event_log.wait_for_message(
        "registry.partners.dlq", lambda m: json.loads(m.value)["id"] == event_id
    )
    headers = dict(message.headers)
    assert headers["dlq.topic"] == b"registry.partners"
    reason = headers["dlq.reason"].decode()
    assert "status" in reason and "name" in reason and "changed_at" in reason
    assert await replica(accounts, partner_id) is None


async def test_the_replica_keeps_the_newest_partner_state(accounts) -> None:
    partner_id = uuid.uuid4()
    db = accounts.app.state.ctx.db

    async def arrives(status: str, hour: int, by_event: bool = True) -> str:
        partner = PartnerData(
            id=partner_id, name="Hooli", status=status, updated_at=datetime(2026, 1, 1, hour, tzinfo=UTC)
        )
        async with db.transaction() as tx:
            if by_event:
                await usecases.replicate_partner(tx, partner, str(uuid.uuid4()))
            else:
                await AccountRepository(tx.session).replicate_partner(
                    partner_id, partner.name, status, partner.updated_at, usecases.READ_THROUGH
                )
        return str((await replica(accounts, str(partner_id))).status)

    assert await arrives("active", 10) == "active"
    # Events of one partner come in the order they happened, whatever their timestamps say.
    assert await arrives("suspended", 9) == "suspended"
    assert await arrives("active", 12, by_event=False) == "active"
    # An event older than what the registry itself answered changes nothing...
    assert await arrives("suspended", 11) == "active"
    # ...a newer one does.
    assert await arrives("terminated", 13) == "terminated"


async def _replica_says(accounts: httpx.AsyncClient, partner_id: str, status: str) -> bool:
    row = await replica(accounts, partner_id)
    return row is not None and row.status == status
