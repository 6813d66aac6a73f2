"""The `anthropic` reasoning backend: the Messages API with a forced tool call, over httpx.

Structured output comes from tool use: one tool whose `input_schema` is the result's JSON
schema, and `tool_choice` forcing it, so the answer is the tool call's `input`. A text answer
(a model that ignored the tool) is still accepted if it holds the JSON object. Validation is
the same as for every backend. Retries: 429, 5xx and 529 (overloaded) with `Retry-After`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from communication_agent.adapters.http_retry import RetryPolicy, Sleep, default_sleep
from communication_agent.adapters.prompts import (
    PROMPT_VERSION,
    feedback_message,
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
from communication_agent.models.schemas.reasoning import (
    Proposal,
    TicketContext,
    Triage,
    json_schema,
)

API_VERSION = "2023-06-01"
MAX_TOKENS = 2048
DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicMessagesModel:
    provider = "anthropic"
    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 60.0,
        attempts: int = 3,
        retry: RetryPolicy | None = None,
        sleep: Sleep = default_sleep,
    ) -> None:
        self.url = base_url.rstrip("/").removesuffix("/v1") + "/v1/messages"
        self.model = model
        self.attempts = attempts
        self.retry = retry or RetryPolicy(attempts=4)
        self.sleep = sleep
        self.http = httpx.AsyncClient(
            timeout=timeout, headers={"x-api-key": api_key, "anthropic-version": API_VERSION}
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def triage(self, context: TicketContext) -> Reasoned[Triage]:
        system, user = triage_messages(context)
        return await structured_attempts(
            self._asker(system, user, "record_triage", json_schema(Triage)),
            Triage,
            context,
            meta=CallMeta("triage", self.provider, self.model, self.prompt_version),
            attempts=self.attempts,
        )

    async def propose(self, context: TicketContext) -> Reasoned[Proposal]:
        system, user = proposal_messages(context, language_hint="the customer's language")
        return await structured_attempts(
            self._asker(system, user, "record_proposal", json_schema(Proposal)),
            Proposal,
            context,
            meta=CallMeta("proposal", self.provider, self.model, self.prompt_version),
            attempts=self.attempts,
        )

    def _asker(self, system: str, user: str, tool: str, schema: dict[str, Any]) -> Any:
        async def ask(feedback: str | None) -> RawAnswer:
            content = user if not feedback else f"{user}\n\n{feedback_message(feedback)}"
            body = {
                "model": self.model,
                "max_tokens": MAX_TOKENS,
                "system": system,
                "messages": [{"role": "user", "content": content}],
                "tools": [
                    {
                        "name": tool,
                        "description": "Record the result (the only way to answer).",
                        "input_schema": schema,
                    }
                ],
                "tool_choice": {"type": "tool", "name": tool},
                "temperature": 0,
            }
            return await self._send(body)

        return ask

    async def _send(self, body: dict[str, Any]) -> RawAnswer:
        last = "no attempt made"
        for attempt in range(self.retry.attempts):
            try:
                response = await self.http.post(self.url, json=body)
            except httpx.TimeoutException:
                last = "timed out"
                await self.sleep(self.retry.backoff(attempt))
                continue
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
                await self.sleep(self.retry.backoff(attempt))
                continue
            if response.status_code == 200:
                return _answer(response)
            last = f"HTTP {response.status_code}: {_error_message(response)}"
            if response.status_code == 429 or response.status_code >= 500:
                await self.sleep(self.retry.delay_for(response.headers, attempt))
                continue
            raise BackendRefusedError(last)
        raise BackendUnavailableError(f"no answer after {self.retry.attempts} attempts ({last})")


def _answer(response: httpx.Response) -> RawAnswer:
    try:
        body = response.json()
        blocks = body["content"]
        usage = body.get("usage") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendUnavailableError("the API answered with an unexpected shape") from exc
    text = ""
    for block in blocks if isinstance(blocks, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            text = json.dumps(block.get("input"))
            break
        if isinstance(block, dict) and block.get("type") == "text":
            text += str(block.get("text", ""))
    return RawAnswer(
        text=text,
        tokens_in=int(usage.get("input_tokens") or 0),
        tokens_out=int(usage.get("output_tokens") or 0),
    )


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or response.reason_phrase)[:500]
