"""Messages: one EmailMessage per recipient, with its envelope, from what the templates said (a Draft)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Iterable

from email_validator import EmailNotValidError, validate_email

from dispatch.errors import SendError

_POLICY = policy.SMTP.clone(cte_type="7bit")
_POLICY_UTF8 = policy.SMTPUTF8.clone(cte_type="7bit")


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
    message["Subject"] = _one_line(draft.subject, "subject", rid)
    message["Date"] = formatdate(localtime=True)
    domain = sender.text.rsplit("@", 1)[1]
    message_id = make_msgid(idstring=rid, domain=domain if domain.isascii() else "dispatch.invalid")
    message["Message-ID"] = message_id
    message.set_content(draft.text, cte=_cte(draft.text))
    if draft.html is not None:
        message.add_alternative(draft.html, subtype="html", cte=_cte(draft.html))
    name = _one_line(draft.attachment_name, "attachment name", rid)
    message.add_attachment(draft.attachment, maintype="application", subtype="pdf", filename=name)
    envelope: list[str] = []
    for address in (to, *cc, *bcc):
        if address.text.lower() not in (e.lower() for e in envelope):
            envelope.append(address.text)
    return Outgoing(rid, message, message_id, sender.text, to.text, tuple(envelope), needs_utf8, name,
                    len(draft.attachment))


def _cte(text: str) -> str:
    return "7bit" if text.isascii() and all(len(line) < 990 for line in text.splitlines()) else "quoted-printable"
