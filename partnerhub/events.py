"""CloudEvents 1.0 structured-JSON envelope for every Kafka message."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from partnerhub.timeutil import isoformat, utcnow
from partnerhub.types import UtcDatetime, no_control_characters


class EnvelopeError(ValueError):
    """A message that is not a valid CloudEvent: it goes to the dead-letter topic."""


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = Field(pattern=r"^1\.0$")
    # Attributes go into inbox rows and logs: bounded, and never a NUL or another control character.
    id: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(no_control_characters)]
    source: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(no_control_characters)]
    type: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(no_control_characters)]
    subject: Annotated[str, Field(max_length=500), AfterValidator(no_control_characters)] | None = None
    time: UtcDatetime | None = None
    datacontenttype: str | None = "application/json"
    data: dict[str, Any]
    traceparent: str | None = None


# A generator of its own, seeded from the OS, and again in every forked child: nothing that seeds the module's
# shared generator (test tools do) can make two processes, or two runs, draw the same ids.
_ids = random.Random()


class _EventIds:
    """UUID-shaped event ids (version 4 and variant bits set): 74 random bits drawn once, then a 48-bit counter
    from a random start. Unique like uuid4() within a process and, with overwhelming odds, across processes,
    at a fraction of the cost of formatting 128 fresh random bits per event (a recalculation emits 100,000)."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        digits = f"{_ids.getrandbits(80):020x}"
        variant = "89ab"[int(digits[16], 16) & 3]
        self.prefix = f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-"
        self.counter = _ids.getrandbits(47)

    def next(self) -> str:
        self.counter += 1
        if self.counter >= 1 << 48:
            self.reseed()
        return f"{self.prefix}{self.counter:012x}"


def _reseed_after_fork() -> None:
    _ids.seed()
    _event_ids.reseed()


_event_ids = _EventIds()
os.register_at_fork(after_in_child=_reseed_after_fork)


def new_event_id() -> str:
    """A fresh, unique event id in the form of a version 4 UUID."""
    return _event_ids.next()


@lru_cache(maxsize=64)
def _time_text(value: datetime) -> str:
    """Events recorded together share their time: its text is made once."""
    return isoformat(value)


@dataclass(slots=True)
class OutgoingEvent:
    """An event a use case records; the outbox relay publishes it after commit."""

    topic: str
    type: str
    key: str
    data: dict[str, Any]
    subject: str | None = None
    id: str = field(default_factory=new_event_id)
    time: datetime = field(default_factory=utcnow)

    def envelope(self, source: str, traceparent: str | None = None) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": source,
            "type": self.type,
            "subject": self.subject or self.key,
            "time": _time_text(self.time),
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if traceparent:
            envelope["traceparent"] = traceparent
        return envelope


# The CloudEvents Kafka binding: structured mode carries this content type; binary mode carries the attributes
# as ce_* headers and the data alone as the value.
STRUCTURED = "application/cloudevents+json"
STRUCTURED_HEADERS: list[tuple[str, bytes]] = [("content-type", STRUCTURED.encode())]
_BINARY_MARK = "ce_specversion"


def parse_message(value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None) -> CloudEvent:
    """A consumed Kafka message as a CloudEvent, in either mode of the Kafka binding: binary (a ce_specversion
    header; the attributes in ce_* headers, the value is the data) or structured (the value is the event)."""
    if headers:
        for name, _ in headers:
            if name == _BINARY_MARK:
                return parse_binary(value, headers)
    return parse_event(value)


def parse_binary(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> CloudEvent:
    attributes: dict[str, Any] = {}
    for name, raw in headers:
        if name.startswith("ce_") or name == "content-type":
            try:
                text = (raw or b"").decode()
            except UnicodeDecodeError as exc:
                raise EnvelopeError(f"the message's {name} header is not UTF-8 text") from exc
            attributes["datacontenttype" if name == "content-type" else name[3:]] = text
    content_type = str(attributes.get("datacontenttype") or "application/json")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise EnvelopeError(f"a binary-mode event must carry content-type application/json, not {content_type!r}")
    if value is None:
        raise EnvelopeError("the message has no value (a binary-mode event's value is its data)")
    try:
        attributes["data"] = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"the binary-mode event's data is not JSON: {exc}") from exc
    try:
        return CloudEvent.model_validate(attributes)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
                             for err in exc.errors())
        raise EnvelopeError(f"the message is not a CloudEvents 1.0 event in binary mode: {problems}") from exc


def parse_event(raw: bytes | None) -> CloudEvent:
    """The envelope, parsed and validated in one pass (pydantic's JSON parser builds no intermediate dict)."""
    if raw is None:
        raise EnvelopeError("the message has no value")
    try:
        return CloudEvent.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0]["type"] == "json_invalid":
            raise EnvelopeError(f"the message is not JSON: {errors[0]['msg']}") from exc
        if errors[0]["type"] == "model_type" and not errors[0]["loc"]:
            raise EnvelopeError("the message is not a JSON object") from exc
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}" for err in errors
        )
        raise EnvelopeError(f"the message is not a CloudEvents 1.0 event: {problems}") from exc


# Datetimes and Decimal-like values go through str(), as the standard library's default=str would render them.
_DUMP_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_NON_STR_KEYS


def dumps(document: dict[str, Any]) -> bytes:
    """Compact JSON (a C encoder: an event is encoded once per outbox row on the hot path)."""
    return orjson.dumps(document, default=str, option=_DUMP_OPTIONS)
