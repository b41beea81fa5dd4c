"""How soon a consumer killed with SIGKILL consumes again after its restart, per group-membership setting.

    python -m bench.rejoin                       # Tansu started here; or KAFKA_BOOTSTRAP_SERVERS=host:port

For each setting a member process joins a group on a 4-partition topic, is SIGKILLed, and a new member process
with the same settings starts: the figure is the time from that start to its partitions assigned (what a crashed
service waits before its partitions flow again). The settings are the project's own (partnerhub.consumer's
`membership`): aiokafka's defaults, a 6 s session (Apache Kafka's minimum) with a 2 s rebalance, the embedded
mode's (partnerhub.embedded.TANSU_GROUP_ENV), and static membership (PARTNERHUB_KAFKA_INSTANCE_ID).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from partnerhub.config import Settings
from partnerhub.consumer import membership
from partnerhub.embedded import TANSU_GROUP_ENV, TansuBroker

CASES: dict[str, dict[str, str]] = {
    "aiokafka defaults (10 s session, 30 s rebalance)": {},
    "6 s session, 2 s rebalance": {"PARTNERHUB_KAFKA_SESSION_TIMEOUT_MS": "6000",
                                   "PARTNERHUB_KAFKA_REBALANCE_TIMEOUT_MS": "2000"},
    "embedded mode (TANSU_GROUP_ENV)": TANSU_GROUP_ENV,
    "static membership, 6 s session": {"PARTNERHUB_KAFKA_INSTANCE_ID": "bench-1",
                                       "PARTNERHUB_KAFKA_SESSION_TIMEOUT_MS": "6000",
                                       "PARTNERHUB_KAFKA_REBALANCE_TIMEOUT_MS": "2000"},
}
ASSIGNED = "assigned"


async def member(bootstrap: str, topic: str, group: str) -> None:
    """One member: prints when its partitions are assigned, then consumes until killed."""
    settings = Settings()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                **membership(settings, group))
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    print(ASSIGNED, flush=True)
    while True:
        await consumer.getmany(timeout_ms=200)


def start_member(bootstrap: str, topic: str, group: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.rejoin", "--member", bootstrap, topic, group],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def assigned_after(process: subprocess.Popen[str]) -> float:
    started = time.monotonic()
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != ASSIGNED:
        raise RuntimeError(f"the member ended without an assignment (exit {process.poll()})")
    return time.monotonic() - started


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()


def main() -> None:
    if sys.argv[1:2] == ["--member"]:
        asyncio.run(member(*sys.argv[2:5]))
        return
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = TansuBroker()
        bootstrap = broker.start()
    try:
        print(f"broker {bootstrap}; seconds from a restarted member's start to its partitions assigned")
        for name, env in CASES.items():
            topic, group = f"rejoin-{uuid.uuid4().hex[:8]}", f"rejoin-{uuid.uuid4().hex[:8]}"
            asyncio.run(create_topic(bootstrap, topic))
            first = start_member(bootstrap, topic, group, env)
            joined = assigned_after(first)
            time.sleep(2)
            first.send_signal(signal.SIGKILL)
            first.wait()
            again = start_member(bootstrap, topic, group, env)
            try:
                print(f"  {name:52} first join {joined:5.1f} s   after SIGKILL {assigned_after(again):5.1f} s",
                      flush=True)
            finally:
                again.kill()
                again.wait()
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
