"""Messages: one EmailMessage per recipient, with its envelope, from what the templates said (a Draft).

The attached letter keeps its name in its own script: `Content-Disposition: attachment;
filename*=utf-8''Joint-NGO-letter-%E4%B8%AD%E5%9B%BD.pdf` (RFC 2231, read by every current mail program).
When the name is not ASCII, the Content-Type also carries `name="Joint-NGO-letter-CN.pdf"`, which a
program that cannot read RFC 2231 shows instead.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email import policy
from email.header import Header
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Iterable

from email_validator import EmailNotValidError, validate_email

from dispatch.errors import SendError

_POLICY = policy.SMTP.clone(cte_type="7bit")
_POLICY_UTF8 = policy.SMTPUTF8.clone(cte_type="7bit")
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class MailAddress:
    text: str  # as it goes into the envelope and the headers (domain in ASCII where possible)
    needs_smtputf8: bool


def check_address(address: str, where: str) -> MailAddress:
    try:
        info = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise SendError(f"{address!r} is not a valid address ({exc})", column=where,
                        hint="correct the address") from None
    if info.ascii_email:
        return MailAddress(info.ascii_email, False)
    return MailAddress(info.normalized, True)


def split_addresses(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[;,]", text or "") if part.strip()]


def addresses(values: Iterable[str]) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        found.extend(split_addresses(value))
    return tuple(found)


@dataclass(frozen=True)
class Draft:
    """What one message says, before it becomes an EmailMessage."""

    recipient_id: str
    from_name: str
    from_address: str
    to: str
    subject: str
    text: str
    attachment: bytes
    attachment_name: str
    reply_to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    html: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """A message ready to send, with its envelope."""

    recipient_id: str
    message: EmailMessage
    message_id: str
    sender: str
    to: str
    recipients: tuple[str, ...]  # envelope: to, cc and bcc, each once
    needs_smtputf8: bool
    attachment_name: str
    attachment_size: int

    def as_bytes(self) -> bytes:
        return self.message.as_bytes(policy=_POLICY_UTF8 if self.needs_smtputf8 else _POLICY)

    def as_file(self) -> bytes:
        """The message as an .eml file, with a Bcc line (never sent) so a reader sees every recipient."""
        data = self.as_bytes()
        if self.bcc:
            data = b"Bcc: " + ", ".join(self.bcc).encode("utf-8") + b"\r\n" + data
        return data

    @property
    def bcc(self) -> tuple[str, ...]:
        """Envelope recipients that no header names."""
        visible = {a.addr_spec.lower() for name in ("To", "Cc") for a in getattr(self.message[name], "addresses", ())}
        return tuple(r for r in self.recipients if r.lower() not in visible)


def _one_line(value: str, header: str, recipient_id: str) -> str:
    if "\r" in value or "\n" in value:
        raise SendError(f"the {header} of the message for {recipient_id!r} has a line break",
                        hint="a header must stay on one line; check the template and the recipient's cells")
    return value


def build_message(draft: Draft) -> Outgoing:
    """An EmailMessage with a text body (and an HTML alternative), the PDF attached, and a new Message-ID."""
    rid = draft.recipient_id
    sender = check_address(draft.from_address, "sender")
    to = check_address(draft.to, "email")
    cc = [check_address(a, "cc") for a in draft.cc]
    bcc = [check_address(a, "bcc") for a in draft.bcc]
    reply_to = [check_address(a, "reply_to") for a in draft.reply_to]
    everyone = [sender, to, *cc, *bcc, *reply_to]
    needs_utf8 = any(a.needs_smtputf8 for a in everyone)
    message = EmailMessage(policy=_POLICY_UTF8 if needs_utf8 else _POLICY)
    message["From"] = formataddr((_one_line(draft.from_name, "sender name", rid), sender.text))
    message["To"] = to.text
    if cc:
        message["Cc"] = ", ".join(a.text for a in cc)
    if reply_to:
        message["Reply-To"] = ", ".join(a.text for a in reply_to)
    _set_subject(message, _one_line(draft.subject, "subject", rid), utf8=needs_utf8)
    message["Date"] = formatdate(localtime=True)
    domain = sender.text.rsplit("@", 1)[1]
    message_id = make_msgid(idstring=rid, domain=domain if domain.isascii() else "dispatch.invalid")
    message["Message-ID"] = message_id
    message.set_content(draft.text, cte=_cte(draft.text))
    if draft.html is not None:
        message.add_alternative(draft.html, subtype="html", cte=_cte(draft.html))
    name = _one_line(draft.attachment_name, "attachment name", rid)
    message.add_attachment(draft.attachment, maintype="application", subtype="pdf", filename=name)
    if not name.isascii():
        attachment = list(message.iter_attachments())[-1]
        attachment.set_param("name", ascii_file_name(name, fallback=rid))
    envelope: list[str] = []
    for address in (to, *cc, *bcc):
        if address.text.lower() not in (e.lower() for e in envelope):
            envelope.append(address.text)
    return Outgoing(rid, message, message_id, sender.text, to.text, tuple(envelope), needs_utf8, name,
                    len(draft.attachment))


def _set_subject(message: EmailMessage, subject: str, *, utf8: bool) -> None:
    """The Subject header, folded so that a reader unfolds it to exactly the subject.

    (The email package, folding a long subject before an encoded word, leaves the space before the fold and
    adds one after it: "States Parties  — Namibia".) A subject that needs encoding is written as encoded
    words only (RFC 2047), whose spaces are inside them; any other is folded at single spaces."""
    if not utf8 and not subject.isascii():
        message.set_raw("Subject", Header(subject, "utf-8", header_name="Subject").encode(linesep="\n"))
        return
    lines, width = [""], len("Subject: ")
    for index, word in enumerate(subject.split(" ")):
        if index and word and width + 1 + len(word) > MAX_HEADER_LINE and lines[-1].strip():
            lines.append(" " + word)
            width = len(lines[-1])
        else:
            lines[-1] += (" " if index else "") + word
            width += (1 if index else 0) + len(word)
    message.set_raw("Subject", "\n".join(lines))


MAX_HEADER_LINE = 78


def _cte(text: str) -> str:
    return "7bit" if text.isascii() and all(len(line) < 990 for line in text.splitlines()) else "quoted-printable"


def ascii_file_name(name: str, *, fallback: str) -> str:
    """The name in ASCII letters, for a mail program that cannot read an RFC 2231 name: accents dropped
    (Cote-d-Ivoire), and the fallback (the recipient's id) added when letters of another script were lost.
    Short enough (at most 64 characters) to stay one plain quoted parameter when the header is folded."""
    stem = re.sub(r"\.pdf$", "", name, flags=re.IGNORECASE).replace("’", "-")
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    fallback = _UNSAFE_ASCII.sub("-", fallback)[:20]
    lost = any(ch.isalpha() and not unicodedata.normalize("NFKD", ch).encode("ascii", "ignore") for ch in stem)
    room = 60 - (len(fallback) + 1 if lost else 0)
    slug = re.sub(r"-{2,}", "-", _UNSAFE_ASCII.sub("-", ascii_text)).strip("-._")[:room].strip("-._")
    if lost or not slug:
        slug = f"{slug}-{fallback}" if slug else fallback
    return slug + ".pdf"
