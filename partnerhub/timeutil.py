"""RFC 3339 UTC time and calendar-month periods."""

from __future__ import annotations

from datetime import UTC, datetime

# The state an aggregate is created with holds for all time before its first change.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone (RFC 3339, e.g. 2026-02-01T10:00:00Z)")
    return value.astimezone(UTC)


def stored_utc(value: datetime) -> datetime:
    """A timestamp read back from PostgreSQL: +/-infinity comes back without a zone, and is UTC like the rest."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def isoformat(value: datetime) -> str:
    if value.tzinfo is UTC:  # the case on every hot path: the text ends "+00:00"
        return value.isoformat()[:-6] + "Z"
    return to_utc(value).isoformat().replace("+00:00", "Z")


def parse_timestamp(raw: str) -> datetime:
    return to_utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))


def period_of(value: datetime) -> str:
    utc = to_utc(value)
    return f"{utc.year:04d}-{utc.month:02d}"
