"""Registry use cases: each runs inside the caller's transaction and records the events it causes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi.encoders import jsonable_encoder

from partnerhub.auth import Principal
from partnerhub.db import Transaction
from partnerhub.events import OutgoingEvent
from partnerhub.http import check_if_match
from partnerhub.problems import Problem, illegal_move, not_found, unprocessable
from partnerhub.timeutil import BEGINNING, isoformat, utcnow
from services.registry import domain
from services.registry.repository import PartnerRepository
from services.registry.schemas import CertificationIn, Partner, PartnerIn, StatusIn, TierIn

TOPIC = "registry.partners"


def _event(type_: str, partner: dict[str, Any], **change: Any) -> OutgoingEvent:
    data = jsonable_encoder(Partner.model_validate(partner))
    data.update(jsonable_encoder(change))
    return OutgoingEvent(topic=TOPIC, type=type_, key=str(partner["id"]), data=data)


async def _fresh(repo: PartnerRepository, partner_id: uuid.UUID) -> dict[str, Any]:
    partner = await repo.get(partner_id)
    assert partner is not None
    return partner


async def _parent_check(repo: PartnerRepository, parent_id: uuid.UUID | None, child_id: uuid.UUID) -> None:
    if parent_id is None:
        return
    if parent_id == child_id:
        raise unprocessable("a partner cannot be its own parent", ["body", "parent_partner_id"])
    parent = await repo.get(parent_id)
    if parent is None:
        raise unprocessable(f"parent partner {parent_id} does not exist", ["body", "parent_partner_id"])
    if parent["status"] != domain.Status.ACTIVE or domain.PartnerType.SALES not in parent["types"]:
        raise unprocessable(
            "the parent must be an active distributor (a partner of type sales)", ["body", "parent_partner_id"]
        )


async def register_partner(tx: Transaction, principal: Principal, command: PartnerIn) -> tuple[dict[str, Any], int]:
    repo = PartnerRepository(tx.session)
    partner_id = uuid.uuid4()
    await _parent_check(repo, command.parent_partner_id, partner_id)
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
    change = {"from": current.value, "to": command.status.value, "changed_at": changed_at, "reason": command.reason}
    event = _event("partner.status_changed", partner, **change)
    tx.emit(event)
    await repo.record(partner_id, "status_changed", jsonable_encoder(change), principal.sub, event.id)
    return partner, partner["version"]


async def change_tier(
    tx: Transaction, principal: Principal, partner_id: uuid.UUID, command: TierIn, if_match: str | None
) -> tuple[dict[str, Any], int]:
    repo = PartnerRepository(tx.session)
    row = await _locked(repo, partner_id, if_match)
    if row.status == domain.Status.TERMINATED:
        raise Problem(409, detail="a terminated partner's tier cannot change")
    previous = await repo.tier_at(partner_id, command.effective_from)
    await repo.add_tier(partner_id, command.tier.value, command.effective_from)
    await repo.update(partner_id)
    partner = await _fresh(repo, partner_id)
    change = {"from": previous, "to": command.tier.value, "effective_from": isoformat(command.effective_from)}
    event = _event("partner.tier_changed", partner, **change)
    tx.emit(event)
    await repo.record(partner_id, "tier_changed", change, principal.sub, event.id)
    return partner, partner["version"]


async def grant_certification(
    tx: Transaction, principal: Principal, partner_id: uuid.UUID, command: CertificationIn
) -> tuple[dict[str, Any], int]:
    repo = PartnerRepository(tx.session)
    await _locked(repo, partner_id, None)
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
    tx: Transaction, principal: Principal, partner_id: uuid.UUID, code: str
) -> None:
    repo = PartnerRepository(tx.session)
    await _locked(repo, partner_id, None)
    revoked_at = utcnow()
    if not await repo.revoke_certification(partner_id, code, revoked_at):
        raise not_found(f"certification {code!r} of partner {partner_id}")
    await repo.update(partner_id)
    partner = await _fresh(repo, partner_id)
    change = {"certification": {"code": code}, "revoked_at": isoformat(revoked_at)}
    event = _event("partner.certification_revoked", partner, **change)
    tx.emit(event)
    await repo.record(partner_id, "certification_revoked", change, principal.sub, event.id)


async def partner_history(tx: Transaction, partner_id: uuid.UUID) -> list[dict[str, Any]]:
    repo = PartnerRepository(tx.session)
    if await repo.get(partner_id) is None:
        raise not_found(f"partner {partner_id}")
    return [
        {"change": r.change, "at": r.at, "actor": r.actor, "detail": r.detail, "event_id": r.event_id}
        for r in await repo.history(partner_id)
    ]


def since(after: list[Any] | None) -> tuple[datetime, uuid.UUID] | None:
    if not after:
        return None
    try:
        return datetime.fromisoformat(str(after[0])), uuid.UUID(str(after[1]))
    except (ValueError, IndexError) as exc:
        raise Problem(422, detail="the cursor is not one this service issued") from exc
