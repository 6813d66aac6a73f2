"""The loopback model servers answer as OpenAI and Anthropic do, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.llm_servers import AnthropicTestServer, Fault, OpenAITestServer

CHAT = [
    {"role": "system", "content": "You triage support email."},
    {"role": "user", "content": "My invoice is wrong, please help."},
]
TRIAGE_TOOL = {
    "name": "record_triage",
    "description": "Record the triage decision.",
    "input_schema": {"type": "object", "properties": {"category": {"type": "string"}}},
}


@pytest.fixture
def openai() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        yield server


@pytest.fixture
def anthropic() -> Iterator[AnthropicTestServer]:
    with AnthropicTestServer() as server:
        yield server


def chat(server: OpenAITestServer, key: str | None = None, **body: Any) -> httpx.Response:
    payload = {"model": "gpt-4o-mini", "messages": CHAT, **body}
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return httpx.post(f"{server.base_url}/chat/completions", json=payload, headers=headers)


def message(server: AnthropicTestServer, *, version: bool = True, **body: Any) -> httpx.Response:
    """A Messages request; a field given as None is left out."""
    defaults = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": "My invoice is wrong, please help."}],
    }
    payload = {k: v for k, v in (defaults | body).items() if v is not None}
    headers = {"x-api-key": server.api_key}
    if version:
        headers["anthropic-version"] = "2023-06-01"
    return httpx.post(f"{server.base_url}/v1/messages", json=payload, headers=headers)


def test_openai_answers_with_the_scripted_content_and_usage(openai: OpenAITestServer) -> None:
    openai.enqueue('{"category": "billing"}')
    schema = {"name": "triage", "schema": {"type": "object"}, "strict": True}

    response = chat(openai, response_format={"type": "json_schema", "json_schema": schema})

    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": '{"category": "billing"}'},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    usage = body["usage"]
    assert usage["completion_tokens"] == len('{"category": "billing"}') // 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 2
    assert openai.requests[0]["response_format"]["json_schema"] == schema


def test_openai_queue_comes_before_the_responder_and_neither_is_a_500(
    openai: OpenAITestServer,
) -> None:
    openai.enqueue("first")
    openai.responder = lambda body: f"echo {body['messages'][-1]['content']}"

    answers = [chat(openai).json()["choices"][0]["message"]["content"] for _ in range(2)]
    openai.responder = None
    unscripted = chat(openai)

    assert answers == ["first", "echo My invoice is wrong, please help."]
    assert unscripted.status_code == 500
    assert "No response is scripted" in unscripted.json()["error"]["message"]
    assert openai.calls == 3


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"reasoning_mode": "deep"}, "reasoning_mode"),
        ({"model": 4}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"stream": True}, "stream"),
    ],
)
def test_openai_refuses_what_openai_refuses(
    openai: OpenAITestServer, body: dict[str, Any], param: str
) -> None:
    openai.enqueue("never sent")

    response = chat(openai, **body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if param == "reasoning_mode":
        assert error["message"] == "Unrecognized request argument supplied: reasoning_mode"


def test_openai_wrong_key_is_a_401(openai: OpenAITestServer) -> None:
    response = chat(openai, key="sk-wrong-key")

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["message"].startswith("Incorrect API key provided: ")
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        None,
        "invalid_api_key",
    )


def test_json_schema_is_refused_by_an_older_local_server(openai: OpenAITestServer) -> None:
    openai.supports_json_schema = False
    openai.enqueue('{"category": "billing"}')
    schema = {"name": "triage", "schema": {"type": "object"}}

    refused = chat(openai, response_format={"type": "json_schema", "json_schema": schema})
    accepted = chat(openai, response_format={"type": "json_object"})

    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        "response_format type 'json_schema' is not supported by this server"
    )
    assert accepted.status_code == 200


def test_a_rate_limit_with_retry_after_then_success(openai: OpenAITestServer) -> None:
    openai.inject(Fault(status=429, times=2, retry_after="3"))
    openai.enqueue("done")

    answers = [chat(openai) for _ in range(3)]

    assert [r.status_code for r in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert answers[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert answers[2].json()["choices"][0]["message"]["content"] == "done"
    assert len(openai.requests) == openai.calls == 3


def test_a_slow_answer_times_the_client_out_then_the_server_proceeds(
    openai: OpenAITestServer,
) -> None:
    openai.inject(Fault(delay=1.0))
    openai.enqueue("late")
    openai.enqueue("on time")

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{openai.base_url}/chat/completions",
            json={"model": "m", "messages": CHAT},
            headers={"Authorization": f"Bearer {openai.api_key}"},
            timeout=0.2,
        )
    response = chat(openai)

    assert response.json()["choices"][0]["message"]["content"] == "on time"
    assert openai.calls == 2


def test_anthropic_forced_tool_returns_tool_use_with_the_parsed_input(
    anthropic: AnthropicTestServer,
) -> None:
    anthropic.enqueue('{"category": "billing"}')
    anthropic.enqueue("I could not decide.")
    forced: dict[str, Any] = {
        "tools": [TRIAGE_TOOL],
        "tool_choice": {"type": "tool", "name": "record_triage"},
    }

    tool_use = message(anthropic, **forced).json()
    text = message(anthropic, **forced).json()

    assert tool_use["type"] == "message"
    assert tool_use["stop_reason"] == "tool_use"
    [block] = tool_use["content"]
    assert block["id"].startswith("toolu_")
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "record_triage",
        {"category": "billing"},
    )
    assert text["content"] == [{"type": "text", "text": "I could not decide."}]
    assert text["stop_reason"] == "end_turn"
    assert text["usage"]["output_tokens"] == len("I could not decide.") // 4


def test_anthropic_any_with_one_tool_forces_it(anthropic: AnthropicTestServer) -> None:
    anthropic.enqueue(json.dumps({"category": "refund"}))

    body = message(anthropic, tools=[TRIAGE_TOOL], tool_choice={"type": "any"}).json()

    assert body["content"][0]["input"] == {"category": "refund"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"stream_options": {}}, "stream_options: Extra inputs are not permitted"),
        (
            {"messages": [{"role": "assistant", "content": "Hello"}]},
            'messages: first message must use the "user" role',
        ),
        (
            {"tools": [TRIAGE_TOOL], "tool_choice": {"type": "tool", "name": "other"}},
            "tool_choice.tool.name: Tool 'other' not found in tools",
        ),
    ],
)
def test_anthropic_refuses_what_anthropic_refuses(
    anthropic: AnthropicTestServer, body: dict[str, Any], error: str
) -> None:
    anthropic.enqueue("never sent")

    response = message(anthropic, **body)

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": error},
    }


def test_anthropic_needs_the_version_header_and_the_key(anthropic: AnthropicTestServer) -> None:
    anthropic.enqueue("never sent")

    no_version = message(anthropic, version=False)
    wrong_key = httpx.post(
        f"{anthropic.base_url}/v1/messages",
        json={"model": "m", "max_tokens": 1, "messages": []},
        headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"},
    )

    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"
    assert wrong_key.status_code == 401
    assert wrong_key.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }


@pytest.mark.parametrize(
    ("status", "kind"), [(429, "rate_limit_error"), (500, "api_error"), (529, "overloaded_error")]
)
def test_anthropic_faults_use_anthropic_error_types(
    anthropic: AnthropicTestServer, status: int, kind: str
) -> None:
    anthropic.inject(Fault(status=status, retry_after="1"))

    response = message(anthropic)

    assert response.status_code == status
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == kind
