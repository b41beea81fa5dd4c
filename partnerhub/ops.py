"""Operations commands for containers and clusters: create the topics, wait until a service may start, probe."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from partnerhub import SERVICES

TOPIC_ALREADY_EXISTS = 36
WAIT_LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def topic_plan(replication_factor: int, min_insync_replicas: int | None) -> list[TopicPlan]:
    """Every topic the services use (partnerhub.kafka.TOPICS and their .dlq topics) as it should be created."""
    from partnerhub.kafka import all_topics

    configs = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {}
    return [TopicPlan(name, parts, replication_factor, configs) for name, parts in all_topics().items()]


async def create_topics(bootstrap_servers: str, plan: list[TopicPlan], wait_seconds: float = 120.0) -> list[str]:
    """Creates the missing topics and returns a line per topic; raises if the broker refuses one."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaConnectionError, KafkaError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in plan if t.name not in existing]
            if missing:
                response = await admin.create_topics(
                    [NewTopic(t.name, t.partitions, t.replication_factor, topic_configs=t.configs) for t in missing]
                )
                refused = [
                    f"{error[0]}: error {error[1]}" + (f" ({error[2]})" if len(error) > 2 and error[2] else "")
                    for error in response.topic_errors
                    if error[1] not in (0, TOPIC_ALREADY_EXISTS)
                ]
                if refused:
                    raise RuntimeError("the broker refused to create " + "; ".join(refused))
            described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics([t.name for t in plan])}
            break
        except (KafkaConnectionError, OSError) as exc:
            if loop.time() > deadline:
                raise RuntimeError(f"the Kafka broker at {bootstrap_servers} did not answer: {exc!r}") from exc
        except KafkaError as exc:
            if loop.time() > deadline:
                raise RuntimeError(f"the Kafka broker at {bootstrap_servers} failed: {exc!r}") from exc
        finally:
            await admin.close()
        await asyncio.sleep(1.0)
    created = {t.name for t in missing}
    lines = []
    for topic in plan:
        partitions = described.get(topic.name, 0)
        state = "created" if topic.name in created else "exists"
        note = ""
        if partitions < topic.partitions:
            # Adding partitions moves keys to other partitions, which breaks per-key order for a while:
            # an operator decides that, never this command.
            note = f"  (wants {topic.partitions}: add partitions deliberately, see docs/operations.md)"
        lines.append(f"{topic.name:<28} {partitions:>3} partitions  {state}{note}")
    return lines


def cmd_create_topics(args: argparse.Namespace) -> int:
    from partnerhub.config import get_settings

    plan = topic_plan(args.replication_factor, args.min_insync_replicas)
    if args.dry_run:
        for topic in plan:
            extra = "".join(f" --config {k}={v}" for k, v in topic.configs.items())
            print(f"kafka-topics.sh --create --if-not-exists --topic {topic.name} "
                  f"--partitions {topic.partitions} --replication-factor {topic.replication_factor}{extra}")
        return 0
    bootstrap_servers = args.bootstrap_servers or get_settings().kafka_bootstrap_servers
    if not bootstrap_servers:
        print("create-topics: set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap-servers", file=sys.stderr)
        return 2
    try:
        lines = asyncio.run(create_topics(bootstrap_servers, plan, args.wait))
    except RuntimeError as exc:
        print(f"create-topics: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines), flush=True)
    return 0


async def migration_state(service: str, database_url: str) -> str | None:
    """None when the service's database is at its migration head (or newer, after an image rollback), else why not."""
    import asyncpg
    from alembic.script import ScriptDirectory

    from partnerhub.db import asyncpg_dsn
    from partnerhub.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config(service, database_url))
    heads = set(script.get_heads())
    known = {revision.revision for revision in script.walk_revisions()}
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
    try:
        exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        current = {row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")} if exists else set()
    finally:
        await conn.close()
    if not current:
        return "the database is not migrated yet"
    behind = {revision for revision in current if revision in known and revision not in heads}
    if behind:
        return f"the database is at {', '.join(sorted(behind))}, not yet at {', '.join(sorted(heads))}"
    return None


async def missing_topics(bootstrap_servers: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    from partnerhub.kafka import all_topics

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return sorted(set(all_topics()) - existing)


async def wait_ready(service: str, within_seconds: float) -> str | None:
    """Waits until the service's database is migrated and every topic exists; None when ready, else the reason."""
    from partnerhub.config import get_settings
    from partnerhub.kafka import bootstrap

    settings = get_settings()
    database_url = settings.database_url(service)
    bootstrap_servers = bootstrap(settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_seconds if within_seconds > 0 else None
    next_log = loop.time()
    while True:
        reason: str | None
        try:
            reason = await migration_state(service, database_url)
            if reason is None:
                missing = await missing_topics(bootstrap_servers)
                reason = f"topics missing: {', '.join(missing)}" if missing else None
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            return None
        if deadline is not None and loop.time() >= deadline:
            return reason
        if loop.time() >= next_log:
            print(f"wait-ready {service}: {reason}; waiting", file=sys.stderr, flush=True)
            next_log = loop.time() + WAIT_LOG_EVERY_SECONDS
        await asyncio.sleep(1.0)


def cmd_wait_ready(args: argparse.Namespace) -> int:
    try:
        reason = asyncio.run(wait_ready(args.service, args.timeout))
    except RuntimeError as exc:
        print(f"wait-ready {args.service}: {exc}", file=sys.stderr)
        return 2
    if reason is not None:
        print(f"wait-ready {args.service}: not ready within {args.timeout:.0f}s: {reason}", file=sys.stderr)
        return 1
    print(f"wait-ready {args.service}: database migrated and topics present", flush=True)
    return 0


def probe(url: str, timeout: float) -> str | None:
    """None when the URL answers 200 within the timeout, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if status == 200 else f"HTTP {status}"


def cmd_probe(args: argparse.Namespace) -> int:
    started = time.monotonic()
    reason = probe(args.url, args.timeout)
    if reason is not None:
        print(f"probe {args.url}: {reason} after {time.monotonic() - started:.1f}s", file=sys.stderr)
        return 1
    return 0


def register(commands: Any) -> None:
    """Adds create-topics, wait-ready and probe to an argparse subparsers object (each sets `func`)."""
    topics = commands.add_parser(
        "create-topics", help="create the Kafka topics (partnerhub.kafka.TOPICS and their .dlq topics) if missing"
    )
    topics.add_argument("--bootstrap-servers", help="default: $KAFKA_BOOTSTRAP_SERVERS")
    topics.add_argument("--replication-factor", type=int, default=1, help="1 for one broker, 3 for a cluster")
    topics.add_argument("--min-insync-replicas", type=int, help="topic min.insync.replicas (e.g. 2 with 3 replicas)")
    topics.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the broker (default 120)")
    topics.add_argument("--dry-run", action="store_true", help="print the equivalent kafka-topics.sh commands")
    topics.set_defaults(func=cmd_create_topics)

    wait = commands.add_parser(
        "wait-ready", help="wait until a service's database is migrated and its topics exist (an init step)"
    )
    wait.add_argument("service", choices=SERVICES)
    wait.add_argument("--timeout", type=float, default=0.0, help="seconds; 0 waits for ever (default)")
    wait.set_defaults(func=cmd_wait_ready)

    check = commands.add_parser("probe", help="exit 0 when the URL answers HTTP 200 (container healthchecks)")
    check.add_argument("url")
    check.add_argument("--timeout", type=float, default=3.0)
    check.set_defaults(func=cmd_probe)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partnerhub.ops", description="Partner Hub operations commands")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
