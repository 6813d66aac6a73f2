"""The `openai` reasoning backend: any OpenAI-compatible Chat Completions server, over httpx.

OpenAI itself, Ollama, vLLM, llama.cpp's server and LM Studio all speak
`POST {base}/chat/completions`. Structured output is requested as `response_format` of type
`json_schema`; a server that refuses that with a 400 about `response_format` is asked again
with `json_object`, and then plain text, remembered per adapter. The answer is validated
either way: a server's promise of schema conformance is not trusted.

The SDK was considered; httpx keeps one HTTP stack for every adapter, exact control of retries
(429/5xx with `Retry-After`, timeouts) and no extra dependency. No prompt or answer text is
ever logged.
"""

from __future__ import annotations

from typing import Any

import httpx

from communication_agent.adapters.http_retry import RetryPolicy, Sleep, default_sleep
from communication_agent.adapters.prompts import feedback_message
from communication_agent.adapters.reasoning import BackendUnavailableError, RawAnswer
from communication_agent.adapters.remote_model import (
    RemoteModel,
    error_detail,
    error_message,
    token_count,
    usage_of,
)

FORMATS = ("json_schema", "json_object", "text")


class OpenAIChatModel(RemoteModel):
    provider = "openai"

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
        super().__init__(
            url=base_url.rstrip("/") + "/chat/completions",
            model=model,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            attempts=attempts,
            retry=retry,
            sleep=sleep,
        )
        self.format_index = 0  # falls back along FORMATS when the server refuses one

    async def _ask(
        self, system: str, user: str, name: str, schema: dict[str, Any], feedback: str | None
    ) -> RawAnswer:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if feedback:
            messages.append({"role": "user", "content": feedback_message(feedback)})

        def build() -> dict[str, Any]:
            body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
            fmt = FORMATS[self.format_index]
            if fmt == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": False},
                }
            elif fmt == "json_object":
                body["response_format"] = {"type": "json_object"}
            return body

        return await self._post(build)

    def _retry_differently(self, response: httpx.Response) -> bool:
        refused_format = response.status_code == 400 and "response_format" in (
            error_message(response) + str(error_detail(response).get("param") or "")
        )
        if refused_format and self.format_index < len(FORMATS) - 1:
            self.format_index += 1  # this server cannot do it; ask the simpler way
            return True
        return False

    def _parse(self, response: httpx.Response) -> RawAnswer:
        try:
            body = response.json()
            text = body["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendUnavailableError("the server answered with an unexpected shape") from exc
        usage = usage_of(body)
        return RawAnswer(
            text=str(text),
            tokens_in=token_count(usage.get("prompt_tokens")),
            tokens_out=token_count(usage.get("completion_tokens")),
        )
