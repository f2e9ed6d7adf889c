"""Email: build one message per recipient, and send messages over one reused SMTP connection.

A delivery attempt ends in one of four outcomes, so the caller can record exactly what happened:
- sent: the server answered 250 to the message data;
- transient: a 4xx reply, a dropped connection or a timeout before the data went out (safe to retry);
- permanent: a 5xx reply (retrying will not help);
- uncertain: the data went out but the server's reply never came (it may have been delivered).
The caller is told just before the message data is transmitted (`before_data`), so it can record
that moment first.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from typing import Callable, Iterable, Mapping

from email_validator import EmailNotValidError, validate_email

from .credentials import stored_secret
from .errors import SendError

log = logging.getLogger(__name__)

SECURITY = ("starttls", "tls", "none")
ENVIRONMENT = {
    "host": "DISPATCH_SMTP_HOST",
    "port": "DISPATCH_SMTP_PORT",
    "security": "DISPATCH_SMTP_SECURITY",
    "username": "DISPATCH_SMTP_USERNAME",
    "sender": "DISPATCH_SENDER",
}
PASSWORD_VARIABLE = "DISPATCH_SMTP_PASSWORD"
CAFILE_VARIABLE = "DISPATCH_SMTP_CAFILE"
KEYRING_SERVICE = "dispatch"
_POLICY = policy.SMTP.clone(cte_type="7bit")
_POLICY_UTF8 = policy.SMTPUTF8.clone(cte_type="7bit")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send: [smtp] in dispatch.toml, each value overridable by the environment."""

    host: str
    port: int
    security: str
    username: str
    sender: str
    rate_limit: float = 0  # messages per minute; 0 for no limit
    timeout: float = 60
    retries: int = 4
    retry_wait: float = 2
    cafile: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"


def sender_address(smtp: Mapping, sender_email: str, environ: Mapping[str, str] = os.environ) -> str:
    """The address messages come from: DISPATCH_SENDER, else [smtp] sender, else [sender] email."""
    return (environ.get(ENVIRONMENT["sender"]) or smtp.get("sender") or sender_email or "").strip()


def smtp_settings(smtp: Mapping, sender_email: str, environ: Mapping[str, str] = os.environ) -> SmtpSettings:
    """Settings for a real send; raises SendError saying how to fix anything missing or unsafe."""
    values = {key: smtp.get(key) for key in ("host", "port", "security", "username")}
    for key, variable in ENVIRONMENT.items():
        if key in values and environ.get(variable):
            values[key] = environ[variable].strip()
    host = (values["host"] or "").strip()
    if not host:
        raise SendError("no SMTP server is configured", file="dispatch.toml",
                        hint="set host, port, security and username under [smtp] in dispatch.toml "
                             "(or DISPATCH_SMTP_HOST); dispatch send --dry-run writes the messages without a server")
    try:
        port = int(values["port"])
    except (TypeError, ValueError):
        raise SendError(f"{ENVIRONMENT['port']}={values['port']!r} is not a port number",
                        hint="use a number such as 587 (starttls) or 465 (tls)") from None
    if not 0 < port < 65536:
        raise SendError(f"port {port} is not a port number", hint="use a number such as 587 (starttls) or 465 (tls)")
    security = str(values["security"]).lower()
    if security not in SECURITY:
        raise SendError(f"{ENVIRONMENT['security']}={values['security']!r}: security must be one of "
                        f"{', '.join(SECURITY)}", hint='"starttls" for port 587, "tls" for port 465')
    if security == "none" and not is_loopback(host):
        raise SendError(f'security = "none" is allowed only for a server on this machine, not {host}',
                        file="dispatch.toml", column="[smtp] security",
                        hint='without encryption the password and the letters cross the network readable by anyone; '
                             'use "starttls" (port 587) or "tls" (port 465)')
    sender = sender_address(smtp, sender_email, environ)
    if not sender:
        raise SendError("no sender address", file="dispatch.toml",
                        hint="set sender under [smtp] (or email under [sender], or DISPATCH_SENDER)")
    check_address(sender, "[smtp] sender")
    cafile = environ.get(CAFILE_VARIABLE) or None
    if cafile and not Path(cafile).is_file():
        raise SendError(f"{CAFILE_VARIABLE}: no such file: {cafile}",
                        hint="point it at the PEM file of the certificate authority that signed the server's certificate")
    return SmtpSettings(host=host, port=port, security=security, username=(values["username"] or "").strip(),
                        sender=sender, rate_limit=float(smtp.get("rate_limit", 0)), timeout=float(smtp.get("timeout", 60)),
                        retries=int(smtp.get("retries", 4)), retry_wait=float(smtp.get("retry_wait", 2)), cafile=cafile)


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def stored_password(settings: SmtpSettings, environ: Mapping[str, str] = os.environ) -> str | None:
    """The SMTP password from the environment, or the system keyring when one is installed; None if neither."""
    if not environ.get(PASSWORD_VARIABLE):  # an empty variable counts as unset
        environ = {k: v for k, v in environ.items() if k != PASSWORD_VARIABLE}
    return stored_secret(PASSWORD_VARIABLE, f"{KEYRING_SERVICE}:{settings.host}", settings.username, environ)


# --- building messages --------------------------------------------------------------------------

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


# --- sending --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    kind: str  # "sent", "transient", "permanent", "uncertain"
    reply: str
    code: int | None = None
    refused: Mapping[str, str] = field(default_factory=dict)  # cc/bcc addresses the server refused
    connection_lost: bool = False

    @property
    def permanent(self) -> bool:
        return self.kind == "permanent"


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _refusal(code: int, text: bytes | str, what: str = "") -> Outcome:
    kind = "permanent" if code >= 500 else "transient"
    return Outcome(kind, (what + ": " if what else "") + _reply(code, text), code)


class Mailer:
    """One SMTP connection, opened on first use, reused for every message, re-opened when dropped."""

    def __init__(self, settings: SmtpSettings, password: str | None = None) -> None:
        self.settings = settings
        self._password = password
        self._conn: smtplib.SMTP | None = None
        self.connections = 0  # how many times a connection was opened (reported, and checked by tests)

    # connection ---------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.cafile)

    def open(self) -> None:
        """Connect, secure and log in. Raises SendError for anything a retry will not fix."""
        if self._conn is not None:
            return
        s = self.settings
        try:
            if s.security == "tls":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._tls_context())
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            try:
                conn.ehlo()
                if s.security == "starttls":
                    if not conn.has_extn("starttls"):
                        raise SendError(f"{s.host}:{s.port} does not offer STARTTLS, so the connection cannot be encrypted",
                                        hint='check the port (587 for "starttls", 465 for "tls"); dispatch never sends '
                                             'the password or the letters unencrypted')
                    conn.starttls(context=self._tls_context())
                    conn.ehlo()
                if s.username:
                    self._login(conn)
            except BaseException:
                conn.close()
                raise
        except ssl.SSLCertVerificationError as exc:
            raise SendError(f"the certificate of {s.host}:{s.port} cannot be verified ({exc.verify_message})",
                            hint="dispatch sends only to a server it can verify; if the server uses your organisation's "
                                 f"own certificate authority, set {CAFILE_VARIABLE} to that authority's PEM file") from None
        except ssl.SSLError as exc:
            raise SendError(f"the TLS connection to {s.host}:{s.port} failed ({exc.reason or exc})",
                            hint='check the port and security: 587 goes with "starttls", 465 with "tls"') from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ConnectionProblem(f"cannot connect to {s.host}:{s.port}: {_describe(exc)}",
                                    hint="check host, port and security under [smtp] in dispatch.toml, and the network") from None
        self._conn = conn
        self.connections += 1
        log.info("connected to %s", s.where)

    def _login(self, conn: smtplib.SMTP) -> None:
        s = self.settings
        if self._password is None:
            raise SendError(f"no password for {s.username} on {s.host}",
                            hint=f"set {PASSWORD_VARIABLE}, store it in the system keyring, or run dispatch send in a terminal to be asked")
        try:
            conn.login(s.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            raise SendError(f"{s.host} refused the username or password for {s.username} ({_reply(exc.smtp_code, exc.smtp_error)})",
                            hint=f"check [smtp] username and the password ({PASSWORD_VARIABLE} or the keyring)") from None
        except smtplib.SMTPNotSupportedError:
            raise SendError(f"{s.host}:{s.port} does not offer a login (AUTH) on this connection",
                            hint='check the port and security; most servers allow a login only after "starttls" or on "tls"') from None
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPException as exc:
            raise SendError(f"cannot log in to {s.host}: {_describe(exc)}",
                            hint="check [smtp] username and security; ask the mail provider which login it expects") from None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    # one message ---------------------------------------------------------------------------------

    def deliver(self, outgoing: Outgoing, before_data: Callable[[], None] = lambda: None) -> Outcome:
        """Try once to deliver a message. Calls before_data() just before the message data goes out."""
        try:
            self.open()
        except ConnectionProblem as exc:
            return Outcome("transient", str(exc), connection_lost=True)
        conn = self._conn
        try:
            if outgoing.needs_smtputf8 and not conn.has_extn("smtputf8"):
                conn.rset()
                return Outcome("permanent", "an address has non-ASCII characters before the @ and the server does not "
                                            "offer SMTPUTF8, which such an address needs")
            options = ["SMTPUTF8", "BODY=8BITMIME"] if outgoing.needs_smtputf8 else []
            code, text = conn.mail(outgoing.sender, options)
            if code != 250:
                return self._refused(conn, code, text, "sender")
            refused: dict[str, str] = {}
            for address in outgoing.recipients:
                code, text = conn.rcpt(address)
                if code in (250, 251):
                    continue
                if code < 500 or address == outgoing.to:
                    return self._refused(conn, code, text, address)
                refused[address] = _reply(code, text)
            payload = _data(outgoing.as_bytes())
            before_data()
            code, text = conn.docmd("DATA")
            if code != 354:
                return self._refused(conn, code, text, "DATA")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return Outcome("transient", f"connection lost before the message was sent: {_describe(exc)}",
                           connection_lost=True)
        try:
            conn.send(payload)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The final "." did not go out, so the server cannot have accepted the message.
            self._drop()
            return Outcome("transient", f"connection lost while sending the message: {_describe(exc)}",
                           connection_lost=True)
        try:
            code, text = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return Outcome("uncertain", "the message was transmitted but the server's reply never came "
                                        f"({_describe(exc)}); it may have been delivered", connection_lost=True)
        if code == 250:
            return Outcome("sent", _reply(code, text), code, refused)
        if code == 421:
            self._drop()
        return _refusal(code, text)

    def _refused(self, conn: smtplib.SMTP, code: int, text: bytes, what: str) -> Outcome:
        if code == 421:
            self._drop()  # the server is closing the connection
        else:
            try:
                conn.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        return _refusal(code, text, what)


def _data(message: bytes) -> bytes:
    """The message as it goes after DATA: CRLF line ends, leading dots doubled, ended by a lone dot."""
    data = re.sub(rb"(?m)^\.", b"..", message)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "no answer from the server (timed out)"
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text


class ConnectionProblem(SendError):
    """The server could not be reached (a retry may help)."""


def addresses(values: Iterable[str]) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        found.extend(split_addresses(value))
    return tuple(found)
