"""partnerhub.ops: topic creation, the wait-ready init step and the healthcheck probe, on a real broker and database."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from partnerhub.db import asyncpg_dsn
from partnerhub.kafka import TOPICS, all_topics
from partnerhub.ops import TopicPlan, create_topics, main, migration_state, probe, topic_plan, wait_ready
from tests.conftest import Infrastructure


def test_the_plan_is_every_topic_and_its_dead_letter_topic() -> None:
    plan = {t.name: t for t in topic_plan(3, 2)}
    assert set(plan) == set(all_topics())
    assert plan["sales.recorded"].partitions == TOPICS["sales.recorded"] == 12
    assert all(t.replication_factor == 3 and t.configs == {"min.insync.replicas": "2"} for t in plan.values())


def test_dry_run_prints_kafka_topics_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create-topics", "--dry-run", "--replication-factor", "3", "--min-insync-replicas", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(all_topics())
    assert ("kafka-topics.sh --create --if-not-exists --topic sales.recorded --partitions 12 "
            "--replication-factor 3 --config min.insync.replicas=2") in lines


async def test_creates_missing_topics_with_their_partitions(infrastructure: Infrastructure) -> None:
    prefix = f"deploytest-{secrets.token_hex(4)}"
    plan = [TopicPlan(f"{prefix}.events", 4, 1, {}), TopicPlan(f"{prefix}.events.dlq", 1, 1, {})]
    first = await create_topics(infrastructure.bootstrap_servers, plan, wait_seconds=30)
    assert [line.split()[:4] for line in first] == [
        [f"{prefix}.events", "4", "partitions", "created"], [f"{prefix}.events.dlq", "1", "partitions", "created"]
    ]
    again = await create_topics(infrastructure.bootstrap_servers, plan, wait_seconds=30)
    assert all(line.split()[3] == "exists" for line in again)

    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.bootstrap_servers)
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics([p.name for p in plan])}
    finally:
        await admin.close()
    assert described == {f"{prefix}.events": 4, f"{prefix}.events.dlq": 1}


def test_the_command_reports_every_topic(infrastructure: Infrastructure, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create-topics", "--bootstrap-servers", infrastructure.bootstrap_servers]) == 0
    report = {line.split()[0]: int(line.split()[1]) for line in capsys.readouterr().out.splitlines()}
    assert report == all_topics()


async def test_wait_ready_passes_on_a_migrated_database_with_its_topics(infrastructure: Infrastructure) -> None:
    for service in ("registry", "funds", "webhooks"):
        assert await wait_ready(service, within_seconds=20) is None


async def test_wait_ready_holds_until_the_database_is_migrated(infrastructure: Infrastructure) -> None:
    name = f"ph_wait_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(infrastructure.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        head, _, query = infrastructure.database_urls["registry"].partition("?")
        empty = f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
        assert await migration_state("registry", empty) == "the database is not migrated yet"
        conn = await asyncpg.connect(asyncpg_dsn(empty))
        await conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        await conn.execute("INSERT INTO alembic_version VALUES ('0001')")
        await conn.close()
        state = await migration_state("registry", empty)
        assert state is not None and state.startswith("the database is at 0001, not yet at")
        assert await migration_state("registry", infrastructure.database_urls["registry"]) is None
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_probe_answers_for_container_healthchecks() -> None:
    with _http_status_server() as (base, statuses):
        statuses["/readyz"] = 200
        assert probe(f"{base}/readyz", 2) is None
        assert main(["probe", f"{base}/readyz"]) == 0
        statuses["/readyz"] = 503
        assert probe(f"{base}/readyz", 2) == "HTTP 503"
        assert main(["probe", f"{base}/readyz"]) == 1
    assert probe(f"{base}/readyz", 1) is not None


@contextlib.contextmanager
def _http_status_server() -> Iterator[tuple[str, dict[str, int]]]:
    statuses: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.get(self.path, 404))
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", statuses
    finally:
        server.shutdown()
        server.server_close()

