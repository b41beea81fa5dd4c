"""Two-tier distribution: a reseller's parent is an active distributor; no self-parenting, no cycles."""

import asyncio
import uuid

from tests.registry.support import PARTNER, new_partner, outbox


async def set_parent(registry, tokens, partner_id: str, parent_id: str | None, **headers: str):  # type: ignore[no-untyped-def]
    return await registry.put(
        f"/v1/partners/{partner_id}/parent", json={"parent_partner_id": parent_id}, headers={**tokens(), **headers}
    )


async def test_a_reseller_registers_under_an_active_distributor(registry, tokens) -> None:
    distributor = await new_partner(registry, tokens, "active", types=["sales"])
    reseller = await new_partner(registry, tokens, parent_partner_id=distributor["id"])
    assert reseller["parent_partner_id"] == distributor["id"]

    pending = await new_partner(registry, tokens, types=["sales"])
    suspended = await new_partner(registry, tokens, "active", "suspended", types=["sales"])
    not_sales = await new_partner(registry, tokens, "active", types=["service", "solution"])
    for parent_id, why in [
        (pending["id"], "it is pending"),
        (suspended["id"], "it is suspended"),
        (not_sales["id"], "types service, solution"),
        (str(uuid.uuid4()), "does not exist"),
    ]:
        response = await registry.post(
            "/v1/partners", json={**PARTNER, "parent_partner_id": parent_id}, headers=tokens()
        )
        assert response.status_code == 422, response.text
        problem = response.json()
        assert why in problem["detail"] and problem["errors"][0]["loc"] == ["body", "parent_partner_id"]


async def test_the_parent_changes_and_is_published(registry, tokens) -> None:
    first = await new_partner(registry, tokens, "active")
    second = await new_partner(registry, tokens, "active")
    reseller = await new_partner(registry, tokens, "active", parent_partner_id=first["id"])
    moved = await set_parent(registry, tokens, reseller["id"], second["id"])
    assert moved.status_code == 200 and moved.json()["parent_partner_id"] == second["id"]
    unchanged = await set_parent(registry, tokens, reseller["id"], second["id"])
    assert unchanged.status_code == 200 and unchanged.headers["etag"] == moved.headers["etag"]
    alone = await set_parent(registry, tokens, reseller["id"], None)
    assert alone.status_code == 200 and alone.json()["parent_partner_id"] is None

    events = await outbox(registry, reseller["id"], "partner.parent_changed")
    assert [(e["data"]["from"], e["data"]["to"]) for e in events] == [(first["id"], second["id"]), (second["id"], None)]
    assert events[0]["data"]["parent_partner_id"] == second["id"]
    listed = await registry.get("/v1/partners", params={"parent_partner_id": first["id"]}, headers=tokens())
    assert listed.json()["items"] == []


async def test_self_parenting_and_cycles_are_refused(registry, tokens) -> None:
    top = await new_partner(registry, tokens, "active")
    middle = await new_partner(registry, tokens, "active", parent_partner_id=top["id"])
    bottom = await new_partner(registry, tokens, "active", parent_partner_id=middle["id"])

    itself = await set_parent(registry, tokens, top["id"], top["id"])
    assert itself.status_code == 422 and "its own parent" in itself.json()["detail"]
    for descendant in (middle, bottom):
        cycle = await set_parent(registry, tokens, top["id"], descendant["id"])
        assert cycle.status_code == 422, cycle.text
        problem = cycle.json()
        assert "cycle" in problem["detail"] and problem["errors"][0]["loc"] == ["body", "parent_partner_id"]
        assert problem["detail"].startswith(f"that would make a cycle of parents: {top['id']} -> {descendant['id']}")
    got = await registry.get(f"/v1/partners/{top['id']}", headers=tokens())
    assert got.json()["parent_partner_id"] is None
    assert got.headers["etag"] == '"2"', "registered, then activated: nothing changed since"


async def test_two_parent_changes_that_together_close_a_cycle_have_one_winner(registry, tokens) -> None:
    for _ in range(3):
        a = await new_partner(registry, tokens, "active")
        b = await new_partner(registry, tokens, "active")
        responses = await asyncio.gather(
            set_parent(registry, tokens, a["id"], b["id"]), set_parent(registry, tokens, b["id"], a["id"])
        )
        assert sorted(r.status_code for r in responses) == [200, 422]
        parents = [
            (await registry.get(f"/v1/partners/{p['id']}", headers=tokens())).json()["parent_partner_id"]
            for p in (a, b)
        ]
        assert parents.count(None) == 1


async def test_a_terminated_partner_keeps_its_parent(registry, tokens) -> None:
    distributor = await new_partner(registry, tokens, "active")
    reseller = await new_partner(registry, tokens, "active", "terminated")
    response = await set_parent(registry, tokens, reseller["id"], distributor["id"])
    assert response.status_code == 409 and "terminated" in response.json()["detail"]
    missing = await set_parent(registry, tokens, str(uuid.uuid4()), distributor["id"])
    assert missing.status_code == 404
