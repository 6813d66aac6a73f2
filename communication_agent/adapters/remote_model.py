"""What the remote reasoning backends share: the two tasks and the HTTP retry loop.

A backend subclasses `RemoteModel` and implements `_ask` (one request: system prompt, ticket
data, the task's tool or schema name and JSON schema, and the feedback on a rejected answer)
and `_parse` (the provider's answer shape to a `RawAnswer`). Validation, retries on invalid
output and call records come from `structured_attempts`; transport retries from `_post`.
"""

from __future__ import annotations

from typing import Any

import httpx

from communication_agent.adapters.http_retry import RetryPolicy, Sleep, default_sleep
from communication_agent.adapters.prompts import (
    PROMPT_VERSION,
    proposal_messages,
    triage_messages,
)
from communication_agent.adapters.reasoning import (
    BackendRefusedError,
    BackendUnavailableError,
    CallMeta,
    RawAnswer,
    Reasoned,
    structured_attempts,
)
from communication_agent.adapters.tls import client_tls
from communication_agent.models.schemas.reasoning import (
    Proposal,
    TicketContext,
    Triage,
    json_schema,
)


class RemoteModel:
    provider = "remote"
    prompt_version = PROMPT_VERSION
    # (task, tool or schema name) per task
    names = {"triage": "triage", "proposal": "proposal"}  # noqa: RUF012

    def __init__(
        self,
        *,
        url: str,
        model: str,
        headers: dict[str, str],
        timeout: float,
        attempts: int,
        retry: RetryPolicy | None,
        sleep: Sleep = default_sleep,
    ) -> None:
        self.url = url
        self.model = model
        self.attempts = attempts
        self.retry = retry or RetryPolicy(attempts=4)
        self.sleep = sleep
        self.http = httpx.AsyncClient(timeout=timeout, headers=headers, verify=client_tls())

    async def aclose(self) -> None:
        await self.http.aclose()

    async def triage(self, context: TicketContext) -> Reasoned[Triage]:
        system, user = triage_messages(context)
        return await self._structured("triage", Triage, system, user, context)

    async def propose(self, context: TicketContext) -> Reasoned[Proposal]:
        system, user = proposal_messages(context, language_hint="the customer's language")
        return await self._structured("proposal", Proposal, system, user, context)

    async def _structured(
        self,
        task: str,
        schema: type[Triage] | type[Proposal],
        system: str,
        user: str,
        context: TicketContext,
    ) -> Reasoned[Any]:
        name, shape = self.names[task], json_schema(schema)

        async def ask(feedback: str | None) -> RawAnswer:
            return await self._ask(system, user, name, shape, feedback)

        return await structured_attempts(
            ask,
            schema,
            context,
            meta=CallMeta(task, self.provider, self.model, self.prompt_version),
            attempts=self.attempts,
        )

    async def _ask(
        self, system: str, user: str, name: str, schema: dict[str, Any], feedback: str | None
    ) -> RawAnswer:
        raise NotImplementedError

    def _parse(self, response: httpx.Response) -> RawAnswer:
        raise NotImplementedError

    def _retry_differently(self, response: httpx.Response) -> bool:
        """Whether a refused request should be sent again in another form (see OpenAI)."""
        return False

    async def _post(self, build: Any) -> RawAnswer:
        """POST `build()` (rebuilt per attempt), retrying timeouts, 429 and 5xx."""
        last = "no attempt made"
        for attempt in range(self.retry.attempts):
            final = attempt == self.retry.attempts - 1  # no point waiting after the last try
            try:
                response = await self.http.post(self.url, json=build())
            except httpx.TimeoutException:
                last = "timed out"
                if not final:
                    await self.sleep(self.retry.backoff(attempt))
                continue
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
                if not final:
                    await self.sleep(self.retry.backoff(attempt))
                continue
            if response.status_code == 200:
                return self._parse(response)
            last = f"HTTP {response.status_code}: {error_message(response)}"
            if self._retry_differently(response):
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if not final:
                    await self.sleep(self.retry.delay_for(response.headers, attempt))
                continue
            raise BackendRefusedError(last)
        raise BackendUnavailableError(f"no answer after {self.retry.attempts} attempts ({last})")


def error_detail(response: httpx.Response) -> dict[str, Any]:
    """The `error` object both OpenAI and Anthropic put in their error bodies."""
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def error_message(response: httpx.Response) -> str:
    return str(error_detail(response).get("message") or response.reason_phrase)[:500]


def token_count(value: object) -> int:
    """A usage figure as an int; providers' odd values (null, text, lists) count as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def usage_of(body: object) -> dict[str, object]:
    usage = body.get("usage") if isinstance(body, dict) else None
    return usage if isinstance(usage, dict) else {}
