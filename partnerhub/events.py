"""CloudEvents 1.0 structured-JSON envelope for every Kafka message."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import datetime
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
os.register_at_fork(after_in_child=_ids.seed)


def new_event_id() -> str:
    """A random (version 4) UUID as text: unique like uuid4(), without a system call per event."""
    digits = f"{_ids.getrandbits(128):032x}"
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


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
            "time": isoformat(self.time),
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if traceparent:
            envelope["traceparent"] = traceparent
        return envelope


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
