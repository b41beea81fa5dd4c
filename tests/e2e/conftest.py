"""End-to-end harness: `partnerhub up` as a real subprocess, reached over HTTP and Kafka like a user would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from partnerhub import SERVICES
from partnerhub.auth import issue_token
from partnerhub.config import Settings
from partnerhub.embedded import free_ports

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret-" + "z" * 32
START_TIMEOUT = 240.0
STOP_TIMEOUT = 120.0
# Variables an earlier test session may have put in this process's environment; `up` must choose its own.
INHERITED = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "PARTNERHUB_KAFKA_BOOTSTRAP_SERVERS",
    "PARTNERHUB_KAFKA_IDEMPOTENCE",
    "PARTNERHUB_OUTBOX_REPLAY",
    "PARTNERHUB_REGISTRY_URL",
    "PARTNERHUB_DATA_DIR",
    *(f"PARTNERHUB_{s.upper()}_DATABASE_URL" for s in SERVICES),
    *(f"PARTNERHUB_{s.upper()}_PORT" for s in SERVICES),
    "PARTNERHUB_GATEWAY_PORT",
)
# What `up` listens on: the five services and the gateway.
COMPONENTS = (*SERVICES, "gateway")


@dataclass
class Hub:
    """One `partnerhub up` process on a data directory, with its own ports."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    broker_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    output: Path | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        if not self.ports:
            *components, self.broker_port = free_ports(len(COMPONENTS) + 1)
            self.ports = dict(zip(COMPONENTS, components, strict=True))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in INHERITED}
        env.update({f"PARTNERHUB_{s.upper()}_PORT": str(p) for s, p in self.ports.items()})
        env["PARTNERHUB_BROKER_PORT"] = str(self.broker_port)
        env["PARTNERHUB_JWT_SECRET"] = SECRET
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> None:
        self.runs += 1
        self.output = self.data_dir / f"up-{self.runs}.out"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "partnerhub.cli", "up", "--data-dir", str(self.data_dir)],
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while "Partner Hub is up" not in self.text():
            if self.process.poll() is not None:
                raise AssertionError(f"`partnerhub up` exited with {self.process.returncode}:\n{self.report()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"`partnerhub up` not ready within {START_TIMEOUT:.0f}s:\n{self.report()}")
            time.sleep(0.3)

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output and self.output.exists() else ""

    def report(self) -> str:
        parts = [self.text()]
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-30:]
            parts.append(f"--- {log.name} (last lines)\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> int | None:
        """SIGTERM like Ctrl-C; whatever is still alive after that is killed, so nothing outlives the test."""
        process = self.process
        if process is None:
            return None
        self.process = None
        try:
            family = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        code: int | None
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for child in family:
            with contextlib.suppress(psutil.Error):
                child.kill()
        _stop_postgres(self.data_dir / "pg")
        return code


def _stop_postgres(pgdata: Path) -> None:
    """An embedded PostgreSQL left behind by a killed `up` (it runs detached, in its own session)."""
    pid_file = pgdata / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        pid = int(pid_file.read_text().splitlines()[0])
        server = psutil.Process(pid)
        if "postgres" in server.name():
            server.terminate()
            server.wait(15)


def short_dir() -> Path:
    # Short, because the embedded PostgreSQL's Unix socket lives in it.
    path = Path(tempfile.mkdtemp(prefix="phe2e", dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture
def hub_dir() -> Iterator[Path]:
    path = short_dir()
    yield path
    if not os.environ.get("PARTNERHUB_E2E_KEEP"):
        shutil.rmtree(path, ignore_errors=True)


class SharedHub:
    """The one `partnerhub up` the tests asking for `hub` share: started by the first of them, stopped after the
    last (tests/conftest.py runs them one after another and releases it), and it must stop cleanly (exit code
    0). Starting and stopping `up` is ~12 s; the tests that prove those start their own."""

    # The modules sharing it, in the order they run: the documents' walk-throughs first, on a system as fresh as
    # a reader's (what they print assumes one), the fuzz test last (it sends anything an admin may).
    ORDER = ("tests/e2e/test_docs.py", "tests/e2e/test_walkthrough.py", "tests/e2e/test_funds_flow.py",
             "tests/robustness/test_fuzz.py")

    def __init__(self) -> None:
        self.running: Hub | None = None

    def get(self) -> Hub:
        if self.running is None:
            running = Hub(short_dir())
            try:
                running.start()
            except BaseException:
                self._forget(running)
                raise
            self.running = running
        return self.running

    def release(self) -> None:
        running, self.running = self.running, None
        if running is None:
            return
        try:
            code = running.stop()
            assert code == 0, f"`partnerhub up` stopped with {code}:\n{running.report()}"
        finally:
            self._forget(running)

    @staticmethod
    def _forget(running: Hub) -> None:
        running.stop()
        if not os.environ.get("PARTNERHUB_E2E_KEEP"):
            shutil.rmtree(running.data_dir, ignore_errors=True)

    @classmethod
    def rank(cls, module: str) -> int:
        """Where a module's tests run among the sharers: one not listed runs first, as it may need the cleanest
        state."""
        return cls.ORDER.index(module) + 1 if module in cls.ORDER else 0


SHARED_HUB = SharedHub()


@pytest.fixture
def hub() -> Hub:
    """The shared `partnerhub up` (SharedHub)."""
    return SHARED_HUB.get()


def headers(role: str = "admin", partner_id: str | None = None) -> dict[str, str]:
    token = issue_token(Settings(jwt_secret=SECRET), role, None, partner_id)
    return {"Authorization": f"Bearer {token}"}


class Api:
    """The four services over real HTTP, with an admin token unless told otherwise."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.client = httpx.AsyncClient(timeout=30)

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, method: str, service: str, path: str, expect: int | set[int], role: str = "admin",
                   **kwargs: Any) -> Any:
        response = await self.client.request(method, self.hub.url(service) + path, headers=headers(role),
                                             **kwargs)
        wanted = expect if isinstance(expect, set) else {expect}
        assert response.status_code in wanted, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    async def accruals(self, partner_id: str, sale_id: str) -> list[dict[str, Any]]:
        page = await self.call("GET", "incentives", f"/v1/partners/{partner_id}/accruals", 200,
                               params={"sale_id": sale_id})
        return list(page["items"])

    async def ledger(self, partner_id: str, sale_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 500}
        if sale_id is not None:
            params["sale_id"] = sale_id
        entries: list[dict[str, Any]] = []
        while True:
            page = await self.call("GET", "incentives", f"/v1/partners/{partner_id}/ledger", 200, params=params)
            entries += page["items"]
            if not page.get("next_cursor"):
                return entries
            params["cursor"] = page["next_cursor"]

    async def active_partner(self, name: str) -> str:
        partner = await self.call("POST", "registry", "/v1/partners", 201, json={
            "name": name, "country": "DE", "region": "EMEA", "types": ["sales"],
        })
        await self.call("POST", "registry", f"/v1/partners/{partner['id']}/status", 200,
                        json={"status": "active", "reason": "onboarded"})
        return str(partner["id"])

    async def owned_account(self, partner_id: str, classification: str = "commercial") -> str:
        account = await self.call("POST", "accounts", "/v1/accounts", 201, json={
            "name": "Globex Manufacturing", "country": "DE", "industry": "manufacturing",
            "classification": classification,
        })
        await self.call("PUT", "accounts", f"/v1/accounts/{account['id']}/owner", 200,
                        json={"partner_id": partner_id, "effective_from": "2026-01-01T00:00:00Z"})
        return str(account["id"])

    async def eligible_product(self, sku: str) -> None:
        # PUT creates (201) or replaces (200).
        await self.call("PUT", "incentives", f"/v1/products/{sku}", {200, 201}, json={
            "name": "Analytics Suite", "category": "software", "rebate_eligible": True,
            "standalone_software": True,
        })

    async def base_rebate(self, code: str, commercial: str = "0.05", key: str = "0.08") -> None:
        await self.call("POST", "incentives", "/v1/programs", 201, json={
            "code": code, "name": "Base rebate 2026", "kind": "base_rebate",
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2027-01-01T00:00:00Z",
            "required_certification": None, "target": None,
            "rules": [
                {"classification": "commercial", "tier": "*", "category": "*", "rate": commercial},
                {"classification": "key", "tier": "*", "category": "*", "rate": key},
            ],
        })

    async def reclassify(self, account_id: str, classification: str, effective_from: str) -> None:
        await self.call("PUT", "accounts", f"/v1/accounts/{account_id}/classification", 200, json={
            "classification": classification, "effective_from": effective_from, "reason": "co-sell agreed",
        })


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 60.0) -> Any:
    """Events flow asynchronously: polls until the check returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f}s (last seen: {last!r})")
        await asyncio.sleep(0.25)


def sale_event(sale: dict[str, str], event_id: str | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "test-sales-system",
        "type": "sale.recorded",
        "subject": sale["sale_id"],
        "time": "2026-03-20T10:00:05Z",
        "datacontenttype": "application/json",
        "data": sale,
    }


class Kafka:
    """A sales system's producer and a reader of any topic, on the broker `up` started."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)

    async def __aenter__(self) -> Kafka:
        await self.producer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.producer.stop()

    async def send(self, topic: str, key: str, value: bytes | dict[str, Any]) -> None:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        await self.producer.send_and_wait(topic, raw, key=key.encode())

    async def read_all(self, topic: str) -> list[Any]:
        """Every message now on the topic, from the beginning, without joining a group."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not partitions:
                await consumer.client.force_metadata_update()
                partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            messages: list[Any] = []
            deadline = asyncio.get_running_loop().time() + 20
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"could not read {topic} to its end within 20s")
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    messages += batch
            return messages
        finally:
            await consumer.stop()
