"""`partnerhub dlq list|replay` against a real broker: letters listed with their reasons, chosen ones replayed
unchanged (without their dlq.* headers), and the dead-letter topic left as it was."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import uuid

from aiokafka import AIOKafkaProducer

from partnerhub.dlq import Letter, chosen, read_letters
from partnerhub.kafka import ensure_topics
from tests.conftest import Infrastructure
from tests.e2e.conftest import ROOT, Kafka


async def _letter(producer: AIOKafkaProducer, topic: str, key: bytes, value: bytes, reason: str,
                  extra: list[tuple[str, bytes]] | None = None) -> None:
    headers = [*(extra or []), ("dlq.reason", reason.encode()), ("dlq.topic", topic.encode()),
               ("dlq.partition", b"0"), ("dlq.offset", b"7")]
    await producer.send_and_wait(f"{topic}.dlq", value, key=key, headers=headers)


def _cli(infrastructure: Infrastructure, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partnerhub.cli", "dlq", *args,
         "--bootstrap-servers", infrastructure.bootstrap_servers],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


async def test_letters_are_listed_and_the_chosen_ones_replayed_unchanged(infrastructure: Infrastructure) -> None:
    topic = f"dlqtest-{secrets.token_hex(4)}"
    await ensure_topics(infrastructure.bootstrap_servers, {topic: 1, f"{topic}.dlq": 1})
    event_id = str(uuid.uuid4())
    good = json.dumps({"specversion": "1.0", "id": event_id, "source": "crm", "type": "sale.recorded",
                       "data": {"sale_id": "S-1"}}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.bootstrap_servers, enable_idempotence=False)
    await producer.start()
    try:
        await _letter(producer, topic, b"acc-1", b"\xffgarbage", "the message is not JSON")
        await _letter(producer, topic, b"acc-2", good, "handler failed after 5 attempts: timeout",
                      [("content-type", b"application/cloudevents+json")])
    finally:
        await producer.stop()

    listed = await asyncio.to_thread(_cli, infrastructure, "list", topic)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.strip().splitlines()
    assert rows[0].split("\t") == ["position", "key", "event id", "lettered at", "reason"]
    assert [r.split("\t")[:3] for r in rows[1:]] == [["0:0", "acc-1", "-"], ["0:1", "acc-2", event_id]]
    assert rows[1].endswith("the message is not JSON") and "2 dead letter(s)" in listed.stderr

    missing = await asyncio.to_thread(_cli, infrastructure, "replay", topic, "--offset", "5", "0:0")
    assert missing.returncode == 2 and "no dead letter at 5" in missing.stderr
    replayed = await asyncio.to_thread(_cli, infrastructure, "replay", topic, "--offset", "0:1")
    assert replayed.returncode == 0, replayed.stderr
    assert "1 dead letter(s) replayed" in replayed.stdout and "replayed 1 of 1" in replayed.stderr

    async with Kafka(infrastructure.bootstrap_servers) as kafka:
        delivered = await kafka.read_all(topic)
    assert [(m.key, m.value, list(m.headers)) for m in delivered] == [
        (b"acc-2", good, [("content-type", b"application/cloudevents+json")])], "unchanged, without dlq.* headers"
    assert len(await read_letters(infrastructure.bootstrap_servers, topic)) == 2, "letters are never deleted"


def test_offsets_name_letters_by_offset_or_partition_and_offset() -> None:
    letters = [Letter(p, o, None, None, (), 0) for p, o in ((0, 3), (1, 3), (1, 4))]
    assert chosen(letters, None) == letters
    assert [(c.partition, c.offset) for c in chosen(letters, ["3"])] == [(0, 3), (1, 3)]
    assert [(c.partition, c.offset) for c in chosen(letters, ["1:4"])] == [(1, 4)]
    for bad, why in ((["x"], "OFFSET or PARTITION:OFFSET"), (["2:3"], "no dead letter at 2:3")):
        try:
            chosen(letters, bad)
        except ValueError as exc:
            assert why in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
