"""Tiers are effective-dated: kept as a timeline, the partner shows the tier in force now."""

from tests.registry.support import new_partner, outbox


async def put_tier(registry, tokens, partner_id: str, tier: str, effective_from: str, sub: str = "alice"):  # type: ignore[no-untyped-def]
    return await registry.put(
        f"/v1/partners/{partner_id}/tier", json={"tier": tier, "effective_from": effective_from},
        headers=tokens(sub=sub),
    )


async def test_the_partner_shows_the_tier_in_force_now(registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    future = await put_tier(registry, tokens, partner["id"], "platinum", "2199-01-01T00:00:00Z")
    assert future.status_code == 200 and future.json()["tier"] == "registered"
    past = await put_tier(registry, tokens, partner["id"], "gold", "2025-07-01T00:00:00+02:00")
    assert past.status_code == 200 and past.json()["tier"] == "gold"
    got = await registry.get(f"/v1/partners/{partner['id']}", headers=tokens("partner", partner["id"]))
    assert got.json()["tier"] == "gold"

    timeline = (await registry.get(f"/v1/partners/{partner['id']}/tiers", headers=tokens("system"))).json()
    assert [(e["tier"], e["effective_from"], e["until"]) for e in timeline] == [
        ("registered", "1970-01-01T00:00:00Z", "2025-06-30T22:00:00Z"),
        ("gold", "2025-06-30T22:00:00Z", "2199-01-01T00:00:00Z"),
        ("platinum", "2199-01-01T00:00:00Z", None),
    ]


async def test_tier_changes_publish_from_to_and_effective_from(registry, tokens) -> None:
    partner = await new_partner(registry, tokens)
    await put_tier(registry, tokens, partner["id"], "gold", "2020-03-01T00:00:00Z")
    # Entered late, effective earlier: it takes its place in the timeline; "from" is what it replaces then.
    await put_tier(registry, tokens, partner["id"], "silver", "2020-01-01T00:00:00Z")
    events = await outbox(registry, partner["id"], "partner.tier_changed")
    assert [(e["data"]["from"], e["data"]["to"], e["data"]["effective_from"]) for e in events] == [
        ("registered", "gold", "2020-03-01T00:00:00Z"),
        ("registered", "silver", "2020-01-01T00:00:00Z"),
    ]
    assert events[-1]["data"]["tier"] == "gold" and events[-1]["data"]["id"] == partner["id"]
    timeline = (await registry.get(f"/v1/partners/{partner['id']}/tiers", headers=tokens())).json()
    assert [e["tier"] for e in timeline] == ["registered", "silver", "gold"]


async def test_the_tier_in_force_then_is_a_conflict_and_a_terminated_partner_keeps_its_tier(registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    same = await put_tier(registry, tokens, partner["id"], "registered", "2026-01-01T00:00:00Z")
    assert same.status_code == 409 and "already registered from 1970-01-01T00:00:00Z" in same.json()["detail"]
    assert (await put_tier(registry, tokens, partner["id"], "gold", "2026-01-01T00:00:00Z")).status_code == 200
    again = await put_tier(registry, tokens, partner["id"], "gold", "2026-02-01T00:00:00Z")
    assert again.status_code == 409 and "already gold from 2026-01-01T00:00:00Z" in again.json()["detail"]

    await registry.post(
        f"/v1/partners/{partner['id']}/status", json={"status": "terminated", "reason": "exit"}, headers=tokens()
    )
    final = await put_tier(registry, tokens, partner["id"], "platinum", "2026-06-01T00:00:00Z")
    assert final.status_code == 409 and "terminated" in final.json()["detail"]
    missing = await registry.get("/v1/partners/00000000-0000-0000-0000-000000000000/tiers", headers=tokens())
    assert missing.status_code == 404
