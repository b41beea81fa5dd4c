"""The event catalogue: each event type a service publishes (or takes in from outside), with the pydantic model of
its `data`. The producers validate what they publish with these models, and docs/asyncapi.yaml is generated
from them (partnerhub.asyncapi), so the document cannot drift from what goes on the wire."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from partnerhub.events import OutgoingEvent


class EventData(BaseModel):
    """The data of a published event: every field the producer sends is declared (an undeclared one is refused,
    so a field cannot be added on the wire and missed in the document)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@dataclass(frozen=True)
class EventType:
    topic: str
    type: str
    data: builtins.type[BaseModel]
    summary: str
    producer: str  # the service that publishes it; for an inbound event, who sends it
    key: str  # what the Kafka key is
    subject: str  # what the CloudEvents subject is
    inbound: bool = False  # sent to Partner Hub by other systems, not published by it

    def checked(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The data unchanged, once it validates against the model (a producer's bug raises here, not in a
        consumer)."""
        self.data.model_validate(data)
        return dict(data)


def by_type(events: tuple[EventType, ...]) -> dict[str, EventType]:
    return {event.type: event for event in events}


def checked(event: OutgoingEvent, types: Mapping[str, EventType]) -> OutgoingEvent:
    """The event, once its data validates against its type's model."""
    types[event.type].checked(event.data)
    return event
