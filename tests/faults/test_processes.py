"""The books stay exact through crashes: the four services run as `partnerhub serve` processes on a broker and
databases of their own, and while bursts of sales are being consumed, priced, published and followed, the test
SIGKILLs incentives and funds, freezes the broker, kills one of two incentives replicas, terminates every database
backend of incentives and funds, cuts the network to the broker (a proxy in front of it drops every byte) and kills
incentives with accrual events committed but never received by the broker, and last SIGKILLs every service at once;
the reclassifications made meanwhile reach incentives twice, as a relay's retry after a lost acknowledgement
delivers them. Afterwards every sale is accrued exactly once, each sale's ledger entries sum to its accrual, the open
statement and the funds' earned balance equal an independent computation to the cent, and each reclassification
ran one recalculation.

The test fails when the outbox relay marks events published before the broker acknowledged them (the events the
cut swallowed are lost: funds' earned balance falls short) and when consumers skip their inbox check (the repeated
reclassifications run twice)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from partnerhub.embedded import TANSU_GROUP_ENV, TansuBroker, create_databases, drop_databases, free_port
from partnerhub.kafka import all_topics, ensure_topics
from partnerhub.migrations import upgrade
from tests.conftest import Infrastructure, _server_dsn
from tests.e2e.conftest import ROOT, SECRET, Api, eventually, sale_event
from tests.faults.proxy import BrokerProxy

SERVICES = ("registry", "accounts", "incentives", "funds")
SALES = 3000
# Sales go out in bursts; each fault strikes moments after a burst, while it is being consumed, priced,
# relayed and followed.
CHUNK = 500
ACCOUNTS = 4
RATE, FUND_RATE = Decimal("0.05"), Decimal("0.10")
CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class Process:
    service: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    out: IO[bytes] | None = None


@dataclass
class Cluster:
    """A broker, four databases and `partnerhub serve` processes, each started, killed and restarted at will."""

    root: Path
    admin_dsn: str
    broker: TansuBroker = field(init=False)
    proxy: BrokerProxy = field(init=False)
    names: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        proxy_port = free_port("127.0.0.1")
        self.broker = TansuBroker(log_path=self.root / "broker.log", advertised_port=proxy_port)
        self.proxy = BrokerProxy(proxy_port, self.broker.host, self.broker.port)
        run = secrets.token_hex(3)
        self.names = {service: f"phf_{run}_{service}" for service in SERVICES}

    def dsn(self, service: str) -> str:
        return _server_dsn(self.admin_dsn, self.names[service])

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for service in SERVICES:
            env[f"PARTNERHUB_{service.upper()}_DATABASE_URL"] = self.dsn(service).replace(
                "postgresql://", "postgresql+asyncpg://", 1)
        env.update(TANSU_GROUP_ENV)
        env |= {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "PARTNERHUB_KAFKA_IDEMPOTENCE": "false",
                "PARTNERHUB_JWT_SECRET": SECRET, "PARTNERHUB_LOG_LEVEL": "WARNING",
                "PARTNERHUB_REGISTRY_URL": f"http://127.0.0.1:{self.processes['registry'].port}"}
        return env

    @property
    def bootstrap_servers(self) -> str:
        """Through the proxy, as every client connects."""
        return f"{self.proxy.host}:{self.proxy.listen_port}"

    async def start(self) -> None:
        await self.proxy.start()
        self.broker.start()
        await ensure_topics(self.broker.bootstrap_servers, all_topics())
        await create_databases(self.admin_dsn, list(self.names.values()))
        for service in SERVICES:
            await asyncio.to_thread(upgrade, service, self.dsn(service).replace("postgresql://",
                                                                                "postgresql+asyncpg://", 1))
        for service in SERVICES:
            self.processes[service] = Process(service, free_port("127.0.0.1"), self.root / f"{service}.log")
        await asyncio.gather(*(self.spawn(name) for name in SERVICES))

    async def spawn(self, name: str, service: str | None = None) -> None:
        """Starts (or restarts) a process and waits until it is ready: consumers joined and positioned."""
        process = self.processes.get(name)
        if process is None:
            process = self.processes[name] = Process(service or name, free_port("127.0.0.1"),
                                                     self.root / f"{name}.log")
        self._launch(process)
        async with httpx.AsyncClient(timeout=5) as client:
            async def ready() -> bool:
                assert process.popen is not None and process.popen.poll() is None, self.report(name)
                try:
                    return (await client.get(f"http://127.0.0.1:{process.port}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, f"{name} ready", within=90)

    def _launch(self, process: Process) -> None:
        process.out = open(process.log, "ab")  # closed when the process is killed
        process.popen = subprocess.Popen(
            [sys.executable, "-m", "partnerhub.cli", "serve", process.service, "--port", str(process.port)],
            cwd=ROOT, env=self.env(), stdout=process.out, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self, *names: str) -> None:
        for name in names:
            process = self.processes[name]
            if process.popen is not None and process.popen.poll() is None:
                process.popen.send_signal(signal.SIGKILL)
                process.popen.wait(30)
            process.popen = None
            if process.out is not None:
                process.out.close()
                process.out = None

    def report(self, name: str) -> str:
        return self.processes[name].log.read_text(errors="replace")[-4000:]

    async def stop(self) -> None:
        self.kill(*self.processes)
        self.broker.stop()
        await self.proxy.stop()
        await drop_databases(self.admin_dsn, list(self.names.values()))


class Hub:
    """What the e2e API helper needs of a running system: each service's base URL."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.cluster.processes[service].port}"


@asynccontextmanager
async def cluster_of(infrastructure: Infrastructure) -> AsyncIterator[Cluster]:
    root = infrastructure.root / f"faults-{secrets.token_hex(2)}"
    root.mkdir()
    cluster = Cluster(root, infrastructure.admin_dsn)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


async def outbox_drained(cluster: Cluster, service: str) -> bool:
    connection = await asyncpg.connect(cluster.dsn(service))
    try:
        return not await connection.fetchval("SELECT EXISTS (SELECT FROM outbox WHERE published_at IS NULL)")
    finally:
        await connection.close()


async def terminate_backends(cluster: Cluster, *services: str) -> int:
    """Drops every connection the services hold to their databases, as a database failover or restart does."""
    admin = await asyncpg.connect(cluster.admin_dsn)
    try:
        names = [cluster.names[service] for service in services]
        return int(await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()", names))
    finally:
        await admin.close()


@pytest.mark.e2e
async def test_the_books_stay_exact_through_kills_freezes_rebalances_and_dropped_connections(
    infrastructure: Infrastructure,
) -> None:
    async with cluster_of(infrastructure) as cluster:
        api = Api(Hub(cluster))  # type: ignore[arg-type]
        run = uuid.uuid4().hex[:6]
        sku, program, fund = f"FAULT-{run}", f"BASE-{run}", f"MDF-{run}"
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all",
                                    enable_idempotence=False)
        await producer.start()
        try:
            partner_id = await api.active_partner("Northwind Resellers")
            accounts = [await api.owned_account(partner_id) for _ in range(ACCOUNTS)]
            await api.eligible_product(sku)
            # The same rate either way: the reclassifications below move nothing, yet each runs a recalculation.
            await api.base_rebate(program, commercial=str(RATE), key=str(RATE))
            await api.call("POST", "funds", "/v1/funds", 201, json={
                "code": fund, "kind": "mdf", "currency": "USD", "budget": "10000000.00",
                "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2027-01-01T00:00:00Z",
                "accrual_rate": str(FUND_RATE), "per_partner_limit": None,
            })

            pick = random.Random(7)
            amounts = {f"F{run}-{i:05d}": Decimal(pick.randint(100, 500_000)) / 100 for i in range(SALES)}
            sale_ids = list(amounts)

            async def publish(chunk: int) -> None:
                for n, sale_id in enumerate(sale_ids[chunk * CHUNK:(chunk + 1) * CHUNK]):
                    account = accounts[(chunk * CHUNK + n) % ACCOUNTS]
                    sale = {"sale_id": sale_id, "partner_id": partner_id, "account_id": account, "sku": sku,
                            "amount": str(amounts[sale_id]), "currency": "USD",
                            "booked_at": f"2026-03-{1 + (chunk * CHUNK + n) % 28:02d}T10:00:00Z"}
                    await producer.send("sales.recorded", json.dumps(sale_event(sale)).encode(),
                                        key=account.encode())
                await producer.flush()

            faults: dict[int, Any] = {
                0: lambda: restart(cluster, "incentives"),
                1: lambda: restart(cluster, "funds"),
                2: lambda: freeze_broker(cluster, 3.0),
                3: lambda: rebalance(cluster),
                4: lambda: terminate_backends(cluster, "incentives", "funds"),
            }
            for chunk in range(SALES // CHUNK):
                await publish(chunk)
                if chunk == 1:
                    # While sales are priced: every account reclassified, each event then delivered again.
                    for account in accounts:
                        await api.reclassify(account, "key", "2026-01-01T00:00:00Z")
                    reclassifications = await deliver_again(cluster, producer, "account.reclassified")
                if chunk in faults:
                    await asyncio.sleep(pick.uniform(0.05, 0.3))
                    await faults[chunk]()
            # Sales recorded over REST while the network to the broker is cut: priced and committed with their
            # accrual events in the outbox, sent into the cut, then incentives dies before the network heals; the
            # restarted relay must publish them (funds' earned balance below counts them).
            await eventually(lambda: outbox_drained(cluster, "incentives"), "incentives' outbox published", 60)
            cluster.proxy.partition()
            try:
                for n in range(50):
                    sale_id = f"R{run}-{n:03d}"
                    amounts[sale_id] = Decimal(pick.randint(100, 500_000)) / 100
                    await api.call("POST", "incentives", "/v1/sales", 202, role="system", json={
                        "sale_id": sale_id, "partner_id": partner_id, "account_id": accounts[n % ACCOUNTS],
                        "sku": sku, "amount": str(amounts[sale_id]), "currency": "USD",
                        "booked_at": f"2026-03-{1 + n % 28:02d}T12:00:00Z"})
                await asyncio.sleep(0.5)
                cluster.kill("incentives")
            finally:
                cluster.proxy.heal()
            await cluster.spawn("incentives")
            # Every service at once, while the last burst is in flight.
            await asyncio.sleep(pick.uniform(0.05, 0.3))
            cluster.kill(*cluster.processes)
            await asyncio.gather(*(cluster.spawn(name) for name in SERVICES))
        finally:
            await producer.stop()

        await assert_books_exact(cluster, api, partner_id, fund, program, amounts)
        await assert_one_run_each(cluster, reclassifications)
        await api.close()


async def deliver_again(cluster: Cluster, producer: AIOKafkaProducer, type_: str) -> list[str]:
    """Sends the accounts service's events of a type once more, byte for byte: the duplicate a relay's retry puts
    on the topic when the broker appended a message but its acknowledgement was lost. Returns their ids."""
    connection = await asyncpg.connect(cluster.dsn("accounts"))
    try:
        async def published() -> list[Any]:
            rows = await connection.fetch(
                "SELECT topic, key, payload, published_at FROM outbox WHERE payload::json->>'type' = $1", type_)
            return rows if rows and all(row["published_at"] is not None for row in rows) else []

        rows = await eventually(published, f"the {type_} events published", within=30)
    finally:
        await connection.close()
    for row in rows:
        await producer.send(row["topic"], row["payload"].encode(), key=row["key"].encode())
    await producer.flush()
    return [json.loads(row["payload"])["id"] for row in rows]


async def assert_one_run_each(cluster: Cluster, trigger_event_ids: list[str]) -> None:
    """Each trigger, though delivered twice, ran one recalculation."""
    incentives = await asyncpg.connect(cluster.dsn("incentives"))
    try:
        async def runs() -> dict[str, int]:
            rows = await incentives.fetch(
                "SELECT trigger_event_id, count(*) AS n FROM recalculation_runs WHERE trigger_event_id = ANY($1) "
                "GROUP BY trigger_event_id", trigger_event_ids)
            found = {row["trigger_event_id"]: row["n"] for row in rows}
            return found if len(found) == len(trigger_event_ids) else {}

        assert await eventually(runs, "every reclassification's run", within=60) == dict.fromkeys(
            trigger_event_ids, 1), "a reclassification delivered twice ran twice"
    finally:
        await incentives.close()


async def restart(cluster: Cluster, name: str) -> None:
    cluster.kill(name)
    await cluster.spawn(name)


async def freeze_broker(cluster: Cluster, seconds: float) -> None:
    assert cluster.broker.process is not None
    cluster.broker.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        cluster.broker.process.send_signal(signal.SIGCONT)


async def rebalance(cluster: Cluster) -> None:
    """A second incentives replica joins its group; then the first one dies and the replica takes it all."""
    await cluster.spawn("incentives-2", "incentives")
    cluster.kill("incentives")
    await asyncio.sleep(1.0)
    await cluster.spawn("incentives")
    cluster.kill("incentives-2")


async def assert_books_exact(cluster: Cluster, api: Api, partner_id: str, fund: str, program: str,
                             amounts: dict[str, Decimal]) -> None:
    expected_rebate = {sale_id: cents(amount * RATE) for sale_id, amount in amounts.items()}
    incentives = await asyncpg.connect(cluster.dsn("incentives"))
    try:
        async def all_priced() -> bool:
            priced = await incentives.fetchval(
                "SELECT count(*) FROM sales WHERE sale_id = ANY($1::text[]) AND status = 'accrued'", list(amounts))
            return priced == len(amounts)

        await eventually(all_priced, "every sale priced", within=120)
        items = await incentives.fetch(
            "SELECT sale_id, count(*) AS n, sum(amount) AS amount FROM accrual_items "
            "WHERE sale_id = ANY($1::text[]) AND program_code = $2 GROUP BY sale_id", list(amounts), program)
        assert {r["sale_id"]: (r["n"], r["amount"]) for r in items} == {
            sale_id: (1, amount) for sale_id, amount in expected_rebate.items()}, "an accrual lost, doubled or off"
        entries = await incentives.fetch(
            "SELECT sale_id, count(*) AS n, sum(amount) AS amount FROM ledger "
            "WHERE sale_id = ANY($1::text[]) GROUP BY sale_id", list(amounts))
        assert {r["sale_id"]: (r["n"], r["amount"]) for r in entries} == {
            sale_id: (1, amount) for sale_id, amount in expected_rebate.items()}, "a ledger entry lost or doubled"

        statement = await api.call("GET", "incentives", f"/v1/partners/{partner_id}/statements/2026-03", 200)
        [usd] = [t for t in statement["totals"] if t["currency"] == "USD"]
        assert Decimal(usd["eligible_revenue"]) == sum(amounts.values())
        assert Decimal(usd["rebate"]) == sum(expected_rebate.values())

        earned = sum(cents(FUND_RATE * amount) for amount in amounts.values())

        async def earned_exact() -> Any:
            page = await api.call("GET", "funds", f"/v1/partners/{partner_id}/fund-balances", 200)
            found = [b for b in page["items"] if b["fund_code"] == fund]
            return found and Decimal(found[0]["earned"]) == earned and found[0]

        await eventually(earned_exact, f"{fund} earned {earned}", within=120)
    finally:
        await incentives.close()

