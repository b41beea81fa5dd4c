"""Registry rules: partner types, tiers and the status machine. Pure, no I/O."""

from __future__ import annotations

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
