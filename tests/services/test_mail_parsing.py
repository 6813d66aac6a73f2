"""The parser never raises on broken mail except to quarantine what has nothing usable."""

from datetime import UTC, datetime

import pytest

from communication_agent.services.mail_parsing import (
    UnparseableMessageError,
    html_to_text,
    parse_message,
    sanitise_html,
)

SIMPLE = b"""From: "Anna Schmidt" <Anna@Example.org>
To: support@company.example, "Bob" <bob@company.example>
Cc: boss@example.org
Subject: Order not arrived
Date: Mon, 3 Nov 2025 10:00:00 +0100
Message-ID: <abc-1@mail.example.org>
In-Reply-To: <ours-7@company.example>
References: <first@company.example> <ours-7@company.example>
Content-Type: text/plain; charset=utf-8

Still waiting for my parcel.

Best,
Anna
--
Anna Schmidt

On Mon, Nov 3, 2025 at 9:00 AM Support <support@company.example> wrote:
> We shipped it yesterday.
"""


def _mail(headers: str, body: bytes = b"Hello", extra: bytes = b"") -> bytes:
    return headers.strip().encode() + b"\n" + extra + b"\n" + body


def test_a_plain_reply_is_parsed_completely() -> None:
    parsed = parse_message(SIMPLE)
    assert parsed.from_address == "anna@example.org"
    assert parsed.from_name == "Anna Schmidt"
    assert parsed.to_addresses == ["support@company.example", "bob@company.example"]
    assert parsed.cc_addresses == ["boss@example.org"]
    assert parsed.subject == "Order not arrived"
    assert parsed.date == datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
    assert parsed.message_id == "<abc-1@mail.example.org>"
    assert parsed.in_reply_to == "<ours-7@company.example>"
    assert parsed.references == ["<first@company.example>", "<ours-7@company.example>"]
    assert "We shipped it yesterday" in parsed.body_text
    assert parsed.new_content_text == "Still waiting for my parcel."
    assert not parsed.is_automated


@pytest.mark.parametrize(
    ("body", "header_line", "expected"),
    [
        (
            "Danke, das hat geholfen!\n\nAm Mo., 3. Nov. 2025 um 10:00 Uhr schrieb Support <s@x.de>:\n> Bitte neu starten.",
            "",
            "Danke, das hat geholfen!",
        ),
        (
            "Merci beaucoup !\n\nLe lun. 3 nov. 2025 à 10:00, Support <s@x.fr> a écrit :\n> Essayez encore.",
            "",
            "Merci beaucoup !",
        ),
    ],
)
def test_quoted_history_is_stripped_in_several_languages(
    body: str, header_line: str, expected: str
) -> None:
    raw = _mail(
        "From: a@example.org\nSubject: x\nContent-Type: text/plain; charset=utf-8", body.encode()
    )
    assert parse_message(raw).new_content_text == expected


def test_an_unknown_charset_falls_back_instead_of_crashing() -> None:
    raw = _mail(
        "From: a@example.org\nContent-Type: text/plain; charset=x-no-such-charset", "café".encode()
    )
    assert parse_message(raw).body_text == "café"


def test_a_lying_charset_falls_back_to_windows_1252() -> None:
    raw = _mail(
        "From: a@example.org\nContent-Type: text/plain; charset=utf-8", b"Caf\xe9 \x93quoted\x94"
    )
    assert parse_message(raw).body_text == "Café \u201cquoted\u201d"


def test_raw_8bit_headers_are_decoded() -> None:
    raw = "From: Zoë <zoe@example.org>\nSubject: Größe ändern\n\nhi".encode()
    parsed = parse_message(raw)
    assert parsed.subject == "Größe ändern"
    assert parsed.from_name == "Zoë"


def test_encoded_display_names_are_decoded_after_the_addresses_are_split() -> None:
    raw = _mail(
        "From: =?utf-8?q?M=C3=BCller=2C_J=C3=BCrgen?= <jm@example.org>\n"
        "To: =?iso-8859-1?q?Ren=E9?= <rene@example.org>, =?utf-8?b?5bGx55Sw?= <yamada@example.jp>"
    )
    parsed = parse_message(raw)
    assert (parsed.from_name, parsed.from_address) == ("Müller, Jürgen", "jm@example.org")
    assert parsed.to_addresses == ["rene@example.org", "yamada@example.jp"]


def test_broken_encoded_words_and_garbage_dates_do_not_crash() -> None:
    raw = _mail(
        "From: =?utf-8?q?broken <a@example.org>\nSubject: =?x-bogus?B?!!!?=\nDate: yesterday-ish\nMessage-ID: no-brackets@x"
    )
    parsed = parse_message(raw)
    assert parsed.from_address == "a@example.org"
    assert parsed.date is None
    assert parsed.message_id == "<no-brackets@x>"


def test_broken_multipart_still_yields_the_text() -> None:
    raw = _mail(
        'From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="XYZ"',
        b"--XYZ\nContent-Type: text/plain\n\nThe real text\n--XYZ\nContent-Type: text/html\n\n<p>The <b>real</b> text",
    )
    parsed = parse_message(raw)
    assert parsed.body_text.strip() == "The real text"
    assert parsed.body_html is not None
    assert "<b>real</b>" in parsed.body_html
    assert parsed.defects  # the missing closing boundary was recorded


def test_a_multipart_whose_boundary_never_appears() -> None:
    raw = _mail(
        'From: a@example.org\nContent-Type: multipart/mixed; boundary="NEVER"', b"just text"
    )
    parsed = parse_message(raw)
    assert parsed.from_address == "a@example.org"
    assert "StartBoundaryNotFoundDefect" in parsed.defects


def test_missing_optional_headers_are_fine() -> None:
    parsed = parse_message(b"From: a@example.org\n\nbody only")
    assert (parsed.message_id, parsed.subject, parsed.date, parsed.to_addresses) == (
        None,
        "",
        None,
        [],
    )
    assert parsed.body_text == "body only"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"   \r\n  ", "empty message"),
        (b"\x00\x01\x02\xff\xfe binary garbage", "no headers"),
        (b"Subject: no sender\n\nhello", "no sender"),
        (b"From: not an address\nSubject: x\n\nhello", "no sender"),
    ],
)
def test_mail_with_nothing_usable_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(UnparseableMessageError, match=reason):
        parse_message(raw)


def test_huge_lines_are_kept_whole() -> None:
    line = b"x" * 2_000_000
    parsed = parse_message(_mail("From: a@example.org\nSubject: big", line))
    assert len(parsed.body_text) == 2_000_000


def test_html_only_mail_is_sanitised_and_gets_a_text_version() -> None:
    html = (
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>"
        '<p onclick="steal()">Hello <b>there</b></p><img src="x" onerror="alert(2)">'
        '<a href="javascript:alert(3)">click</a><iframe src="https://evil"></iframe>'
        "<div>Second line</div></body></html>"
    )
    raw = _mail("From: a@example.org\nContent-Type: text/html; charset=utf-8", html.encode())
    parsed = parse_message(raw)
    assert parsed.body_html is not None
    for forbidden in (
        "<script",
        "onclick",
        "onerror",
        "javascript:",
        "<iframe",
        "<style",
        "alert(",
    ):
        assert forbidden not in parsed.body_html
    assert "<b>there</b>" in parsed.body_html
    assert parsed.body_text == "Hello there\nclick\nSecond line"


def test_attachments_are_listed_with_safe_names_and_sizes() -> None:
    raw = _mail(
        'From: a@example.org\nContent-Type: multipart/mixed; boundary="B"',
        b"--B\nContent-Type: text/plain\n\nSee attached\n"
        b'--B\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="../../etc/passwd"\n'
        b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n"
        b'--B\nContent-Type: image/png\nContent-Disposition: inline; filename="C:\\\\Users\\\\x\\\\evil\x01.png"\n'
        b"Content-ID: <img1@x>\n\nPNGDATA\n--B--\n",
    )
    parsed = parse_message(raw)
    assert parsed.body_text.strip() == "See attached"
    names = [(a.filename, a.content_type, a.size) for a in parsed.attachments]
    assert names[0] == ("passwd", "application/pdf", 9)
    assert names[1][0] == "evil.png"
    assert parsed.attachments[1].content_id == "<img1@x>"


@pytest.mark.parametrize(
    ("headers", "sender", "reason"),
    [
        ("Auto-Submitted: auto-replied", "a@example.org", "Auto-Submitted: auto-replied"),
        ("Precedence: bulk", "a@example.org", "Precedence: bulk"),
        ("Precedence: junk", "a@example.org", "Precedence: junk"),
        ("X-Autoreply: yes", "a@example.org", "X-Autoreply"),
        ("X-Autorespond: on", "a@example.org", "X-Autorespond"),
        ("List-Id: <news.example.org>", "a@example.org", "List-Id"),
        ("Return-Path: <>", "a@example.org", "empty Return-Path"),
        ("X-Other: 1", "MAILER-DAEMON@mx.example.org", "sent by mailer-daemon"),
        ("X-Other: 1", "postmaster@example.org", "sent by postmaster"),
        (
            'Content-Type: multipart/report; report-type=delivery-status; boundary="R"',
            "a@example.org",
            "delivery report (delivery-status)",
        ),
    ],
)
def test_automated_mail_is_recognised(headers: str, sender: str, reason: str) -> None:
    parsed = parse_message(_mail(f"From: {sender}\n{headers}", b"I am away"))
    assert parsed.automated_reason is not None
    assert reason in parsed.automated_reason


def test_human_mail_with_auto_submitted_no_is_not_automated() -> None:
    parsed = parse_message(
        _mail("From: a@example.org\nAuto-Submitted: no\nReturn-Path: <a@example.org>")
    )
    assert parsed.automated_reason is None


def test_sanitiser_and_text_helpers_on_their_own() -> None:
    assert sanitise_html('<p style="x">a</p><form><input name=x></form>') == "<p>a</p>"
    assert "rel=" in sanitise_html('<a href="https://example.org">x</a>')
    assert html_to_text("<p>a&amp;b</p><p>c</p>") == "a&b\n\nc"  # paragraphs stay paragraphs
