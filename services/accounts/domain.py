"""Accounts rules: classifications, who may own an account, and effective-dated timelines. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, TypeVar

V = TypeVar("V")


class Classification(StrEnum):
    STRATEGIC = "strategic"  # vendor-led
    KEY = "key"  # co-sell
    COMMERCIAL = "commercial"  # partner-led
    SMB = "smb"  # partner-owned


class PartnerStatus(StrEnum):
    """The registry's partner statuses, as replicated here from `registry.partners`."""

    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class Cause(StrEnum):
    CREATED = "created"
    RECLASSIFIED = "reclassified"
    ASSIGNED = "assigned"
    RELEASED = "released"
    PARTNER_TERMINATED = "partner_terminated"
    REGISTRATION_APPROVED = "registration_approved"


@dataclass(frozen=True)
class Entry(Generic[V]):
    """One change in a timeline: `value` holds from `effective_from` until the next entry in effective order.

    `seq` is the order the entries were recorded in; of two entries effective at the same moment, the
    later-recorded one wins.
    """

    value: V
    effective_from: datetime
    seq: int


def in_effective_order(timeline: Sequence[Entry[V]]) -> list[Entry[V]]:
    return sorted(timeline, key=lambda e: (e.effective_from, e.seq))


def value_at(timeline: Sequence[Entry[V]], at: datetime) -> Entry[V] | None:
    """The entry in force at `at`: the latest effective at or before it (None before the first)."""
    in_force: Entry[V] | None = None
    for entry in in_effective_order(timeline):
        if entry.effective_from > at:
            break
        in_force = entry
    return in_force


def with_predecessors(timeline: Sequence[Entry[V]]) -> list[tuple[V | None, Entry[V]]]:
    """Each entry with the value it replaced, in effective order (a late-entered change sits in its place)."""
    previous: V | None = None
    result: list[tuple[V | None, Entry[V]]] = []
    for entry in in_effective_order(timeline):
        result.append((previous, entry))
        previous = entry.value
    return result


class OwnerRefused(Exception):
    """The partner cannot own accounts; the message says why."""


def check_may_own(partner_id: object, status: PartnerStatus | None) -> None:
    """Only a partner the registry knows and has activated may own an account."""
    if status is None:
        raise OwnerRefused(f"partner {partner_id} is unknown to the registry")
    if status is not PartnerStatus.ACTIVE:
        raise OwnerRefused(f"partner {partner_id} is {status.value}; only an active partner may own accounts")


# --- customer preregistration ----------------------------------------------------------------------
REGISTRATION_VALIDITY = timedelta(days=15)
MAX_PENDING_REGISTRATIONS = 100


class RegistrationStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


DECIDED_AS = {Decision.APPROVE: RegistrationStatus.APPROVED, Decision.REJECT: RegistrationStatus.REJECTED}


class RegistrationRefused(Exception):
    """The account cannot be preregistered (or the registration approved); `code` names the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def registration_status(stored: RegistrationStatus, expires_at: datetime, now: datetime) -> RegistrationStatus:
    """A pending registration lapses at expires_at, whether or not the sweep has marked it yet."""
    if stored is RegistrationStatus.PENDING and expires_at <= now:
        return RegistrationStatus.EXPIRED
    return stored


def check_may_preregister(partner_status: PartnerStatus | None) -> None:
    """A suspended or terminated partner claims no new customers (one not replicated yet is not refused)."""
    if partner_status in (PartnerStatus.SUSPENDED, PartnerStatus.TERMINATED):
        assert partner_status is not None
        raise RegistrationRefused("partner_inactive", f"the partner is {partner_status.value}")


def check_account_claimable(
    partner_id: object, classification: Classification, owner: object | None
) -> None:
    """An owned or strategic (vendor-led) account is not open to a partner's claim."""
    if owner is not None and owner == partner_id:
        raise RegistrationRefused("owned", "the account is already owned by this partner")
    if owner is not None:
        raise RegistrationRefused("owned", "the account is owned by another partner")
    if classification is Classification.STRATEGIC:
        raise RegistrationRefused("strategic", "the account is strategic (vendor-led); partners cannot claim it")


def check_may_preregister_account(
    partner_id: object,
    classification: Classification,
    owner: object | None,
    pending_holder: object | None,
    pending_of_partner: int,
) -> None:
    check_account_claimable(partner_id, classification, owner)
    if pending_holder is not None and pending_holder == partner_id:
        raise RegistrationRefused("preregistered", "this partner already has a pending registration of the account")
    if pending_holder is not None:
        raise RegistrationRefused("preregistered", "the account is preregistered (pending) by another partner")
    check_pending_limit(pending_of_partner)


def check_pending_limit(pending_of_partner: int) -> None:
    if pending_of_partner >= MAX_PENDING_REGISTRATIONS:
        raise RegistrationRefused(
            "limit", f"the partner already holds {MAX_PENDING_REGISTRATIONS} pending registrations, the most allowed"
        )
