"""Accounts rules without I/O: which entry of a timeline is in force, who may own and who may claim an account."""

from datetime import UTC, datetime

import pytest

from services.accounts.domain import (
    MAX_PENDING_REGISTRATIONS,
    Classification,
    Entry,
    OwnerRefused,
    PartnerStatus,
    RegistrationRefused,
    RegistrationStatus,
    check_may_own,
    check_may_preregister,
    check_may_preregister_account,
    registration_status,
    value_at,
    with_predecessors,
)

JAN, FEB, MAR = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3))


def test_the_entry_in_force_is_the_latest_effective_at_or_before_the_moment() -> None:
    timeline = [Entry("commercial", JAN, 1), Entry("key", MAR, 2)]
    assert value_at(timeline, datetime(2025, 1, 1, tzinfo=UTC)) is None
    assert value_at(timeline, JAN) == Entry("commercial", JAN, 1)
    assert value_at(timeline, FEB) == Entry("commercial", JAN, 1)
    assert value_at(timeline, MAR) == Entry("key", MAR, 2)


def test_a_late_entered_earlier_change_is_inserted_not_laid_over() -> None:
    timeline = [Entry("commercial", JAN, 1), Entry("key", MAR, 2), Entry("strategic", FEB, 3)]
    assert value_at(timeline, FEB).value == "strategic"  # type: ignore[union-attr]
    assert value_at(timeline, MAR).value == "key"  # type: ignore[union-attr]
    assert [(before, e.value) for before, e in with_predecessors(timeline)] == [
        (None, "commercial"),
        ("commercial", "strategic"),
        ("strategic", "key"),
    ]


def test_of_two_entries_effective_at_once_the_later_recorded_wins() -> None:
    timeline: list[Entry[str | None]] = [Entry("p1", FEB, 7), Entry(None, FEB, 9), Entry(None, JAN, 1)]
    assert value_at(timeline, FEB) == Entry(None, FEB, 9)


@pytest.mark.parametrize("status", [None, *[s for s in PartnerStatus if s is not PartnerStatus.ACTIVE]])
def test_only_an_active_partner_may_own(status: PartnerStatus | None) -> None:
    with pytest.raises(OwnerRefused, match="unknown" if status is None else status.value):
        check_may_own("p1", status)
    check_may_own("p1", PartnerStatus.ACTIVE)


def test_a_pending_registration_reads_as_expired_from_its_expiry() -> None:
    assert registration_status(RegistrationStatus.PENDING, FEB, JAN) is RegistrationStatus.PENDING
    assert registration_status(RegistrationStatus.PENDING, FEB, FEB) is RegistrationStatus.EXPIRED
    assert registration_status(RegistrationStatus.APPROVED, FEB, MAR) is RegistrationStatus.APPROVED


@pytest.mark.parametrize(
    ("classification", "owner", "holder", "pending", "code"),
    [
        (Classification.COMMERCIAL, "p2", None, 0, "owned"),
        (Classification.COMMERCIAL, "p1", None, 0, "owned"),
        (Classification.STRATEGIC, None, None, 0, "strategic"),
        (Classification.STRATEGIC, "p2", None, 0, "owned"),
        (Classification.KEY, None, "p2", 0, "preregistered"),
        (Classification.KEY, None, "p1", 0, "preregistered"),
        (Classification.SMB, None, None, MAX_PENDING_REGISTRATIONS, "limit"),
    ],
)
def test_a_claim_is_refused_with_the_reason(
    classification: Classification, owner: str | None, holder: str | None, pending: int, code: str
) -> None:
    with pytest.raises(RegistrationRefused) as refused:
        check_may_preregister_account("p1", classification, owner, holder, pending)
    assert refused.value.code == code


def test_an_open_account_may_be_claimed_up_to_the_limit() -> None:
    check_may_preregister_account("p1", Classification.COMMERCIAL, None, None, MAX_PENDING_REGISTRATIONS - 1)
    check_may_preregister(None)
    check_may_preregister(PartnerStatus.PENDING)
    for status in (PartnerStatus.SUSPENDED, PartnerStatus.TERMINATED):
        with pytest.raises(RegistrationRefused, match=status.value):
            check_may_preregister(status)
