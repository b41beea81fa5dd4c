"""One poison message among good events on every consumed topic: dead-lettered with its reason, the partition flows on.

For each topic a service consumes, good events, then one poison message, then more good events are published under
one key, so on one partition. Every consumer of the topic must apply each good event (its API or its database shows
it), send the poison unchanged to `<topic>.dlq` with a `dlq.reason` naming what is wrong (not a handler's crash),
and apply the good events after it promptly. The hostile-but-parseable values break the contract's input bounds
(§1 v2): timestamps outside [1900-01-01, 2200-01-01), amounts with more than 12 digits before the point, NUL bytes,
strings beyond 500 characters. A consumer dead-letters an event when a field it reads is bad; a field it ignores is
no reason to refuse the event.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.structs import RecordMetadata

from partnerhub.events import OutgoingEvent, dumps
from partnerhub.kafka import dead_letter_topic
from partnerhub.money import round_money
from tests.conftest import Publish, eventually
from tests.funds import support as funds_support
from tests.incentives.support import World, account_data
from tests.registry.support import EventLog, run_sql

Tokens = Callable[..., dict[str, str]]

# The first events of a session also wait for the consumer groups to join.
SETTLED = 60.0
# The good events after a poison: a consumer that retries it forever, or dies on it, misses this.
PROMPTLY = 10.0
# A dead letter is an outbox row committed with the poison's record, before the consumer moves on to the next
# message: once the good events after the poison are applied (or PROMPTLY has passed), the letters are committed
# and the relay publishing them and our reader may lag behind (3 s ran out once in a full run on a loaded machine).
READ_LAG = 20.0

YEAR_1 = "0001-01-01T00:00:00Z"
YEAR_9999 = "9999-12-31T23:59:59Z"
LONG = "x" * 10_000


class Drop:
    """Marks a field the poison leaves out."""


DROP = Drop()
# A path into an event's data: keys of objects, indexes of lists.
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Good:
    event_id: str
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Poison:
    """One bad message: raw bytes, or a well-formed sample of the topic spoilt in its envelope or its data."""

    name: str
    # What dlq.reason must name: the bad fields, or "not JSON".
    names: tuple[str, ...]
    # The consumers that must dead-letter it (empty: every consumer of the topic); the others read none of the
    # bad fields and apply it.
    rejected_by: tuple[str, ...] = ()
    raw: bytes | None = None
    event_type: str | None = None
    # Values may be callables, called for each message, where a value must be fresh (an id).
    data: tuple[tuple[Path, Any], ...] = ()
    envelope: tuple[tuple[str, Any], ...] = ()

    @property
    def breaks_the_envelope(self) -> bool:
        """Such a message is refused before any inbox sees an event id."""
        return self.raw is not None or bool(self.envelope)

    def message(self, stream: Stream) -> bytes:
        if self.raw is not None:
            return self.raw
        event = stream.sample(self.event_type or stream.sample_type)
        for path, value in self.data:
            _replace(event["data"], path, value)
        for name, value in self.envelope:
            _replace(event, (name,), value)
        return dumps(event)


def _replace(document: Any, path: Path, value: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    if isinstance(value, Drop):
        del document[path[-1]]
    else:
        document[path[-1]] = value() if callable(value) else value


class Stream(ABC):
    """Good events about one aggregate on one topic, and how each consumer shows a user that it applied them."""

    topic: ClassVar[str]
    consumers: ClassVar[tuple[str, ...]]
    sample_type: ClassVar[str]

    def __init__(self, clients: dict[str, httpx.AsyncClient], publish: Publish, tokens: Tokens) -> None:
        self.clients = clients
        self.publish = publish
        self.tokens = tokens
        self.key = str(uuid.uuid4())
        self.good: list[Good] = []

    def known_first(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Events on other topics, same key, the consumers need first: (topic, type, data)."""
        return []

    @abstractmethod
    def before(self) -> list[tuple[str, dict[str, Any]]]:
        """The good events published before the poison: (type, data)."""

    @abstractmethod
    def after(self) -> list[tuple[str, dict[str, Any]]]:
        """The good events published after the poison."""

    @abstractmethod
    def sample_data(self, type_: str) -> dict[str, Any]:
        """Data of a well-formed event of that type, for a poison to spoil."""

    @abstractmethod
    async def shown(self, consumer: str) -> list[str]:
        """The good events so far that the consumer's API or database does not show yet."""

    def subject(self, data: dict[str, Any]) -> str | None:
        return None

    def sample(self, type_: str) -> dict[str, Any]:
        data = self.sample_data(type_)
        event = OutgoingEvent(topic=self.topic, type=type_, key=self.key, data=data, subject=self.subject(data))
        return event.envelope("tests")

    async def send(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for type_, data in events:
            event_id = await self.publish(self.topic, type_, self.key, data, subject=self.subject(data))
            self.good.append(Good(event_id, type_, data))

    async def outcomes(self, consumer: str, event_ids: list[str]) -> dict[str, str]:
        """What the consumer recorded for these events: applied or dead_lettered."""
        return await inbox_outcomes(self.clients[consumer], consumer, self.topic, event_ids)

    async def missing(self, consumer: str) -> list[str]:
        outcomes = await self.outcomes(consumer, [g.event_id for g in self.good])
        refused = [
            f"{g.type} {g.event_id} was {outcomes.get(g.event_id, 'not consumed yet')}"
            for g in self.good if outcomes.get(g.event_id) != "applied"
        ]
        return refused or await self.shown(consumer)


async def inbox_outcomes(client: httpx.AsyncClient, consumer: str, topic: str, event_ids: list[str]) -> dict[str, str]:
    """What the consumer's inbox recorded for these events: applied or dead_lettered."""
    rows = await run_sql(
        client,
        "SELECT event_id, outcome FROM inbox WHERE consumer = :group AND event_id = ANY(CAST(:ids AS text[]))",
        group=f"{consumer}.{topic}", ids=event_ids,
    )
    return {row.event_id: row.outcome for row in rows}


async def recalculation_triggers(incentives: httpx.AsyncClient, tokens: Tokens, **scope: str) -> set[str]:
    """The events behind incentives' completed recalculation runs for an account or a partner."""
    response = await incentives.get("/v1/recalculations", params={**scope, "limit": 500}, headers=tokens())
    assert response.status_code == 200, response.text
    return {run["trigger_event_id"] for run in response.json()["items"] if run["status"] == "completed"}


class PartnersStream(Stream):
    """A partner registered, activated, promoted to gold and certified, as the registry publishes it."""

    topic = "registry.partners"
    consumers = ("accounts", "incentives", "funds")
    sample_type = "partner.status_changed"
    CERTIFICATION: ClassVar[dict[str, str]] = {
        "code": "CLOUD-ARCHITECT", "issued_at": "2026-02-10T00:00:00Z", "expires_at": "2027-02-10T00:00:00Z",
    }

    def partner(self, updated_at: str, **fields: Any) -> dict[str, Any]:
        return {
            "id": self.key, "name": "Acme Distribution", "country": "DE", "region": "EMEA", "types": ["sales"],
            "tier": "registered", "status": "active", "parent_partner_id": None, "certifications": [],
            "created_at": "2026-01-10T09:00:00Z", "updated_at": updated_at, **fields,
        }

    def activated(self) -> dict[str, Any]:
        return {
            **self.partner("2026-01-15T09:00:00Z"),
            "from": "pending", "to": "active", "changed_at": "2026-01-15T09:00:00Z", "reason": "onboarded",
        }

    def certified(self) -> dict[str, Any]:
        return {
            **self.partner("2026-02-10T09:00:00Z", tier="gold", certifications=[dict(self.CERTIFICATION)]),
            "certification": dict(self.CERTIFICATION),
        }

    def before(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("partner.registered", self.partner("2026-01-10T09:00:00Z", status="pending")),
            ("partner.status_changed", self.activated()),
        ]

    def after(self) -> list[tuple[str, dict[str, Any]]]:
        promoted = {
            **self.partner("2026-02-01T09:00:00Z", tier="gold"),
            "from": "registered", "to": "gold", "effective_from": "2026-02-01T00:00:00Z",
        }
        return [("partner.tier_changed", promoted), ("partner.certification_granted", self.certified())]

    def sample_data(self, type_: str) -> dict[str, Any]:
        return self.certified() if type_ == "partner.certification_granted" else self.activated()

    async def shown(self, consumer: str) -> list[str]:
        client, last = self.clients[consumer], self.good[-1]
        if consumer == "incentives":
            # Every change recalculates the partner's sales from its effective time (CONTRACT §5).
            triggers = await recalculation_triggers(client, self.tokens, partner_id=self.key)
            return [
                f"no recalculation run for {g.type} {g.event_id}"
                for g in self.good if g.type != "partner.registered" and g.event_id not in triggers
            ]
        # Accounts and funds keep the partner's newest state, to validate owners and requesters.
        if consumer == "accounts":
            rows = await run_sql(client, "SELECT status, source AS cause FROM partners WHERE id = :id",
                                 id=uuid.UUID(self.key))
            wanted = [(last.data["status"], f"event {last.event_id}")]
        else:
            rows = await run_sql(client, "SELECT status, event_id AS cause FROM partners WHERE id = :id",
                                 id=uuid.UUID(self.key))
            wanted = [(last.data["status"], last.event_id)]
        seen = [(row.status, row.cause) for row in rows]
        return [] if seen == wanted else [f"its partner replica holds {seen}, not {wanted} from {last.type}"]


class AccountsStream(Stream):
    """An account created, reclassified, left unowned and reclassified again, as accounts publishes it."""

    topic = "accounts.accounts"
    consumers = ("incentives",)
    sample_type = "account.reclassified"

    def __init__(self, clients: dict[str, httpx.AsyncClient], publish: Publish, tokens: Tokens) -> None:
        super().__init__(clients, publish, tokens)
        self.owner = str(uuid.uuid4())

    def account(self, classification: str, owner: str | None) -> dict[str, Any]:
        return {
            **account_data(self.key, classification, owner),
            "created_at": "2026-01-05T09:00:00Z", "updated_at": "2026-01-05T09:00:00Z",
        }

    def reclassified(self, from_: str, to: str, effective_from: str, owner: str | None) -> dict[str, Any]:
        return {
            **self.account(to, owner),
            "from": from_, "to": to, "effective_from": effective_from, "reason": "co-sell agreed",
        }

    def before(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("account.created", self.account("commercial", self.owner)),
            ("account.reclassified", self.reclassified("commercial", "key", "2026-02-01T00:00:00Z", self.owner)),
        ]

    def after(self) -> list[tuple[str, dict[str, Any]]]:
        released = {
            **self.account("key", None), "from": self.owner, "to": None, "effective_from": "2026-03-01T00:00:00Z",
        }
        return [
            ("account.ownership_changed", released),
            ("account.reclassified", self.reclassified("key", "smb", "2026-04-01T00:00:00Z", None)),
        ]

    def sample_data(self, type_: str) -> dict[str, Any]:
        return self.reclassified("commercial", "key", "2026-02-01T00:00:00Z", self.owner)

    async def shown(self, consumer: str) -> list[str]:
        # A reclassification or an ownership change recalculates the account's sales (CONTRACT §5).
        triggers = await recalculation_triggers(self.clients[consumer], self.tokens, account_id=self.key)
        return [
            f"no recalculation run for {g.type} {g.event_id}"
            for g in self.good if g.type != "account.created" and g.event_id not in triggers
        ]


class SalesStream(Stream):
    """Sales of one account (the key) by a partner of a 5 % base rebate program, as a sales system sends them."""

    topic = "sales.recorded"
    consumers = ("incentives",)
    sample_type = "sale.recorded"
    RATE = Decimal("0.05")

    def __init__(self, clients: dict[str, httpx.AsyncClient], publish: Publish, tokens: Tokens, world: World) -> None:
        super().__init__(clients, publish, tokens)
        self.world = world

    def known_first(self) -> list[tuple[str, str, dict[str, Any]]]:
        # A sale of an account incentives does not know waits unpriced.
        return [("accounts.accounts", "account.created", account_data(self.key, "commercial", self.world.partner_id))]

    def sale(self, amount: str, day: int) -> dict[str, Any]:
        return self.world.sale(f"S-{uuid.uuid4()}", amount, f"2026-03-{day:02d}T10:00:00Z", account_id=self.key)

    def subject(self, data: dict[str, Any]) -> str | None:
        return str(data["sale_id"])

    def before(self) -> list[tuple[str, dict[str, Any]]]:
        return [("sale.recorded", self.sale("1000.00", 5))]

    def after(self) -> list[tuple[str, dict[str, Any]]]:
        return [("sale.recorded", self.sale("2000.00", 6)), ("sale.recorded", self.sale("3000.00", 7))]

    def sample_data(self, type_: str) -> dict[str, Any]:
        return self.sale("100.00", 8)

    async def outcomes(self, consumer: str, event_ids: list[str]) -> dict[str, str]:
        # A sale row is this topic's inbox (unique by sale_id): an event is applied when it recorded a sale, and
        # one that recorded none was refused (its letter is checked on the dead-letter topic).
        rows = await run_sql(self.clients[consumer], "SELECT recorded_event_id FROM sales "
                             "WHERE recorded_event_id = ANY(CAST(:ids AS text[]))", ids=event_ids)
        applied = {row.recorded_event_id for row in rows}
        return {event_id: "applied" if event_id in applied else "dead_lettered" for event_id in event_ids}

    async def shown(self, consumer: str) -> list[str]:
        gaps = []
        for good in self.good:
            sale_id = good.data["sale_id"]
            wanted = [(str(round_money(Decimal(good.data["amount"]) * self.RATE)), "accrued")]
            seen = [(item["amount"], item["status"]) for item in await self.world.accruals(sale_id)]
            if seen != wanted:
                gaps.append(f"sale {sale_id} accrues {seen}, not {wanted}")
        return gaps


class AccrualsStream(Stream):
    """Accruals of one partner's sales (the key), as incentives publishes them, earning a 10 % marketing fund."""

    topic = "incentives.accruals"
    consumers = ("funds",)
    sample_type = "accrual.recorded"
    RATE = Decimal("0.10")

    def __init__(self, clients: dict[str, httpx.AsyncClient], publish: Publish, tokens: Tokens, fund_code: str) -> None:
        super().__init__(clients, publish, tokens)
        self.fund_code = fund_code

    def sale(self, amount: str) -> dict[str, Any]:
        return funds_support.accrual(f"S-{uuid.uuid4()}", self.key, amount)

    def subject(self, data: dict[str, Any]) -> str | None:
        return str(data["sale_id"])

    def before(self) -> list[tuple[str, dict[str, Any]]]:
        return [("accrual.recorded", self.sale("1000.00"))]

    def after(self) -> list[tuple[str, dict[str, Any]]]:
        return [("accrual.recorded", self.sale("2000.00")), ("accrual.recorded", self.sale("3000.00"))]

    def sample_data(self, type_: str) -> dict[str, Any]:
        return self.sale("100.00")

    async def shown(self, consumer: str) -> list[str]:
        entries = await funds_support.ledger(self.clients[consumer], self.tokens, self.key, self.fund_code)
        credits = {entry["sale_id"]: entry["amount"] for entry in entries if entry["kind"] == "credit"}
        gaps = []
        for good in self.good:
            sale_id = good.data["sale_id"]
            wanted = str(round_money(Decimal(good.data["amount"]) * self.RATE))
            if credits.get(sale_id) != wanted:
                gaps.append(f"sale {sale_id} credits {credits.get(sale_id)} to {self.fund_code}, not {wanted}")
        return gaps


STREAMS: tuple[type[Stream], ...] = (PartnersStream, AccountsStream, AccrualsStream, SalesStream)

# Every topic: what is not an event at all, and hostile strings in the envelope, which reach every consumer's inbox.
NOT_JSON = Poison("bytes-not-json", ("not JSON",), raw=b'\xff\xfe{"specversion": "1.0", not JSON at all')
NOT_A_CLOUDEVENT = Poison("json-object-without-id", ("id",), envelope=(("id", DROP),))
LONG_ID = Poison("event-id-of-10000-characters", ("id",), envelope=(("id", LONG),))
NUL_ID = Poison("event-id-with-nul", ("id",), envelope=(("id", lambda: f"poison-\x00-{uuid.uuid4()}"),))


def _sale_id_with_nul() -> str:
    return f"S-{uuid.uuid4()}\x00"


def _at_the_ends_of_time(field: str) -> list[Poison]:
    # 9999 first: a year-1 timestamp has stopped a whole service before, and would hide the verdict on the other.
    return [
        Poison(f"{field}-year-9999", (field,), data=(((field,), YEAR_9999),)),
        Poison(f"{field}-year-1", (field,), data=(((field,), YEAR_1),)),
    ]


# In each topic the cases that have stopped a consumer or a service outright come last, so that where they still
# do, the verdicts on the others stand on their own.
PARTNER_POISON = [
    NOT_JSON,
    NOT_A_CLOUDEVENT,
    Poison("data-of-wrong-types-missing-changed_at", ("id", "status"),
           data=((("id",), 42), (("status",), ["active"]), (("changed_at",), DROP))),
    # Of the partner's strings, accounts reads the name and incentives the certification codes; funds reads neither.
    Poison("name-with-nul", ("name",), ("accounts",), data=((("name",), "Acme\x00Distribution"),)),
    Poison("name-of-10000-characters", ("name",), ("accounts",), data=((("name",), LONG),)),
    Poison("certification-code-with-nul", ("code",), ("incentives",), event_type="partner.certification_granted",
           data=((("certification", "code"), "CLOUD\x00"), (("certifications", 0, "code"), "CLOUD\x00"))),
    Poison("certification-code-of-10000-characters", ("code",), ("incentives",),
           event_type="partner.certification_granted",
           data=((("certification", "code"), LONG), (("certifications", 0, "code"), LONG))),
    LONG_ID,
    *_at_the_ends_of_time("changed_at"),
    NUL_ID,
]
ACCOUNT_POISON = [
    NOT_JSON,
    NOT_A_CLOUDEVENT,
    Poison("data-of-wrong-types-missing-effective_from", ("classification", "effective_from"),
           data=((("classification",), 7), (("to",), None), (("effective_from",), DROP))),
    # The account's strings incentives reads are its classifications.
    Poison("classification-with-nul", ("classification",), data=((("classification",), "key\x00"),)),
    Poison("from-of-10000-characters", ("from",), data=((("from",), LONG),)),
    LONG_ID,
    *_at_the_ends_of_time("effective_from"),
    NUL_ID,
]
ACCRUAL_POISON = [
    NOT_JSON,
    NOT_A_CLOUDEVENT,
    Poison("data-of-wrong-types-missing-booked_at", ("partner_id", "amount", "booked_at"),
           data=((("partner_id",), "nobody"), (("amount",), 100.0), (("eligible",), "perhaps"),
                 (("booked_at",), DROP))),
    Poison("sale_id-with-nul", ("sale_id",), data=((("sale_id",), _sale_id_with_nul),)),
    Poison("sale_id-of-10000-characters", ("sale_id",), data=((("sale_id",), LONG),)),
    Poison("amount-1e27", ("amount",), data=((("amount",), "1e27"),)),
    Poison("amount-99999999999999999.99", ("amount",), data=((("amount",), "99999999999999999.99"),)),
    LONG_ID,
    *_at_the_ends_of_time("booked_at"),
    NUL_ID,
]
SALE_POISON = [
    NOT_JSON,
    NOT_A_CLOUDEVENT,
    Poison("data-of-wrong-types-missing-booked_at", ("partner_id", "amount", "booked_at"),
           data=((("partner_id",), "nobody"), (("amount",), 12.5), (("booked_at",), DROP))),
    Poison("sale_id-with-nul", ("sale_id",), data=((("sale_id",), _sale_id_with_nul),)),
    Poison("sku-of-10000-characters", ("sku",), data=((("sku",), LONG),)),
    Poison("amount-1e27", ("amount",), data=((("amount",), "1e27"),)),
    Poison("amount-99999999999999999.99", ("amount",), data=((("amount",), "99999999999999999.99"),)),
    LONG_ID,
    *_at_the_ends_of_time("booked_at"),
    NUL_ID,
]


def _named(name: str) -> Callable[[Poison], str]:
    return lambda poison: f"{name}:{poison.name}"


def _headers(message: ConsumerRecord) -> dict[str, str]:
    return {key: bytes(value).decode(errors="replace") for key, value in message.headers or ()}


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _names(reason: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", reason) is not None


async def _gaps(stream: Stream, consumer: str) -> list[str]:
    try:
        return await stream.missing(consumer)
    except Exception as exc:
        # An API that fails once a poison got in (ASGI hands its exception over) is what a user would notice too.
        return [f"reading what it shows failed: {_short(f'{type(exc).__name__}: {exc}')}"]


async def _not_shown(stream: Stream, within: float) -> list[str]:
    """Waits, for all consumers at once, until each shows every good event so far; what some did not, in words."""

    async def one(consumer: str) -> str | None:
        async def done() -> bool:
            return not await _gaps(stream, consumer)

        try:
            await eventually(done, within=within)
        except AssertionError:
            return f"{consumer} did not apply the good events within {within:.0f}s: {await _gaps(stream, consumer)}"
        return None

    return [gap for gap in await asyncio.gather(*map(one, stream.consumers)) if gap is not None]


async def _dead_letter_problems(
    stream: Stream, poison: Poison, value: bytes, sent: RecordMetadata, dead_letters: EventLog
) -> list[str]:
    rejecters = poison.rejected_by or stream.consumers

    def letters() -> list[ConsumerRecord]:
        return [
            m for m in dead_letters.messages
            if m.topic == dead_letter_topic(stream.topic)
            and (_headers(m).get("dlq.topic"), _headers(m).get("dlq.partition"), _headers(m).get("dlq.offset"))
            == (stream.topic, str(sent.partition), str(sent.offset))
        ]

    problems: list[str] = []
    try:
        await eventually(lambda: len(letters()) >= len(rejecters), within=READ_LAG)
    except AssertionError:
        problems.append(
            f"{len(letters())} dead letter(s) for partition {sent.partition} offset {sent.offset}, not one from "
            f"each of {', '.join(rejecters)}: {[_short(_headers(m).get('dlq.reason', '')) for m in letters()]}"
        )
    found = letters()
    if len(found) > len(rejecters):
        problems.append(f"{len(found)} dead letters, more than the {len(rejecters)} from {', '.join(rejecters)}")
    for letter in found:
        reason = _headers(letter).get("dlq.reason", "")
        if letter.value != value or letter.key != stream.key.encode():
            problems.append("a dead letter is not the message unchanged")
        # The runner's words for a handler that raised: a crash, retried and then given up, is not a reason.
        if "handler failed" in reason:
            problems.append(f"dlq.reason reports a crash, not what is wrong with the event: {_short(reason)!r}")
        unnamed = [name for name in poison.names if not _names(reason, name)]
        if unnamed:
            problems.append(f"dlq.reason does not name {', '.join(unnamed)}: {_short(reason)!r}")
    if not poison.breaks_the_envelope:
        event_id = json.loads(value)["id"]
        for consumer in stream.consumers:
            wanted = "dead_lettered" if consumer in rejecters else "applied"
            outcome = (await stream.outcomes(consumer, [event_id])).get(event_id)
            if outcome != wanted:
                problems.append(f"{consumer} recorded the poison event as {outcome or 'nothing'}, not {wanted}")
    return problems


async def _poison_among_good_events(
    stream: Stream, poison: Poison, producer: AIOKafkaProducer, dead_letters: EventLog
) -> None:
    for topic, type_, data in stream.known_first():
        await stream.publish(topic, type_, stream.key, data)
    await stream.send(stream.before())
    unsettled = await _not_shown(stream, SETTLED)
    assert not unsettled, f"before any poison: {unsettled}"

    value = poison.message(stream)
    sent = await producer.send_and_wait(stream.topic, value, key=stream.key.encode())
    await stream.send(stream.after())

    problems = await _not_shown(stream, PROMPTLY)
    problems += await _dead_letter_problems(stream, poison, value, sent, dead_letters)
    assert not problems, f"{stream.topic}, {poison.name}:\n- " + "\n- ".join(problems)


@pytest.fixture(scope="module")
async def sales_world(incentives: httpx.AsyncClient, publish: Publish, tokens: Tokens) -> World:
    return await World(incentives, publish, tokens).setup()


@pytest.fixture(scope="module")
async def accrual_fund(funds: httpx.AsyncClient, tokens: Tokens) -> str:
    fund = await funds_support.new_fund(funds, tokens, accrual_rate=str(AccrualsStream.RATE))
    return str(fund["code"])


async def test_every_topic_a_service_consumes_has_its_poison_cases(
    registry: httpx.AsyncClient, accounts: httpx.AsyncClient, incentives: httpx.AsyncClient,
    funds: httpx.AsyncClient,
) -> None:
    consumed = {
        (runner.service, topic)
        for client in (registry, accounts, incentives, funds)
        for runner in client.app.state.ctx.consumers  # type: ignore[attr-defined]
        for topic in runner.handlers
    }
    covered = {(consumer, stream.topic) for stream in STREAMS for consumer in stream.consumers}
    assert consumed == covered


# Sales first, partners last: a poison that kills a consumer would leave the streams after it unknown partners or
# accounts (sales need both), so the tests that can kill the consumers other streams rely on run after them.
@pytest.mark.parametrize("poison", SALE_POISON, ids=_named("sales.recorded"))
async def test_sale_poison_is_dead_lettered_and_the_partition_flows_on(
    poison: Poison, incentives: httpx.AsyncClient, sales_world: World, publish: Publish, tokens: Tokens,
    raw_producer: AIOKafkaProducer, dead_letters: EventLog,
) -> None:
    stream = SalesStream({"incentives": incentives}, publish, tokens, sales_world)
    await _poison_among_good_events(stream, poison, raw_producer, dead_letters)


@pytest.mark.parametrize("poison", ACCRUAL_POISON, ids=_named("incentives.accruals"))
async def test_accrual_poison_is_dead_lettered_and_the_partition_flows_on(
    poison: Poison, funds: httpx.AsyncClient, accrual_fund: str, publish: Publish, tokens: Tokens,
    raw_producer: AIOKafkaProducer, dead_letters: EventLog,
) -> None:
    stream = AccrualsStream({"funds": funds}, publish, tokens, accrual_fund)
    await _poison_among_good_events(stream, poison, raw_producer, dead_letters)


@pytest.mark.parametrize("poison", ACCOUNT_POISON, ids=_named("accounts.accounts"))
async def test_account_poison_is_dead_lettered_and_the_partition_flows_on(
    poison: Poison, incentives: httpx.AsyncClient, publish: Publish, tokens: Tokens,
    raw_producer: AIOKafkaProducer, dead_letters: EventLog,
) -> None:
    stream = AccountsStream({"incentives": incentives}, publish, tokens)
    await _poison_among_good_events(stream, poison, raw_producer, dead_letters)


@pytest.mark.parametrize("poison", PARTNER_POISON, ids=_named("registry.partners"))
async def test_partner_poison_is_dead_lettered_and_the_partition_flows_on(
    poison: Poison, accounts: httpx.AsyncClient, incentives: httpx.AsyncClient, funds: httpx.AsyncClient,
    publish: Publish, tokens: Tokens, raw_producer: AIOKafkaProducer, dead_letters: EventLog,
) -> None:
    clients = {"accounts": accounts, "incentives": incentives, "funds": funds}
    await _poison_among_good_events(PartnersStream(clients, publish, tokens), poison, raw_producer, dead_letters)
