"""Webhooks API models."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from partnerhub.types import CLEAN_PATTERN, Input, Instant, UtcDatetime, no_control_characters
from services.webhooks.domain import ANY_TYPE, EVENT_TYPES, DeliveryStatus, SubscriptionStatus

# Public URLs fit in 2,000 characters (what browsers and most servers take); no control characters.
Url = Annotated[str, Field(min_length=1, max_length=2000, json_schema_extra={"pattern": CLEAN_PATTERN},
                           examples=["https://erp.example.com/hooks/partnerhub"]),
                AfterValidator(no_control_characters)]
def _known_type(value: str) -> str:
    if value != ANY_TYPE and value not in EVENT_TYPES:
        raise ValueError(f"{value!r} is not an event type of the public topics (CONTRACT §2), nor *")
    return value


EventTypeName = Annotated[str, AfterValidator(_known_type),
                          WithJsonSchema({"type": "string", "enum": [ANY_TYPE, *sorted(EVENT_TYPES)],
                                          "examples": ["accrual.adjusted", "*"]})]
EventTypes = Annotated[list[EventTypeName], Field(min_length=1, max_length=50,
                                                  description="event types of CONTRACT §2, or `*` for all")]


class SubscriptionIn(Input):
    url: Url
    event_types: EventTypes
    partner_id: uuid.UUID | None = Field(
        default=None,
        description="the partner whose events it receives; null: every partner's (admin only). A partner token "
                    "may leave it out: its own partner.")


class SubscriptionPatch(Input):
    url: Url | None = None
    event_types: EventTypes | None = None
    status: SubscriptionStatus | None = Field(default=None, description="active or paused (disabled is set by "
                                                                      "the service; active lifts it)")


class Subscription(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    partner_id: uuid.UUID | None
    status: SubscriptionStatus
    created_at: Instant
    updated_at: Instant


class SubscriptionWithSecret(Subscription):
    secret: str = Field(description="`whsec_` + base64 of the key; shown only now")


class NewSecret(BaseModel):
    id: uuid.UUID
    secret: str = Field(description="the new secret (shown only now); the one before keeps signing alongside "
                                    "until previous_secret_expires_at")
    previous_secret_expires_at: Instant | None


class Attempt(BaseModel):
    attempted_at: Instant
    response_status: int | None = Field(description="the receiver's HTTP status, or null when none came")
    error: str | None = Field(description="why the attempt failed, or null when it delivered")
    latency_ms: int


class Delivery(BaseModel):
    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: list[Attempt]
    next_attempt_at: Instant | None
    delivered_at: Instant | None
    created_at: Instant


class ReplayIn(Input):
    since: UtcDatetime = Field(description="every matching event kept from this moment on is delivered again")


class Accepted(BaseModel):
    status: str = "accepted"
    deliveries: int = Field(description="deliveries queued")
