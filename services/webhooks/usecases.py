"""Webhooks use cases: each runs inside the caller's transaction, except the delivery worker's HTTP calls, which
run between two transactions (the claim and the outcome) so no database lock is held while a receiver answers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx

from partnerhub.auth import Principal, Role
from partnerhub.config import Settings
from partnerhub.db import Database, Transaction, asyncpg_dsn
from partnerhub.events import CloudEvent
from partnerhub.http import check_if_match, time_and_id
from partnerhub.metrics import WEBHOOK_ATTEMPT_SECONDS, WEBHOOK_ATTEMPTS, WEBHOOK_IN_FLIGHT
from partnerhub.problems import Problem, not_found, unprocessable
from partnerhub.timeutil import utcnow
from services.webhooks import domain
from services.webhooks.domain import (
    DeliveryStatus,
    RetryPolicy,
    SecretUnavailable,
    SubscriptionStatus,
    Target,
    UnsafeUrl,
)
from services.webhooks.repository import DUE_CHANNEL, Row, WebhookRepository
from services.webhooks.schemas import SubscriptionIn, SubscriptionPatch

log = logging.getLogger(__name__)
PRUNE_BATCH = 10_000
USER_AGENT = "PartnerHub-Webhooks/1"
# POSTs in flight per HTTP client (see DeliveryWorker.run).
LANE_SIZE = 8
OUTCOME_NAMES = {DeliveryStatus.DELIVERED.value: "delivered", DeliveryStatus.PENDING.value: "retrying",
                 DeliveryStatus.FAILED.value: "failed"}
# Outcomes written per transaction at most.
RECORD_BATCH = 200


# --- URL safety ------------------------------------------------------------------------------------------------


Resolve = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, from the event loop's resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def lookup(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


class Resolver:
    """Lookups for deliveries, on threads of their own, as many as deliveries may be in flight (the event loop's
    default pool has a handful: a few receivers whose DNS hangs would hold them all, and every other delivery would
    wait), and one lookup per host at a time, shared by the deliveries that need it."""

    def __init__(self, threads: int, blocking: Callable[[str, int], list[str]] = lookup) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook-dns")
        self.blocking = blocking
        self.pending: dict[tuple[str, int], asyncio.Future[list[str]]] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        key = (host, port)
        shared = self.pending.get(key)
        if shared is None:
            shared = asyncio.get_running_loop().run_in_executor(self.pool, self.blocking, host, port)
            self.pending[key] = shared
            shared.add_done_callback(functools.partial(self._settled, key))
        # A delivery giving up (its timeout) leaves the lookup running for the others.
        return await asyncio.shield(shared)

    def _settled(self, key: tuple[str, int], done: asyncio.Future[list[str]]) -> None:
        self.pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # seen here, so one that no delivery waited for any more is not reported as lost

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


async def safe_target(url: str, settings: Settings, resolver: Resolve = resolve) -> tuple[Target, list[str]]:
    """The URL checked against every delivery rule, with the addresses it resolved to (empty for an allowed
    host); raises UnsafeUrl naming the rule it breaks."""
    target = domain.parse_target(url, domain.allowed_host_set(settings.webhook_allowed_hosts))
    if target.allowed:
        return target, []
    literal = target.literal()
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await asyncio.wait_for(resolver(target.host, target.port), settings.webhook_timeout_seconds)
        except (OSError, TimeoutError, ValueError) as exc:
            # ValueError: a name the resolver cannot even encode (a label over 63 characters, say).
            raise UnsafeUrl(f"the URL's host {target.host} does not resolve: {exc or type(exc).__name__}") from exc
    domain.check_addresses(target, addresses)
    return target, addresses


async def check_url(url: str, settings: Settings) -> None:
    try:
        await safe_target(url, settings)
    except UnsafeUrl as exc:
        raise unprocessable(str(exc), ["body", "url"]) from exc


# --- subscriptions ---------------------------------------------------------------------------------------------


def _owner_for_new(principal: Principal, requested: uuid.UUID | None) -> uuid.UUID | None:
    if principal.role is Role.PARTNER:
        if requested is not None and requested != principal.partner_id:
            raise Problem(403, detail="a partner token subscribes only to its own partner's events")
        return principal.partner_id
    return requested


async def create_subscription(tx: Transaction, principal: Principal, command: SubscriptionIn,
                              settings: Settings) -> tuple[Row, str]:
    """A new active subscription and its secret (returned once, never again; stored sealed where keys are set)."""
    now = utcnow()
    secret = domain.new_secret()
    row = await WebhookRepository(tx.session).add_subscription({
        "id": uuid.uuid4(), "url": command.url, "event_types": sorted(set(command.event_types)),
        "partner_id": _owner_for_new(principal, command.partner_id), "status": SubscriptionStatus.ACTIVE.value,
        "secret": domain.seal(secret, settings.webhook_secrets_keys), "created_by": principal.sub,
        "created_at": now, "updated_at": now,
    })
    return row, secret


async def get_subscription(tx: Transaction, principal: Principal, subscription_id: uuid.UUID,
                           *, lock: bool = False) -> Row:
    """A subscription of another partner is, to a partner token, one that does not exist (so is an admin's
    subscription to every partner)."""
    row = await WebhookRepository(tx.session).get_subscription(subscription_id, lock=lock)
    if row is None or (principal.role is Role.PARTNER and row.partner_id != principal.partner_id):
        raise not_found(f"webhook subscription {subscription_id}")
    return row


async def list_subscriptions(tx: Transaction, principal: Principal, *, partner_id: uuid.UUID | None,
                             status: SubscriptionStatus | None, after: list[Any] | None, limit: int) -> list[Row]:
    if principal.role is Role.PARTNER:
        if partner_id is not None and partner_id != principal.partner_id:
            raise Problem(403, detail="a partner token reaches only its own partner's data")
        partner_id = principal.partner_id
    return await WebhookRepository(tx.session).list_subscriptions(
        partner_id=partner_id, status=status.value if status else None, after=time_and_id(after), limit=limit)


async def update_subscription(tx: Transaction, principal: Principal, subscription_id: uuid.UUID,
                              command: SubscriptionPatch, if_match: str | None) -> Row:
    row = await get_subscription(tx, principal, subscription_id, lock=True)
    check_if_match(if_match, row.version)
    values: dict[str, Any] = {"updated_at": utcnow()}
    if command.url is not None:
        values["url"] = command.url
    if command.event_types is not None:
        values["event_types"] = sorted(set(command.event_types))
    if command.status is not None:
        if command.status not in domain.SETTABLE_STATUSES:
            raise unprocessable("status may be set to active or paused; disabled is the service's own verdict",
                                ["body", "status"])
        values["status"] = command.status.value
        if command.status is SubscriptionStatus.ACTIVE:
            # Active again: the failure window starts afresh.
            values["failing_since"] = None
            values["disabled_at"] = None
    return await WebhookRepository(tx.session).update_subscription(subscription_id, values)


async def delete_subscription(tx: Transaction, principal: Principal, subscription_id: uuid.UUID,
                              if_match: str | None) -> None:
    row = await get_subscription(tx, principal, subscription_id, lock=True)
    check_if_match(if_match, row.version)
    await WebhookRepository(tx.session).delete_subscription(subscription_id)


async def rotate_secret(tx: Transaction, principal: Principal, subscription_id: uuid.UUID,
                        settings: Settings) -> tuple[Row, str, datetime | None]:
    """A new secret; the one it replaces keeps signing alongside for the overlap (24 h by default)."""
    row = await get_subscription(tx, principal, subscription_id, lock=True)
    now = utcnow()
    secret = domain.new_secret()
    overlap = timedelta(seconds=settings.webhook_secret_overlap_seconds)
    until = now + overlap if overlap else None
    updated = await WebhookRepository(tx.session).update_subscription(subscription_id, {
        "secret": domain.seal(secret, settings.webhook_secrets_keys),
        "previous_secret": row.secret if until else None, "previous_secret_until": until,
        "updated_at": now,
    })
    return updated, secret, until


# --- the delivery log, retry and replay ------------------------------------------------------------------------


async def list_deliveries(tx: Transaction, principal: Principal, subscription_id: uuid.UUID, *,
                          status: DeliveryStatus | None, after: list[Any] | None,
                          limit: int) -> tuple[list[Row], dict[uuid.UUID, list[Row]]]:
    await get_subscription(tx, principal, subscription_id)
    repo = WebhookRepository(tx.session)
    rows = await repo.list_deliveries(subscription_id, status=status.value if status else None,
                                      after=time_and_id(after), limit=limit)
    return rows, await repo.attempts_of([r.id for r in rows])


async def retry_delivery(tx: Transaction, principal: Principal, subscription_id: uuid.UUID,
                         delivery_id: uuid.UUID) -> None:
    """Due now, whatever its status, with a fresh retry schedule."""
    await get_subscription(tx, principal, subscription_id)
    repo = WebhookRepository(tx.session)
    if await repo.get_delivery(subscription_id, delivery_id, lock=True) is None:
        raise not_found(f"delivery {delivery_id} of webhook subscription {subscription_id}")
    now = utcnow()
    await repo.update_delivery(delivery_id, {
        "status": DeliveryStatus.PENDING.value, "attempts": 0, "schedule_started_at": now, "next_attempt_at": now,
        "lease_until": None, "updated_at": now,
    })
    await repo.notify_due()


async def replay(tx: Transaction, principal: Principal, subscription_id: uuid.UUID, since: datetime) -> int:
    row = await get_subscription(tx, principal, subscription_id)
    return await WebhookRepository(tx.session).enqueue_replay(row, since, utcnow())


# --- taking events in ------------------------------------------------------------------------------------------


def event_row(event: CloudEvent, now: datetime) -> dict[str, Any]:
    return {
        "event_id": event.id, "type": event.type, "partners": sorted(domain.event_partners(event.type, event.data)),
        # pydantic's encoder: any JSON the event carried goes out as it came (integers beyond 64 bits included).
        "payload": event.model_dump_json(exclude_none=True),
        "occurred_at": event.time or now, "received_at": now,
    }


async def take_in(tx: Transaction, batch: Sequence[CloudEvent]) -> int:
    """Keeps the events and queues one delivery per subscription owed each (an event kept before, a redelivery,
    queues nothing); returns the deliveries queued."""
    now = utcnow()
    repo = WebhookRepository(tx.session)
    rows = {e.id: event_row(e, now) for e in batch}
    fresh = await repo.store_events(list(rows.values()))
    if not fresh:
        return 0
    kept = [rows[i] for i in rows if i in fresh]
    candidates = await repo.receiving(sorted({r["type"] for r in kept}),
                                      sorted({p for r in kept for p in r["partners"]}))
    queued = [
        {"id": uuid.uuid4(), "subscription_id": s.id, "event_id": r["event_id"], "event_type": r["type"],
         "status": DeliveryStatus.PENDING.value, "schedule_started_at": now, "next_attempt_at": now,
         "created_at": now, "updated_at": now}
        for r in kept for s in candidates
        if domain.receives(s.partner_id, s.event_types, s.status, r["type"], frozenset(r["partners"]))
    ]
    await repo.enqueue(queued)
    return len(queued)


async def prune(tx: Transaction, retention_days: float) -> int:
    return await WebhookRepository(tx.session).prune(utcnow() - timedelta(days=retention_days), PRUNE_BATCH)


# --- delivering ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    attempted_at: datetime
    status: int | None
    error: str | None
    latency_ms: int


def policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(first=timedelta(seconds=settings.webhook_retry_first_seconds),
                       longest=timedelta(seconds=settings.webhook_retry_longest_seconds),
                       window=timedelta(seconds=settings.webhook_retry_window_seconds))


async def claim(tx: Transaction, settings: Settings, free_slots: int) -> list[Row]:
    """Leases up to `free_slots` due deliveries, oldest first, at most `webhook_per_subscription` in flight per
    subscription across every replica."""
    repo = WebhookRepository(tx.session)
    now = utcnow()
    await repo.lock_claims()
    due = await repo.due(now, settings.webhook_per_subscription)
    if not due:
        return []
    chosen = domain.choose_claims(due, await repo.in_flight(now), settings.webhook_per_subscription, free_slots)
    return await repo.lease([d.delivery_id for d in chosen], now + timedelta(seconds=settings.webhook_lease_seconds))


async def send(client: httpx.AsyncClient, settings: Settings, job: Row, resolver: Resolve = resolve) -> Outcome:
    """One attempt: the URL checked again, the CloudEvent POSTed with its Standard Webhooks headers. A public host
    is reached at the address just checked (no second lookup a rebinding could answer differently)."""
    started = utcnow()
    clock = time.perf_counter()
    body = job.payload.encode()
    status: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(settings.webhook_timeout_seconds):
            target, addresses = await safe_target(job.url, settings, resolver)
            keys = settings.webhook_secrets_keys
            signing = domain.signing_secrets(
                domain.unseal(job.secret, keys), domain.unseal(job.previous_secret, keys) if job.previous_secret
                else None, job.previous_secret_until, started)
            headers = domain.webhook_headers(signing, job.event_id, started, body)
            headers["user-agent"] = USER_AGENT
            url, extensions = pinned(target, addresses, headers)
            async with client.stream("POST", url, content=body, headers=headers, extensions=extensions) as answer:
                status = answer.status_code
        error = domain.answer_error(status)
    except (UnsafeUrl, SecretUnavailable) as exc:
        error = str(exc)
    except TimeoutError:
        error = f"no answer within {settings.webhook_timeout_seconds:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    elapsed = time.perf_counter() - clock
    WEBHOOK_ATTEMPT_SECONDS.observe(elapsed)
    return Outcome(started, status, error, round(elapsed * 1000))


def pinned(target: Target, addresses: list[str], headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The URL to request and the httpx extensions: a public host at the first address its check resolved, its
    name kept for the Host header (set in `headers`) and for TLS (SNI, certificate check); else as written."""
    if not addresses or target.literal() is not None:
        return target.url, {}
    parsed = httpx.URL(target.url)
    address = addresses[0]
    host = f"[{address}]" if ":" in address else address
    headers["host"] = parsed.netloc.decode("ascii").rsplit("@", 1)[-1]
    return str(parsed.copy_with(host=host.strip("[]"))), {"sni_hostname": target.host}


async def record(tx: Transaction, settings: Settings, outcomes: Sequence[tuple[Row, Outcome]],
                 rng: random.Random) -> None:
    """The attempts, and what each means: delivered; due again after a backoff; failed once the window is spent.
    A subscription whose every delivery failed for the disable window is disabled. Set-based: a few statements
    for the whole batch."""
    repo = WebhookRepository(tx.session)
    now = utcnow()
    # A delivery whose subscription was deleted meanwhile is gone, and so is its outcome.
    present = await repo.lock_deliveries(sorted({job.id for job, _ in outcomes}))
    retry = policy(settings)
    attempts: list[dict[str, Any]] = []
    settled: dict[uuid.UUID, dict[str, Any]] = {}
    attempted: list[domain.Attempted] = []
    for job, outcome in sorted(outcomes, key=lambda o: o[1].attempted_at):
        delivery = present.get(job.id)
        if delivery is None:
            continue
        attempts.append({"delivery_id": job.id, "attempted_at": outcome.attempted_at,
                         "response_status": outcome.status, "error": outcome.error,
                         "latency_ms": outcome.latency_ms})
        count = settled[job.id]["attempts"] + 1 if job.id in settled else delivery.attempts + 1
        delivered = outcome.error is None
        following = None if delivered else retry.next_attempt(count, delivery.schedule_started_at, now, rng)
        status = (DeliveryStatus.DELIVERED if delivered
                  else DeliveryStatus.PENDING if following else DeliveryStatus.FAILED)
        settled[job.id] = {"id": job.id, "status": status.value, "attempts": count, "next_attempt_at": following,
                           "delivered_at": now if delivered else None}
        # Failing since the delivery was first owed: a delivery failing for its whole retry window means the
        # subscription has failed for at least as long.
        attempted.append(domain.Attempted(job.subscription_id, outcome.attempted_at, delivered,
                                          delivery.schedule_started_at))
    await repo.add_attempts(attempts)
    await repo.settle_deliveries(list(settled.values()), now)
    for row in settled.values():
        WEBHOOK_ATTEMPTS.labels(OUTCOME_NAMES[row["status"]]).inc()
    failing = domain.failing_after(attempted)
    states = await repo.mark_failing([(s, f.reset, f.since) for s, f in sorted(failing.items())])
    window = timedelta(seconds=settings.webhook_disable_after_seconds)
    for state in states:
        if state.status == SubscriptionStatus.ACTIVE and domain.should_disable(state.failing_since, now, window):
            await repo.disable(state.id, now)
            log.warning("webhook subscription disabled: every delivery failed for the window",
                        extra={"fields": {"subscription_id": str(state.id)}})


class DeliveryWorker:
    """Keeps up to `webhook_concurrency` POSTs in flight, claimed from the queue in the database, each in a task of
    its own: a slow receiver holds only its own subscription's few slots (`webhook_per_subscription`)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.rng = random.Random()
        self.tasks: set[asyncio.Task[None]] = set()
        self.slot_freed = asyncio.Event()
        self.outcomes: asyncio.Queue[tuple[Row, Outcome]] = asyncio.Queue()
        # Deliveries claimed and not yet recorded: each holds a slot (and its lease) until its outcome commits.
        self.holding = 0
        self.resolver = Resolver(settings.webhook_concurrency)

    def client(self) -> httpx.AsyncClient:
        # No pool limit of its own: the worker bounds what is in flight, so no POST ever waits for a connection.
        return httpx.AsyncClient(follow_redirects=False, timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
                                 limits=httpx.Limits(max_connections=None, max_keepalive_connections=LANE_SIZE))

    async def run(self) -> None:
        # Several clients, each subscription always on the same one (its connections stay warm): httpx's pool
        # slows down as it grows (one client holding 64 connections makes a fifth of the POSTs 8 clients do).
        lanes = [self.client() for _ in range(max(1, -(-self.settings.webhook_concurrency // LANE_SIZE)))]
        recorder = asyncio.create_task(self.record_outcomes(), name="webhook-outcomes")
        listener = asyncio.create_task(self.listen(), name="webhook-due")
        try:
            while True:
                self.slot_freed.clear()
                free = self.settings.webhook_concurrency - self.holding
                claimed: list[Row] = []
                if free > 0:
                    try:
                        async with self.db.transaction() as tx:
                            claimed = await claim(tx, self.settings, free)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("claiming deliveries failed; trying again")
                self.holding += len(claimed)
                WEBHOOK_IN_FLIGHT.set(self.holding)
                for job in claimed:
                    lane = lanes[job.subscription_id.int % len(lanes)]
                    task = asyncio.create_task(self._deliver(lane, job), name=f"webhook-{job.id}")
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                if claimed and len(claimed) == free:
                    continue
                try:
                    await asyncio.wait_for(self.slot_freed.wait(), self.settings.webhook_poll_seconds)
                except TimeoutError:
                    pass
        finally:
            for task in [*self.tasks, recorder, listener]:
                task.cancel()
            await asyncio.gather(*self.tasks, recorder, listener, return_exceptions=True)
            for lane in lanes:
                await lane.aclose()
            self.resolver.close()

    async def listen(self) -> None:
        """Wakes the claim loop when deliveries become due now (queued, retried, replayed), on any replica."""
        while True:
            connection: asyncpg.Connection | None = None
            try:
                closed = asyncio.Event()
                connection = await asyncpg.connect(asyncpg_dsn(self.db.url))
                connection.add_termination_listener(lambda *_, lost=closed: lost.set())
                await connection.add_listener(DUE_CHANNEL, lambda *_: self.slot_freed.set())
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listening for due deliveries failed; polling meanwhile",
                            extra={"fields": {"error": repr(exc)}})
                await asyncio.sleep(self.settings.webhook_poll_seconds * 4)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()

    async def _deliver(self, client: httpx.AsyncClient, job: Row) -> None:
        try:
            outcome = await send(client, self.settings, job, self.resolver)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not keep the slot: the attempt fails with what went wrong
            log.exception("sending a delivery failed", extra={"fields": {"delivery_id": str(job.id)}})
            outcome = Outcome(utcnow(), None, f"{type(exc).__name__}: {exc}", 0)
        self.outcomes.put_nowait((job, outcome))

    async def record_outcomes(self) -> None:
        """Writes the attempts' outcomes, as many as have come in, in one transaction: a commit per batch, not per
        delivery. An outcome lost in a crash only means its lease runs out and it is sent again: at least once."""
        while True:
            batch = [await self.outcomes.get()]
            while not self.outcomes.empty() and len(batch) < RECORD_BATCH:
                batch.append(self.outcomes.get_nowait())
            try:
                async with self.db.transaction() as tx:
                    await record(tx, self.settings, batch, self.rng)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording a batch of attempts failed; recording them one by one")
                for job, outcome in batch:
                    await self._record_one(job, outcome)
            self.holding -= len(batch)
            WEBHOOK_IN_FLIGHT.set(self.holding)
            self.slot_freed.set()

    async def _record_one(self, job: Row, outcome: Outcome) -> None:
        for attempt in range(5):
            try:
                async with self.db.transaction() as tx:
                    await record(tx, self.settings, [(job, outcome)], self.rng)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording a delivery attempt failed", extra={"fields": {"delivery_id": str(job.id)}})
                await asyncio.sleep(0.2 * 2 ** attempt)
