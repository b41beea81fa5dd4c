"""The relay's publishing rules without a broker: lanes fill batches in id order, one batch per partition is
out at a time, and a failure stops every lane so no later row of a partition overtakes a failed one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from partnerhub.relay import Lane, OutboxRow, Publication, kafka_partition

TOPIC = "incentives.accruals"


@dataclass
class CountedBatch:
    """A batch that holds a fixed number of records, as a byte-limited one holds a fixed size."""

    capacity: int
    records: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    closed: bool = False

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes]]) -> object | None:
        if self.closed or (self.records and len(self.records) >= self.capacity):
            return None
        self.records.append((key, value))
        return len(self.records)

    def close(self) -> None:
        self.closed = True


@dataclass
class Sent:
    tp: TopicPartition
    batch: CountedBatch
    delivery: asyncio.Future[None]


class HeldProducer:
    """Takes batches like AIOKafkaProducer.send_batch and leaves each delivery to the test to settle."""

    def __init__(self, partitions: int, capacity: int) -> None:
        self.partitions = set(range(partitions))
        self.capacity = capacity
        self.sent: list[Sent] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    def create_batch(self) -> CountedBatch:
        return CountedBatch(self.capacity)

    async def send_batch(self, batch: CountedBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        assert batch.closed, "a batch still open would take records from the producer's own send()"
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(TopicPartition(topic, partition), batch, delivery))
        return delivery

    def outstanding(self) -> list[Sent]:
        return [sent for sent in self.sent if not sent.delivery.done()]


def rows(keys: list[str], per_key: int) -> list[OutboxRow]:
    """Rows in id order, the keys interleaved as a recalculation writes them."""
    ids = iter(range(1, len(keys) * per_key + 1))
    return [
        OutboxRow(next(ids), TOPIC, key.encode(), f'{{"key": "{key}", "seq": {seq}}}'.encode())
        for seq in range(per_key)
        for key in keys
    ]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_lane_fills_a_batch_in_id_order_until_it_is_full() -> None:
    lane = Lane(TopicPartition(TOPIC, 0))
    lane.waiting.extend(rows(["a"], 5))
    batch = CountedBatch(capacity=3)
    assert lane.fill(batch) == [1, 2, 3]
    assert [value for _, value in batch.records] == [b'{"key": "a", "seq": 0}', b'{"key": "a", "seq": 1}',
                                                     b'{"key": "a", "seq": 2}']
    assert [row.id for row in lane.waiting] == [4, 5]


def test_an_empty_batch_takes_a_first_row_of_any_size() -> None:
    lane = Lane(TopicPartition(TOPIC, 0))
    lane.waiting.append(OutboxRow(1, TOPIC, b"a", b"x" * 2_000_000))
    assert lane.fill(CountedBatch(capacity=0)) == [1]


def test_keys_land_where_every_kafka_client_puts_them() -> None:
    partitions = list(range(12))
    keys = [f"partner-{n}".encode() for n in range(500)]
    assert all(kafka_partition(key, partitions) == DefaultPartitioner()(key, partitions, partitions) for key in keys)
    assert {kafka_partition(key, partitions) for key in keys} == set(partitions)


async def test_a_partition_has_one_batch_out_at_a_time_and_the_next_follows_its_acknowledgement() -> None:
    producer = HeldProducer(partitions=3, capacity=4)
    publication = Publication(producer, "tests")  # type: ignore[arg-type]
    backlog = rows([f"partner-{n}" for n in range(9)], per_key=6)
    await publication.add(backlog)
    await settle()

    first = producer.outstanding()
    assert len({sent.tp for sent in first}) == len(first), "two batches of one partition out together"
    assert publication.waiting == len(backlog) - sum(len(sent.batch.records) for sent in first)

    acknowledged = first[0]
    acknowledged.delivery.set_result(None)
    await settle()
    taken = await publication.acknowledged()
    assert taken is not None
    ids, messages = taken
    assert len(ids) == messages == len(acknowledged.batch.records)
    following = [sent for sent in producer.outstanding() if sent.tp == acknowledged.tp]
    assert len(following) == 1, "the acknowledged partition sends its next batch at once"

    while producer.outstanding():
        for sent in producer.outstanding():
            sent.delivery.set_result(None)
        await settle()
    await publication.close()
    remaining = await publication.acknowledged()
    assert publication.settled and publication.waiting == 0
    assert sorted(ids + (remaining[0] if remaining else [])) == [row.id for row in backlog]
    for tp in {sent.tp for sent in producer.sent}:
        sent_in_order = [value for sent in producer.sent if sent.tp == tp for _, value in sent.batch.records]
        by_id = [row.payload for row in backlog
                 if kafka_partition(row.key, sorted(producer.partitions)) == tp.partition]
        assert sent_in_order == by_id


async def test_a_failed_batch_stops_every_partition_and_is_left_unacknowledged() -> None:
    producer = HeldProducer(partitions=2, capacity=2)
    publication = Publication(producer, "tests")  # type: ignore[arg-type]
    backlog = rows([f"partner-{n}" for n in range(6)], per_key=4)
    await publication.add(backlog)
    await settle()

    failed, succeeded = producer.outstanding()
    failed.delivery.set_exception(KafkaTimeoutError())
    succeeded.delivery.set_result(None)
    await settle()

    assert isinstance(publication.failure, KafkaTimeoutError)
    assert producer.outstanding() == [], "no further batch after a failure"
    await publication.close()
    acknowledged: list[int] = []
    while (taken := await publication.acknowledged()) is not None:
        acknowledged += taken[0]
    assert publication.settled
    assert sorted(acknowledged) == sorted(ids_of(succeeded, backlog))
    assert not set(acknowledged) & set(ids_of(failed, backlog))


def ids_of(sent: Sent, backlog: list[OutboxRow]) -> list[int]:
    by_payload = {row.payload: row.id for row in backlog}
    return [by_payload[value] for _, value in sent.batch.records if value is not None]


async def test_a_bundle_is_acknowledged_once_every_one_of_its_messages_is() -> None:
    producer = HeldProducer(partitions=3, capacity=2)
    publication = Publication(producer, "tests")  # type: ignore[arg-type]
    keys = [f"partner-{n}" for n in range(7)]
    bundle = (1, TOPIC, b"", b"", None, keys, [f'{{"key": "{key}"}}' for key in keys])
    single = (2, TOPIC, b"partner-0", b'{"single": true}', None, None, None)
    messages = publication.read([bundle, single])
    assert [(row.id, row.key) for row in messages] == [(1, key.encode()) for key in keys] + [(2, b"partner-0")]
    await publication.add(messages)
    await settle()

    marked: list[int] = []
    counted = 0
    while producer.outstanding():
        for sent in producer.outstanding():
            assert 1 not in marked, "the bundle was marked before all its messages were acknowledged"
            sent.delivery.set_result(None)
        await settle()
        taken = await publication.acknowledged()
        assert taken is not None
        marked += taken[0]
        counted += taken[1]
    assert sorted(marked) == [1, 2] and counted == len(keys) + 1
    sent_to_0 = [value for sent in producer.sent if sent.tp.partition == kafka_partition(b"partner-0", [0, 1, 2])
                 for _, value in sent.batch.records]
    assert sent_to_0.index(b'{"key": "partner-0"}') < sent_to_0.index(b'{"single": true}'), "order per key kept"
