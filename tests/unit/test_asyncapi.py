"""docs/asyncapi.yaml is what the event models generate, every reference in it resolves, and what the engine
publishes on its hot path (not checked at runtime) validates against its model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from partnerhub.asyncapi import document, render, service_catalog
from partnerhub.kafka import TOPICS
from partnerhub.openapi import package_version
from services.incentives.domain import Trigger, accrual_event, recalculation_completed
from services.incentives.schemas import EVENT_TYPES
from tests.unit.test_posting import priced, replicas, sale

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_the_document_is_what_the_models_generate() -> None:
    assert DOC.read_text() == render(service_catalog(), package_version()), (
        "docs/asyncapi.yaml differs from the event models: run `partnerhub asyncapi --output docs/asyncapi.yaml`")


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def test_every_reference_resolves_and_every_topic_and_event_type_is_described() -> None:
    doc = yaml.safe_load(DOC.read_text())
    assert doc["asyncapi"] == "3.0.0"
    for ref in _refs(doc):
        _resolve(doc, ref)
    assert set(TOPICS) <= set(doc["channels"])
    types = {event.type for event in service_catalog()}
    assert {"sale.recorded", "accrual.adjusted", "recalculation.completed", "statement.closed", "dispute.resolved",
            "partner.tier_changed", "account.ownership_changed", "fund.claim_paid"} <= types
    assert types <= set(doc["components"]["messages"])
    assert doc["operations"]["receive-sales.recorded"]["action"] == "receive"
    assert doc["operations"]["publish-incentives.accruals"]["action"] == "send"


def test_what_the_engine_publishes_validates_against_the_documented_models() -> None:
    pricing = priced(replicas(), sale())[0]
    at = datetime(2026, 3, 5, tzinfo=UTC)
    recorded = accrual_event(pricing, "accrual.recorded", None, at)
    adjusted = accrual_event(pricing, "accrual.adjusted", "cause-1", at)
    EVENT_TYPES["accrual.recorded"].checked(recorded.data)
    EVENT_TYPES["accrual.adjusted"].checked(adjusted.data)
    with pytest.raises(ValidationError):
        EVENT_TYPES["accrual.adjusted"].checked(recorded.data)  # an adjustment names its cause
    with pytest.raises(ValidationError):
        EVENT_TYPES["accrual.recorded"].checked({**recorded.data, "undocumented": 1})
    run = recalculation_completed(uuid.uuid4(), Trigger("fx_rate.changed", "e-1", fx_pair="THB/USD"), 3, 1,
                                  {"USD": Decimal("3.50")}, at)
    EVENT_TYPES["recalculation.completed"].checked(run.data)


def test_the_document_lists_each_event_under_its_topic() -> None:
    doc = document(service_catalog(), "test")
    for event in service_catalog():
        assert event.type in doc["channels"][event.topic]["messages"], (event.topic, event.type)
