import itertools

import pytest

from communication_agent.models.enums import TicketState as S
from communication_agent.services.errors import InvalidTransitionError
from communication_agent.services.state_machine import ALLOWED_TRANSITIONS, validate_transition

EXPECTED = {
    (S.NEW, S.NEEDS_ACTION),
    (S.NEW, S.WAITING_OTHERS),
    (S.NEW, S.DONE),
    (S.NEEDS_ACTION, S.WAITING_OTHERS),
    (S.NEEDS_ACTION, S.DONE),
    (S.WAITING_OTHERS, S.NEEDS_ACTION),
    (S.WAITING_OTHERS, S.DONE),
    (S.DONE, S.NEEDS_ACTION),
}


def test_the_table_covers_every_state() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_every_pair_is_allowed_exactly_when_the_table_says(current: S, target: S) -> None:
    if (current, target) in EXPECTED:
        validate_transition(1, current, target)
        return
    with pytest.raises(InvalidTransitionError) as info:
        validate_transition(1, current, target)
    allowed = [t.value for t in ALLOWED_TRANSITIONS[current]]
    assert info.value.details["allowed"] == allowed
    for name in allowed:
        assert name in info.value.message


def test_nothing_goes_back_to_new() -> None:
    assert all(S.NEW not in targets for targets in ALLOWED_TRANSITIONS.values())


def test_moving_to_the_current_state_says_it_is_already_there() -> None:
    with pytest.raises(InvalidTransitionError, match="already DONE"):
        validate_transition(7, S.DONE, S.DONE)
