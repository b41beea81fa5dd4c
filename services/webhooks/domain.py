"""Webhook rules, pure: scope, signatures (Standard Webhooks), the retry schedule, URL safety, claim fairness."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import math
import random
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# The public topics and the event types each carries (CONTRACT §2); `sales.recorded` is inbound, not public.
PUBLIC_EVENTS: dict[str, tuple[str, ...]] = {
    "registry.partners": (
        "partner.registered", "partner.status_changed", "partner.tier_changed", "partner.certification_granted",
        "partner.certification_revoked", "partner.certification_expired",
    ),
    "accounts.accounts": ("account.created", "account.reclassified", "account.ownership_changed"),
    "incentives.accruals": ("accrual.recorded", "accrual.adjusted", "recalculation.completed"),
    "incentives.statements": ("statement.closed", "statement.confirmed", "dispute.opened", "dispute.resolved"),
    "funds.funds": ("fund.request_decided", "fund.claim_paid"),
}
EVENT_TYPES = frozenset(t for types in PUBLIC_EVENTS.values() for t in types)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ANY_TYPE = "*"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# What PATCH may set: `disabled` is the service's own verdict, lifted by setting `active` again.
SETTABLE_STATUSES = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED})


# --- scope -----------------------------------------------------------------------------------------------------


def _partner(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def event_partners(event_type: str, data: Mapping[str, Any]) -> frozenset[uuid.UUID]:
    """The partners an event is about, the only ones whose subscriptions may receive it: a partner's own events
    (`partner.*` carry the partner itself, with its id in `id`), the events naming it in `data.partner_id`, and for
    `account.*` the account's owner and, for a change of owner, the owner before it."""
    if event_type.startswith("partner."):
        found = {_partner(data.get("id"))}
    elif event_type.startswith("account."):
        found = {_partner(data.get("owner_partner_id"))}
        if event_type == "account.ownership_changed":
            found |= {_partner(data.get("from")), _partner(data.get("to"))}
    else:
        found = {_partner(data.get("partner_id"))}
    return frozenset(p for p in found if p is not None)


def type_matches(event_types: Iterable[str], event_type: str) -> bool:
    return any(wanted in (ANY_TYPE, event_type) for wanted in event_types)


def receives(subscription_partner: uuid.UUID | None, event_types: Iterable[str], status: str, event_type: str,
             partners: frozenset[uuid.UUID]) -> bool:
    """Whether a subscription is owed an event: active, of a type it asked for, and about its partner (a
    subscription without a partner, an admin's, receives every partner's)."""
    if status != SubscriptionStatus.ACTIVE or not type_matches(event_types, event_type):
        return False
    return subscription_partner is None or subscription_partner in partners


# --- secrets and signatures ------------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


SEALED = "fernet:"


class SecretUnavailable(ValueError):
    """A stored secret that cannot be opened with the keys configured; the message says why."""


@functools.lru_cache(maxsize=8)
def _sealing(keys: str) -> MultiFernet | None:
    listed = [k.strip() for k in keys.split(",") if k.strip()]
    return MultiFernet([Fernet(k) for k in listed]) if listed else None


def seal(secret: str, keys: str) -> str:
    """How a secret is stored: encrypted with the first of the keys (Fernet: AES-128-CBC and HMAC-SHA256), or as
    it is when none is configured."""
    sealing = _sealing(keys)
    return secret if sealing is None else SEALED + sealing.encrypt(secret.encode()).decode()


def unseal(stored: str, keys: str) -> str:
    """A stored secret opened with any of the keys (so the sealing key can be replaced: new first, old after)."""
    if not stored.startswith(SEALED):
        return stored
    sealing = _sealing(keys)
    if sealing is None:
        raise SecretUnavailable("the subscription's secret is sealed, and PARTNERHUB_WEBHOOK_SECRETS_KEYS is not set")
    try:
        return sealing.decrypt(stored.removeprefix(SEALED).encode()).decode()
    except InvalidToken as exc:
        raise SecretUnavailable("none of PARTNERHUB_WEBHOOK_SECRETS_KEYS opens the subscription's secret") from exc


def secret_key(secret: str) -> bytes:
    """The HMAC key: the bytes after `whsec_`, base64-decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    digest = hmac.new(secret_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signing_secrets(current: str, previous: str | None, previous_until: datetime | None,
                    now: datetime) -> list[str]:
    """The secrets a delivery is signed with: the current one, and the one it replaced while its overlap lasts."""
    found = [current]
    if previous is not None and previous_until is not None and now < previous_until:
        found.append(previous)
    return found


def signature_header(signing: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: one signature per secret, space-separated (a receiver accepts any that verifies)."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in signing)


def webhook_headers(signing: Sequence[str], message_id: str, sent_at: datetime, body: bytes) -> dict[str, str]:
    timestamp = math.floor(sent_at.timestamp())
    return {
        "content-type": "application/cloudevents+json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(signing, message_id, timestamp, body),
    }


# --- retries ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n (1-based) failing waits between half and all of
    min(first * 2**(n-1), longest), for as long as the window lasts; one last try falls at the window's end."""

    first: timedelta = timedelta(seconds=5)
    longest: timedelta = timedelta(hours=4)
    window: timedelta = timedelta(hours=24)

    def ceiling(self, attempt: int) -> timedelta:
        exponent = min(max(attempt - 1, 0), 40)
        return min(self.first * (2 ** exponent), self.longest)

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        top = self.ceiling(attempt)
        return top / 2 + top / 2 * rng.random()

    def next_attempt(self, attempt: int, started: datetime, now: datetime, rng: random.Random) -> datetime | None:
        """When to try again after the `attempt`-th failure of a delivery whose schedule started at `started`;
        None once the window is spent (the delivery has failed)."""
        end = started + self.window
        if now >= end:
            return None
        return min(now + self.delay(attempt, rng), end)


@dataclass(frozen=True)
class Attempted:
    """One attempt's outcome, as the failure bookkeeping needs it."""

    subscription_id: uuid.UUID
    attempted_at: datetime
    delivered: bool
    owed_since: datetime  # when the delivery's current schedule started


@dataclass(frozen=True)
class Failing:
    """What a batch of outcomes does to a subscription's `failing_since`: `reset` (a delivery succeeded: start from
    `since`, None when nothing failed after it), or keep the one it has, else take `since`."""

    reset: bool
    since: datetime | None


def failing_after(outcomes: Iterable[Attempted]) -> dict[uuid.UUID, Failing]:
    """Per subscription: the deliveries that failed after its last delivered one decide since when it fails."""
    by_subscription: dict[uuid.UUID, list[Attempted]] = {}
    for outcome in outcomes:
        by_subscription.setdefault(outcome.subscription_id, []).append(outcome)
    found: dict[uuid.UUID, Failing] = {}
    for subscription, attempted in by_subscription.items():
        attempted.sort(key=lambda a: a.attempted_at)
        last = max((i for i, a in enumerate(attempted) if a.delivered), default=None)
        later = [a.owed_since for a in attempted[(last + 1 if last is not None else 0):]]
        found[subscription] = Failing(last is not None, min(later) if later else None)
    return found


def should_disable(failing_since: datetime | None, now: datetime, window: timedelta) -> bool:
    """A subscription every delivery of which has failed for the whole window is disabled."""
    return failing_since is not None and now - failing_since >= window


# --- URL safety ------------------------------------------------------------------------------------------------


class UnsafeUrl(ValueError):
    """A subscription URL breaking a delivery rule; the message names the rule."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # lower-case, without brackets
    port: int
    allowed: bool  # listed in PARTNERHUB_WEBHOOK_ALLOWED_HOSTS: no address rule applies

    def literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def allowed_host_set(allowed_hosts: str) -> frozenset[str]:
    return frozenset(h.strip().lower().strip("[]") for h in allowed_hosts.split(",") if h.strip())


def parse_target(url: str, allowed: frozenset[str]) -> Target:
    """The URL's syntax rules: https only (http only for an allowed host), a host, no credentials."""
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"the URL is not well-formed: {exc}") from exc
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeUrl("the URL must name a host (https://host/path)")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL must not carry credentials (user:password@); authenticate by the signature")
    if parts.fragment:
        raise UnsafeUrl("the URL must not carry a fragment (#…)")
    listed = host in allowed
    if scheme != "https" and not (scheme == "http" and listed):
        raise UnsafeUrl("only https:// URLs are accepted (http:// only for a host in "
                        "PARTNERHUB_WEBHOOK_ALLOWED_HOSTS)")
    return Target(url, scheme, host, port or (443 if scheme == "https" else 80), listed)


METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "168.63.129.16",
))


def address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of address may not be delivered to, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "not a public address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def check_addresses(target: Target, addresses: Iterable[str]) -> None:
    """Every address the host resolves to must be public (unless the host is allowed): one private answer is
    enough for a rebinding trick, so none may be."""
    if target.allowed:
        return
    resolved = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not resolved:
        raise UnsafeUrl(f"the host {target.host} does not resolve to any address")
    for address in resolved:
        reason = address_refusal(address)
        if reason is not None:
            raise UnsafeUrl(f"the URL's host {target.host} resolves to {address}, {reason}; webhooks are delivered "
                            "only to public addresses (or hosts in PARTNERHUB_WEBHOOK_ALLOWED_HOSTS)")


# --- claiming --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    next_attempt_at: datetime
    failing: bool = False  # its subscription's deliveries have all failed since its last delivered one


def choose_claims(due: Sequence[Due], in_flight: Mapping[uuid.UUID, int], per_subscription: int,
                  free_slots: int) -> list[Due]:
    """Which due deliveries to start now: oldest first, but never more than `per_subscription` in flight for one
    subscription (counting those already in flight anywhere), and one for a subscription that is failing (a dead or
    timing-out receiver is probed one delivery at a time), nor more than the free slots: a slow receiver holds at
    most its share and every other subscription keeps being served."""
    taken: dict[uuid.UUID, int] = dict(in_flight)
    chosen: list[Due] = []
    for candidate in sorted(due, key=lambda d: (d.next_attempt_at, str(d.delivery_id))):
        if len(chosen) >= free_slots:
            break
        held = taken.get(candidate.subscription_id, 0)
        if held >= (1 if candidate.failing else per_subscription):
            continue
        taken[candidate.subscription_id] = held + 1
        chosen.append(candidate)
    return chosen


def answer_error(status: int) -> str | None:
    """What an answer means for the attempt: None when it delivered the event (2xx), else the reason."""
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"the receiver answered {status} (a redirect; redirects are not followed)"
    return f"the receiver answered {status}"
