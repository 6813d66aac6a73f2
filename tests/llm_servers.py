"""The OpenAI Chat Completions and Anthropic Messages APIs on loopback, for tests of model adapters.

Both speak the real wire format: the paths, headers, request validation and JSON shapes of
`POST /v1/chat/completions` (as OpenAI, Ollama, vLLM and llama.cpp serve it) and
`POST /v1/messages`, and each provider's own error bodies, so an adapter sending the wrong shape
fails here as it would against the provider. Answers are scripted: `enqueue(content)` fills a
FIFO queue; when it is empty, `responder(body)` is asked; with neither, the server answers 500.
Faults (429 with Retry-After, 5xx, slow answers) apply in order to the next requests.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.loopback_server import LoopbackServer

Responder = Callable[[dict[str, Any]], str]
NOT_SCRIPTED = "No response is scripted: call enqueue(content) or set responder"


@dataclass
class Fault:
    """The next `times` requests wait `delay` seconds, then fail with `status` (None: proceed).

    Faults apply in the order injected, before authentication and validation.
    """

    status: int | None = None
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0


class InvalidRequestError(Exception):
    """A request the provider would refuse with 400; `param` names the field (OpenAI only)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


class ScriptedServer(LoopbackServer):
    """What both servers share: the uvicorn thread, scripted answers, faults, the request log."""

    path = ""
    request_id_header = ""
    unparsable = ""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.responder: Responder | None = None
        self._answers: deque[str] = deque()
        self._faults: list[Fault] = []
        self._arrived = 0
        self._lock = threading.Lock()
        app = Starlette(routes=[Route(self.path, self._endpoint, methods=["POST"])])
        self._serve(app, timeout_graceful_shutdown=1)  # requests still sleeping in a `delay`

    def enqueue(self, content: str) -> None:
        """The content of a later answer (first in, first out)."""
        self._answers.append(content)

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    @property
    def calls(self) -> int:
        """How many requests arrived, including refused and faulted ones."""
        return self._arrived

    # --- provider specifics ---------------------------------------------------------------

    def error(self, status: int, message: str | None = None) -> JSONResponse:
        raise NotImplementedError

    def unauthorised(self, request: Request) -> Response | None:
        """The 401 (or missing-header 400) the provider would answer, if any."""
        raise NotImplementedError

    def invalid(self, body: dict[str, Any]) -> Response | None:
        """The 400 the provider's validation would answer, if any."""
        raise NotImplementedError

    def answer(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        raise NotImplementedError

    # --- the endpoint -----------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        body = json_object(await request.body())
        with self._lock:
            self._arrived += 1
            if body is not None:
                self.requests.append(body)
            fault = self._next_fault()
        # The answer is settled on arrival, so scripted content goes to requests in arrival
        # order even when a delayed one is answered after later ones.
        if fault is not None and fault.status is not None:
            response = self._fault_response(fault.status, fault.retry_after)
        else:
            response = self.unauthorised(request) or self._answer_body(body)
        response.headers[self.request_id_header] = "req_" + secrets.token_hex(12)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        return response

    def _next_fault(self) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.times -= 1
        if fault.times <= 0:
            self._faults.pop(0)
        return fault

    def _fault_response(self, status: int, retry_after: str | None) -> Response:
        response = self.error(status)
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        return response

    def _answer_body(self, body: dict[str, Any] | None) -> Response:
        if body is None:
            return self.error(400, self.unparsable)
        if (refused := self.invalid(body)) is not None:
            return refused
        if self._answers:
            content = self._answers.popleft()
        elif self.responder is not None:
            content = self.responder(body)
        else:
            return self.error(500, NOT_SCRIPTED)
        return JSONResponse(self.answer(body, content))


# --- OpenAI Chat Completions ----------------------------------------------------------------

OPENAI_PARAMETERS = frozenset(
    {
        "model",
        "messages",
        "response_format",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "n",
        "stop",
        "stream",
        "user",
        "tools",
        "tool_choice",
        "frequency_penalty",
        "presence_penalty",
    }
)
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
OPENAI_RANGES = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "frequency_penalty": (-2, 2),
    "presence_penalty": (-2, 2),
}
OPENAI_INTEGERS = ("max_tokens", "max_completion_tokens", "seed", "n")
OPENAI_FAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: (
        "Rate limit reached for requests. Limit: 500 / min. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}
OPENAI_UNPARSABLE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
    "not valid JSON.)"
)


def openai_error(
    status: int, message: str, kind: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


class OpenAITestServer(ScriptedServer):
    """Start with `with OpenAITestServer() as llm:`; point the client at `llm.base_url`."""

    path = "/v1/chat/completions"
    request_id_header = "x-request-id"
    unparsable = OPENAI_UNPARSABLE

    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.api_key = "test-openai-key"
        self.supports_json_schema = True  # False: refuse json_schema as older local servers do

    def error(self, status: int, message: str | None = None) -> JSONResponse:
        default = ("Request failed.", "server_error" if status >= 500 else "invalid_request_error")
        text, kind, code = OPENAI_FAULTS.get(status, (*default, None))
        return openai_error(status, message or text, kind, None, code)

    def unauthorised(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return openai_error(401, message, "invalid_request_error")
        key = header.removeprefix("Bearer ").strip()
        if key != self.api_key:
            shown = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:]
            message = f"Incorrect API key provided: {shown}."
            return openai_error(401, message, "invalid_request_error", None, "invalid_api_key")
        return None

    def invalid(self, body: dict[str, Any]) -> Response | None:
        try:
            check_openai_body(body, supports_json_schema=self.supports_json_schema)
        except InvalidRequestError as problem:
            kind = "invalid_request_error"
            return openai_error(400, problem.message, kind, problem.param, problem.code)
        return None

    def answer(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        prompt, completion = rough_tokens(body["messages"]), rough_tokens(content)
        return {
            "id": "chatcmpl-" + secrets.token_hex(14),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


def check_openai_body(body: dict[str, Any], *, supports_json_schema: bool) -> None:
    """Raise `InvalidRequestError` as OpenAI's validation would."""
    for name in body:
        if name not in OPENAI_PARAMETERS:
            raise InvalidRequestError(f"Unrecognized request argument supplied: {name}", name)
    if "model" not in body:
        raise InvalidRequestError("you must provide a model parameter", "model")
    openai_type(body["model"], "model", str, "a string")
    check_openai_messages(body.get("messages"))
    for name, (low, high) in OPENAI_RANGES.items():
        if name in body:
            check_openai_number(body[name], name, low, high)
    for name in OPENAI_INTEGERS:
        if name in body:
            openai_type(body[name], name, int, "an integer")
            if body[name] < 1 and name != "seed":
                raise InvalidRequestError(
                    f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                    f"but got {body[name]} instead.",
                    name,
                    "integer_below_min_value",
                )
    if body.get("n", 1) != 1:
        raise InvalidRequestError(
            "n must be 1: this test server scripts one choice per request", "n"
        )
    if body.get("stream") is True:
        raise InvalidRequestError("stream=true is not supported by this test server", "stream")
    if "response_format" in body:
        check_response_format(body["response_format"], supports_json_schema)


def check_openai_messages(messages: object) -> None:
    if messages is None:
        raise InvalidRequestError(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    items: list[Any] = openai_type(messages, "messages", list, "an array")
    if not items:
        raise InvalidRequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        message: dict[str, Any] = openai_type(item, where, dict, "an object")
        if "role" not in message:
            raise InvalidRequestError(
                f"Missing required parameter: '{where}.role'.",
                f"{where}.role",
                "missing_required_parameter",
            )
        role = message["role"]
        if role not in OPENAI_ROLES:
            supported = ", ".join(f"'{r}'" for r in OPENAI_ROLES[:-1])
            raise InvalidRequestError(
                f"Invalid value: '{role}'. Supported values are: {supported}, and 'tool'.",
                f"{where}.role",
                "invalid_value",
            )
        calls_tools = role == "assistant" and bool(message.get("tool_calls"))
        if "content" not in message and not calls_tools:
            raise InvalidRequestError(
                f"Missing required parameter: '{where}.content'.",
                f"{where}.content",
                "missing_required_parameter",
            )
        content = message.get("content")
        if not (isinstance(content, str | list) or (content is None and role == "assistant")):
            raise InvalidRequestError(
                f"Invalid type for '{where}.content': expected one of a string or array of "
                f"objects, but got {json_type(content)} instead.",
                f"{where}.content",
                "invalid_type",
            )


def check_openai_number(value: object, name: str, low: float, high: float) -> None:
    number = openai_type(value, name, int | float, "a decimal")
    if number > high:
        raise InvalidRequestError(
            f"Invalid '{name}': decimal above maximum value. Expected a value <= {high}, "
            f"but got {number} instead.",
            name,
            "decimal_above_max_value",
        )
    if number < low:
        raise InvalidRequestError(
            f"Invalid '{name}': decimal below minimum value. Expected a value >= {low}, "
            f"but got {number} instead.",
            name,
            "decimal_below_min_value",
        )


def check_response_format(value: object, supports_json_schema: bool) -> None:
    response_format = openai_type(value, "response_format", dict, "an object")
    kind = response_format.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise InvalidRequestError(
            f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', "
            "and 'text'.",
            "response_format.type",
            "invalid_value",
        )
    if kind != "json_schema":
        return
    if not supports_json_schema:
        raise InvalidRequestError(
            "response_format type 'json_schema' is not supported by this server", "response_format"
        )
    where = "response_format.json_schema"
    spec = openai_type(response_format.get("json_schema"), where, dict, "an object")
    openai_type(spec.get("name"), f"{where}.name", str, "a string")
    openai_type(spec.get("schema"), f"{where}.schema", dict, "an object")


def openai_type(value: Any, where: str, expected: Any, described: str) -> Any:
    """`value` when it is of the `expected` type (booleans are not numbers), else `InvalidRequestError`."""
    if value is None:
        raise InvalidRequestError(
            f"Missing required parameter: '{where}'.", where, "missing_required_parameter"
        )
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise InvalidRequestError(
            f"Invalid type for '{where}': expected {described}, but got {json_type(value)} instead.",
            where,
            "invalid_type",
        )
    return value


# --- Anthropic Messages ---------------------------------------------------------------------

ANTHROPIC_PARAMETERS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "tools",
        "tool_choice",
    }
)
ANTHROPIC_FAULTS = {
    400: (
        "invalid_request_error",
        "There was an issue with the format or content of your request.",
    ),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "Number of requests has exceeded your rate limit. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
TOOL_CHOICES = ("auto", "any", "tool", "none")


def anthropic_error(status: int, kind: str, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status)


class AnthropicTestServer(ScriptedServer):
    """Start with `with AnthropicTestServer() as llm:`; the client posts to `base_url`/v1/messages."""

    path = "/v1/messages"
    request_id_header = "request-id"
    unparsable = "There was an issue with your request body: it is not a JSON object."

    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_key = "test-anthropic-key"

    def error(self, status: int, message: str | None = None) -> JSONResponse:
        default = "api_error" if status >= 500 else "invalid_request_error"
        kind, text = ANTHROPIC_FAULTS.get(status, (default, "Request failed."))
        return anthropic_error(status, kind, message or text)

    def unauthorised(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return anthropic_error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            message = "anthropic-version: header is required"
            return anthropic_error(400, "invalid_request_error", message)
        return None

    def invalid(self, body: dict[str, Any]) -> Response | None:
        try:
            check_anthropic_body(body)
        except InvalidRequestError as problem:
            return anthropic_error(400, "invalid_request_error", problem.message)
        return None

    def answer(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        tool = forced_tool(body)
        arguments = json_object(content) if tool is not None else None
        if tool is not None and arguments is not None:
            block = {
                "type": "tool_use",
                "id": "toolu_" + secrets.token_hex(12),
                "name": tool,
                "input": arguments,
            }
            stop_reason = "tool_use"
        else:
            block, stop_reason = {"type": "text", "text": content}, "end_turn"
        return {
            "id": "msg_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [block],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": rough_tokens([body.get("system"), body["messages"]]),
                "output_tokens": rough_tokens(content),
            },
        }


def forced_tool(body: dict[str, Any]) -> str | None:
    """The tool the request makes the model call, if it forces one."""
    choice, tools = body.get("tool_choice") or {}, body.get("tools") or []
    if choice.get("type") == "tool":
        return str(choice["name"])
    if choice.get("type") == "any" and len(tools) == 1:
        return str(tools[0]["name"])
    return None


def check_anthropic_body(body: dict[str, Any]) -> None:
    """Raise `InvalidRequestError` with the message Anthropic's validation would give."""
    for name in body:
        if name not in ANTHROPIC_PARAMETERS:
            raise InvalidRequestError(f"{name}: Extra inputs are not permitted")
    anthropic_type(body, "model", str, "a valid string", required=True)
    max_tokens = anthropic_type(body, "max_tokens", int, "a valid integer", required=True)
    if max_tokens < 1:
        raise InvalidRequestError("max_tokens: Input should be greater than or equal to 1")
    check_anthropic_messages(anthropic_type(body, "messages", list, "a valid list", required=True))
    system = body.get("system")
    if isinstance(system, list):
        check_blocks(system, "system", text_only=True)
    elif system is not None:
        anthropic_type(body, "system", str, "a valid string")
    for name in ("temperature", "top_p"):
        value = anthropic_type(body, name, int | float, "a valid number")
        if value is not None and not 0 <= value <= 1:
            raise InvalidRequestError(
                f"{name}: Input should be less than or equal to 1 and at least 0"
            )
    anthropic_type(body, "top_k", int, "a valid integer")
    for i, sequence in enumerate(
        anthropic_type(body, "stop_sequences", list, "a valid list") or []
    ):
        if not isinstance(sequence, str):
            raise InvalidRequestError(f"stop_sequences.{i}: Input should be a valid string")
    anthropic_type(body, "metadata", dict, "a valid dictionary")
    names = check_tools(anthropic_type(body, "tools", list, "a valid list") or [])
    choice = anthropic_type(body, "tool_choice", dict, "a valid dictionary")
    if choice is not None:
        check_tool_choice(choice, names)


def check_anthropic_messages(messages: list[Any]) -> None:
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where}: Input should be a valid dictionary")
        for key in message:
            if key not in ("role", "content"):
                raise InvalidRequestError(f"{where}.{key}: Extra inputs are not permitted")
        if message.get("role") not in ("user", "assistant"):
            raise InvalidRequestError(f"{where}.role: Input should be 'user' or 'assistant'")
        content = anthropic_type(
            message, "content", str | list, "a valid string or list", where=where, required=True
        )
        if isinstance(content, list):
            check_blocks(content, f"{where}.content", text_only=False)
        last_assistant = i == len(messages) - 1 and message["role"] == "assistant"
        if not content and not last_assistant:
            raise InvalidRequestError(
                f"{where}: all messages must have non-empty content except for the optional "
                "final assistant message"
            )
    if messages[0]["role"] != "user":
        raise InvalidRequestError('messages: first message must use the "user" role')


def check_blocks(blocks: list[Any], where: str, *, text_only: bool) -> None:
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequestError(f"{where}.{i}.type: Field required")
        if text_only and block["type"] != "text":
            raise InvalidRequestError(f"{where}.{i}.type: Input should be 'text'")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise InvalidRequestError(f"{where}.{i}.text: Field required")
        if block["type"] == "text" and not block["text"]:
            raise InvalidRequestError(f"{where}: text content blocks must be non-empty")


def check_tools(tools: list[Any]) -> list[str]:
    """The declared tool names."""
    names = []
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise InvalidRequestError(f"{where}: Input should be a valid dictionary")
        for key in tool:
            if key not in ("name", "description", "input_schema", "cache_control"):
                raise InvalidRequestError(f"{where}.{key}: Extra inputs are not permitted")
        names.append(
            anthropic_type(tool, "name", str, "a valid string", where=where, required=True)
        )
        anthropic_type(tool, "input_schema", dict, "a valid dictionary", where=where, required=True)
        anthropic_type(tool, "description", str, "a valid string", where=where)
    if len(set(names)) != len(names):
        raise InvalidRequestError("tools: Tool names must be unique.")
    return names


def check_tool_choice(choice: dict[str, Any], names: list[str]) -> None:
    kind = choice.get("type")
    if kind not in TOOL_CHOICES:
        expected = ", ".join(f"'{c}'" for c in TOOL_CHOICES)
        raise InvalidRequestError(
            f"tool_choice: Input tag '{kind}' found using 'type' does not match any of the "
            f"expected tags: {expected}"
        )
    for key in choice:
        if key not in ("type", "name", "disable_parallel_tool_use"):
            raise InvalidRequestError(f"tool_choice.{kind}.{key}: Extra inputs are not permitted")
    if kind in ("any", "tool") and not names:
        raise InvalidRequestError(
            "tool_choice: tool_choice may only be specified while providing tools."
        )
    if kind == "tool":
        name = anthropic_type(
            choice, "name", str, "a valid string", where="tool_choice.tool", required=True
        )
        if name not in names:
            raise InvalidRequestError(f"tool_choice.tool.name: Tool '{name}' not found in tools")


def anthropic_type(
    container: dict[str, Any],
    key: str,
    expected: Any,
    described: str,
    *,
    where: str = "",
    required: bool = False,
) -> Any:
    """`container[key]` when present and of the `expected` type (booleans are not numbers)."""
    path = f"{where}.{key}" if where else key
    if key not in container:
        if required:
            raise InvalidRequestError(f"{path}: Field required")
        return None
    value = container[key]
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise InvalidRequestError(f"{path}: Input should be {described}")
    return value


# --- shared ---------------------------------------------------------------------------------


def json_object(raw: str | bytes) -> dict[str, Any] | None:
    """`raw` parsed, when it is a JSON object."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def rough_tokens(value: object) -> int:
    """About four characters a token, counting the strings in `value`; at least 1."""
    return max(text_length(value) // 4, 1)


def text_length(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(text_length(v) for v in value.values())
    if isinstance(value, list):
        return sum(text_length(v) for v in value)
    return 0


def json_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), "an unknown type")
