"""Registry use cases: each runs inside the caller's transaction and records the events it causes."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.encoders import jsonable_encoder

from partnerhub.auth import Principal
from partnerhub.db import Database, Transaction
from partnerhub.events import OutgoingEvent
from partnerhub.http import check_if_match
from partnerhub.problems import conflict, illegal_move, not_found, unprocessable
from partnerhub.timeutil import BEGINNING, isoformat, utcnow
from services.registry import domain, repository
from services.registry.domain import CertificationState
from services.registry.repository import PartnerRepository
from services.registry.schemas import EVENT_TYPES, CertificationIn, ParentIn, Partner, PartnerIn, StatusIn, TierIn

TOPIC = "registry.partners"
# Who the history names for changes the service makes by itself (certification expiry).
SERVICE_ACTOR = "registry"
# Certification expiries published per sweep run; a larger backlog is worked off over the next runs.
EXPIRY_BATCH = 1000


def _event(type_: str, partner: dict[str, Any], **change: Any) -> OutgoingEvent:
    data = jsonable_encoder(Partner.model_validate(partner))
    data.update(jsonable_encoder(change))
    return OutgoingEvent(topic=TOPIC, type=type_, key=str(partner["id"]), data=EVENT_TYPES[type_].checked(data))


async def _fresh(repo: PartnerRepository, partner_id: uuid.UUID) -> dict[str, Any]:
    partner = await repo.get(partner_id)
    assert partner is not None
    return partner


async def _check_parent(repo: PartnerRepository, parent_id: uuid.UUID | None, child_id: uuid.UUID) -> None:
    """Locks the parent (shared) so it cannot be suspended or terminated before this commits."""
    if parent_id is None:
        return
    parent = await repo.lock(parent_id, shared=True) if parent_id != child_id else None
    ancestors = await repo.ancestors(parent_id) if parent is not None else []
    try:
        domain.check_parent(
            child_id,
            parent_id,
            domain.Status(parent.status) if parent is not None else None,
            list(parent.types) if parent is not None else None,
            ancestors,
        )
    except domain.ParentRefused as exc:
        raise unprocessable(str(exc), ["body", "parent_partner_id"]) from exc


async def register_partner(tx: Transaction, principal: Principal, command: PartnerIn) -> tuple[dict[str, Any], int]:
    repo = PartnerRepository(tx.session)
    partner_id = uuid.uuid4()
    await _check_parent(repo, command.parent_partner_id, partner_id)
    now = utcnow()
    await repo.add(
        {
            "id": partner_id,
            "name": command.name,
            "country": command.country,
            "region": command.region,
            "types": [t.value for t in command.types],
            "status": domain.Status.PENDING.value,
            "parent_partner_id": command.parent_partner_id,
            "created_at": now,
            "updated_at": now,
        },
        domain.Tier.REGISTERED.value,
        BEGINNING,
    )
    partner = await _fresh(repo, partner_id)
    event = _event("partner.registered", partner)
    tx.emit(event)
    await repo.record(partner_id, "registered", jsonable_encoder(command), principal.sub, event.id)
    return partner, partner["version"]


async def read_partner(db: Database, partner_id: uuid.UUID) -> dict[str, Any]:
    """One partner as GET answers it: one statement, outside a transaction."""
    partner = await db.read_one(lambda connection: repository.read_partner(connection, partner_id))
    if partner is None:
        raise not_found(f"partner {partner_id}")
    return partner


async def get_partner(tx: Transaction, partner_id: uuid.UUID) -> dict[str, Any]:
    partner = await PartnerRepository(tx.session).get(partner_id)
    if partner is None:
        raise not_found(f"partner {partner_id}")
    return partner


async def _locked(repo: PartnerRepository, partner_id: uuid.UUID, if_match: str | None) -> Any:
    row = await repo.lock(partner_id)
    if row is None:
        raise not_found(f"partner {partner_id}")
    check_if_match(if_match, row.version)
    return row


def _not_terminated(row: Any, what: str) -> None:
    if row.status == domain.Status.TERMINATED:
        raise conflict(f"partner {row.id} is terminated (final); its {what} cannot change")


async def change_status(
    tx: Transaction, principal: Principal, partner_id: uuid.UUID, command: StatusIn, if_match: str | None
) -> tuple[dict[str, Any], int]:
    repo = PartnerRepository(tx.session)
    row = await _locked(repo, partner_id, if_match)
    current = domain.Status(row.status)
    try:
        domain.check_status_move(current, command.status, command.reason)
    except domain.IllegalMove as exc:
        raise illegal_move(current.value, command.status.value, exc.allowed) from exc
    except domain.ReasonRequired as exc:
        raise unprocessable(str(exc), ["body", "reason"]) from exc
    changed_at = utcnow()
    await repo.update(partner_id, status=command.status.value)
    partner = await _fresh(repo, partner_id)
    change = {
        "from": current.value, "to": command.status.value, "changed_at": isoformat(changed_at), "reason": command.reason
    }
    event = _event("partner.status_changed", partner, **change)
    tx.emit(event)
    await repo.record(partner_id, "status_changed", jsonable_encoder(change), principal.sub, event.id)
    return partner, partner["version"]


async def change_tier(
    tx: Transaction, principal: Principal, partner_id: uuid.UUID, command: TierIn, if_match: str | None
) -> tuple[dict[str, Any], int]:
    """Inserts the tier into the partner's timeline at effective_from; later-dated entries keep their place."""
    repo = PartnerRepository(tx.session)
    row = await _locked(repo, partner_id, if_match)
    _not_terminated(row, "tier")
    in_force = await repo.tier_at(partner_id, command.effective_from)
    assert in_force is not None, "every partner has a tier from the beginning"
    if in_force.tier == command.tier.value:
        raise conflict(f"partner {partner_id} is already {in_force.tier} from {isoformat(in_force.effective_from)}")
    await repo.add_tier(partner_id, command.tier.value, command.effective_from)
    await repo.update(partner_id)
    partner = await _fresh(repo, partner_id)
    change = {"from": in_force.tier, "to": command.tier.value, "effective_from": isoformat(command.effective_from)}
    event = _event("partner.tier_changed", partner, **change)
    tx.emit(event)
    await repo.record(partner_id, "tier_changed", change, principal.sub, event.id)
    return partner, partner["version"]


async def tier_timeline(tx: Transaction, partner_id: uuid.UUID) -> list[dict[str, Any]]:
    """The effective-dated tiers; of two entries effective at once, the later-recorded one holds."""
    repo = PartnerRepository(tx.session)
    await get_partner(tx, partner_id)
    entries = await repo.tier_timeline(partner_id)
    timeline: list[dict[str, Any]] = []
    for entry in entries:
        if timeline and timeline[-1]["effective_from"] == entry.effective_from:
            timeline.pop()
        timeline.append({"tier": entry.tier, "effective_from": entry.effective_from, "recorded_at": entry.recorded_at})
    for current, following in zip(timeline, [*timeline[1:], None], strict=True):
        current["until"] = following["effective_from"] if following else None
    return timeline


async def grant_certification(
    tx: Transaction, principal: Principal, partner_id: uuid.UUID, command: CertificationIn, if_match: str | None
) -> tuple[dict[str, Any], int]:
    """Grants a code, or re-grants it with a new window; one already expired is recorded for the past."""
    repo = PartnerRepository(tx.session)
    row = await _locked(repo, partner_id, if_match)
    _not_terminated(row, "certifications")
    if command.expires_at is not None and command.expires_at <= command.issued_at:
        raise unprocessable("expires_at must be after issued_at", ["body", "expires_at"])
    await repo.upsert_certification(partner_id, command.code, command.issued_at, command.expires_at)
    await repo.update(partner_id)
    partner = await _fresh(repo, partner_id)
    change = jsonable_encoder({"certification": command})
    event = _event("partner.certification_granted", partner, **change)
    tx.emit(event)
    await repo.record(partner_id, "certification_granted", change, principal.sub, event.id)
    return partner, partner["version"]


async def revoke_certification(
    tx: Transaction, principal: Principal, partner_id: uuid.UUID, code: str, if_match: str | None
) -> int:
    """Ends a held (or not yet started) certification from now; an expired one has already ended."""
    repo = PartnerRepository(tx.session)
    await _locked(repo, partner_id, if_match)
    cert = await repo.certification(partner_id, code)
    revoked_at = utcnow()
    state = None if cert is None else domain.certification_state(
        cert.issued_at, cert.expires_at, cert.revoked_at, revoked_at
    )
    if state is None or state is CertificationState.REVOKED:
        raise not_found(f"certification {code!r} held by partner {partner_id}")
    assert cert is not None
    if state is CertificationState.EXPIRED:
        raise conflict(f"certification {code!r} already expired at {isoformat(cert.expires_at)}; nothing to revoke")
    await repo.revoke_certification(partner_id, code, revoked_at)
    await repo.update(partner_id)
    partner = await _fresh(repo, partner_id)
    change = {"certification": _certification(cert), "revoked_at": isoformat(revoked_at)}
    event = _event("partner.certification_revoked", partner, **change)
    tx.emit(event)
    await repo.record(partner_id, "certification_revoked", change, principal.sub, event.id)
    return int(partner["version"])


def _certification(cert: Any) -> dict[str, Any]:
    expires_at = isoformat(cert.expires_at) if cert.expires_at is not None else None
    return {"code": cert.code, "issued_at": isoformat(cert.issued_at), "expires_at": expires_at}


async def certifications_of(tx: Transaction, partner_id: uuid.UUID) -> list[dict[str, Any]]:
    await get_partner(tx, partner_id)
    return [
        {
            "code": c.code,
            "issued_at": c.issued_at,
            "expires_at": c.expires_at,
            "revoked_at": c.revoked_at,
            "state": domain.certification_state(c.issued_at, c.expires_at, c.revoked_at, c.now),
        }
        for c in await PartnerRepository(tx.session).certifications_of(partner_id)
    ]


async def expire_certifications(tx: Transaction) -> int:
    """The periodic sweep: publishes partner.certification_expired once for each certification past its expiry.

    Runs under the sweep lock (one replica at a time) and is conditional on state, so each expiry is
    announced once however often and wherever it runs.
    """
    repo = PartnerRepository(tx.session)
    due: dict[uuid.UUID, list[str]] = {}
    for row in await repo.expiries_due(EXPIRY_BATCH):
        due.setdefault(row.partner_id, []).append(row.code)
    announced = 0
    for partner_id in sorted(due):
        # The partner's row first, the order grants and revocations lock in.
        await repo.lock(partner_id)
        expired = await repo.announce_expiries(partner_id, due[partner_id])
        if not expired:
            continue
        await repo.update(partner_id)
        partner = await _fresh(repo, partner_id)
        for cert in expired:
            change = {"certification": _certification(cert), "expired_at": isoformat(cert.expires_at)}
            event = _event("partner.certification_expired", partner, **change)
            tx.emit(event)
            await repo.record(partner_id, "certification_expired", change, SERVICE_ACTOR, event.id)
            announced += 1
    return announced


async def change_parent(
    tx: Transaction, principal: Principal, partner_id: uuid.UUID, command: ParentIn, if_match: str | None
) -> tuple[dict[str, Any], int]:
    """Makes the partner a reseller of another distributor, or of none; cycles are refused."""
    repo = PartnerRepository(tx.session)
    await repo.lock_hierarchy()
    parent_id = command.parent_partner_id
    if parent_id is not None and parent_id < partner_id:
        # Two partners' rows in id order, the order the expiry sweep locks them in.
        await repo.lock(parent_id, shared=True)
    row = await _locked(repo, partner_id, if_match)
    _not_terminated(row, "parent")
    previous = row.parent_partner_id
    if previous == command.parent_partner_id:
        partner = await _fresh(repo, partner_id)
        return partner, partner["version"]
    await _check_parent(repo, command.parent_partner_id, partner_id)
    await repo.update(partner_id, parent_partner_id=command.parent_partner_id)
    partner = await _fresh(repo, partner_id)
    change = jsonable_encoder(
        {"from": previous, "to": command.parent_partner_id, "changed_at": isoformat(utcnow()), "reason": command.reason}
    )
    event = _event("partner.parent_changed", partner, **change)
    tx.emit(event)
    await repo.record(partner_id, "parent_changed", change, principal.sub, event.id)
    return partner, partner["version"]


async def partner_history(tx: Transaction, partner_id: uuid.UUID) -> list[dict[str, Any]]:
    repo = PartnerRepository(tx.session)
    if await repo.get(partner_id) is None:
        raise not_found(f"partner {partner_id}")
    return [
        {"change": r.change, "at": r.at, "actor": r.actor, "detail": r.detail, "event_id": r.event_id}
        for r in await repo.history(partner_id)
    ]
