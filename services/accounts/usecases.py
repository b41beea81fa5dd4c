"""Accounts use cases: each runs inside the caller's transaction and records the events it causes.

The one exception is `ask_registry_about_owner`, which runs before the transaction: it may call the
registry over HTTP, and no database lock is held while waiting for it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from fastapi.encoders import jsonable_encoder
from sqlalchemy.exc import IntegrityError

from partnerhub.auth import Principal, Role, issue_token
from partnerhub.db import Database, Transaction
from partnerhub.events import OutgoingEvent
from partnerhub.http import check_if_match, time_and_id
from partnerhub.problems import Problem, conflict, illegal_move, not_found, unprocessable
from partnerhub.service import ServiceContext
from partnerhub.timeutil import BEGINNING, isoformat, utcnow
from services.accounts import domain, repository
from services.accounts.domain import Cause, Classification, Entry, PartnerStatus
from services.accounts.repository import EVENT_SOURCE, AccountRepository, RegistrationRepository
from services.accounts.schemas import (
    EVENT_TYPES,
    Account,
    AccountIn,
    ClassificationIn,
    DecisionIn,
    OwnerIn,
    PartnerData,
    RegistrationIn,
)

TOPIC = "accounts.accounts"
SERVICE_SUBJECT = "accounts-service"
READ_THROUGH = "registry read-through"
# What a partner token sees in an account's history instead of another partner's id.
ANOTHER_PARTNER = "another-partner"
PROSPECT_REASON = "a partner preregistered it as a prospect"
TERMINATED_REASON = "the partner was terminated"


def _event(type_: str, account: dict[str, Any], event_id: str, **change: Any) -> OutgoingEvent:
    data = jsonable_encoder(Account.model_validate(account))
    data.update(jsonable_encoder(change))
    return OutgoingEvent(topic=TOPIC, type=type_, key=str(account["id"]), data=EVENT_TYPES[type_].checked(data),
                         id=event_id)


def _new_event_id() -> str:
    return str(uuid.uuid4())


async def _fresh(repo: AccountRepository, account_id: uuid.UUID) -> dict[str, Any]:
    account = await repo.get(account_id, utcnow())
    assert account is not None
    return account


async def _locked(repo: AccountRepository, account_id: uuid.UUID, if_match: str | None) -> Any:
    row = await repo.lock(account_id)
    if row is None:
        raise not_found(f"account {account_id}")
    check_if_match(if_match, row.version)
    return row


async def create_account(
    tx: Transaction, principal: Principal, command: AccountIn
) -> tuple[dict[str, Any], int]:
    account = await _add_account(tx, principal, command)
    return account, account["version"]


async def _add_account(
    tx: Transaction, principal: Principal, command: AccountIn, reason: str | None = None
) -> dict[str, Any]:
    """A new, unowned account, published as account.created."""
    repo = AccountRepository(tx.session)
    account_id = uuid.uuid4()
    event_id = _new_event_id()
    now = utcnow()
    await repo.add(
        {
            "id": account_id,
            "name": command.name,
            "country": command.country,
            "industry": command.industry,
            "created_at": now,
            "updated_at": now,
        }
    )
    # The state an account is created with holds for all time before its first change.
    origin = {"account_id": account_id, "effective_from": BEGINNING, "cause": Cause.CREATED.value,
              "actor": principal.sub, "event_id": event_id, "reason": reason}
    await repo.add_classification(classification=command.classification.value, **origin)
    await repo.add_owners([{"partner_id": None, **origin}])
    account = await _fresh(repo, account_id)
    tx.emit(_event("account.created", account, event_id))
    return account


async def read_account(db: Database, principal: Principal, account_id: uuid.UUID) -> dict[str, Any]:
    """One account as GET answers it: one statement, outside a transaction; another partner's is not found."""
    account = await db.read_one(lambda connection: repository.read_account(connection, account_id))
    if account is None or not principal.may_see_partner(account["owner_partner_id"]):
        raise not_found(f"account {account_id}")
    return account


async def get_account(tx: Transaction, principal: Principal, account_id: uuid.UUID) -> dict[str, Any]:
    """An account another partner owns is, to a partner token, an account that does not exist."""
    account = await AccountRepository(tx.session).get(account_id, utcnow())
    if account is None or not principal.may_see_partner(account["owner_partner_id"]):
        raise not_found(f"account {account_id}")
    return account


async def list_accounts(
    tx: Transaction,
    principal: Principal,
    *,
    owner_partner_id: uuid.UUID | None,
    classification: domain.Classification | None,
    after: list[Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    if principal.role is Role.PARTNER:
        if owner_partner_id is not None and owner_partner_id != principal.partner_id:
            raise Problem(403, detail="a partner token lists only its own partner's accounts")
        owner_partner_id = principal.partner_id
    return await AccountRepository(tx.session).page(
        owner_partner_id=owner_partner_id,
        classification=classification.value if classification else None,
        after=time_and_id(after),
        limit=limit,
        at=utcnow(),
    )


async def reclassify(
    tx: Transaction,
    principal: Principal,
    account_id: uuid.UUID,
    command: ClassificationIn,
    if_match: str | None,
) -> tuple[dict[str, Any], int]:
    repo = AccountRepository(tx.session)
    await _locked(repo, account_id, if_match)
    effective_from = command.effective_from or utcnow()
    timeline = [
        Entry(domain.Classification(r.classification), r.effective_from, r.id)
        for r in await repo.classification_timeline(account_id)
    ]
    in_force = domain.value_at(timeline, effective_from)
    assert in_force is not None, "every account has a classification from the beginning"
    if in_force.value == command.classification:
        since = isoformat(in_force.effective_from)
        raise conflict(f"account {account_id} is already {in_force.value.value} from {since}")
    event_id = _new_event_id()
    await repo.add_classification(
        account_id=account_id,
        classification=command.classification.value,
        effective_from=effective_from,
        cause=Cause.RECLASSIFIED.value,
        reason=command.reason,
        actor=principal.sub,
        event_id=event_id,
    )
    await repo.touch([account_id])
    account = await _fresh(repo, account_id)
    change = {
        "from": in_force.value.value,
        "to": command.classification.value,
        "effective_from": isoformat(effective_from),
        "reason": command.reason,
    }
    tx.emit(_event("account.reclassified", account, event_id, **change))
    return account, account["version"]


@dataclass(frozen=True)
class RegistryAnswer:
    """What the registry itself said about a would-be owner: the partner, or None when it does not know it."""

    partner: PartnerData | None


def _owner_not_validated(why: str) -> Problem:
    return Problem(
        503,
        detail=f"the owner could not be validated: {why}; try again shortly",
        headers={"Retry-After": "1"},
    )


async def ask_registry_about_owner(ctx: ServiceContext, partner_id: uuid.UUID) -> RegistryAnswer | None:
    """Asks the registry once when the replica does not know the partner or knows it only as pending or suspended.

    Registry events may not have arrived yet, and a partner activated (or reactivated) a moment ago must not be
    refused. None means the replica is enough to decide: it says active, or terminated, which is final.
    """
    async with ctx.db.transaction() as tx:
        replica = await AccountRepository(tx.session).partner(partner_id)
    if replica is not None and replica.status in (PartnerStatus.ACTIVE, PartnerStatus.TERMINATED):
        return None
    url = f"{ctx.settings.service_url('registry').rstrip('/')}/v1/partners/{partner_id}"
    token = issue_token(ctx.settings, Role.SYSTEM, SERVICE_SUBJECT)
    try:
        response = await ctx.http.get(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=ctx.settings.registry_timeout_seconds
        )
    except httpx.HTTPError as exc:
        raise _owner_not_validated(f"the registry did not answer ({type(exc).__name__})") from exc
    if response.status_code == 404:
        return RegistryAnswer(None)
    if response.status_code != 200:
        raise _owner_not_validated(f"the registry answered {response.status_code}")
    try:
        return RegistryAnswer(PartnerData.model_validate(response.json()))
    except ValueError as exc:
        raise _owner_not_validated("the registry's answer was not a partner") from exc


async def change_owner(
    tx: Transaction,
    principal: Principal,
    account_id: uuid.UUID,
    command: OwnerIn,
    if_match: str | None,
    registry: RegistryAnswer | None,
) -> tuple[dict[str, Any], int]:
    repo = AccountRepository(tx.session)
    new_owner = command.partner_id
    status = await _lock_owner_status(repo, new_owner, registry) if new_owner is not None else None
    await _locked(repo, account_id, if_match)
    if new_owner is not None:
        _check_may_own(new_owner, status, ["body", "partner_id"])
    effective_from = command.effective_from or utcnow()
    timeline = [Entry(r.partner_id, r.effective_from, r.id) for r in await repo.owner_timeline(account_id)]
    in_force = domain.value_at(timeline, effective_from)
    previous = in_force.value if in_force else None
    if previous == new_owner:
        since = isoformat(in_force.effective_from) if in_force else isoformat(BEGINNING)
        owned = f"owned by partner {previous}" if previous else "unowned"
        raise conflict(f"account {account_id} is already {owned} from {since}")
    cause = Cause.ASSIGNED if new_owner is not None else Cause.RELEASED
    event_id = _new_event_id()
    await repo.add_owners(
        [
            {
                "account_id": account_id,
                "partner_id": new_owner,
                "effective_from": effective_from,
                "cause": cause.value,
                "reason": command.reason,
                "actor": principal.sub,
                "event_id": event_id,
            }
        ]
    )
    await repo.touch([account_id])
    account = await _fresh(repo, account_id)
    change = {
        "from": previous,
        "to": new_owner,
        "effective_from": isoformat(effective_from),
        "cause": cause.value,
        "reason": command.reason,
    }
    tx.emit(_event("account.ownership_changed", account, event_id, **change))
    return account, account["version"]


async def _lock_owner_status(
    repo: AccountRepository, partner_id: uuid.UUID, registry: RegistryAnswer | None
) -> PartnerStatus | None:
    """The would-be owner's status, from the registry's own answer if it was asked, else from the replica.

    Locks the partner's replica row (shared) before any account, the order its termination locks them in:
    assignments to one partner run side by side, but not beside its termination.
    """
    if registry is not None and registry.partner is not None:
        await _replicate(repo, registry.partner, READ_THROUGH)
    replica = await repo.partner(partner_id, lock=True)
    registry_does_not_know_it = registry is not None and registry.partner is None
    if replica is None or registry_does_not_know_it:
        return None
    return PartnerStatus(replica.status)


def _check_may_own(partner_id: uuid.UUID, status: PartnerStatus | None, loc: list[str | int]) -> None:
    try:
        domain.check_may_own(partner_id, status)
    except domain.OwnerRefused as exc:
        raise unprocessable(str(exc), loc) from exc


async def account_history(
    tx: Transaction, principal: Principal, account_id: uuid.UUID
) -> list[dict[str, Any]]:
    await get_account(tx, principal, account_id)
    repo = AccountRepository(tx.session)

    def shown(partner_id: uuid.UUID | None) -> str | None:
        if partner_id is None:
            return None
        return str(partner_id) if principal.may_see_partner(partner_id) else ANOTHER_PARTNER

    entries: list[dict[str, Any]] = []
    classifications = {r.id: r for r in await repo.classification_timeline(account_id)}
    timeline = [Entry(r.classification, r.effective_from, r.id) for r in classifications.values()]
    for previous, entry in domain.with_predecessors(timeline):
        entries.append(_history_entry("classification", previous, entry.value, classifications[entry.seq]))
    owners = {r.id: r for r in await repo.owner_timeline(account_id)}
    ownership = [Entry(r.partner_id, r.effective_from, r.id) for r in owners.values()]
    for previous_owner, owner in domain.with_predecessors(ownership):
        row = owners[owner.seq]
        entries.append(_history_entry("ownership", shown(previous_owner), shown(owner.value), row))
    kinds = {"classification": 0, "ownership": 1}
    entries.sort(key=lambda e: (e["effective_from"], e["recorded_at"], kinds[e["kind"]], e["seq"]))
    return entries


def _history_entry(kind: str, previous: str | None, value: str | None, row: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "value": value,
        "from": previous,
        "to": value,
        "effective_from": row.effective_from,
        "recorded_at": row.recorded_at,
        "cause": row.cause,
        "actor": row.actor,
        "reason": row.reason,
        "event_id": row.event_id,
        "seq": row.id,
    }


async def _replicate(repo: AccountRepository, partner: PartnerData, source: str) -> None:
    await repo.replicate_partner(partner.id, partner.name, partner.status.value, partner.updated_at, source)


async def replicate_partner(tx: Transaction, partner: PartnerData, event_id: str) -> None:
    await _replicate(AccountRepository(tx.session), partner, f"{EVENT_SOURCE}{event_id}")


async def release_accounts_of_terminated_partner(
    tx: Transaction, partner_id: uuid.UUID, terminated_at: datetime, actor: str
) -> int:
    """A terminated partner's accounts become unowned from the moment of its termination.

    That covers what it owns then and any later-dated assignment to it; each release is appended to the
    account's ownership timeline and published. Running it again changes nothing.
    """
    repo = AccountRepository(tx.session)
    if not await repo.lock_accounts_ever_owned_by(partner_id):
        return 0
    releases = await repo.ownerships_from(partner_id, terminated_at)
    if not releases:
        return 0
    # The partner's id stays out of the reason: later owners read it in the history, where it is masked.
    reason = "its owner was terminated"
    entries = [
        {
            "account_id": r.account_id,
            "partner_id": None,
            "effective_from": r.at,
            "cause": Cause.PARTNER_TERMINATED.value,
            "reason": reason,
            "actor": actor,
            "event_id": _new_event_id(),
        }
        for r in releases
    ]
    await repo.add_owners(entries)
    account_ids = sorted({r.account_id for r in releases})
    await repo.touch(account_ids)
    accounts = {a["id"]: a for a in await repo.get_many(account_ids, utcnow())}
    for entry in entries:
        change = {
            "from": partner_id,
            "to": None,
            "effective_from": isoformat(entry["effective_from"]),
            "cause": entry["cause"],
            "reason": reason,
        }
        account = accounts[entry["account_id"]]
        tx.emit(_event("account.ownership_changed", account, entry["event_id"], **change))
    return len(entries)


# --- customer preregistration ------------------------------------------------------------------------
def _refused(exc: domain.RegistrationRefused) -> Problem:
    return conflict(str(exc), reason=exc.code)


async def preregister(
    tx: Transaction, principal: Principal, command: RegistrationIn
) -> tuple[dict[str, Any], int]:
    """A partner claims an account (or a prospect, which becomes an unowned commercial account) for 15 days.

    Locks: the partner's preregistrations (advisory), its replica row (shared, like an owner assignment),
    then the account's row, so two partners claiming one account at once queue and the second finds the
    first's claim. The partial unique index on pending registrations holds the line should that ever fail.
    """
    assert principal.partner_id is not None
    partner_id = principal.partner_id
    repo = AccountRepository(tx.session)
    registrations = RegistrationRepository(tx.session)
    await registrations.lock_partner(partner_id)
    replica = await repo.partner(partner_id, lock=True)
    try:
        domain.check_may_preregister(PartnerStatus(replica.status) if replica is not None else None)
        if command.prospect is not None:
            domain.check_pending_limit(await registrations.pending_count(partner_id))
            prospect = AccountIn(**command.prospect.model_dump(), classification=Classification.COMMERCIAL)
            account_id = (await _add_account(tx, principal, prospect, PROSPECT_REASON))["id"]
        else:
            assert command.account_id is not None
            account_id = command.account_id
            await registrations.lapse_pending_of_account(account_id)
            if await repo.lock(account_id) is None:
                raise unprocessable(f"account {account_id} does not exist", ["body", "account_id"])
            account = await _fresh(repo, account_id)
            domain.check_may_preregister_account(
                partner_id,
                domain.Classification(account["classification"]),
                account["owner_partner_id"],
                await registrations.pending_holder(account_id),
                await registrations.pending_count(partner_id),
            )
    except domain.RegistrationRefused as exc:
        raise _refused(exc) from exc
    registration_id = uuid.uuid4()
    now = utcnow()
    try:
        await registrations.add(
            {
                "id": registration_id,
                "partner_id": partner_id,
                "account_id": account_id,
                "status": domain.RegistrationStatus.PENDING.value,
                "prospect": command.prospect is not None,
                "created_at": now,
                "expires_at": now + domain.REGISTRATION_VALIDITY,
                "created_by": principal.sub,
            }
        )
    except IntegrityError as exc:
        raise conflict("the account is preregistered (pending) by another partner", reason="preregistered") from exc
    registration = await registrations.get(registration_id)
    assert registration is not None
    return registration, registration["version"]


async def registration_partner(tx: Transaction, principal: Principal, registration_id: uuid.UUID) -> uuid.UUID:
    """Whose registration this is (404 for none, and for another partner's to a partner token)."""
    return uuid.UUID(str((await get_registration(tx, principal, registration_id))["partner_id"]))


async def get_registration(tx: Transaction, principal: Principal, registration_id: uuid.UUID) -> dict[str, Any]:
    registration = await RegistrationRepository(tx.session).get(registration_id)
    if registration is None or not principal.may_see_partner(registration["partner_id"]):
        raise not_found(f"registration {registration_id}")
    return registration


async def list_registrations(
    tx: Transaction,
    principal: Principal,
    *,
    partner_id: uuid.UUID | None,
    status: domain.RegistrationStatus | None,
    account_id: uuid.UUID | None,
    after: list[Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    if principal.role is Role.PARTNER:
        if partner_id is not None and partner_id != principal.partner_id:
            raise Problem(403, detail="a partner token lists only its own partner's registrations")
        partner_id = principal.partner_id
    return await RegistrationRepository(tx.session).page(
        partner_id=partner_id,
        status=status.value if status else None,
        account_id=account_id,
        after=time_and_id(after),
        limit=limit,
    )


async def decide_registration(
    tx: Transaction,
    principal: Principal,
    registration_id: uuid.UUID,
    partner_id: uuid.UUID,
    command: DecisionIn,
    if_match: str | None,
    registry: RegistryAnswer | None,
) -> tuple[dict[str, Any], int]:
    """Approve: the partner owns the account from now (it must still be active); reject: it does not.

    `partner_id` is the registration's (read before, it never changes), so the partner's replica row is
    locked before the registration's, the order the partner's termination locks them in.
    """
    repo = AccountRepository(tx.session)
    registrations = RegistrationRepository(tx.session)
    approve = command.decision is domain.Decision.APPROVE
    status = await _lock_owner_status(repo, partner_id, registry) if approve else None
    row = await registrations.lock(registration_id)
    if row is None:
        raise not_found(f"registration {registration_id}")
    check_if_match(if_match, row.version)
    current = domain.registration_status(domain.RegistrationStatus(row.status), row.expires_at, row.now)
    wanted = domain.DECIDED_AS[command.decision]
    if current is not domain.RegistrationStatus.PENDING:
        raise illegal_move(current.value, wanted.value, [])
    if approve:
        _check_may_own(partner_id, status, ["body", "decision"])
        await _give_account_to_registrant(tx, principal, row, command)
    await registrations.decide(registration_id, wanted.value, principal.sub, command.reason)
    registration = await registrations.get(registration_id)
    assert registration is not None
    return registration, registration["version"]


async def _give_account_to_registrant(tx: Transaction, principal: Principal, row: Any, command: DecisionIn) -> None:
    repo = AccountRepository(tx.session)
    await _locked(repo, row.account_id, None)
    account = await _fresh(repo, row.account_id)
    owner = account["owner_partner_id"]
    if owner == row.partner_id:
        return
    try:
        domain.check_account_claimable(row.partner_id, Classification(account["classification"]), owner)
    except domain.RegistrationRefused as exc:
        raise _refused(exc) from exc
    effective_from = utcnow()
    event_id = _new_event_id()
    reason = command.reason or f"registration {row.id} approved"
    await repo.add_owners(
        [
            {
                "account_id": row.account_id,
                "partner_id": row.partner_id,
                "effective_from": effective_from,
                "cause": Cause.REGISTRATION_APPROVED.value,
                "reason": reason,
                "actor": principal.sub,
                "event_id": event_id,
            }
        ]
    )
    await repo.touch([row.account_id])
    account = await _fresh(repo, row.account_id)
    change = {
        "from": None,
        "to": row.partner_id,
        "effective_from": isoformat(effective_from),
        "cause": Cause.REGISTRATION_APPROVED.value,
        "reason": reason,
        "registration_id": row.id,
    }
    tx.emit(_event("account.ownership_changed", account, event_id, **change))


async def reject_registrations_of_terminated_partner(tx: Transaction, partner_id: uuid.UUID, actor: str) -> int:
    """A terminated partner's pending claims end with it, leaving those accounts open to others."""
    return await RegistrationRepository(tx.session).reject_pending_of(partner_id, actor, TERMINATED_REASON)


async def expire_registrations(tx: Transaction) -> int:
    """The periodic sweep: pending registrations past expires_at become expired."""
    return await RegistrationRepository(tx.session).expire_lapsed()
