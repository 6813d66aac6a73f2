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
from communication_agent.adapters.prompts import feedback_message
from communication_agent.adapters.reasoning import BackendUnavailableError, RawAnswer
from communication_agent.adapters.remote_model import RemoteModel, token_count, usage_of

API_VERSION = "2023-06-01"
MAX_TOKENS = 2048
DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicMessagesModel(RemoteModel):
    provider = "anthropic"
    names = {"triage": "record_triage", "proposal": "record_proposal"}  # noqa: RUF012

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
        super().__init__(
            url=base_url.rstrip("/").removesuffix("/v1") + "/v1/messages",
            model=model,
            headers={"x-api-key": api_key, "anthropic-version": API_VERSION},
            timeout=timeout,
            attempts=attempts,
            retry=retry,
            sleep=sleep,
        )

    async def _ask(
        self, system: str, user: str, name: str, schema: dict[str, Any], feedback: str | None
    ) -> RawAnswer:
        content = user if not feedback else f"{user}\n\n{feedback_message(feedback)}"
        body = {
            "model": self.model,
            "max_tokens": MAX_TOKENS,
            "system": system,
            "messages": [{"role": "user", "content": content}],
            "tools": [
                {
                    "name": name,
                    "description": "Record the result (the only way to answer).",
                    "input_schema": schema,
                }
            ],
            "tool_choice": {"type": "tool", "name": name},
            "temperature": 0,
        }
        return await self._post(lambda: body)

    def _parse(self, response: httpx.Response) -> RawAnswer:
        try:
            body = response.json()
            blocks = body["content"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailableError("the API answered with an unexpected shape") from exc
        text = ""
        for block in blocks if isinstance(blocks, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                text = json.dumps(block.get("input"))
                break
            if isinstance(block, dict) and block.get("type") == "text":
                text += str(block.get("text", ""))
        usage = usage_of(body)
        return RawAnswer(
            text=text,
            tokens_in=token_count(usage.get("input_tokens")),
            tokens_out=token_count(usage.get("output_tokens")),
        )
