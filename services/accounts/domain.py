"""Accounts rules: classifications, who may own an account, and effective-dated timelines. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
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
