"""A message read from a mailbox, parsed without trusting it.

Whatever arrives in the coordinator's inbox may be broken, huge or hostile. `read_inbound` refuses a
message over a size limit, one with too many MIME parts or too deep a nesting, and one the email
package cannot parse, by raising `Unreadable` with a one-line reason; nothing else escapes it. What it
returns gives bounded, decoded views: headers on one line, the notification text of the top part, and
the headers of any message returned inside. Nothing here follows a link or loads remote content: HTML
is only stripped of its tags.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_HEADER_BYTES = 512 * 1024
MAX_PARTS = 200
MAX_DEPTH = 12
MAX_TEXT_CHARS = 256 * 1024  # text read from one part
DIAGNOSTIC_CHARS = 300

_PARSER = BytesParser(policy=policy.compat32)
_RETURNED_TYPES = ("message/rfc822", "message/global")
_HEADERS_TYPES = ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_PATTERN = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r"){1,8}"
_ADDRESS = re.compile(ADDRESS_PATTERN)
_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_ANGLE_ID = re.compile(r"<([^<>\s]{1,250})>")
_STATUS = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")
_URL_SECRET = re.compile(r"(\b[a-z][a-z0-9+.-]{1,15}://)(?:[^/\s@]{1,200}@)?([^\s?#]{0,300})(?:[?#]\S{0,2000})?",
                         re.IGNORECASE)
_KEY_VALUE_SECRET = re.compile(
    r"\b(pass(?:word|wd)?|pwd|secret|(?:api|access|secret)[_-]?key|(?:access|auth|refresh|id)[_-]?token|token"
    r"|sig(?:nature)?)([ \t]{0,3}[=:][ \t]{0,3})\S{1,2000}", re.IGNORECASE)
_AUTH_SECRET = re.compile(r"\b(AUTH[ \t]{1,3}(?:PLAIN|LOGIN|XOAUTH2?|CRAM-MD5)[ \t]{1,3})\S{1,2000}", re.IGNORECASE)
_LONG_TOKEN = re.compile(r"(?<![\w@.+/=-])[A-Za-z0-9+/_=-]{40,}(?![\w@.+/=-])")
_TAG = re.compile(r"<[^<>]{0,2000}>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]+")


class Unreadable(Exception):
    """The message is refused: too large, too deeply nested, or not a mail message at all."""


@dataclass(frozen=True)
class Part:
    """One MIME part, where it sits, and whether it lies inside a returned (message/rfc822) message."""

    message: Message
    depth: int
    enclosed: bool

    @property
    def type(self) -> str:
        try:
            return self.message.get_content_type()
        except Exception:  # a header the email package trips on
            return "application/octet-stream"


@dataclass
class Inbound:
    """A parsed message and its parts, walked once within the limits; every view is bounded."""

    message: Message
    parts: list[Part]
    size: int
    warnings: list[str] = field(default_factory=list)
    _notice: str | None = None

    def header(self, name: str, limit: int = DIAGNOSTIC_CHARS) -> str:
        """The header decoded (RFC 2047) on one line, cut at `limit` characters; "" when absent."""
        return header_text(self.message, name, limit)

    def raw_header(self, name: str, limit: int = 5000) -> str:
        """The header decoded but not cleaned (for Message-IDs, which must stay exact)."""
        return header_text(self.message, name, limit, clean=False)

    def all_headers(self, name: str) -> list[str]:
        try:
            values = self.message.get_all(name) or []
        except Exception:
            return []
        return [_decoded(value, 2000, clean=False) for value in values[:20]]

    def addresses(self, name: str) -> list[str]:
        """The addresses of an address header, lowercased."""
        found: list[str] = []
        try:
            pairs = getaddresses(self.all_headers(name))
        except Exception:
            pairs = []
        for _, address in pairs[:50]:
            address = address.strip().strip("<>").lower()
            if "@" in address and len(address) <= 254:
                found.append(address)
        return found

    @property
    def sender(self) -> str | None:
        found = self.addresses("From")
        return found[0] if found else None

    @property
    def own_message_id(self) -> str | None:
        found = message_ids(self.raw_header("Message-ID", 1000))
        return found[0] if found else None

    def date(self) -> str | None:
        """The Date header in UTC, ISO 8601, or None when it is missing or not a date."""
        value = self.header("Date", 200)
        if not value:
            return None
        try:
            moment = parsedate_to_datetime(value)
        except Exception:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def notice(self) -> str:
        """The human-readable notification: the first text part outside any returned message."""
        if self._notice is None:
            self._notice = self._first_text()
        return self._notice

    def _first_text(self) -> str:
        for wanted in ("text/plain", "text/html"):
            for part in self.parts:
                if part.enclosed or part.type != wanted or (part.depth and _is_attachment(part.message)):
                    continue
                text = self.text(part)
                if text.strip():
                    return text
        return ""

    def text(self, part: Part) -> str:
        """The decoded text of a part (tags stripped from HTML), at most MAX_TEXT_CHARS characters."""
        message = part.message
        try:
            raw = message.get_payload(decode=True)
        except Exception as error:
            self.warn(f"a {part.type} part could not be decoded ({type(error).__name__})")
            return ""
        if not isinstance(raw, bytes):
            return ""
        raw = raw[:MAX_TEXT_CHARS * 4]
        charset = _charset(message)
        try:
            text = raw.decode(charset, errors="replace")
        except (LookupError, ValueError):
            self.warn(f"a {part.type} part declares the unknown charset {charset[:40]!r}; read as Latin-1")
            text = raw.decode("latin-1")
        text = text[:MAX_TEXT_CHARS].replace("\r\n", "\n").replace("\r", "\n")
        if part.type == "text/html":
            text = html.unescape(_TAG.sub(" ", text))
        return text

    def texts(self) -> list[str]:
        """The text of every text part outside a returned message."""
        return [self.text(part) for part in self.parts
                if not part.enclosed and part.type in ("text/plain", "text/html")]

    def returned_headers(self) -> list[Message]:
        """The headers of messages returned inside this one (message/rfc822, text/rfc822-headers)."""
        found: list[Message] = []
        for part in self.parts:
            if part.enclosed:
                continue
            if part.type in _RETURNED_TYPES:
                try:
                    payload = part.message.get_payload()
                except Exception:
                    continue
                if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                    found.append(payload[0])
                elif isinstance(payload, str):  # a returned message that was not parsed (e.g. base64)
                    found.append(_headers_of(self.text(part)))
            elif part.type in _HEADERS_TYPES:
                found.append(_headers_of(self.text(part)))
        return found

    def warn(self, text: str) -> None:
        if text not in self.warnings and len(self.warnings) < 10:
            self.warnings.append(text)


def read_inbound(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Inbound:
    """Parse a message within the limits, or raise Unreadable saying why not."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Unreadable(f"expected the message as bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise Unreadable(f"a message of {len(data):,} bytes is over the {max_bytes:,}-byte limit; not read")
    if not data.strip():
        raise Unreadable("an empty message")
    end = _end_of_headers(data)
    if end is None or end > MAX_HEADER_BYTES:
        raise Unreadable(f"a header section over {MAX_HEADER_BYTES:,} bytes (or without an end); not read")
    boundaries = len(re.findall(rb"(?i)boundary[ \t]*=", data))
    if boundaries > MAX_PARTS or data.count(b"\n--") > 20 * MAX_PARTS:
        raise Unreadable(f"more than {MAX_PARTS} MIME parts; not read")
    try:
        message = _PARSER.parsebytes(data)
    except RecursionError:
        raise Unreadable(f"MIME parts nested deeper than {MAX_DEPTH} levels; not read") from None
    except Exception as error:
        raise Unreadable(f"the email package could not parse it ({type(error).__name__})") from None
    if not message.keys():
        raise Unreadable("no mail headers: not a mail message")
    inbound = Inbound(message, _walk(message), len(data))
    for name in ("From", "Subject"):
        try:
            make_header(decode_header(str(message.get(name, ""))))
        except LookupError:
            inbound.warn(f"the {name} header is in an unknown charset")
        except Exception:
            inbound.warn(f"the {name} header cannot be decoded")
    inbound._notice = inbound._first_text()  # read now, so a charset problem is reported for every message
    defects = {type(defect).__name__ for part in inbound.parts for defect in getattr(part.message, "defects", [])}
    broken = defects & {"StartBoundaryNotFoundDefect", "CloseBoundaryNotFoundDefect", "NoBoundaryInMultipartDefect",
                        "MultipartInvariantViolationDefect"}
    if broken:
        inbound.warn("broken MIME structure (" + ", ".join(sorted(broken)) + ")")
    return inbound


def header_text(message: Message, name: str, limit: int = DIAGNOSTIC_CHARS, *, clean: bool = True) -> str:
    """A header decoded (RFC 2047); cleaned by one_line unless `clean` is false; "" when absent."""
    try:
        value = message.get(name)
    except Exception:
        return ""
    if value is None:
        return ""
    if clean:
        return _decoded(value, limit)
    try:
        return str(value)[:limit].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except Exception:
        return ""


def message_ids(text: str) -> list[str]:
    """The Message-IDs (in angle brackets) named in a header value such as References."""
    return [f"<{found}>" for found in _ANGLE_ID.findall(text[:20000])][:50]


def message_id_lines(text: str) -> list[str]:
    """The Message-IDs of "Message-ID:" lines in a text (returned headers quoted in a notification)."""
    return _MESSAGE_ID_LINE.findall(text[:MAX_TEXT_CHARS])[:20]


def addresses_in(text: str) -> list[str]:
    """The addresses written in a text, lowercased, in order, without repeats."""
    found: list[str] = []
    for match in _ADDRESS.finditer(text[:MAX_TEXT_CHARS]):
        address = match.group(0).strip(".").lower()
        if address not in found:
            found.append(address)
        if len(found) >= 50:
            break
    return found


def status_in(text: str) -> str | None:
    """The first RFC 3463 status code (e.g. 5.1.1) in a text."""
    match = _STATUS.search(text[:MAX_TEXT_CHARS])
    return ".".join(match.groups()) if match else None


def one_line(text: str, limit: int = DIAGNOSTIC_CHARS) -> str:
    """Text on one line, without control characters, secrets in URLs or key=value pairs, cut at `limit`."""
    text = flat(text, limit * 8)
    text = _URL_SECRET.sub(lambda m: m.group(1) + m.group(2), text)
    text = _KEY_VALUE_SECRET.sub(lambda m: m.group(1) + m.group(2) + "[hidden]", text)
    text = _AUTH_SECRET.sub(lambda m: m.group(1) + "[hidden]", text)
    text = _LONG_TOKEN.sub("[…]", text)
    return flat(text, limit)


def flat(text: str, limit: int) -> str:
    """Text on one line, without control characters, cut at `limit` (nothing else removed)."""
    text = text[: limit * 4].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _decoded(value: object, limit: int, *, clean: bool = True) -> str:
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:
        try:
            text = str(value)
        except Exception:
            return ""
    return one_line(text, limit) if clean else flat(text, limit)


def _charset(message: Message) -> str:
    try:
        charset = message.get_content_charset() or "us-ascii"
    except Exception:
        return "us-ascii"
    return {"unknown-8bit": "latin-1", "x-unknown": "latin-1"}.get(charset, charset)


def _is_attachment(message: Message) -> bool:
    try:
        return (message.get("Content-Disposition") or "").strip().lower().startswith("attachment")
    except Exception:
        return False


def _headers_of(text: str) -> Message:
    try:
        return HeaderParser(policy=policy.compat32).parsestr(text[:MAX_TEXT_CHARS], headersonly=True)
    except Exception:
        return Message()


def _end_of_headers(data: bytes) -> int | None:
    ends = [index for index in (data.find(b"\n\n"), data.find(b"\r\n\r\n")) if index >= 0]
    if ends:
        return min(ends)
    return len(data) if len(data) <= MAX_HEADER_BYTES else None


def _walk(root: Message) -> list[Part]:
    """Every part, parents first, without recursion; Unreadable past MAX_PARTS or MAX_DEPTH."""
    parts: list[Part] = []
    stack = [Part(root, 0, False)]
    while stack:
        part = stack.pop()
        if part.depth > MAX_DEPTH:
            raise Unreadable(f"MIME parts nested deeper than {MAX_DEPTH} levels; not read")
        parts.append(part)
        if len(parts) > MAX_PARTS:
            raise Unreadable(f"more than {MAX_PARTS} MIME parts; not read")
        kind = part.type
        if kind.startswith("message/") and kind not in _RETURNED_TYPES:
            continue  # delivery-status blocks are read by the DSN parser, not walked
        try:
            payload = part.message.get_payload()
        except Exception:
            continue
        if isinstance(payload, list):
            enclosed = part.enclosed or kind in _RETURNED_TYPES
            children = [child for child in payload if isinstance(child, Message)]
            stack.extend(Part(child, part.depth + 1, enclosed) for child in reversed(children))
    return parts
