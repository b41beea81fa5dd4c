"""Accounts API models, and the partner data read from registry events and the registry's API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from partnerhub.catalog import EventType, by_type
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


# --- events on accounts.accounts (partnerhub.catalog) -----------------------------------------------------
class AccountEvent(Account):
    """The account as it is once the change is made (owner_partner_id: its owner now); every account.* event
    carries it whole."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ReclassifiedData(AccountEvent):
    from_: Classification = Field(alias="from")
    to: Classification
    effective_from: datetime
    reason: str | None


class OwnershipChangedData(AccountEvent):
    from_: uuid.UUID | None = Field(alias="from", description="the owner before effective_from")
    to: uuid.UUID | None = Field(description="the owner from effective_from on (null: unowned)")
    effective_from: datetime
    cause: str = Field(description="assigned, released, registration_approved, partner_terminated, …")
    reason: str | None
    registration_id: uuid.UUID | None = Field(default=None, description="the approved preregistration, if one")


def _account_event(type_: str, data: type[BaseModel], summary: str) -> EventType:
    return EventType("accounts.accounts", type_, data, summary, "accounts", "the account id", "the account id")


EVENTS = (
    _account_event("account.created", AccountEvent, "An account was created (unowned)."),
    _account_event("account.reclassified", ReclassifiedData, "An account's classification changes from "
                   "effective_from on."),
    _account_event("account.ownership_changed", OwnershipChangedData, "An account's owner changes from "
                   "effective_from on."),
)
EVENT_TYPES = by_type(EVENTS)
