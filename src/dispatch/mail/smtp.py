"""Sending: messages over one reused SMTP connection, each attempt ending in an outcome the journal records.

A delivery attempt ends in one of four outcomes, so the caller can record exactly what happened:
- sent: the server answered 2xx (250) to the message data;
- transient: a 4xx reply, or a dropped connection, a timeout or a reply that is not SMTP before the data
  went out (safe to retry);
- permanent: a 5xx reply (retrying will not help);
- uncertain: the data went out but no valid reply to it came (silence past the deadline, a dropped
  connection, garbage, a cut or oversized reply): it may have been delivered, and is never retried here.
The caller is told just before the message data is transmitted (`before_data`), so it can record
that moment first.

Logging in is with a password (AUTH PLAIN/LOGIN through smtplib) or, with auth = "oauth2", with an
access token (SASL XOAUTH2, as Microsoft and Google document it); the token comes from a provider
called at each login, so a connection opened again after a refresh uses the new token, and a token the
server refuses is renewed once (the provider's `refresh()`) before the refusal counts. Replies reach
this module with credentials already redacted (see connection.py).

A connection the server closed while it was idle between two messages (a 421 or a closed socket in
answer to MAIL FROM) is opened again at once, within the same attempt: nothing of the message had gone
out, so it is not a failed attempt.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from typing import Callable, Mapping

from dispatch.errors import SendError
from dispatch.mail.connection import Connection, Redactor
from dispatch.mail.message import Outgoing
from dispatch.mail.settings import CAFILE_VARIABLE, PASSWORD_VARIABLE, SmtpSettings

log = logging.getLogger(__name__)

TokenProvider = Callable[[], str]  # the current access token; raises SendError when the sign-in is gone

# Microsoft: 550 5.7.30 "Basic authentication is not supported for Client Submission";
# 535 5.7.139 "SmtpClientAuthentication is disabled for the Tenant/Mailbox".
_BASIC_AUTH_OFF = re.compile(r"\b5\.7\.30\b|basic auth", re.IGNORECASE)
_SMTP_AUTH_OFF = re.compile(r"\b5\.7\.139\b|SmtpClientAuthentication is disabled", re.IGNORECASE)


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


class ConnectionProblem(SendError):
    """The server could not be reached, or the connection broke before a message went out (a retry may help)."""


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _refusal(code: int, text: bytes | str, what: str = "") -> Outcome:
    kind = "permanent" if code >= 500 else "transient"
    return Outcome(kind, (what + ": " if what else "") + _reply(code, text), code)


class Mailer:
    """One SMTP connection, opened on first use, reused for every message, re-opened when dropped."""

    def __init__(self, settings: SmtpSettings, password: str | None = None, *,
                 token: TokenProvider | None = None) -> None:
        self.settings = settings
        self._password = password
        self._token = token
        self._conn: Connection | None = None
        self.connections = 0  # how many times a connection was opened (reported, and checked by tests)

    # connection ---------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.cafile)

    def open(self) -> None:
        """Connect, secure and log in. Raises SendError for anything a retry will not fix, and
        ConnectionProblem for what a retry may fix."""
        if self._conn is not None:
            return
        s = self.settings
        token = self._access_token()  # before connecting: a refresh does not eat the server's deadline
        redactor = Redactor()
        for secret in (self._password, token):
            if secret:
                redactor.add(secret)
                redactor.add(base64.b64encode(secret.encode("utf-8")))
        try:
            conn = Connection(s.host, s.port, timeout=s.timeout, redactor=redactor,
                              implicit_tls=self._tls_context() if s.security == "tls" else None)
            try:
                conn.ehlo()
                if s.security == "starttls":
                    if not conn.has_extn("starttls"):
                        raise SendError(f"{s.host}:{s.port} does not offer STARTTLS, so the connection cannot be encrypted",
                                        hint='check the port (587 for "starttls", 465 for "tls"); dispatch never sends '
                                             'the password or the letters unencrypted')
                    conn.starttls(context=self._tls_context())
                    conn.ehlo()
                if token is not None:
                    self._login_oauth2(conn, token)
                elif s.username:
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

    def _access_token(self) -> str | None:
        s = self.settings
        if s.auth != "oauth2":
            return None
        if self._token is None:
            raise SendError(f"{s.username} is not signed in", hint=f"sign in: {s.login_command}")
        token = self._token()
        if not token:
            raise SendError(f"no access token for {s.username}", hint=f"sign in again: {s.login_command}")
        return token

    def _login(self, conn: Connection) -> None:
        s = self.settings
        if self._password is None:
            raise SendError(f"no password for {s.username} on {s.host}",
                            hint=f"set {PASSWORD_VARIABLE}, store it in the system keyring, or run dispatch send in a terminal to be asked")
        try:
            conn.login(s.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            raise self._refused_login(exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPNotSupportedError:
            raise SendError(f"{s.host}:{s.port} does not offer a login (AUTH) on this connection",
                            hint='check the port and security; most servers allow a login only after "starttls" or on "tls"') from None
        except smtplib.SMTPServerDisconnected:
            raise
        except UnicodeEncodeError:
            raise SendError(f"the user name or password for {s.host} has characters that AUTH PLAIN and LOGIN cannot carry",
                            hint="use a password of ASCII characters (an app password), or auth = \"oauth2\"") from None
        except (smtplib.SMTPException, binascii.Error) as exc:
            raise SendError(f"cannot log in to {s.host}: {_describe(exc)}",
                            hint="check [smtp] username and security; ask the mail provider which login it expects") from None

    def _login_oauth2(self, conn: Connection, token: str) -> None:
        """SASL XOAUTH2: base64("user=" user ^A "auth=Bearer " token ^A ^A) as the initial response. A
        refusal comes as a 334 challenge holding an error (JSON), answered with an empty line, then the
        failure reply."""
        s = self.settings
        offered = conn.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in offered:
            raise SendError(f"{s.host}:{s.port} does not offer an OAuth 2.0 sign-in (AUTH XOAUTH2) on this connection",
                            hint='check the port and security (Microsoft 365: smtp.office365.com, 587, "starttls"; '
                                 'Gmail: smtp.gmail.com, 465, "tls"), or use auth = "password"')
        renew = getattr(self._token, "refresh", None)
        try:
            self._xoauth2(conn, token)
        except SendError as exc:
            # A token this program thinks current may be expired or revoked at the server: one new token
            # (SignInExpired when the grant itself is gone), then the refusal stands.
            if type(exc) is not SendError or renew is None:
                raise
            log.info("%s refused the access token; renewing it", s.host)
            token = renew()
            for secret in (token, base64.b64encode(token.encode("utf-8"))):
                conn.redact.add(secret)
            self._xoauth2(conn, token)

    def _xoauth2(self, conn: Connection, token: str) -> None:
        s = self.settings
        sasl = f"user={s.username}\x01auth=Bearer {token}\x01\x01"
        conn.redact.add(sasl)
        problem: dict[str, str] = {}

        def respond(challenge: bytes | None = None) -> str:
            if challenge is None:
                return sasl
            problem["detail"] = _oauth_error(challenge)
            return ""  # the answer to an error challenge: an empty line, then the server says no

        try:
            conn.auth("XOAUTH2", respond, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            raise self._refused_login(exc.smtp_code, exc.smtp_error, problem.get("detail", "")) from None
        except smtplib.SMTPServerDisconnected:
            raise
        except UnicodeEncodeError:
            raise SendError(f"the user name {s.username!r} has characters that XOAUTH2 cannot carry",
                            hint="set username to the mailbox's address in ASCII") from None
        except (smtplib.SMTPException, binascii.Error) as exc:
            raise SendError(f"cannot sign in to {s.host}: {_describe(exc)}",
                            hint=f"sign in again: {s.login_command}") from None

    def _refused_login(self, code: int, text: bytes | str, detail: str = "") -> SendError:
        """The error for a refused login: a hint that fits the refusal and the kind of login."""
        s = self.settings
        reply = _reply(code, text) + (f"; {detail}" if detail else "")
        if 400 <= code < 500:
            return ConnectionProblem(f"{s.host} cannot check the login of {s.username} now ({reply})",
                                     hint="try again later")
        if _SMTP_AUTH_OFF.search(reply):
            return SendError(f"{s.host} does not allow logging in to send from {s.username} ({reply})",
                             hint="a Microsoft 365 admin must turn on Authenticated SMTP (SMTP AUTH) for this mailbox")
        if s.auth == "oauth2":
            return SendError(f"{s.host} refused the sign-in of {s.username} ({reply})",
                             hint=f"sign in again: {s.login_command}")
        if _BASIC_AUTH_OFF.search(reply):
            return SendError(f"{s.host} no longer accepts a password for {s.username} ({reply})",
                             hint='the provider turned off password login (basic authentication) for SMTP; set '
                                  f'auth = "oauth2" for this account and sign in: {s.login_command}')
        return SendError(f"{s.host} refused the username or password for {s.username} ({reply})",
                         hint=f"check [smtp] username and the password ({PASSWORD_VARIABLE} or the keyring)")

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
        reused = self._conn is not None
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
            code, text = self._mail(conn, outgoing.sender, options, stale_possible=reused)
            if code == 421 and reused:  # the server closed the idle connection: connect again, once
                log.info("the server closed the connection between messages; connecting again")
                self._drop()
                try:
                    self.open()
                except ConnectionProblem as exc:
                    return Outcome("transient", str(exc), connection_lost=True)
                conn = self._conn
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
        except (smtplib.SMTPException, OSError) as exc:  # includes a reply that is not SMTP, or too late
            self._drop()
            return Outcome("transient", f"connection lost before the message was sent: {_describe(exc)}",
                           connection_lost=True)
        try:
            conn.send_data(payload)
        except (smtplib.SMTPException, OSError) as exc:
            # The final "." did not go out whole, so the server cannot have accepted the message.
            self._drop()
            return Outcome("transient", f"connection lost while sending the message: {_describe(exc)}",
                           connection_lost=True)
        try:
            code, text = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return Outcome("uncertain", "the message was transmitted but the server's reply never came "
                                        f"({_describe(exc)}); it may have been delivered", connection_lost=True)
        if 200 <= code < 300:
            return Outcome("sent", _reply(code, text), code, refused)
        if code < 400:  # a 3xx is no answer to the end of the data
            self._drop()
            return Outcome("uncertain", f"the message was transmitted but the server answered {_reply(code, text)}, "
                                        "which is no answer to a message; it may have been delivered",
                           code, connection_lost=True)
        if code == 421:
            self._drop()
        return _refusal(code, text)

    @staticmethod
    def _mail(conn: Connection, sender: str, options: list[str], *, stale_possible: bool) -> tuple[int, bytes]:
        """MAIL FROM; on a connection kept from an earlier message, a closed socket reads as a 421."""
        try:
            return conn.mail(sender, options)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            if stale_possible and _closed(exc):
                return 421, b"the connection was closed"
            raise

    def _refused(self, conn: Connection, code: int, text: bytes, what: str) -> Outcome:
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


def _oauth_error(challenge: bytes) -> str:
    """What the server's XOAUTH2 error challenge (JSON, already base64-decoded by smtplib) says, briefly."""
    try:
        error = json.loads(challenge.decode("utf-8", "replace"))
    except ValueError:
        return ""
    if not isinstance(error, dict):
        return ""
    status = str(error.get("status", "")).strip()
    return f"the server said status {status}"[:80] if status.isalnum() else ""


def _closed(exc: BaseException) -> bool:
    """Whether the exception says the connection was closed (not a timeout, not a reply that is not SMTP)."""
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, OSError):
        return True
    return str(exc).startswith(("Connection unexpectedly closed", "please run connect() first",
                                "the connection is closed"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "no answer from the server (timed out)"
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text
