"""Registry API models."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from partnerhub.catalog import EventType, by_type
from partnerhub.types import Code, Country, EffectiveFrom, FreeText, Input, Name, UtcDatetime
from services.registry.domain import CertificationState, PartnerType, Status, Tier


class PartnerIn(Input):
    name: Name
    country: Country
    region: Code
    types: list[PartnerType] = Field(min_length=1, json_schema_extra={"uniqueItems": True})
    parent_partner_id: uuid.UUID | None = None

    @field_validator("types")
    @classmethod
    def distinct(cls, value: list[PartnerType]) -> list[PartnerType]:
        if len(set(value)) != len(value):
            raise ValueError("types must not repeat")
        return value


class StatusIn(Input):
    status: Status
    reason: FreeText | None = None


class TierIn(Input):
    tier: Tier
    effective_from: EffectiveFrom


class CertificationIn(Input):
    code: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    issued_at: UtcDatetime
    expires_at: UtcDatetime | None = None


class ParentIn(Input):
    parent_partner_id: uuid.UUID | None = Field(
        description="the distributor (an active partner of type sales), or null for none"
    )
    reason: FreeText | None = None


class Certification(BaseModel):
    code: str
    issued_at: datetime
    expires_at: datetime | None


class Partner(BaseModel):
    id: uuid.UUID
    name: str
    country: str
    region: str
    types: list[PartnerType]
    tier: Tier
    status: Status
    parent_partner_id: uuid.UUID | None
    certifications: list[Certification]
    created_at: datetime
    updated_at: datetime


class CertificationRecord(Certification):
    """A certification with where it stands now: held, scheduled (issued_at ahead), expired or revoked."""

    state: CertificationState
    revoked_at: datetime | None


class TierEntry(BaseModel):
    tier: Tier
    effective_from: datetime
    until: datetime | None = Field(description="when the next entry in effective order takes over (exclusive)")
    recorded_at: datetime


class HistoryEntry(BaseModel):
    change: str
    at: datetime
    actor: str
    detail: dict[str, object]
    event_id: str | None


# --- events on registry.partners (partnerhub.catalog) -----------------------------------------------------
class PartnerEvent(Partner):
    """The partner as it is once the change is made; every partner.* event carries it whole."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StatusChangedData(PartnerEvent):
    from_: Status = Field(alias="from")
    to: Status
    changed_at: datetime
    reason: str | None


class TierChangedData(PartnerEvent):
    from_: Tier = Field(alias="from")
    to: Tier
    effective_from: datetime


class CertificationGrantedData(PartnerEvent):
    certification: Certification


class CertificationRevokedData(PartnerEvent):
    certification: Certification
    revoked_at: datetime


class CertificationExpiredData(PartnerEvent):
    certification: Certification
    expired_at: datetime


class ParentChangedData(PartnerEvent):
    from_: uuid.UUID | None = Field(alias="from")
    to: uuid.UUID | None
    changed_at: datetime
    reason: str | None


def _partner_event(type_: str, data: type[BaseModel], summary: str) -> EventType:
    return EventType("registry.partners", type_, data, summary, "registry", "the partner id", "the partner id")


EVENTS = (
    _partner_event("partner.registered", PartnerEvent, "A partner was registered (pending, registered tier)."),
    _partner_event("partner.status_changed", StatusChangedData, "A partner's status moved; from the moment made."),
    _partner_event("partner.tier_changed", TierChangedData, "A partner's tier changes from effective_from on."),
    _partner_event("partner.certification_granted", CertificationGrantedData, "A certification was granted."),
    _partner_event("partner.certification_revoked", CertificationRevokedData, "A certification was revoked."),
    _partner_event("partner.certification_expired", CertificationExpiredData, "A certification reached its expiry."),
    _partner_event("partner.parent_changed", ParentChangedData, "A reseller's distributor changed."),
)
EVENT_TYPES = by_type(EVENTS)
