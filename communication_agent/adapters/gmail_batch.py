"""Google's batch wire format: many API calls in one HTTP request (`multipart/mixed`).

Fetching mail one `messages.get` per HTTP request spends more of the sync's time in the HTTP
stack than in parsing and storing combined; a batch of up to 50 calls (Google's advice; the hard
limit is 100) costs one request. Each part of the request is `Content-Type: application/http`
with a `Content-ID`, and its body a complete HTTP request with a path-only URL; the response is
`multipart/mixed` too, each part an HTTP response whose `Content-ID` is the request's prefixed
with `response-`. Inner calls succeed or fail one by one: a batch can hold a 200, a 404 and a
429 side by side, which is why the caller gets one `BatchItem` per call.

This module only encodes and decodes (no I/O), so its handling of odd responses is tested
directly; `GmailProvider.fetch_many` does the calling and the retrying.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

MAX_CALLS = 100
ADVISED_CALLS = 50

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)?\s+(\d{3})")
_ITEM_ID = re.compile(r"<?(?:response-)?([^<>]+?)>?$")


class BatchFormatError(ValueError):
    """The batch response cannot be read at all (every call in it is then retried)."""


@dataclass(frozen=True)
class BatchItem:
    """One inner response: its status, headers (lower-cased names) and JSON body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


def encode_request(paths: list[str]) -> tuple[bytes, str]:
    """A batch of GET calls (`paths` are path-only URLs with their query); returns the body and
    its Content-Type. Parts are numbered from 0 in their Content-ID so responses map back."""
    if not 0 < len(paths) <= MAX_CALLS:
        raise ValueError(f"a batch holds 1 to {MAX_CALLS} calls, not {len(paths)}")
    boundary = f"batch_{secrets.token_hex(16)}"
    lines = []
    for index, path in enumerate(paths):
        lines += [
            f"--{boundary}",
            "Content-Type: application/http",
            f"Content-ID: <item{index}>",
            "",
            f"GET {path}",
            "",
        ]
    lines.append(f"--{boundary}--")
    body = ("\r\n".join(lines) + "\r\n").encode("ascii")
    return body, f"multipart/mixed; boundary={boundary}"


def decode_response(content_type: str, body: bytes, calls: int) -> dict[int, BatchItem]:
    """The inner responses by call index. Calls missing from the response are simply absent
    (the caller retries them); a response that is not a readable batch raises."""
    match = _BOUNDARY.search(content_type)
    if not match or not content_type.lower().startswith("multipart/mixed"):
        raise BatchFormatError(f"expected a multipart/mixed batch response, got {content_type!r}")
    delimiter = b"--" + match.group(1).encode("latin-1")
    items: dict[int, BatchItem] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        parsed = _part(chunk)
        if parsed is not None and 0 <= parsed[0] < calls:
            items[parsed[0]] = parsed[1]
    return items


def _part(chunk: bytes) -> tuple[int, BatchItem] | None:
    part_headers, inner = _split_head(chunk.lstrip(b"\r\n"))
    content_id = _headers(part_headers).get("content-id", "")
    id_match = _ITEM_ID.match(content_id.strip())
    if not id_match or not id_match.group(1).startswith("item"):
        return None
    try:
        index = int(id_match.group(1).removeprefix("item"))
    except ValueError:
        return None
    head, payload = _split_head(inner)
    status_line, _, header_block = head.partition(b"\n")
    status = _STATUS_LINE.match(status_line.strip())
    if status is None:
        return None
    try:
        decoded = json.loads(payload.strip() or b"{}")
    except ValueError:
        decoded = {}
    return index, BatchItem(
        status=int(status.group(1)),
        headers=_headers(header_block),
        body=decoded if isinstance(decoded, dict) else {},
    )


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Split at the first blank line, whether lines end in CRLF (as Google sends) or LF."""
    crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf <= lf):
        return data[:crlf], data[crlf + 4 :]
    if lf != -1:
        return data[:lf], data[lf + 2 :]
    return data, b""


def _headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.decode("latin-1").splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers
