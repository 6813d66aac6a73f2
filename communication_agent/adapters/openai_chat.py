"""The `openai` reasoning backend: any OpenAI-compatible Chat Completions server, over httpx.

OpenAI itself, Ollama, vLLM, llama.cpp's server and LM Studio all speak
`POST {base}/chat/completions`. Structured output is requested as `response_format` of type
`json_schema` (strict); a server that refuses that with a 400 about `response_format` is asked
again with `json_object`, and then plain text, remembered per adapter. The answer is validated
either way: a server's promise of schema conformance is not trusted.

The SDK was considered; httpx keeps one HTTP stack for every adapter, exact control of retries
(429/5xx with `Retry-After`, timeouts) and no extra dependency. No prompt or answer text is
ever logged.
"""

from __future__ import annotations

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

FORMATS = ("json_schema", "json_object", "text")


class OpenAIChatModel:
    provider = "openai"
    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout: float = 60.0,
        attempts: int = 3,
        retry: RetryPolicy | None = None,
        sleep: Sleep = default_sleep,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.attempts = attempts
        self.retry = retry or RetryPolicy(attempts=4)
        self.sleep = sleep
        self.format_index = 0  # falls back along FORMATS when the server refuses one
        self.http = httpx.AsyncClient(
            timeout=timeout, headers={"Authorization": f"Bearer {api_key}"}
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def triage(self, context: TicketContext) -> Reasoned[Triage]:
        system, user = triage_messages(context)
        return await structured_attempts(
            self._asker(system, user, "triage", json_schema(Triage)),
            Triage,
            context,
            meta=CallMeta("triage", self.provider, self.model, self.prompt_version),
            attempts=self.attempts,
        )

    async def propose(self, context: TicketContext) -> Reasoned[Proposal]:
        system, user = proposal_messages(context, language_hint="the customer's language")
        return await structured_attempts(
            self._asker(system, user, "proposal", json_schema(Proposal)),
            Proposal,
            context,
            meta=CallMeta("proposal", self.provider, self.model, self.prompt_version),
            attempts=self.attempts,
        )

    def _asker(self, system: str, user: str, name: str, schema: dict[str, Any]) -> Any:
        async def ask(feedback: str | None) -> RawAnswer:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            if feedback:
                messages.append({"role": "user", "content": feedback_message(feedback)})
            return await self._complete(messages, name, schema)

        return ask

    async def _complete(
        self, messages: list[dict[str, str]], name: str, schema: dict[str, Any]
    ) -> RawAnswer:
        last = "no attempt made"
        for attempt in range(self.retry.attempts):
            body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
            fmt = FORMATS[self.format_index]
            if fmt == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": False},
                }
            elif fmt == "json_object":
                body["response_format"] = {"type": "json_object"}
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
            message = _error_message(response)
            last = f"HTTP {response.status_code}: {message}"
            refused_format = response.status_code == 400 and "response_format" in (
                message + _error_param(response)
            )
            if refused_format and self.format_index < len(FORMATS) - 1:
                self.format_index += 1  # this server cannot do it; ask the simpler way
                continue
            if response.status_code == 429 or response.status_code >= 500:
                await self.sleep(self.retry.delay_for(response.headers, attempt))
                continue
            raise BackendRefusedError(last)
        raise BackendUnavailableError(f"no answer after {self.retry.attempts} attempts ({last})")


def _answer(response: httpx.Response) -> RawAnswer:
    try:
        body = response.json()
        choice = body["choices"][0]["message"]
        text = choice.get("content") or ""
        usage = body.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BackendUnavailableError("the server answered with an unexpected shape") from exc
    return RawAnswer(
        text=str(text),
        tokens_in=int(usage.get("prompt_tokens") or 0),
        tokens_out=int(usage.get("completion_tokens") or 0),
    )


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_message(response: httpx.Response) -> str:
    return str(_error(response).get("message") or response.reason_phrase)[:500]


def _error_param(response: httpx.Response) -> str:
    return str(_error(response).get("param") or "")
