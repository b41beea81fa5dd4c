import pytest

from services.registry.domain import ALLOWED_MOVES, IllegalMove, ReasonRequired, Status, check_status_move


def test_pending_becomes_active_and_active_and_suspended_alternate() -> None:
    check_status_move(Status.PENDING, Status.ACTIVE, None)
    check_status_move(Status.ACTIVE, Status.SUSPENDED, "audit")
    check_status_move(Status.SUSPENDED, Status.ACTIVE, None)


@pytest.mark.parametrize("current", [Status.PENDING, Status.ACTIVE, Status.SUSPENDED])
def test_any_status_may_be_terminated_with_a_reason(current: Status) -> None:
    check_status_move(current, Status.TERMINATED, "contract ended")
    with pytest.raises(ReasonRequired):
        check_status_move(current, Status.TERMINATED, "  ")


def test_terminated_is_final_and_illegal_moves_name_the_allowed_ones() -> None:
    assert ALLOWED_MOVES[Status.TERMINATED] == frozenset()
    with pytest.raises(IllegalMove) as raised:
        check_status_move(Status.PENDING, Status.SUSPENDED, "x")
    assert raised.value.allowed == ["active", "terminated"]
    with pytest.raises(IllegalMove):
        check_status_move(Status.TERMINATED, Status.ACTIVE, None)
