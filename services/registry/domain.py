"""Registry rules: partner types, tiers and the status machine. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum


class PartnerType(StrEnum):
    SALES = "sales"
    SOLUTION = "solution"
    SERVICE = "service"
    INVESTMENT_FINANCING = "investment_financing"
    TALENT_ALLIANCE = "talent_alliance"
    SOCIAL = "social"
    INDUSTRY = "industry"


class Tier(StrEnum):
    REGISTERED = "registered"
    SILVER = "silver"
    GOLD = "gold"
    PLATINUM = "platinum"


class Status(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


ALLOWED_MOVES: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.ACTIVE, Status.TERMINATED}),
    Status.ACTIVE: frozenset({Status.SUSPENDED, Status.TERMINATED}),
    Status.SUSPENDED: frozenset({Status.ACTIVE, Status.TERMINATED}),
    Status.TERMINATED: frozenset(),
}
NEEDS_REASON = frozenset({Status.SUSPENDED, Status.TERMINATED})


class IllegalMove(Exception):
    def __init__(self, current: Status, wanted: Status) -> None:
        super().__init__(f"{current} -> {wanted}")
        self.current = current
        self.wanted = wanted
        self.allowed = sorted(s.value for s in ALLOWED_MOVES[current])


class ReasonRequired(Exception):
    pass


def check_status_move(current: Status, wanted: Status, reason: str | None) -> None:
    if wanted not in ALLOWED_MOVES[current]:
        raise IllegalMove(current, wanted)
    if wanted in NEEDS_REASON and not (reason and reason.strip()):
        raise ReasonRequired(f"a reason is required to move a partner to {wanted.value}")


class ParentRefused(Exception):
    """The proposed distributor cannot be this partner's parent; the message says why."""


def check_parent(
    child_id: object,
    parent_id: object,
    parent_status: Status | None,
    parent_types: list[str] | None,
    ancestors_of_parent: Sequence[object],
) -> None:
    """A two-tier reseller's parent is an active distributor (type sales), and never itself or a descendant."""
    if parent_id == child_id:
        raise ParentRefused("a partner cannot be its own parent")
    if parent_status is None:
        raise ParentRefused(f"parent partner {parent_id} does not exist")
    if parent_status is not Status.ACTIVE or PartnerType.SALES.value not in (parent_types or []):
        raise ParentRefused(
            f"parent partner {parent_id} must be an active distributor (a partner of type sales); "
            f"it is {parent_status.value} with types {', '.join(parent_types or []) or 'none'}"
        )
    if child_id in ancestors_of_parent:
        loop = [child_id, parent_id, *ancestors_of_parent[: list(ancestors_of_parent).index(child_id) + 1]]
        raise ParentRefused(f"that would make a cycle of parents: {' -> '.join(str(p) for p in loop)}")


class CertificationState(StrEnum):
    SCHEDULED = "scheduled"  # issued_at still ahead
    HELD = "held"
    EXPIRED = "expired"
    REVOKED = "revoked"


def certification_state(
    issued_at: datetime, expires_at: datetime | None, revoked_at: datetime | None, now: datetime
) -> CertificationState:
    """A certification counts from issued_at until it expires or is revoked, whichever comes first."""
    if revoked_at is not None:
        return CertificationState.REVOKED
    if expires_at is not None and expires_at <= now:
        return CertificationState.EXPIRED
    if issued_at > now:
        return CertificationState.SCHEDULED
    return CertificationState.HELD
