"""docs/asyncapi.yaml (AsyncAPI 3.0) from the event catalogue: the topics, each event type's CloudEvents envelope
and the JSON Schema of its data, generated from the pydantic models the producers validate with."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from partnerhub import SERVICES
from partnerhub.catalog import EventType
from partnerhub.events import STRUCTURED, CloudEvent
from partnerhub.kafka import TOPICS, dead_letter_topic

SCHEMAS = "#/components/schemas/{model}"
DESCRIPTION = """\
Every topic of Partner Hub, each event type on it, and the schema of its data. Every message is a CloudEvents 1.0
event in structured mode: the value is the JSON envelope below and the header `content-type` is
`application/cloudevents+json`. `sales.recorded` also accepts binary mode (the attributes in `ce_*` headers,
the value the data alone). Keys keep one aggregate's events in order on one partition; consumers dedupe by the
event `id` (delivery is at least once). A message a consumer cannot parse or validate goes, unchanged, to
`<topic>.dlq` with the headers `dlq.reason`, `dlq.topic`, `dlq.partition` and `dlq.offset`.

Generated from the code by `partnerhub asyncapi`; a test fails when this document and the models differ."""


def _envelope(event: EventType, data_ref: str) -> dict[str, Any]:
    """The structured-mode CloudEvent carrying this event type's data."""
    return {"allOf": [{"$ref": SCHEMAS.format(model="CloudEvent")}, {
        "type": "object",
        "properties": {"type": {"const": event.type, "type": "string"},
                       "subject": {"type": "string", "description": event.subject},
                       "data": {"$ref": data_ref}}}]}


def _schemas(models: Iterable[type[BaseModel]]) -> tuple[dict[type[BaseModel], str], dict[str, Any]]:
    """Each model's $ref and every schema they need (the CloudEvents envelope too), under components/schemas."""
    unique: list[type[BaseModel]] = [CloudEvent, *dict.fromkeys(models)]
    refs, definitions = models_json_schema([(model, "validation") for model in unique], ref_template=SCHEMAS)
    return {model: refs[(model, "validation")]["$ref"] for model in unique}, definitions.get("$defs", {})


def document(catalog: Sequence[EventType], version: str) -> dict[str, Any]:
    refs, schemas = _schemas(event.data for event in catalog)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, partitions in TOPICS.items():
        events = [event for event in catalog if event.topic == topic]
        if not events:
            continue
        producers = sorted({event.producer for event in events})
        channels[topic] = {
            "address": topic,
            "description": f"{partitions} partitions; published by {', '.join(producers)}.",
            "messages": {event.type: {"$ref": f"#/components/messages/{event.type}"} for event in events},
            "bindings": {"kafka": {"partitions": partitions}},
        }
        inbound = all(event.inbound for event in events)
        operations[f"{'receive' if inbound else 'publish'}-{topic}"] = {
            "action": "receive" if inbound else "send",
            "channel": {"$ref": f"#/channels/{topic}"},
            "summary": (f"Partner Hub takes in {topic} from {', '.join(producers)}" if inbound
                        else f"{', '.join(producers)} publishes {topic}"),
            "messages": [{"$ref": f"#/channels/{topic}/messages/{event.type}"} for event in events],
        }
        for event in events:
            messages[event.type] = {
                "name": event.type,
                "title": event.type,
                "summary": event.summary,
                "contentType": STRUCTURED,
                "headers": {"type": "object", "properties": {"content-type": {"const": STRUCTURED,
                                                                                "type": "string"}}},
                "payload": _envelope(event, refs[event.data]),
                "bindings": {"kafka": {"key": {"type": "string", "description": event.key}}},
            }
        letters = dead_letter_topic(topic)
        channels[letters] = {
            "address": letters,
            "description": f"What consumers of {topic} could not parse, validate or apply, unchanged, with why.",
            "messages": {"dead-letter": {"$ref": "#/components/messages/dead-letter"}},
        }
    messages["dead-letter"] = {
        "name": "dead-letter",
        "title": "A dead letter",
        "summary": "The original message's key and value, unchanged; the headers say why and where it came from.",
        "headers": {"type": "object", "properties": {
            "dlq.reason": {"type": "string", "description": "a sentence"},
            "dlq.topic": {"type": "string"}, "dlq.partition": {"type": "string"},
            "dlq.offset": {"type": "string"}}},
        "payload": {"description": "the original value, whatever it was"},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Partner Hub events", "version": version, "description": DESCRIPTION,
                 "license": {"name": "Apache-2.0"}},
        "defaultContentType": STRUCTURED,
        "servers": {"kafka": {"host": "localhost:9092", "protocol": "kafka",
                              "description": "KAFKA_BOOTSTRAP_SERVERS (the embedded mode prints its broker)"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, so the descriptions read as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def render(catalog: Sequence[EventType], version: str) -> str:
    return yaml.dump(document(catalog, version), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def service_catalog() -> list[EventType]:
    """Every service's EVENTS (in its schemas module), in service order."""
    events: list[EventType] = []
    for service in SERVICES:
        events += getattr(importlib.import_module(f"services.{service}.schemas"), "EVENTS", ())
    return events
