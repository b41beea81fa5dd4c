"""Kafka clients: producer settings, the topic catalogue and topic creation."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer

from partnerhub.config import Settings

log = logging.getLogger(__name__)

# How long the producer waits to fill a batch; the relay benchmark's raw limit uses the same.
PRODUCER_LINGER_MS = 5
# Bytes per partition batch (aiokafka's default is 16 KiB). The outbox relay hands the producer whole batches of
# its backlog, one per partition at a time, so a batch must hold hundreds of events for a recalculation to flow;
# half of a broker's default 1 MiB record-batch limit.
PRODUCER_MAX_BATCH_BYTES = 512 * 1024

# Partition counts chosen for scale: consumers scale by group members up to these.
TOPICS: dict[str, int] = {
    "registry.partners": 6,
    "accounts.accounts": 6,
    "sales.recorded": 12,
    "incentives.accruals": 12,
    "incentives.statements": 6,
    "funds.funds": 6,
}


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> dict[str, int]:
    topics = dict(TOPICS)
    topics.update({dead_letter_topic(name): 1 for name in TOPICS})
    return topics


def bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set")
    return settings.kafka_bootstrap_servers


def make_producer(settings: Settings) -> AIOKafkaProducer:
    # acks=all always; idempotence on unless the broker cannot do it (Tansu).
    # aiokafka keeps at most one in-flight batch per partition, so a key's order survives retries.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap(settings),
        client_id=f"{settings.kafka_client_id}-producer",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
    )


async def ensure_topics(bootstrap_servers: str, topics: dict[str, int], wait_seconds: float = 30.0) -> None:
    """Creates the topics that do not exist yet (one replica each: a single broker); waits for the broker to
    answer and raises when it refuses a topic."""
    from partnerhub.ops import TopicPlan, create_topics

    await create_topics(
        bootstrap_servers, [TopicPlan(name, parts, 1, {}) for name, parts in topics.items()], wait_seconds
    )
