"""Raw RFC 5322 bytes to a `ParsedMessage`, without ever raising on bad input.

Mail is untrusted and often broken: unknown or lying charsets, 8-bit bytes in headers, broken
multipart boundaries, missing headers, megabyte-long lines. The standard library's parser (modern
policy) is lenient and records defects instead of failing; around it, every header and every part
is decoded defensively, falling back (declared charset, then UTF-8, then Windows-1252, then
Latin-1, which cannot fail) rather than crashing. Only mail that has nothing to work with (no
headers, no sender) is refused, as `UnparseableMessageError`, so that the caller quarantines it
with the reason instead of dropping it.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
import email.utils
import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from functools import lru_cache
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import nh3
from mailparser_reply.parser import EmailMessage as ReplyText  # type: ignore[import-untyped]

from communication_agent.services.auto_replies import automated_reason

# The words each language's reply headers ("On ... wrote:", "Am ... schrieb", "From:" blocks)
# contain. Matching one big alternation over all 13 languages costs ~2 ms a message; running the
# parser only with the languages whose markers occur keeps the coverage at a fifth of the cost.
REPLY_MARKERS: dict[str, tuple[str, ...]] = {
    "de": ("schrieb", "von:"),
    "fr": ("a écrit", "de :", "de:"),
    "es": ("escribió", "de:"),
    "it": ("ha scritto", "da:"),
    "nl": ("schreef", "van:"),
    "pl": ("napisał", "nadesłał", "od:"),
    "sv": ("skrev", "från:"),
    "da": ("skrev", "fra:"),
    "cs": ("napsal", "od:"),
    "ja": ("年",),
    "ko": ("년",),
    "zh": ("写道",),
}
FALLBACK_CHARSETS = ("utf-8", "cp1252", "latin-1")
MAX_SUBJECT = 998
MAX_HEADER_ID = 998
MAX_STORED_ID_BYTES = 500

SAFE_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "div", "em", "font", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "small", "span",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
SAFE_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align"},
    "*": {"dir", "lang"},
}


class _MemoisingHeaderRegistry(HeaderRegistry):
    """The standard header registry, remembering what it already built.

    The modern policy parses a header into an object on every read, and the parser itself reads
    `Content-Type` again and again while walking a message; the registry also builds a fresh class
    per read. Header objects are immutable, so one per distinct short (name, value) is shared:
    profiling showed this header work was over half of the parse time of typical mail. The memo
    is small on purpose: the hits are a message's parts re-reading their own headers and common
    values (`text/plain; charset=utf-8`); each entry holds a parse tree of a few KiB, and a
    large memo of unique headers made the sync's memory grow with the mailbox.
    """

    MAX_REMEMBERED = 256
    MAX_VALUE = 512

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._built: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) > self.MAX_VALUE:
            return self[name](name, value)
        key = (name, value)
        header = self._built.get(key)
        if header is None:
            if len(self._built) >= self.MAX_REMEMBERED:
                self._built.clear()
            header = self._built[key] = self[name](name, value)
        return header


# The modern policy (RFC 6532 aware, defect-recording), with the memoising registry.
POLICY = email.policy.default.clone(header_factory=_MemoisingHeaderRegistry())


# Styles and attributes that hide text from a person while leaving it in the text a machine reads:
# the classic carrier of instructions aimed at a language model.
HIDDEN_TEXT = re.compile(
    r"""(?ix)
    style\s*=\s*["'][^"']*(
        display\s*:\s*none | visibility\s*:\s*hidden | font-size\s*:\s*0(?![.\d]*[1-9])
        | opacity\s*:\s*0(?![.\d]*[1-9])
        | (?<![-\w])color\s*:\s*(\#fff\b|\#ffffff\b|white\b|transparent)
        | (max-)?height\s*:\s*0(px)?\s*[;"'] | text-indent\s*:\s*-\d{3,}
    )
    | <[a-z]+[^>]*\shidden[\s>=]
    | <style[^>]*>[^<]*(display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])
        |opacity\s*:\s*0(?![.\d]*[1-9]))
    | (?<![-\w])color\s*:\s*(\#[ef][0-9a-f][ef][0-9a-f][ef][0-9a-f]\b|\#[ef][ef][ef]\b
        |rgba?\(\s*2[4-5]\d\s*,\s*2[4-5]\d\s*,\s*2[4-5]\d)
    """
)


class UnparseableMessageError(Exception):
    """The bytes are not a usable email; the message says why (stored with the quarantine)."""


@dataclass(frozen=True)
class AttachmentMeta:
    filename: str
    content_type: str
    size: int
    content_id: str | None
    part_index: int


@dataclass
class ParsedMessage:
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    from_address: str
    from_name: str
    to_addresses: list[str]
    cc_addresses: list[str]
    date: datetime | None
    body_text: str
    body_html: str | None
    new_content_text: str
    attachments: list[AttachmentMeta] = field(default_factory=list)
    automated_reason: str | None = None
    defects: list[str] = field(default_factory=list)
    hidden_html: bool = False  # the HTML hides text from the reader (a prompt-injection cue)

    @property
    def is_automated(self) -> bool:
        return self.automated_reason is not None


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse `raw`; raise `UnparseableMessageError` only when there is nothing usable."""
    if not raw or not raw.strip():
        raise UnparseableMessageError("empty message")
    message = email.message_from_bytes(raw, policy=POLICY)
    if not isinstance(message, EmailMessage) or not list(message.keys()):
        raise UnparseableMessageError("no headers found: this does not look like an email")
    from_name, from_address = _first_address(message, "From")
    if not from_address:
        from_name, from_address = _first_address(message, "Sender")
    if not from_address:
        raise UnparseableMessageError("no sender address in From or Sender")
    body_text, body_html, attachments = _walk_parts(message)
    if not body_text and body_html:
        body_text = html_to_text(body_html)
    return ParsedMessage(
        message_id=_message_id(raw_header(message, "Message-ID")),
        in_reply_to=_message_id(raw_header(message, "In-Reply-To")),
        references=_message_ids(raw_header(message, "References")),
        subject=_one_line(header_text(message, "Subject"))[:MAX_SUBJECT],
        from_address=from_address,
        from_name=from_name,
        to_addresses=_addresses(message, "To"),
        cc_addresses=_addresses(message, "Cc"),
        date=_date(_one_line(raw_header(message, "Date"))),
        body_text=body_text,
        body_html=sanitise_html(body_html) if body_html else None,
        new_content_text=new_content(body_text),
        attachments=attachments,
        automated_reason=automated_reason(message, from_address),
        hidden_html=bool(body_html and HIDDEN_TEXT.search(body_html)),
        defects=sorted({type(d).__name__ for d in _all_defects(message)}),
    )


def header_text(message: Message, name: str) -> str:
    """A header's decoded value, or "" when absent or undecodable (never raises)."""
    try:
        value = message.get(name)
    except (ValueError, TypeError, LookupError, IndexError):  # broken encoded-words and the like
        value = None
        for key, raw_value in message.raw_items():
            if key.lower() == name.lower():
                value = raw_value
                break
    if value is None:
        return ""
    text = str(value).replace("\x00", "")
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def raw_header(message: Message, name: str) -> str:
    """A header's value as it came, unparsed: enough for ids and dates, which are plain ASCII,
    and far cheaper than building the modern policy's header object for each."""
    wanted = name.lower()
    for key, value in message.raw_items():
        if key.lower() == wanted:
            text = str(value).replace("\x00", "")
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return ""


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _first_address(message: Message, header: str) -> tuple[str, str]:
    pairs = _address_pairs(message, header)
    return pairs[0] if pairs else ("", "")


def _address_pairs(message: Message, header: str) -> list[tuple[str, str]]:
    """Split the raw header into addresses first, then decode each display name: an encoded
    name may hide a comma (`=?utf-8?q?Doe=2C_John?=`), which decoding first would split. This
    also skips building the modern policy's address-list object, a third of the header cost."""
    raw = raw_header(message, header)
    if not raw:
        return []
    pairs = []
    for name, raw_address in email.utils.getaddresses([_one_line(raw)]):
        address = raw_address.strip().lower()
        if "@" in address and " " not in address and len(address) <= 320:
            pairs.append((_one_line(_decode_words(name))[:200], address))
    return pairs


def _decode_words(text: str) -> str:
    """RFC 2047 encoded-words decoded; the text as it is when they are absent or broken."""
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (LookupError, UnicodeError, ValueError, email.errors.MessageError):
        return text


def _addresses(message: Message, header: str) -> list[str]:
    return [address for _name, address in _address_pairs(message, header)]


_ID = re.compile(r"<[^<>\s]+>")


def _message_id(raw: str) -> str | None:
    found: list[str] = _ID.findall(raw)
    if found:
        return storable_id(found[0])
    bare = raw.strip().strip("<>").strip()  # "<>" and "" are no id at all
    return storable_id(f"<{bare}>") if bare and " " not in bare else None


def _message_ids(raw: str) -> list[str]:
    found: list[str] = _ID.findall(raw)
    return [storable_id(i) for i in found]


def storable_id(message_id: str) -> str:
    """The id as stored and compared. A very long one (a forged header can be 998 characters
    of 3-byte CJK, past PostgreSQL's index limit) is replaced by its digest, the same way
    wherever it appears, so threading and dedupe still match it."""
    if len(message_id.encode("utf-8")) <= MAX_STORED_ID_BYTES:
        return message_id
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()
    return f"<sha256.{digest}@long-message-id.invalid>"


def _date(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):  # year 9999 -0500 overflows too
        return None


def decode_part(part: Message) -> str:
    """A text part's content, whatever its transfer encoding and declared charset."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload() or "").encode("utf-8", "surrogateescape")
    declared = part.get_content_charset()
    for charset in (declared, *FALLBACK_CHARSETS) if declared else FALLBACK_CHARSETS:
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError, ValueError):  # "utf-8\x00" is a ValueError
            continue
    return payload.decode("latin-1")  # pragma: no cover  (latin-1 decodes any byte string)


def _walk_parts(message: Message) -> tuple[str, str | None, list[AttachmentMeta]]:
    text: str | None = None
    html_body: str | None = None
    attachments: list[AttachmentMeta] = []
    for index, part in enumerate(message.walk()):
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = _safe_filename(part.get_filename(failobj=None) if _has_name(part) else None)
        disposition = (part.get_content_disposition() or "").lower()
        if disposition == "attachment" or filename or not content_type.startswith("text/"):
            if content_type == "message/delivery-status" or content_type.startswith("multipart/"):
                continue
            payload = part.get_payload(decode=True)
            attachments.append(
                AttachmentMeta(
                    filename=filename or f"part-{index}",
                    content_type=content_type,
                    size=len(payload) if isinstance(payload, bytes) else 0,
                    content_id=_message_id(str(part.get("Content-ID", ""))),
                    part_index=index,
                )
            )
        elif content_type == "text/plain" and text is None:
            text = decode_part(part)
        elif content_type == "text/html" and html_body is None:
            html_body = decode_part(part)
    return _normalise_newlines(text or ""), html_body, attachments


def _has_name(part: Message) -> bool:
    try:
        return part.get_filename() is not None
    except (ValueError, TypeError, LookupError, IndexError):
        return False


def _safe_filename(name: str | None) -> str:
    """Only the last path component, no control characters: attachment names are untrusted."""
    if not name:
        return ""
    base = PureWindowsPath(PurePosixPath(name).name).name
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip().lstrip(".")
    return base[:255]


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def sanitise_html(raw_html: str) -> str:
    """Keep structure and text; drop scripts, styles, event handlers, forms and foreign schemes."""
    return nh3.clean(
        raw_html.replace("\x00", ""),
        tags=SAFE_TAGS,
        attributes=SAFE_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "cid", "data"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


_BLOCK_BOUNDARY = re.compile(
    r"(?i)<\s*(br|/?p|/?div|/?tr|/?li|/?h[1-6]|/?blockquote|/?table)\b[^>]*>"
)


def html_to_text(raw_html: str) -> str:
    """Readable text from an HTML-only message (for display fallbacks and the model)."""
    with_breaks = _BLOCK_BOUNDARY.sub("\n", raw_html)
    text = html.unescape(
        nh3.clean(with_breaks, tags=set(), clean_content_tags={"script", "style", "head", "title"})
    )
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def new_content(body_text: str) -> str:
    """The customer's newest words: quoted history and signatures removed. Falls back to the
    whole text when the reply parser finds nothing (better too much than nothing)."""
    if not body_text.strip():
        return ""
    try:
        replies = _read_replies(body_text, _reply_languages(body_text))
    except Exception:  # a third-party heuristic must never cost us the message
        return body_text.strip()
    latest = replies[0].body.strip() if replies else ""
    return latest or body_text.strip()


def _all_defects(message: Message) -> list[object]:
    defects: list[object] = []
    for part in message.walk():
        defects.extend(getattr(part, "defects", []))
    return defects


def _reply_languages(text: str) -> tuple[str, ...]:
    lowered = text.lower()
    found = [lang for lang, markers in REPLY_MARKERS.items() if any(m in lowered for m in markers)]
    return ("en", *found)


def _read_replies(text: str, languages: tuple[str, ...]) -> list[Any]:
    """mail-parser-reply's fragments of `text`, with the language set's regexes compiled once.

    The library compiles its three big regexes for every message and relies on `re`'s cache,
    which the stdlib's MIME parser floods with one boundary pattern per multipart message, so
    they were recompiled nearly every time (a fifth of the parse time). They are dataclass
    fields of its message type, so they are passed in ready-made.
    """
    header, signature, disclaimers = _reply_regexes(languages)
    return list(
        ReplyText(
            text=text,
            languages=list(languages),
            _header_regex=header,
            _signature_regex=signature,
            _disclaimers_regex=disclaimers,
        )
        .read()
        .replies
    )


@lru_cache(maxsize=128)
def _reply_regexes(languages: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    template = ReplyText(text="", languages=list(languages))
    return template.HEADER_REGEX, template.SIGNATURE_REGEX, template.DISCLAIMERS_REGEX
