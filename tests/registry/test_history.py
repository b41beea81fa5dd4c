"""A partner's history: every change, with who made it (token sub), when, and what."""

from datetime import UTC, datetime

from tests.registry.support import PARTNER, new_partner


async def test_history_names_who_when_and_what_for_every_change(registry, tokens) -> None:
    distributor = await new_partner(registry, tokens, "active")
    started = datetime.now(UTC)
    created = await registry.post("/v1/partners", json=PARTNER, headers=tokens(sub="ann"))
    partner_id = created.json()["id"]
    base = f"/v1/partners/{partner_id}"
    as_bob = tokens(sub="bob")
    await registry.post(f"{base}/status", json={"status": "active"}, headers=as_bob)
    silver = {"tier": "silver", "effective_from": "2020-05-01T00:00:00Z"}
    await registry.put(f"{base}/tier", json=silver, headers=as_bob)
    await registry.post(f"{base}/certifications", json={"code": "C-1", "issued_at": "2020-01-01T00:00:00Z"},
                        headers=tokens(sub="cat"))
    await registry.delete(f"{base}/certifications/C-1", headers=tokens(sub="cat"))
    await registry.put(f"{base}/parent", json={"parent_partner_id": distributor["id"], "reason": "joined"},
                       headers=tokens(sub="dan"))
    await registry.post(f"{base}/status", json={"status": "suspended", "reason": "unpaid fees"}, headers=as_bob)

    response = await registry.get(f"{base}/history", headers=tokens("partner", partner_id))
    assert response.status_code == 200
    history = response.json()
    assert [(e["change"], e["actor"]) for e in history] == [
        ("registered", "ann"),
        ("status_changed", "bob"),
        ("tier_changed", "bob"),
        ("certification_granted", "cat"),
        ("certification_revoked", "cat"),
        ("parent_changed", "dan"),
        ("status_changed", "bob"),
    ]
    moments = [datetime.fromisoformat(e["at"]) for e in history]
    assert moments == sorted(moments) and moments[0] >= started.replace(microsecond=0)
    assert all(e["event_id"] for e in history)
    assert history[0]["detail"]["name"] == PARTNER["name"]
    assert history[2]["detail"] == {"from": "registered", "to": "silver", "effective_from": "2020-05-01T00:00:00Z"}
    assert history[3]["detail"]["certification"]["code"] == "C-1"
    assert history[5]["detail"]["to"] == distributor["id"] and history[5]["detail"]["reason"] == "joined"
    assert history[6]["detail"]["reason"] == "unpaid fees" and history[6]["detail"]["to"] == "suspended"
    assert (await registry.get(f"{base}/history", headers=tokens("partner", distributor["id"]))).status_code == 403
