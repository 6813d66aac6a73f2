"""Google's batch wire format, encoded and decoded without a network (odd responses included)."""

from __future__ import annotations

import pytest

from communication_agent.adapters.gmail_batch import (
    MAX_CALLS,
    BatchFormatError,
    decode_response,
    encode_request,
)


def _response_part(content_id: str, status: str, body: str, newline: str = "\r\n") -> str:
    return newline.join(
        [
            "--b1",
            "Content-Type: application/http",
            f"Content-ID: {content_id}",
            "",
            status,
            "Content-Type: application/json; charset=UTF-8",
            "Retry-After: 7",
            "",
            body,
            "",
        ]
    )


def test_a_request_is_one_path_only_get_per_part_numbered_for_the_answers() -> None:
    body, content_type = encode_request(["/gmail/v1/users/me/messages/a?format=raw", "/x/b"])
    boundary = content_type.split("boundary=")[1]
    text = body.decode()
    assert content_type.startswith("multipart/mixed; boundary=batch_")
    assert text.count(f"--{boundary}\r\nContent-Type: application/http\r\n") == 2
    assert "Content-ID: <item0>\r\n\r\nGET /gmail/v1/users/me/messages/a?format=raw\r\n" in text
    assert "Content-ID: <item1>\r\n\r\nGET /x/b\r\n" in text
    assert text.endswith(f"--{boundary}--\r\n")


@pytest.mark.parametrize("calls", [0, MAX_CALLS + 1])
def test_a_request_holds_one_to_a_hundred_calls(calls: int) -> None:
    with pytest.raises(ValueError, match="1 to 100"):
        encode_request(["/p"] * calls)


def test_responses_map_back_by_content_id_whatever_their_order_and_status() -> None:
    body = (
        _response_part("<response-item1>", "HTTP/1.1 429 Too Many Requests", '{"error": {}}')
        + _response_part("<response-item0>", "HTTP/1.1 200 OK", '{"id": "a"}')
        + "--b1--\r\n"
    )
    items = decode_response('multipart/mixed; boundary="b1"', body.encode(), calls=2)
    assert (items[0].status, items[0].body) == (200, {"id": "a"})
    assert (items[1].status, items[1].headers["retry-after"]) == (429, "7")


def test_odd_parts_are_skipped_so_their_calls_are_retried() -> None:
    body = (
        _response_part("<response-item0>", "HTTP/1.1 200 OK", '{"id": "a"}', newline="\n")
        + _response_part("<response-item9>", "HTTP/1.1 200 OK", "{}")  # not a call we made
        + _response_part("<other>", "HTTP/1.1 200 OK", "{}")
        + _response_part("<response-item1>", "garbage", "{}")
        + _response_part("<response-item2>", "HTTP/1.1 200 OK", "not json")
        + "--b1--"
    )
    items = decode_response("multipart/mixed; boundary=b1", body.encode(), calls=3)
    assert sorted(items) == [0, 2]
    assert items[0].body == {"id": "a"}  # LF line endings are read too
    assert items[2].body == {}  # an unreadable body is empty, not a crash


@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/mixed", "text/html; boundary=x"]
)
def test_a_response_that_is_not_a_batch_is_refused(content_type: str) -> None:
    with pytest.raises(BatchFormatError, match="multipart/mixed"):
        decode_response(content_type, b'{"error": {}}', calls=1)
