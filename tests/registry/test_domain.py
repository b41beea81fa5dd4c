"""Registry rules without I/O: who may be a parent, and where a certification stands."""

from datetime import UTC, datetime

import pytest

from services.registry.domain import CertificationState, ParentRefused, Status, certification_state, check_parent

JAN, FEB, MAR = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3))


def test_an_active_distributor_may_be_a_parent() -> None:
    check_parent("c", "p", Status.ACTIVE, ["sales", "service"], ["grandparent"])


@pytest.mark.parametrize(
    ("parent_id", "status", "types", "ancestors", "why"),
    [
        ("c", Status.ACTIVE, ["sales"], [], "its own parent"),
        ("p", None, None, [], "does not exist"),
        ("p", Status.PENDING, ["sales"], [], "it is pending"),
        ("p", Status.TERMINATED, ["sales"], [], "it is terminated"),
        ("p", Status.ACTIVE, ["service"], [], "types service"),
        ("p", Status.ACTIVE, ["sales"], ["c"], "cycle of parents: c -> p -> c"),
        ("p", Status.ACTIVE, ["sales"], ["x", "c", "y"], "cycle of parents: c -> p -> x -> c"),
    ],
)
def test_refused_parents_say_why(parent_id: str, status: Status | None, types: list[str] | None,
                                 ancestors: list[str], why: str) -> None:
    with pytest.raises(ParentRefused, match=why.replace("(", r"\(")):
        check_parent("c", parent_id, status, types, ancestors)


@pytest.mark.parametrize(
    ("issued_at", "expires_at", "revoked_at", "state"),
    [
        (JAN, None, None, CertificationState.HELD),
        (JAN, MAR, None, CertificationState.HELD),
        (JAN, FEB, None, CertificationState.EXPIRED),
        (MAR, None, None, CertificationState.SCHEDULED),
        (JAN, None, FEB, CertificationState.REVOKED),
        (JAN, FEB, JAN, CertificationState.REVOKED),
    ],
)
def test_a_certification_counts_from_issue_until_expiry_or_revocation(
    issued_at: datetime, expires_at: datetime | None, revoked_at: datetime | None, state: CertificationState
) -> None:
    now = datetime(2026, 2, 15, tzinfo=UTC)
    assert certification_state(issued_at, expires_at, revoked_at, now) is state


def test_a_certification_expires_at_its_expiry_exactly() -> None:
    assert certification_state(JAN, FEB, None, FEB) is CertificationState.EXPIRED
