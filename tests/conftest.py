"""Test session: one real PostgreSQL (embedded, or PARTNERHUB_TEST_DATABASE_URL) and one Tansu broker."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from partnerhub import SERVICES
from partnerhub.auth import issue_token
from partnerhub.config import Settings, get_settings
from partnerhub.embedded import TANSU_GROUP_ENV, EmbeddedPostgres, TansuBroker, create_databases, drop_databases
from partnerhub.events import OutgoingEvent, dumps
from partnerhub.kafka import all_topics, ensure_topics

os.environ.setdefault("PARTNERHUB_JWT_SECRET", "test-secret-" + "x" * 32)


@dataclass
class Infrastructure:
    admin_dsn: str
    database_urls: dict[str, str]
    bootstrap_servers: str
    root: Path

    def env(self) -> dict[str, str]:
        env = {f"PARTNERHUB_{s.upper()}_DATABASE_URL": url for s, url in self.database_urls.items()}
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap_servers
        env["PARTNERHUB_KAFKA_IDEMPOTENCE"] = "false"
        env.update(TANSU_GROUP_ENV)
        env["PARTNERHUB_JWT_SECRET"] = os.environ["PARTNERHUB_JWT_SECRET"]
        # Webhook receivers in the tests listen on loopback.
        env["PARTNERHUB_WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
        return env


def _server_dsn(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    base = base.replace("postgresql+asyncpg://", "postgresql://", 1)
    head, _, _ = base.rpartition("/")
    return f"{head}/{database}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[Infrastructure]:
    root = Path(tempfile.mkdtemp(prefix="ph", dir="/tmp"))
    postgres: EmbeddedPostgres | None = None
    external = os.environ.get("PARTNERHUB_TEST_DATABASE_URL")
    if external:
        admin_dsn = _server_dsn(external, "postgres")
    else:
        postgres = EmbeddedPostgres(root / "pg").start()
        admin_dsn = postgres.url("postgres", "postgresql")
    run_id = secrets.token_hex(4)
    names = {service: f"ph_{run_id}_{service}" for service in SERVICES}
    asyncio.run(create_databases(admin_dsn, list(names.values())))
    urls = {s: _server_dsn(admin_dsn, n).replace("postgresql://", "postgresql+asyncpg://", 1) for s, n in names.items()}
    broker = TansuBroker(log_path=root / "broker.log")
    try:
        bootstrap = broker.start()
        asyncio.run(ensure_topics(bootstrap, all_topics()))
        from partnerhub.migrations import upgrade

        for service, url in urls.items():
            upgrade(service, url)
        infra = Infrastructure(admin_dsn, urls, bootstrap, root)
        saved = {k: os.environ.get(k) for k in infra.env()}
        os.environ.update(infra.env())
        get_settings.cache_clear()
        yield infra
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
    finally:
        broker.stop()
        asyncio.run(drop_databases(admin_dsn, list(names.values())))
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(infrastructure: Infrastructure) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def tokens(settings: Settings) -> Callable[..., dict[str, str]]:
    def headers(role: str = "admin", partner_id: Any = None, sub: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(settings, role, sub, partner_id)}"}

    return headers


@asynccontextmanager
async def running_service(name: str, settings: Settings | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """One service in-process with its relay and consumers running, reached over ASGI; yielded once ready (its
    consumers joined their groups) and caught up with what is already on its topics. `settings` replace the
    environment's."""
    import importlib

    from partnerhub.service import create_service_app

    module = importlib.import_module(f"services.{name}.app")
    if settings is None:
        # Stopping waits briefly for the session's other services to fall quiet (draining itself is proven by the
        # tests of `partnerhub up` and of the relay): the defaults (30 s at most, 1.5 s of quiet) made the
        # session's teardown wait 25 s for its half-dozen services, one after the other.
        settings = get_settings().model_copy(update={"drain_timeout_seconds": 1.0, "drain_quiet_seconds": 0.3})
    app = create_service_app(module.SPEC, settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client:
            client.app = app  # type: ignore[attr-defined]

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, within=60)

            async def caught_up() -> bool:
                # A service started late in a session first reads every earlier test's events: tests begin
                # once it has (and its outbox is published), not while a backlog delays their own events.
                return not await app.state.ctx.busy()

            await eventually(caught_up, within=180, interval=0.2)
            yield client


async def eventually(check: Callable[[], Any], within: float = 30.0, interval: float = 0.1) -> Any:
    """Polls an async or sync check until it returns a truthy value (events flow asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while loop.time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s (last value: {last!r})")


Publish = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
async def publish(infrastructure: Infrastructure) -> AsyncIterator[Publish]:
    """Publishes a CloudEvent the way an upstream service or an internal sales system would."""
    producer = AIOKafkaProducer(
        bootstrap_servers=infrastructure.bootstrap_servers, acks="all", enable_idempotence=False
    )
    await producer.start()

    async def send(topic: str, type_: str, key: str, data: dict[str, Any], *, event_id: str | None = None,
                   subject: str | None = None, source: str = "tests") -> str:
        event = OutgoingEvent(topic=topic, type=type_, key=key, data=data, subject=subject,
                              id=event_id or str(uuid.uuid4()))
        await producer.send_and_wait(topic, dumps(event.envelope(source)), key=key.encode())
        return event.id

    yield send
    await producer.stop()


# --- the shared `partnerhub up` of the end-to-end tests (tests/e2e/conftest.py: SharedHub) -------------------
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests asking for `hub` run one after another, where the first of them would have, in SharedHub's
    order, so one `partnerhub up` serves them all."""
    from tests.e2e.conftest import SharedHub

    sharing = [item for item in items if "hub" in getattr(item, "fixturenames", ())]
    if not sharing:
        return
    first = items.index(sharing[0])
    shared = set(sharing)
    rest = [item for item in items if item not in shared]
    ordered = sorted(sharing, key=lambda item: SharedHub.rank(item.nodeid.split("::")[0]))
    items[:] = rest[:first] + ordered + rest[first:]


# --- two workers (./run test: pytest-xdist) ----------------------------------------------------------------------
# The tests that start fleets of processes: the shared `hub`'s (SharedHub.ORDER), every other end-to-end test and
# the fault test. They go to one worker, one after another in the order above, so two fleets never compete for
# the two cores; the Partner Center's tests (one `partnerhub up` for the package) go to one worker; every other
# test is scheduled alone, wherever a worker is free.
FLEETS = ("tests/e2e/", "tests/faults/test_processes.py", "tests/robustness/test_fuzz.py")


def worker_group(nodeid: str) -> str:
    if nodeid.startswith("tests/web/"):
        return "tests/web"
    if nodeid.startswith(FLEETS):
        return "fleets"
    return nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class FleetScheduling(LoadScopeScheduling):
        """LoadScopeScheduling whose scopes are worker_group's: a scope's tests run on one worker, in order."""

        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return FleetScheduling(config, log)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last test sharing `hub`, it stops (and must stop cleanly)."""
    if "hub" in getattr(item, "fixturenames", ()) and (
            nextitem is None or "hub" not in getattr(nextitem, "fixturenames", ())):
        from tests.e2e.conftest import SHARED_HUB

        SHARED_HUB.release()


def pytest_sessionfinish() -> None:
    from tests.e2e.conftest import SHARED_HUB

    SHARED_HUB.release()
