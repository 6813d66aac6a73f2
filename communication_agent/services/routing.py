"""The routing policy: the only ticket changes a triage may cause, and when.

The model suggests; this policy decides, from the triage *and* the review flags, and it never
does more than this table allows:

- only a `NEW` ticket is routed (a person has already seen anything else);
- a reply is needed → `NEEDS_ACTION`;
- spam → tagged `spam`, and `DONE` when confident enough (kept and searchable, never deleted);
- no reply needed and confident enough → `DONE`; not confident → `NEEDS_ACTION` (a person
  decides);
- any review flag (text aimed at the model, hidden HTML) → never `DONE` by itself;
- `DONE` for "no reply needed" also takes a deterministic second opinion: the newest message
  must be short and ask nothing (`safety.looks_closable`), so a model talked into "resolved" by
  a long or questioning email cannot close it.

Category and priority are copied to the ticket. Everything else a model might "want" (send,
assign, close a ticket that is not new) has no path here at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from communication_agent.models.enums import TicketState
from communication_agent.models.schemas.reasoning import Triage


@dataclass(frozen=True)
class RoutingDecision:
    target: TicketState | None
    reason: str
    tags: tuple[str, ...] = ()


def decide(  # noqa: PLR0911 (the policy reads best as the table in the module docstring)
    triage: Triage,
    current: TicketState,
    flags: list[str],
    *,
    auto_done_confidence: float,
    closable: bool,
) -> RoutingDecision:
    confident = triage.confidence >= auto_done_confidence
    at = f"confidence {triage.confidence:.2f}"
    if current is not TicketState.NEW:
        return RoutingDecision(None, f"left as {current.value}: only new tickets are routed")
    if triage.category == "spam":
        if confident and not flags:
            return RoutingDecision(TicketState.DONE, f"spam ({at})", ("spam",))
        return RoutingDecision(
            TicketState.NEEDS_ACTION, f"possible spam, for a person to confirm ({at})", ("spam",)
        )
    if triage.needs_reply:
        return RoutingDecision(TicketState.NEEDS_ACTION, f"a reply is needed ({at})")
    if flags:
        return RoutingDecision(
            TicketState.NEEDS_ACTION, "no reply needed, but flagged for review: " + flags[0]
        )
    if not closable:
        return RoutingDecision(
            TicketState.NEEDS_ACTION,
            f"no reply needed ({at}), but the message is long or asks something: a person decides",
        )
    if confident:
        return RoutingDecision(TicketState.DONE, f"no reply needed ({at})")
    return RoutingDecision(
        TicketState.NEEDS_ACTION, f"no reply needed, but not confident enough to close ({at})"
    )
