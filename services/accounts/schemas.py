"""Accounts API models, and the partner data read from registry events and the registry's API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from partnerhub.types import Code, Country, EffectiveFrom, FreeText, Input, Name, UtcDatetime, no_control_characters
from services.accounts.domain import Classification, Decision, PartnerStatus, RegistrationStatus

# A name from another service's event: as bounded as one entered here (CONTRACT §1: names up to 500 characters).
ReplicatedName = Annotated[str, Field(max_length=500), AfterValidator(no_control_characters)]


class AccountIn(Input):
    name: Name
    country: Country
    industry: Code
    classification: Classification


class ClassificationIn(Input):
    classification: Classification
    effective_from: EffectiveFrom | None = Field(default=None, description="RFC 3339; defaults to now")
    reason: FreeText | None = None


class OwnerIn(Input):
    partner_id: uuid.UUID | None = Field(description="the new owner, or null to leave the account unowned")
    effective_from: EffectiveFrom | None = Field(default=None, description="RFC 3339; defaults to now")
    reason: FreeText | None = None


class Account(BaseModel):
    id: uuid.UUID
    name: str
    country: str
    industry: str
    classification: Classification
    owner_partner_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class HistoryEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    kind: str = Field(description="classification or ownership")
    value: str | None = Field(description="the classification, or the owner's partner id (null: unowned)")
    from_: str | None = Field(alias="from", description="the value this entry replaced in the timeline")
    to: str | None
    effective_from: datetime
    recorded_at: datetime
    cause: str
    actor: str
    reason: str | None
    event_id: str


class ProspectIn(Input):
    name: Name
    country: Country
    industry: Code


class RegistrationIn(Input):
    """An existing account by id, or a prospect that becomes an unowned commercial account at once."""

    account_id: uuid.UUID | None = None
    prospect: ProspectIn | None = None

    @model_validator(mode="after")
    def one_of(self) -> RegistrationIn:
        if (self.account_id is None) == (self.prospect is None):
            raise ValueError("give either account_id or prospect, not both and not neither")
        return self


class DecisionIn(Input):
    decision: Decision
    reason: FreeText | None = None


class Registration(BaseModel):
    id: uuid.UUID
    partner_id: uuid.UUID
    account_id: uuid.UUID
    status: RegistrationStatus
    expires_at: datetime
    created_at: datetime
    prospect: bool = Field(description="the account was created from a prospect by this registration")
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None = Field(description="the decision's reason")


class PartnerData(BaseModel):
    """The partner every `partner.*` event (and the registry's GET) carries; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    name: ReplicatedName
    status: PartnerStatus
    updated_at: UtcDatetime


class PartnerStatusChangedData(PartnerData):
    to: PartnerStatus
    changed_at: UtcDatetime
