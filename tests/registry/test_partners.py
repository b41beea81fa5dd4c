"""Registry over real PostgreSQL and the broker."""

import json
import uuid

from aiokafka import AIOKafkaConsumer

PARTNER = {"name": "Acme Distribution", "country": "DE", "region": "EMEA", "types": ["sales", "service"]}


async def test_register_get_and_activate(registry, tokens) -> None:
    created = await registry.post("/v1/partners", json=PARTNER, headers=tokens("admin"))
    assert created.status_code == 201, created.text
    partner = created.json()
    assert partner["status"] == "pending" and partner["tier"] == "registered"
    assert partner["certifications"] == [] and partner["parent_partner_id"] is None

    got = await registry.get(f"/v1/partners/{partner['id']}", headers=tokens("partner", partner["id"]))
    assert got.status_code == 200 and got.headers["etag"]

    activated = await registry.post(
        f"/v1/partners/{partner['id']}/status", json={"status": "active"}, headers=tokens("admin")
    )
    assert activated.status_code == 200 and activated.json()["status"] == "active"


async def test_illegal_status_move_names_allowed_moves(registry, tokens) -> None:
    partner = (await registry.post("/v1/partners", json=PARTNER, headers=tokens())).json()
    response = await registry.post(
        f"/v1/partners/{partner['id']}/status", json={"status": "suspended", "reason": "x"}, headers=tokens()
    )
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["allowed"] == ["active", "terminated"]


async def test_auth_and_scoping(registry, tokens) -> None:
    assert (await registry.get("/v1/partners")).status_code == 401
    assert (await registry.post("/v1/partners", json=PARTNER, headers=tokens("system"))).status_code == 403
    other = (await registry.post("/v1/partners", json=PARTNER, headers=tokens())).json()
    mine = uuid.uuid4()
    response = await registry.get(f"/v1/partners/{other['id']}", headers=tokens("partner", mine))
    assert response.status_code == 403


async def test_bad_input_is_problem_json(registry, tokens) -> None:
    response = await registry.post("/v1/partners", json={**PARTNER, "types": ["pirate"]}, headers=tokens())
    assert response.status_code == 422
    body = response.json()
    assert body["status"] == 422 and body["errors"][0]["loc"][-2:] == ["types", "0"]


async def test_idempotency_key_replays_first_response(registry, tokens) -> None:
    headers = {**tokens(), "Idempotency-Key": str(uuid.uuid4())}
    first = await registry.post("/v1/partners", json=PARTNER, headers=headers)
    again = await registry.post("/v1/partners", json=PARTNER, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = await registry.post("/v1/partners", json={**PARTNER, "name": "Other"}, headers=headers)
    assert other.status_code == 409


async def test_tier_change_is_effective_dated_and_published(registry, tokens, settings) -> None:
    partner = (await registry.post("/v1/partners", json=PARTNER, headers=tokens())).json()
    changed = await registry.put(
        f"/v1/partners/{partner['id']}/tier",
        json={"tier": "gold", "effective_from": "2026-01-01T00:00:00Z"},
        headers=tokens(),
    )
    assert changed.status_code == 200 and changed.json()["tier"] == "gold"

    consumer = AIOKafkaConsumer(
        "registry.partners", bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"test-{uuid.uuid4()}", auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen: list[dict] = []
        while not any(e["type"] == "partner.tier_changed" and e["subject"] == partner["id"] for e in seen):
            batch = await consumer.getmany(timeout_ms=1000)
            assert batch or len(seen) < 10_000
            for messages in batch.values():
                seen += [json.loads(m.value) for m in messages if m.key == partner["id"].encode()]
        tier_event = next(e for e in seen if e["type"] == "partner.tier_changed")
        assert tier_event["specversion"] == "1.0" and tier_event["source"] == "registry"
        assert tier_event["data"]["to"] == "gold" and tier_event["data"]["from"] == "registered"
        assert tier_event["data"]["effective_from"] == "2026-01-01T00:00:00Z"
        assert seen[0]["type"] == "partner.registered"
    finally:
        await consumer.stop()
