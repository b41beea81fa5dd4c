"""Registry API models."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from partnerhub.types import Country, UtcDatetime
from services.registry.domain import CertificationState, PartnerType, Status, Tier


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartnerIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    country: Country
    region: str = Field(min_length=1, max_length=100)
    types: list[PartnerType] = Field(min_length=1)
    parent_partner_id: uuid.UUID | None = None

    @field_validator("types")
    @classmethod
    def distinct(cls, value: list[PartnerType]) -> list[PartnerType]:
        if len(set(value)) != len(value):
            raise ValueError("types must not repeat")
        return value


class StatusIn(Strict):
    status: Status
    reason: str | None = Field(default=None, max_length=1000)


class TierIn(Strict):
    tier: Tier
    effective_from: UtcDatetime


class CertificationIn(Strict):
    code: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    issued_at: UtcDatetime
    expires_at: UtcDatetime | None = None


class ParentIn(Strict):
    parent_partner_id: uuid.UUID | None = Field(
        description="the distributor (an active partner of type sales), or null for none"
    )
    reason: str | None = Field(default=None, max_length=1000)


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
