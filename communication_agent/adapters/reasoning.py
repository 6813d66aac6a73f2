"""The reasoning port: triage and a proposal (draft + plan) for a ticket, from any backend.

Services depend on `ReasoningModel` only; `adapters.factory.reasoning_model` picks the backend
(`offline` rules, an OpenAI-compatible server, Anthropic) from the configuration. Every method
returns a `Reasoned`: the validated result or, after a bounded number of attempts, `None` with
the reason, plus a `CallRecord` per attempt so the service can record every model call. A
backend never raises for a bad answer or an outage: the caller decides what a failure means
(retry the task later, show the reason to the operator).

`structured_attempts` is the retry loop the remote backends share: ask, validate the answer
against the schema *and the context* (citations, grounding), and on failure ask again, telling
the model what was wrong.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from communication_agent.models.schemas.reasoning import Proposal, TicketContext, Triage

T = TypeVar("T", bound=BaseModel)

# Outcomes recorded per call.
OK = "ok"
INVALID_OUTPUT = "invalid_output"
UNAVAILABLE = "unavailable"
REFUSED = "refused"


class BackendUnavailableError(Exception):
    """The backend did not answer usefully after its retries (timeouts, 429s, 5xx)."""


class BackendRefusedError(Exception):
    """The backend refused the request for a reason retrying will not fix (401, 400)."""


@dataclass(frozen=True)
class CallRecord:
    task: str  # "triage" or "proposal"
    provider: str
    model: str
    prompt_version: str
    latency_ms: int
    tokens_in: int
    tokens_out: int
    outcome: str
    error: str | None = None


@dataclass
class Reasoned(Generic[T]):
    value: T | None
    calls: list[CallRecord] = field(default_factory=list)
    error: str | None = None


class ReasoningModel(Protocol):
    provider: str
    model: str
    prompt_version: str

    async def triage(self, context: TicketContext) -> Reasoned[Triage]: ...

    async def propose(self, context: TicketContext) -> Reasoned[Proposal]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class RawAnswer:
    """What one request to a remote model returned."""

    text: str
    tokens_in: int
    tokens_out: int


# Ask once: the task's schema, the feedback from the last failed attempt (or None).
Ask = Callable[[str | None], Awaitable[RawAnswer]]


@dataclass(frozen=True)
class CallMeta:
    """What every record of a backend's calls for one task shares."""

    task: str  # "triage" or "proposal"
    provider: str
    model: str
    prompt_version: str

    def record(
        self,
        started: float,
        outcome: str,
        error: str | None = None,
        answer: RawAnswer | None = None,
    ) -> CallRecord:
        return CallRecord(
            task=self.task,
            provider=self.provider,
            model=self.model,
            prompt_version=self.prompt_version,
            latency_ms=round((time.perf_counter() - started) * 1000),
            tokens_in=answer.tokens_in if answer else 0,
            tokens_out=answer.tokens_out if answer else 0,
            outcome=outcome,
            error=error,
        )


async def structured_attempts(
    ask: Ask, schema: type[T], context: TicketContext, *, meta: CallMeta, attempts: int
) -> Reasoned[T]:
    """Ask up to `attempts` times until the answer validates; record every attempt."""
    result: Reasoned[T] = Reasoned(value=None)
    feedback: str | None = None
    for _ in range(max(1, attempts)):
        started = time.perf_counter()
        try:
            answer = await ask(feedback)
        except BackendUnavailableError as exc:
            result.calls.append(meta.record(started, UNAVAILABLE, str(exc)))
            result.error = f"{meta.provider} unavailable: {exc}"
            return result  # the transport already retried; the task is retried later
        except BackendRefusedError as exc:
            result.calls.append(meta.record(started, REFUSED, str(exc)))
            result.error = f"{meta.provider} refused the request: {exc}"
            return result
        try:
            value = schema.model_validate_json(_json_text(answer.text), context={"ticket": context})
        except ValidationError as exc:
            feedback = _describe(exc)
            result.calls.append(meta.record(started, INVALID_OUTPUT, feedback, answer))
            result.error = (
                f"invalid {meta.task} output after {len(result.calls)} attempt(s): {feedback}"
            )
            continue
        result.calls.append(meta.record(started, OK, None, answer))
        result.value, result.error = value, None
        return result
    return result


def _json_text(text: str) -> str:
    """The JSON object in an answer: models sometimes wrap it in a code fence or prose."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return stripped
    start, end = stripped.find("{"), stripped.rfind("}")
    return stripped[start : end + 1] if 0 <= start < end else stripped


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:8]:
        where = ".".join(str(p) for p in error["loc"]) or "answer"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)[:1000]
