"""Consumer runner: batches from Kafka, one transaction per event with its inbox row, then the offset."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError

from partnerhub import tracing
from partnerhub.config import Settings
from partnerhub.db import Database, Transaction, is_transient, lost_race, write_letter
from partnerhub.events import CloudEvent, EnvelopeError, parse_message
from partnerhub.kafka import bootstrap, dead_letter_topic
from partnerhub.logs import set_traceparent, trace_id
from partnerhub.metrics import CONSUMER_LAG, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED

log = logging.getLogger(__name__)

Handler = Callable[[Transaction, CloudEvent], Awaitable[None]]
# Takes a run of consecutive events of one type at once (set-based); same contract as a Handler per event.
BatchHandler = Callable[[Transaction, list[CloudEvent]], Awaitable[None]]
# Takes every event of a partition's batch its subscription handles, in order, at once, so it can lock and load
# for all of them together; returns the events it refuses (id -> reason), dead-lettered once the rest commits.
TopicHandler = Callable[[Transaction, list[CloudEvent]], Awaitable[Mapping[str, str]]]
# A handler failing for reasons other than the database being away is retried this often, then dead-lettered.
MAX_HANDLER_ATTEMPTS = 3



def membership(settings: Settings, group_id: str) -> dict[str, Any]:
    """The consumer's group membership settings (see Settings.kafka_instance_id)."""
    session = settings.kafka_session_timeout_ms
    options: dict[str, Any] = {
        "session_timeout_ms": session,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms or max(session // 3, 100),
        "rebalance_timeout_ms": settings.kafka_rebalance_timeout_ms,
    }
    if settings.kafka_instance_id:
        options["group_instance_id"] = f"{settings.kafka_instance_id}.{group_id}"
    return options

def _attributes(message: ConsumerRecord, event: CloudEvent) -> dict[str, Any]:
    return {"messaging.system": "kafka", "messaging.destination.name": message.topic,
            "messaging.kafka.destination.partition": message.partition, "messaging.kafka.message.offset":
            message.offset, "cloudevents.event_id": event.id, "cloudevents.event_type": event.type}


def _log_applied(message: ConsumerRecord, event: CloudEvent) -> None:
    """One line per applied event, under its trace id (the logs' trace_id)."""
    log.info("event applied", extra={"fields": {"topic": message.topic, "partition": message.partition,
                                               "offset": message.offset, "event_id": event.id,
                                               "event_type": event.type}})


def _log_run(topic: str, events: list[CloudEvent]) -> None:
    """One line per run of events applied together, naming each event and the traces they belong to: a trace id
    found in `trace_ids` has an event in this run (a line per event would cost more than applying a sale)."""
    if not log.isEnabledFor(logging.INFO):
        return
    log.info("events applied", extra={"fields": {
        "topic": topic, "count": len(events), "event_ids": [e.id for e in events],
        "event_types": sorted({e.type for e in events}),
        "trace_ids": sorted({trace for e in events if (trace := trace_id(e.traceparent))})}})


class Rejected(Exception):
    """The event is well-formed but cannot be applied (e.g. a conflicting sale): dead-letter it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Subscription:
    topic: str
    handlers: dict[str, Handler]
    batch_handlers: dict[str, BatchHandler] = field(default_factory=dict)
    batch: TopicHandler | None = None
    # False where the handlers' own state makes a redelivery a no-op (a sale is unique by its sale_id), so the
    # events need no inbox row of their own.
    inbox: bool = True
    # True where batches of different partitions may be applied in concurrent transactions (the handlers lock
    # what they share): while one batch's writes run in the database, the next one is fetched and computed.
    parallel: bool = False


def validation_reason(exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'data'}: {err['msg']}" for err in exc.errors()
    )
    return f"the event data is invalid: {problems}"


class ConsumerRunner:
    def __init__(
        self,
        service: str,
        name: str,
        db: Database,
        settings: Settings,
        subscriptions: list[Subscription],
    ) -> None:
        self.service = service
        self.group_id = f"{service}.{name}"
        self.db = db
        self.settings = settings
        self.handlers = {sub.topic: sub.handlers for sub in subscriptions}
        self.batch_handlers = {sub.topic: sub.batch_handlers for sub in subscriptions}
        self.topic_handlers = {sub.topic: sub.batch for sub in subscriptions if sub.batch is not None}
        self.inbox = {sub.topic: sub.inbox for sub in subscriptions}
        # Batches in flight at once, each over partitions no other holds, so every partition keeps its order.
        self.concurrency = settings.consumer_concurrency if all(sub.parallel for sub in subscriptions) else 1
        self.consumer: AIOKafkaConsumer | None = None
        self._consuming = False
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.created = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()

    def consuming(self) -> bool:
        """The consumer joined its group and knows its position on every partition it was given (none at all,
        where the group has more members than partitions). Once so, it stays so until the consumer is replaced
        (the broker was lost): a later rebalance, a replica joining, must not take every replica out of service
        at once."""
        if not self._consuming and self.consumer is not None:
            self._consuming = _positioned(self.consumer)
        return self._consuming

    async def lag(self) -> int | None:
        """Messages behind the partition ends, or None before the group is joined and fetched."""
        consumer = self.consumer
        if consumer is None:
            return None
        assignment = consumer.assignment()
        if not assignment:
            return None
        total = 0
        for tp in assignment:
            highwater = consumer.highwater(tp)
            if highwater is None:
                return None
            total += max(highwater - await consumer.position(tp), 0)
        return total

    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                *self.handlers,
                bootstrap_servers=bootstrap(self.settings),
                group_id=self.group_id,
                client_id=f"{self.settings.kafka_client_id}-{self.group_id}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.settings.consumer_batch_size,
                fetch_max_wait_ms=self.settings.consumer_fetch_wait_ms,
                **membership(self.settings, self.group_id),
            )
            try:
                self._consuming = False
                await consumer.start()
                self.consumer = consumer
                self.started.set()
                backoff = 0.5
                if self.concurrency > 1:
                    await self._consume_concurrently(consumer)
                while not self._stopping.is_set():
                    batches = await consumer.getmany(timeout_ms=200, max_records=self.settings.consumer_batch_size)
                    await self._process_fetched(consumer, batches)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("consumer lost the broker; reconnecting", extra={"fields": {"error": repr(exc)}})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                # Nothing one message does may end the consumer: its offset is not committed, so it comes
                # back after the pause and meets the same per-message handling (retries, then the DLQ).
                log.exception("consumer failed on a batch; resuming from the last committed offset",
                              extra={"fields": {"error": repr(exc)}})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _process_fetched(
        self, consumer: AIOKafkaConsumer, batches: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """Applies what one fetch brought and commits its offsets."""
        if self.topic_handlers and len(batches) > 1:
            # A topic handler takes everything fetched in one transaction, whatever the partition (each
            # partition's messages stay in their order); one commit covers them all.
            await self.process_batch([m for messages in batches.values() for m in messages])
            await self._commit(consumer, {tp: ms[-1].offset + 1 for tp, ms in batches.items()})
        else:
            for tp, messages in batches.items():
                await self.process_batch(messages)
                await self._commit(consumer, {tp: messages[-1].offset + 1})
        await self._report_lag()

    async def _consume_concurrently(self, consumer: AIOKafkaConsumer) -> None:
        """Keeps up to `concurrency` fetches in flight, each over partitions none of the others holds: one
        transaction's Python work runs while another's statements run in the database. Returns when stopping;
        raises the first failure once every batch in flight has settled (their offsets stay uncommitted and
        come back on the restart)."""
        in_flight: dict[asyncio.Task[None], set[TopicPartition]] = {}
        limit = self.settings.consumer_batch_size
        try:
            while not self._stopping.is_set():
                if not in_flight:
                    batches = await consumer.getmany(timeout_ms=200, max_records=limit)
                else:
                    held = set().union(*in_flight.values())
                    free = [tp for tp in consumer.assignment() if tp not in held]
                    batches = {}
                    if free and len(in_flight) < self.concurrency:
                        # A short wait while batches are in flight: one that finishes frees its partitions.
                        batches = await consumer.getmany(*free, timeout_ms=10, max_records=limit)
                    if not batches:
                        done, _ = await asyncio.wait(
                            in_flight, return_when=asyncio.FIRST_COMPLETED,
                            timeout=0 if free and len(in_flight) < self.concurrency else None)
                        for task in done:
                            del in_flight[task]
                            task.result()
                if batches:
                    in_flight[asyncio.create_task(self._process_fetched(consumer, batches))] = set(batches)
        finally:
            if in_flight:
                await asyncio.wait(in_flight)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved to another member in a rebalance; it will redeliver, the inbox absorbs it.
            log.info("offset commit skipped after a rebalance", extra={"fields": {"error": repr(exc)}})

    async def _report_lag(self) -> None:
        lag = await self.lag()
        if lag is not None:
            for topic in self.handlers:
                CONSUMER_LAG.labels(self.service, topic).set(lag)

    async def process_batch(self, messages: list[ConsumerRecord]) -> None:
        """One transaction for a partition's batch; on any failure, again one message at a time.

        The fallback isolates a poison message (dead-lettered alone) and retries the rest.
        """
        if len(messages) > 1:
            try:
                applied = await self._apply_batch(messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("batch rolled back; applying its events one by one",
                         extra={"fields": {"error": repr(exc), "size": len(messages)}})
            else:
                counts = collections.Counter((message.topic, outcome) for message, outcome in applied)
                for (topic, outcome), count in counts.items():
                    EVENTS_CONSUMED.labels(self.service, topic, outcome).inc(count)
                return
        for message in messages:
            await self.process(message)

    async def _apply_batch(self, messages: list[ConsumerRecord]) -> list[tuple[ConsumerRecord, str]]:
        parsed = [(message, parse_message(message.value, message.headers)) for message in messages]
        handled = [(m, e) for m, e in parsed if e.type in self.handlers.get(m.topic, {})]
        outcomes = {id(m): "ignored" for m, _ in parsed}
        topic_handler = self.topic_handlers.get(messages[0].topic)
        if topic_handler is not None:
            return await self._apply_topic_batch(topic_handler, parsed, handled, outcomes)
        try:
            async with self.db.transaction() as tx:
                fresh = await self._record_many_in_inbox(tx, handled)
                run: list[CloudEvent] = []
                run_key: tuple[str, str] | None = None
                for message, event in handled:
                    if event.id not in fresh:
                        outcomes[id(message)] = "duplicate"
                        continue
                    fresh.discard(event.id)
                    outcomes[id(message)] = "applied"
                    traceparent = event.traceparent or _header(message, "traceparent")
                    set_traceparent(traceparent)
                    batch_handler = self.batch_handlers.get(message.topic, {}).get(event.type)
                    if run and (batch_handler is None or run_key != (message.topic, event.type)):
                        await self._run_batch(tx, run_key, run)
                        run = []
                    if batch_handler is None:
                        with tracing.span(f"{message.topic} process", self.service, tracing.CONSUMER, traceparent,
                                          _attributes(message, event)):
                            await self.handlers[message.topic][event.type](tx, event)
                            _log_applied(message, event)
                    else:
                        run_key = (message.topic, event.type)
                        run.append(event)
                if run:
                    await self._run_batch(tx, run_key, run)
        finally:
            set_traceparent(None)
        return [(m, outcomes[id(m)]) for m, _ in parsed]

    async def _apply_topic_batch(
        self, handler: TopicHandler, parsed: list[tuple[ConsumerRecord, CloudEvent]],
        handled: list[tuple[ConsumerRecord, CloudEvent]], outcomes: dict[int, str],
    ) -> list[tuple[ConsumerRecord, str]]:
        topic = parsed[0][0].topic
        try:
            async with self.db.transaction() as tx:
                fresh = (await self._record_many_in_inbox(tx, handled) if self.inbox[topic]
                         else {e.id for _, e in handled})
                events: list[CloudEvent] = []
                for message, event in handled:
                    if event.id in fresh:
                        fresh.discard(event.id)
                        events.append(event)
                        outcomes[id(message)] = "applied"
                    else:
                        outcomes[id(message)] = "duplicate"
                set_traceparent(events[0].traceparent if events else None)
                refused: Mapping[str, str] = {}
                if events:
                    with tracing.span(f"{topic} process", self.service, tracing.CONSUMER, events[0].traceparent,
                                      {"messaging.destination.name": topic, "messaging.batch.message_count":
                                       len(events)}, [e.traceparent for e in events]):
                        refused = await handler(tx, events)
                        _log_run(topic, [e for e in events if e.id not in refused])
                # The refused events' letters commit with the rest of the batch, or not at all.
                lettered: list[tuple[ConsumerRecord, str]] = []
                for message, event in handled:
                    if event.id in refused and outcomes[id(message)] == "applied":
                        reason = refused[event.id]
                        if await self._letter(tx, message, reason, event.id):
                            outcomes[id(message)] = "dead_lettered"
                            lettered.append((message, reason))
                        else:
                            outcomes[id(message)] = "duplicate"
            for message, reason in lettered:
                self._lettered(message, reason)
        finally:
            set_traceparent(None)
        return [(m, outcomes[id(m)]) for m, _ in parsed]

    async def _run_batch(self, tx: Transaction, key: tuple[str, str] | None, events: list[CloudEvent]) -> None:
        assert key is not None
        with tracing.span(f"{key[0]} process", self.service, tracing.CONSUMER, events[0].traceparent,
                          {"messaging.destination.name": key[0], "cloudevents.event_type": key[1],
                           "messaging.batch.message_count": len(events)}, [e.traceparent for e in events]):
            await self.batch_handlers[key[0]][key[1]](tx, events)
            _log_run(key[0], events)

    async def _record_many_in_inbox(
        self, tx: Transaction, handled: list[tuple[ConsumerRecord, CloudEvent]]
    ) -> set[str]:
        if not handled:
            return set()
        result = await tx.session.execute(
            sa.text(
                'INSERT INTO inbox (consumer, event_id, topic, partition, "offset", outcome) '
                "SELECT :consumer, e, t, p, o, 'applied' FROM unnest(CAST(:events AS text[]), "
                "CAST(:topics AS text[]), CAST(:partitions AS int[]), CAST(:offsets AS bigint[])) AS u(e, t, p, o) "
                "ON CONFLICT DO NOTHING RETURNING event_id"
            ),
            {
                "consumer": self.group_id,
                "events": [e.id for _, e in handled],
                "topics": [m.topic for m, _ in handled],
                "partitions": [m.partition for m, _ in handled],
                "offsets": [m.offset for m, _ in handled],
            },
        )
        return {row.event_id for row in result}

    async def process(self, message: ConsumerRecord) -> None:
        topic = message.topic
        try:
            event = parse_message(message.value, message.headers)
        except EnvelopeError as exc:
            await self.dead_letter(message, str(exc), None)
            return
        handler = self.handlers.get(topic, {}).get(event.type)
        if handler is None:
            EVENTS_CONSUMED.labels(self.service, topic, "ignored").inc()
            return
        traceparent = event.traceparent or _header(message, "traceparent")
        attempts = 0
        while True:
            attempts += 1
            set_traceparent(traceparent)
            try:
                with tracing.span(f"{topic} process", self.service, tracing.CONSUMER, traceparent,
                                  _attributes(message, event)):
                    applied = await self._apply(message, event, handler)
                    if applied:
                        _log_applied(message, event)
                EVENTS_CONSUMED.labels(self.service, topic, "applied" if applied else "duplicate").inc()
                return
            except Rejected as exc:
                await self.dead_letter(message, exc.reason, event.id)
                return
            except ValidationError as exc:
                await self.dead_letter(message, validation_reason(exc), event.id)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc) or lost_race(exc):
                    log.warning(
                        "transient database failure or a race lost to a concurrent transaction; retrying event",
                        extra={"fields": {"event_id": event.id, "error": repr(exc)}},
                    )
                    await asyncio.sleep(min(0.2 * 2**attempts, 5.0))
                    continue
                log.exception("event handler failed", extra={"fields": {"event_id": event.id, "type": event.type}})
                if attempts >= MAX_HANDLER_ATTEMPTS:
                    await self.dead_letter(message, f"the handler failed: {type(exc).__name__}: {exc}", event.id)
                    return
                await asyncio.sleep(0.2 * attempts)
            finally:
                set_traceparent(None)

    async def _apply(self, message: ConsumerRecord, event: CloudEvent, handler: Handler) -> bool:
        async with self.db.transaction() as tx:
            if self.inbox[message.topic] and not await self._record_in_inbox(tx, message, event.id, "applied"):
                return False
            await handler(tx, event)
        return True

    async def _record_in_inbox(self, tx: Transaction, message: ConsumerRecord, event_id: str, outcome: str) -> bool:
        result = await tx.session.execute(
            sa.text(
                'INSERT INTO inbox (consumer, event_id, topic, partition, "offset", outcome) '
                "VALUES (:consumer, :event_id, :topic, :partition, :offset, :outcome) "
                "ON CONFLICT DO NOTHING RETURNING 1"
            ),
            {
                "consumer": self.group_id,
                "event_id": event_id,
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "outcome": outcome,
            },
        )
        return result.scalar() is not None

    async def dead_letter(self, message: ConsumerRecord, reason: str, event_id: str | None) -> None:
        """Letters the message in a transaction of its own (see `_letter`), then counts and logs it."""
        async with self.db.transaction() as tx:
            lettered = await self._letter(tx, message, reason, event_id)
        if lettered:
            self._lettered(message, reason)

    async def _letter(self, tx: Transaction, message: ConsumerRecord, reason: str, event_id: str | None) -> bool:
        """Sends the message unchanged to `<topic>.dlq` through the outbox, in `tx` with its records: by position
        always (a redelivery after a crash, before the offset was committed, is not lettered again, even a
        message that is not an event at all), and by event id where the topic keeps an inbox (nor is a replay of
        the event). Returns False when the message was lettered or applied before."""
        if (event_id is not None and self.inbox.get(message.topic, True)
                and not await self._record_in_inbox(tx, message, event_id, "dead_lettered")):
            return False
        recorded = await tx.session.execute(
            sa.text(
                'INSERT INTO dead_letters (consumer, topic, partition, "offset", event_id, reason) '
                "VALUES (:consumer, :topic, :partition, :offset, :event_id, :reason) "
                "ON CONFLICT DO NOTHING RETURNING 1"
            ),
            {"consumer": self.group_id, "topic": message.topic, "partition": message.partition,
             "offset": message.offset, "event_id": event_id, "reason": reason},
        )
        if recorded.scalar() is None:
            return False
        headers = [
            *[(k, bytes(v or b"")) for k, v in (message.headers or ()) if not k.startswith("dlq.")],
            ("dlq.reason", reason.encode()),
            ("dlq.topic", message.topic.encode()),
            ("dlq.partition", str(message.partition).encode()),
            ("dlq.offset", str(message.offset).encode()),
        ]
        await write_letter(tx.session, event_id, dead_letter_topic(message.topic), message.key, message.value,
                           headers)
        return True

    def _lettered(self, message: ConsumerRecord, reason: str) -> None:
        EVENTS_DEAD_LETTERED.labels(self.service, message.topic).inc()
        log.warning(
            "message dead-lettered",
            extra={"fields": {"topic": message.topic, "offset": message.offset, "reason": reason}},
        )

def _positioned(consumer: AIOKafkaConsumer) -> bool:
    """An assignment arrived, no rebalance is under way, and every assigned partition has its position (its
    committed offset, or the reset one). aiokafka exposes neither as public API, so this reads its subscription
    state; the pinned version is the one it was written against, and the readiness test covers it."""
    subscription = consumer._subscription.subscription
    if subscription is None or subscription.assignment is None or subscription._reassignment_in_progress:
        return False
    assignment = subscription.assignment
    return all(assignment.state_value(tp).has_valid_position for tp in assignment.tps)


def _header(message: ConsumerRecord, name: str) -> str | None:
    for key, value in message.headers or ():
        if key == name and value is not None:
            return bytes(value).decode(errors="replace")
    return None
