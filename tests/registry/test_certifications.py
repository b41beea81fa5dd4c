"""Certifications: granted for [issued_at, expires_at), revocable, and announced once when they lapse."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from partnerhub.service import create_service_app
from partnerhub.timeutil import isoformat
from services.registry.app import CERTIFICATION_EXPIRY_SWEEP, SPEC
from services.registry.usecases import expire_certifications
from tests.conftest import eventually
from tests.registry.support import new_partner, outbox, sweep


def grant(code: str, issued_at: str = "2020-01-01T00:00:00Z", expires_at: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"code": code, "issued_at": issued_at}
    if expires_at is not None:
        body["expires_at"] = expires_at
    return body


async def test_grant_shows_the_certification_and_publishes_its_window(registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    path = f"/v1/partners/{partner['id']}/certifications"
    granted = await registry.post(
        path, json=grant("AZ-104", "2026-01-01T09:00:00+01:00", "2199-01-01T00:00:00Z"), headers=tokens()
    )
    assert granted.status_code == 201, granted.text
    cert = {"code": "AZ-104", "issued_at": "2026-01-01T08:00:00Z", "expires_at": "2199-01-01T00:00:00Z"}
    assert granted.json()["certifications"] == [cert]
    event = (await outbox(registry, partner["id"], "partner.certification_granted"))[-1]
    assert event["data"]["certification"] == cert and event["data"]["certifications"] == [cert]

    no_expiry = await registry.post(path, json=grant("SEC-500"), headers=tokens())
    assert [c["code"] for c in no_expiry.json()["certifications"]] == ["AZ-104", "SEC-500"]
    assert no_expiry.json()["certifications"][1]["expires_at"] is None

    for expires_at in ("2026-01-01T08:00:00Z", "2025-01-01T00:00:00Z"):
        bad = await registry.post(path, json=grant("X", "2026-01-01T08:00:00Z", expires_at), headers=tokens())
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "expires_at"]
    missing = await registry.post(f"/v1/partners/{uuid.uuid4()}/certifications", json=grant("X"), headers=tokens())
    assert missing.status_code == 404


async def test_grant_accepts_an_idempotency_key(registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    path = f"/v1/partners/{partner['id']}/certifications"
    headers = {**tokens(), "Idempotency-Key": str(uuid.uuid4())}
    first = await registry.post(path, json=grant("DP-900"), headers=headers)
    again = await registry.post(path, json=grant("DP-900"), headers=headers)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert len(await outbox(registry, partner["id"], "partner.certification_granted")) == 1
    other = await registry.post(path, json=grant("DP-901"), headers=headers)
    assert other.status_code == 409


async def test_revoke_ends_a_certification_from_now(registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    base = f"/v1/partners/{partner['id']}/certifications"
    await registry.post(base, json=grant("AZ-305", expires_at="2199-01-01T00:00:00Z"), headers=tokens())
    await registry.post(base, json=grant("AZ-400"), headers=tokens())
    before = datetime.now(UTC)
    revoked = await registry.delete(f"{base}/AZ-305", headers=tokens(sub="bob"))
    assert revoked.status_code == 204 and revoked.content == b"" and revoked.headers["etag"]
    got = await registry.get(f"/v1/partners/{partner['id']}", headers=tokens())
    assert [c["code"] for c in got.json()["certifications"]] == ["AZ-400"]
    assert got.headers["etag"] == revoked.headers["etag"]

    event = (await outbox(registry, partner["id"], "partner.certification_revoked"))[-1]
    assert event["data"]["certification"]["code"] == "AZ-305"
    assert datetime.fromisoformat(event["data"]["revoked_at"]) >= before
    assert [c["code"] for c in event["data"]["certifications"]] == ["AZ-400"]

    assert (await registry.delete(f"{base}/AZ-305", headers=tokens())).status_code == 404
    assert (await registry.delete(f"{base}/NEVER-1", headers=tokens())).status_code == 404
    listed = (await registry.get(base, headers=tokens("partner", partner["id"]))).json()
    assert [(c["code"], c["state"]) for c in listed] == [("AZ-305", "revoked"), ("AZ-400", "held")]
    assert listed[0]["revoked_at"] == event["data"]["revoked_at"]

    regranted = await registry.post(base, json=grant("AZ-305", "2027-01-01T00:00:00Z"), headers=tokens())
    assert regranted.status_code == 201
    listed = (await registry.get(base, headers=tokens())).json()
    assert [(c["code"], c["state"], c["revoked_at"]) for c in listed] == [
        ("AZ-305", "scheduled", None), ("AZ-400", "held", None)
    ]


async def test_an_expired_certification_stops_counting_and_is_announced_once(registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    base = f"/v1/partners/{partner['id']}/certifications"
    soon = datetime.now(UTC) + timedelta(seconds=1)
    granted = await registry.post(base, json=grant("MS-600", expires_at=isoformat(soon)), headers=tokens())
    assert [c["code"] for c in granted.json()["certifications"]] == ["MS-600"]

    async def lapsed() -> bool:
        got = await registry.get(f"/v1/partners/{partner['id']}", headers=tokens())
        return got.json()["certifications"] == []

    # It stops counting at its expiry, whether or not the sweep has run yet.
    await eventually(lapsed, within=10)
    assert (await registry.delete(f"{base}/MS-600", headers=tokens())).status_code == 409

    # However many replicas sweep at once, and however often, the expiry is published once.
    await asyncio.gather(*[sweep(registry, CERTIFICATION_EXPIRY_SWEEP, expire_certifications) for _ in range(3)])
    await sweep(registry, CERTIFICATION_EXPIRY_SWEEP, expire_certifications)
    expired = await outbox(registry, partner["id"], "partner.certification_expired")
    assert len(expired) == 1
    data = expired[0]["data"]
    assert data["certification"] == {
        "code": "MS-600", "issued_at": "2020-01-01T00:00:00Z", "expires_at": isoformat(soon)
    }
    assert data["certifications"] == [] and data["status"] == "active" and data["id"] == partner["id"]
    history = (await registry.get(f"/v1/partners/{partner['id']}/history", headers=tokens())).json()
    assert history[-1]["change"] == "certification_expired" and history[-1]["actor"] == "registry"
    assert history[-1]["event_id"] == expired[0]["id"]
    listed = (await registry.get(base, headers=tokens())).json()
    assert [(c["code"], c["state"]) for c in listed] == [("MS-600", "expired")]

    # A re-grant with a new window is held again, and its own expiry is announced in its turn.
    renewed = await registry.post(base, json=grant("MS-600", expires_at="2199-01-01T00:00:00Z"), headers=tokens())
    assert [c["code"] for c in renewed.json()["certifications"]] == ["MS-600"]
    await sweep(registry, CERTIFICATION_EXPIRY_SWEEP, expire_certifications)
    assert len(await outbox(registry, partner["id"], "partner.certification_expired")) == 1


async def test_a_certification_recorded_after_its_expiry_is_kept_for_the_past(registry, tokens) -> None:
    partner = await new_partner(registry, tokens, "active")
    base = f"/v1/partners/{partner['id']}/certifications"
    window = grant("OLD-1", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z")
    recorded = await registry.post(base, json=window, headers=tokens())
    assert recorded.status_code == 201 and recorded.json()["certifications"] == []
    granted = (await outbox(registry, partner["id"], "partner.certification_granted"))[-1]
    assert granted["data"]["certification"]["expires_at"] == "2025-01-01T00:00:00Z"
    await sweep(registry, CERTIFICATION_EXPIRY_SWEEP, expire_certifications)
    assert len(await outbox(registry, partner["id"], "partner.certification_expired")) == 1


async def test_a_replica_sweeps_by_itself_at_the_configured_interval(registry, tokens, settings) -> None:
    assert settings.sweep_interval_seconds == 60, "the default"
    partner = await new_partner(registry, tokens, "active")
    base = f"/v1/partners/{partner['id']}/certifications"
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await registry.post(base, json=grant("BG-1", expires_at=isoformat(soon)), headers=tokens())
    # A second replica, sweeping every 0.2s: the expiry is announced without anyone asking.
    replica = create_service_app(SPEC, settings.model_copy(update={"sweep_interval_seconds": 0.2}))
    async with replica.router.lifespan_context(replica):
        expired = await eventually(
            lambda: outbox(registry, partner["id"], "partner.certification_expired"), within=15
        )
    assert [e["data"]["certification"]["code"] for e in expired] == ["BG-1"]
