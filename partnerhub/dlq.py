"""Dead letters, operated: list what `<topic>.dlq` holds and replay chosen letters to their topic, unchanged.

A letter is the consumed message verbatim (key, value, headers) plus the headers `dlq.reason`, `dlq.topic`,
`dlq.partition` and `dlq.offset`. Replaying sends the key, value and original headers back to the topic, where
the consumers' inboxes absorb what was applied already and a message that is still bad is lettered again with its
reason. Nothing is ever deleted from a dead-letter topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from partnerhub.kafka import dead_letter_topic

DLQ_HEADER_PREFIX = "dlq."
PROGRESS_EVERY = 1000


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def reason(self) -> str:
        return self.header("dlq.reason") or "(no reason recorded)"

    @property
    def event_id(self) -> str | None:
        """The id of the event lettered, when it has one (structured: its `id`; binary: its ce_id header)."""
        binary = self.header("ce_id")
        if binary:
            return binary
        try:
            document = json.loads(self.value or b"")
        except (ValueError, UnicodeDecodeError):
            return None
        found = document.get("id") if isinstance(document, dict) else None
        return found if isinstance(found, str) else None

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX)]

    def line(self) -> str:
        at = datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        key = self.key.decode(errors="replace") if self.key is not None else "-"
        return f"{self.partition}:{self.offset}\t{key}\t{self.event_id or '-'}\t{at}\t{self.reason}"


async def read_letters(bootstrap_servers: str, topic: str) -> list[Letter]:
    """Every letter now on `<topic>.dlq`, from the beginning, without joining a group (nothing is committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        name = dead_letter_topic(topic)
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            await consumer.client.force_metadata_update()
            partitions = consumer.partitions_for_topic(name)
        if not partitions:
            raise LookupError(f"there is no topic {name}")
        assigned = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        letters: list[Letter] = []
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*assigned, timeout_ms=1000)
            for tp, records in batches.items():
                letters += [Letter(tp.partition, r.offset, r.key, r.value, tuple(r.headers), r.timestamp)
                            for r in records if r.offset < ends[tp]]
        return sorted(letters, key=lambda letter: (letter.partition, letter.offset))
    finally:
        await consumer.stop()


async def replay(bootstrap_servers: str, topic: str, letters: Sequence[Letter], idempotence: bool,
                 progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Sends each letter's key, value and original headers to `topic`, in order, waiting for every
    acknowledgement; returns how many went."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=idempotence,
                                client_id="partnerhub-dlq")
    await producer.start()
    try:
        sent = 0
        pending = []
        for letter in letters:
            pending.append(await producer.send(topic, letter.value, key=letter.key, headers=letter.original_headers))
            sent += 1
            if sent % PROGRESS_EVERY == 0:
                await asyncio.gather(*pending)
                pending.clear()
                progress(sent, len(letters))
        await asyncio.gather(*pending)
        progress(sent, len(letters))
        return sent
    finally:
        await producer.stop()


def chosen(letters: Sequence[Letter], offsets: Sequence[str] | None) -> list[Letter]:
    """The letters named by `--offset` (OFFSET, or PARTITION:OFFSET), all when none is named."""
    if not offsets:
        return list(letters)
    wanted: set[tuple[int | None, int]] = set()
    for raw in offsets:
        partition, _, offset = raw.rpartition(":")
        try:
            wanted.add((int(partition) if partition else None, int(offset)))
        except ValueError as exc:
            raise ValueError(f"--offset {raw!r}: an offset is OFFSET or PARTITION:OFFSET, e.g. 12 or 0:12") from exc
    found = [letter for letter in letters
             if (letter.partition, letter.offset) in wanted or (None, letter.offset) in wanted]
    missing = {w for w in wanted
               if not any((f.partition, f.offset) == w or (w[0] is None and f.offset == w[1]) for f in found)}
    if missing:
        names = ", ".join(f"{p}:{o}" if p is not None else str(o) for p, o in sorted(missing, key=str))
        raise ValueError(f"no dead letter at {names}")
    return found


def cmd_dlq(args: argparse.Namespace, bootstrap_servers: str, idempotence: bool) -> int:
    try:
        letters = asyncio.run(read_letters(bootstrap_servers, args.topic))
        if args.action == "list":
            print("position\tkey\tevent id\tlettered at\treason")
            for letter in letters:
                print(letter.line())
            print(f"{len(letters)} dead letter(s) on {dead_letter_topic(args.topic)}", file=sys.stderr)
            return 0
        selected = chosen(letters, args.offset)
    except (LookupError, ValueError) as exc:
        print(f"partnerhub dlq: {exc}", file=sys.stderr)
        return 2

    def report(done: int, total: int) -> None:
        print(f"replayed {done:,} of {total:,} to {args.topic}", file=sys.stderr, flush=True)

    sent = asyncio.run(replay(bootstrap_servers, args.topic, selected, idempotence, report))
    print(f"{sent} dead letter(s) replayed to {args.topic}; {dead_letter_topic(args.topic)} keeps them all")
    return 0
