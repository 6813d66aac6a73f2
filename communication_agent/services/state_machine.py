"""The ticket lifecycle as one explicit table.

    NEW             -> NEEDS_ACTION, WAITING_OTHERS, DONE
    NEEDS_ACTION    -> WAITING_OTHERS, DONE
    WAITING_OTHERS  -> NEEDS_ACTION, DONE
    DONE            -> NEEDS_ACTION                  (reopen)

Nothing returns to NEW: NEW means "nobody has looked at this yet", which stops being true once
anyone has. A reopened ticket goes to NEEDS_ACTION, because whoever reopens it owes an action.
"""

from __future__ import annotations

from communication_agent.models.enums import TicketState
from communication_agent.services.errors import InvalidTransitionError

ALLOWED_TRANSITIONS: dict[TicketState, tuple[TicketState, ...]] = {
    TicketState.NEW: (TicketState.NEEDS_ACTION, TicketState.WAITING_OTHERS, TicketState.DONE),
    TicketState.NEEDS_ACTION: (TicketState.WAITING_OTHERS, TicketState.DONE),
    TicketState.WAITING_OTHERS: (TicketState.NEEDS_ACTION, TicketState.DONE),
    TicketState.DONE: (TicketState.NEEDS_ACTION,),
}


def allowed_targets(current: TicketState) -> tuple[TicketState, ...]:
    return ALLOWED_TRANSITIONS[current]


def validate_transition(ticket_id: int, current: TicketState, target: TicketState) -> None:
    """Raise `InvalidTransitionError`, naming the allowed targets, unless the move is legal."""
    allowed = allowed_targets(current)
    if target in allowed:
        return
    names = ", ".join(state.value for state in allowed)
    prefix = (
        f"Ticket {ticket_id} is already {current.value}"
        if target is current
        else f"Ticket {ticket_id} cannot move from {current.value} to {target.value}"
    )
    raise InvalidTransitionError(
        f"{prefix}; allowed targets: {names}.",
        current=current.value,
        requested=target.value,
        allowed=[state.value for state in allowed],
    )
