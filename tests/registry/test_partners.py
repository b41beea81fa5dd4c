"""Registry over real PostgreSQL and the broker: register, read, list, status machine, conventions."""

import asyncio
import uuid

from services.registry.domain import ALLOWED_MOVES, Status
from tests.registry.support import PARTNER, new_partner, outbox

PARTNER_FIELDS = {
    "id", "name", "country", "region", "types", "tier", "status", "parent_partner_id", "certifications",
    "created_at", "updated_at",
}


async def test_register_get_and_activate(registry, tokens) -> None:
    created = await registry.post("/v1/partners", json=PARTNER, headers=tokens())
    assert created.status_code == 201, created.text
    partner = created.json()
    assert set(partner) == PARTNER_FIELDS
    assert partner["status"] == "pending" and partner["tier"] == "registered"
    assert partner["certifications"] == [] and partner["parent_partner_id"] is None
    assert partner["types"] == ["sales", "service"] and partner["created_at"].endswith("Z")

    for headers in (tokens("partner", partner["id"]), tokens("system"), tokens()):
        got = await registry.get(f"/v1/partners/{partner['id']}", headers=headers)
        assert got.status_code == 200 and got.json() == partner and got.headers["etag"] == '"1"'

    activated = await registry.post(
        f"/v1/partners/{partner['id']}/status", json={"status": "active"}, headers=tokens()
    )
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    assert activated.headers["etag"] == '"2"'
    assert [e["type"] for e in await outbox(registry, partner["id"])] == [
        "partner.registered", "partner.status_changed"
    ]


async def test_every_illegal_status_move_is_409_naming_the_allowed_moves(registry, tokens) -> None:
    moves_to = {
        Status.PENDING: (),
        Status.ACTIVE: ("active",),
        Status.SUSPENDED: ("active", "suspended"),
        Status.TERMINATED: ("terminated",),
    }
    for current, moves in moves_to.items():
        partner = await new_partner(registry, tokens, *moves)
        assert partner["status"] == current.value
        for wanted in Status:
            if wanted in ALLOWED_MOVES[current]:
                continue
            response = await registry.post(
                f"/v1/partners/{partner['id']}/status", json={"status": wanted.value, "reason": "x"}, headers=tokens()
            )
            assert response.status_code == 409, (current, wanted, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            problem = response.json()
            allowed = sorted(s.value for s in ALLOWED_MOVES[current])
            assert problem["allowed"] == allowed
            assert f"allowed moves from '{current.value}': {', '.join(allowed) or 'none (final)'}" in problem["detail"]
        final = await registry.get(f"/v1/partners/{partner['id']}", headers=tokens())
        assert final.json()["status"] == current.value


async def test_suspending_and_terminating_need_a_reason(registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    path = f"/v1/partners/{partner['id']}/status"
    for status in ("suspended", "terminated"):
        for body in ({"status": status}, {"status": status, "reason": "   "}):
            response = await registry.post(path, json=body, headers=tokens())
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["loc"] == ["body", "reason"]
    suspended = await registry.post(path, json={"status": "suspended", "reason": "audit"}, headers=tokens())
    assert suspended.status_code == 200
    reactivated = await registry.post(path, json={"status": "active"}, headers=tokens())
    assert reactivated.status_code == 200 and reactivated.json()["status"] == "active"
    terminated = await registry.post(path, json={"status": "terminated", "reason": "contract ended"}, headers=tokens())
    assert terminated.status_code == 200
    change = (await outbox(registry, partner["id"], "partner.status_changed"))[-1]["data"]
    assert (change["from"], change["to"], change["reason"]) == ("active", "terminated", "contract ended")
    assert change["changed_at"].endswith("Z") and change["status"] == "terminated"


async def test_auth_and_partner_scoping(registry, tokens) -> None:
    assert (await registry.get("/v1/partners")).status_code == 401
    bad = await registry.get("/v1/partners", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401 and bad.headers["content-type"].startswith("application/problem+json")
    assert (await registry.post("/v1/partners", json=PARTNER, headers=tokens("system"))).status_code == 403
    other = await new_partner(registry, tokens)
    mine = await new_partner(registry, tokens)
    as_mine = tokens("partner", mine["id"])
    assert (await registry.post("/v1/partners", json=PARTNER, headers=as_mine)).status_code == 403
    assert (await registry.get("/v1/partners", headers=as_mine)).status_code == 403
    for suffix in ("", "/history", "/tiers", "/certifications"):
        assert (await registry.get(f"/v1/partners/{other['id']}{suffix}", headers=as_mine)).status_code == 403
        assert (await registry.get(f"/v1/partners/{mine['id']}{suffix}", headers=as_mine)).status_code == 200
    base = f"/v1/partners/{mine['id']}"
    changes = [
        ("POST", f"{base}/status", {"status": "active"}),
        ("PUT", f"{base}/tier", {"tier": "gold", "effective_from": "2020-01-01T00:00:00Z"}),
        ("PUT", f"{base}/parent", {"parent_partner_id": None}),
        ("POST", f"{base}/certifications", {"code": "AZ-104", "issued_at": "2026-01-01T00:00:00Z"}),
        ("DELETE", f"{base}/certifications/AZ-104", None),
    ]
    for role in ("partner", "system"):
        headers = tokens(role, mine["id"] if role == "partner" else None)
        for method, path, body in changes:
            response = await registry.request(method, path, json=body, headers=headers)
            assert response.status_code == 403, (role, method, path)
    missing = await registry.get(f"/v1/partners/{uuid.uuid4()}", headers=tokens())
    assert missing.status_code == 404 and missing.json()["title"] == "Not Found"


async def test_bad_input_is_problem_json(registry, tokens) -> None:
    partner = await new_partner(registry, tokens)
    cases = [
        ("post", "/v1/partners", {**PARTNER, "types": ["pirate"]}, ["body", "types", "0"]),
        ("post", "/v1/partners", {**PARTNER, "types": []}, ["body", "types"]),
        ("post", "/v1/partners", {**PARTNER, "types": ["sales", "sales"]}, ["body", "types"]),
        ("post", "/v1/partners", {**PARTNER, "country": "Germany"}, ["body", "country"]),
        ("post", "/v1/partners", {**PARTNER, "tier": "gold"}, ["body", "tier"]),
        ("post", "/v1/partners", {"name": "No rest"}, ["body", "country"]),
        ("post", f"/v1/partners/{partner['id']}/status", {"status": "retired"}, ["body", "status"]),
        ("put", f"/v1/partners/{partner['id']}/tier", {"tier": "gold", "effective_from": "2026-01-01T00:00:00"},
         ["body", "effective_from"]),
        ("put", f"/v1/partners/{partner['id']}/tier", {"tier": "diamond", "effective_from": "2026-01-01T00:00:00Z"},
         ["body", "tier"]),
        ("post", f"/v1/partners/{partner['id']}/certifications", {"code": "a b", "issued_at": "2026-01-01T00:00:00Z"},
         ["body", "code"]),
        ("put", f"/v1/partners/{partner['id']}/parent", {"parent_partner_id": "nope"}, ["body", "parent_partner_id"]),
    ]
    for method, path, body, loc in cases:
        response = await registry.request(method, path, json=body, headers=tokens())
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 422 and problem["detail"] and problem["type"] and problem["title"]
        assert any(e["loc"][: len(loc)] == loc for e in problem["errors"]), (body, problem)
    for params in ({"country": "de"}, {"tier": "diamond"}, {"limit": 0}, {"limit": 501}, {"cursor": "nonsense!"}):
        assert (await registry.get("/v1/partners", params=params, headers=tokens())).status_code == 422, params
    assert (await registry.get("/v1/partners/not-a-uuid", headers=tokens())).status_code == 422


async def test_list_filters_and_cursor_pagination(registry, tokens) -> None:
    distributor = await new_partner(registry, tokens, "active")
    children = [
        await new_partner(registry, tokens, name=f"Reseller {i}", country="FR" if i % 2 else "IT",
                          types=["sales"] if i < 4 else ["service"], parent_partner_id=distributor["id"])
        for i in range(6)
    ]
    await registry.post(f"/v1/partners/{children[1]['id']}/status", json={"status": "active"}, headers=tokens())
    await registry.put(
        f"/v1/partners/{children[3]['id']}/tier",
        json={"tier": "gold", "effective_from": "2020-01-01T00:00:00Z"}, headers=tokens(),
    )
    await registry.put(
        f"/v1/partners/{children[5]['id']}/tier",
        json={"tier": "gold", "effective_from": "2199-01-01T00:00:00Z"}, headers=tokens(),
    )

    async def listed(**params: object) -> list[str]:
        ids: list[str] = []
        cursor = None
        while True:
            query = {"parent_partner_id": distributor["id"], "limit": 2, **params}
            if cursor:
                query["cursor"] = cursor
            response = await registry.get("/v1/partners", params=query, headers=tokens("system"))
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 2
            ids += [p["id"] for p in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return ids

    ids = [c["id"] for c in children]
    assert await listed() == ids
    assert await listed(type="sales") == ids[:4]
    assert await listed(country="FR") == [ids[1], ids[3], ids[5]]
    assert await listed(status="active") == [ids[1]]
    assert await listed(status="pending", type="service") == ids[4:]
    assert await listed(tier="gold") == [ids[3]], "a tier from 2199 is not the tier now"
    assert await listed(tier="registered", country="FR") == [ids[1], ids[5]]
    one_page = await registry.get("/v1/partners", params={"parent_partner_id": distributor["id"]}, headers=tokens())
    assert len(one_page.json()["items"]) == 6 and one_page.json()["next_cursor"] is None


async def test_idempotency_key_replays_the_first_response(registry, tokens) -> None:
    headers = {**tokens(), "Idempotency-Key": str(uuid.uuid4())}
    first = await registry.post("/v1/partners", json=PARTNER, headers=headers)
    again = await registry.post("/v1/partners", json=PARTNER, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    other = await registry.post("/v1/partners", json={**PARTNER, "name": "Other"}, headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
    assert len(await outbox(registry, first.json()["id"])) == 1

    # A retried status change answers as the first time instead of failing as a move to the same status.
    path = f"/v1/partners/{first.json()['id']}/status"
    key = {**tokens(), "Idempotency-Key": str(uuid.uuid4())}
    activated = await registry.post(path, json={"status": "active"}, headers=key)
    retried = await registry.post(path, json={"status": "active"}, headers=key)
    assert activated.status_code == retried.status_code == 200 and activated.json() == retried.json()
    assert (await registry.post(path, json={"status": "active"}, headers=tokens())).status_code == 409


async def test_concurrent_registrations_with_one_key_create_one_partner(registry, tokens) -> None:
    headers = {**tokens(), "Idempotency-Key": str(uuid.uuid4())}
    responses = await asyncio.gather(*[registry.post("/v1/partners", json=PARTNER, headers=headers) for _ in range(4)])
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1


async def test_stale_if_match_is_412_on_every_change(registry, tokens) -> None:
    distributor = await new_partner(registry, tokens, "active")
    partner = await new_partner(registry, tokens, "active")
    base = f"/v1/partners/{partner['id']}"
    grant = await registry.post(
        f"{base}/certifications", json={"code": "SEC-1", "issued_at": "2026-01-01T00:00:00Z"}, headers=tokens()
    )
    stale = '"1"'
    current = (await registry.get(base, headers=tokens())).headers["etag"]
    assert current == grant.headers["etag"] != stale
    changes = [
        ("POST", f"{base}/status", {"status": "suspended", "reason": "audit"}),
        ("PUT", f"{base}/tier", {"tier": "gold", "effective_from": "2020-01-01T00:00:00Z"}),
        ("PUT", f"{base}/parent", {"parent_partner_id": distributor["id"]}),
        ("POST", f"{base}/certifications", {"code": "SEC-2", "issued_at": "2026-01-01T00:00:00Z"}),
        ("DELETE", f"{base}/certifications/SEC-1", None),
    ]
    for method, path, body in changes:
        response = await registry.request(method, path, json=body, headers={**tokens(), "If-Match": stale})
        assert response.status_code == 412, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert current in response.json()["detail"]
    assert (await registry.get(base, headers=tokens())).headers["etag"] == current
    for method, path, body in changes:
        response = await registry.request(method, path, json=body, headers={**tokens(), "If-Match": current})
        assert response.status_code in (200, 201, 204), (method, path, response.text)
        assert response.headers["etag"] != current
        current = response.headers["etag"]
    final = (await registry.get(base, headers=tokens())).json()
    assert (final["status"], final["tier"], final["parent_partner_id"]) == ("suspended", "gold", distributor["id"])
    assert [c["code"] for c in final["certifications"]] == ["SEC-2"]


async def test_events_reach_the_broker_as_cloudevents_with_the_full_partner(registry, tokens, event_log) -> None:
    partner = await new_partner(registry, tokens, "active", "suspended")
    events = await event_log.wait_for(
        "registry.partners", partner["id"], lambda seen: len(seen) >= 3
    )
    assert [e["type"] for e in events] == ["partner.registered", "partner.status_changed", "partner.status_changed"]
    for event in events:
        assert event["specversion"] == "1.0" and event["source"] == "registry" and event["id"]
        assert event["subject"] == partner["id"] and event["datacontenttype"] == "application/json"
        assert PARTNER_FIELDS <= set(event["data"])
    suspended = events[-1]["data"]
    assert {k: suspended[k] for k in PARTNER_FIELDS} == partner
    assert (suspended["from"], suspended["to"]) == ("active", "suspended") and suspended["changed_at"]
    assert events == await outbox(registry, partner["id"])


async def test_a_read_survives_the_database_dropping_every_connection(registry, tokens, infrastructure) -> None:
    """A database restart or failover closes every pooled connection at once: the next reads answer as usual
    (a dropped connection fails its statement, leaves the pool, and the read is retried on a fresh one)."""
    import asyncpg

    partner = (await registry.post("/v1/partners", json=PARTNER, headers=tokens())).json()
    for _ in range(3):  # the read pool now holds connections
        assert (await registry.get(f"/v1/partners/{partner['id']}", headers=tokens())).status_code == 200
    database = infrastructure.database_urls["registry"].partition("?")[0].rpartition("/")[2]
    admin = await asyncpg.connect(infrastructure.admin_dsn)
    try:
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
    finally:
        await admin.close()
    assert terminated > 0
    answers = await asyncio.gather(*(registry.get(f"/v1/partners/{partner['id']}", headers=tokens())
                                     for _ in range(12)))
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers if a.status_code != 200]
    assert all(a.json() == partner for a in answers)
