"""A real SMTP server for the tests and the benchmark: aiosmtpd on 127.0.0.1, in a thread.

Plain, STARTTLS or implicit TLS (certificates from a throw-away certificate authority made by trustme),
with AUTH PLAIN/LOGIN, and AUTH XOAUTH2 with an `OAuthRecorder`. It records every message it accepted,
so tests assert on what arrived. A faulty variant answers 421/451 at random, 550 for chosen addresses,
or drops the connection after receiving a message's data without answering.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import socket
import ssl
import threading
from base64 import b64decode
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Callable, Iterable, Iterator

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs every session

USERNAME = "coordinator@example.org"
PASSWORD = "s3cret-Pa55word-never-logged"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    user: str | None
    smtp_utf8: bool

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.data)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class Recorder:
    """An aiosmtpd handler that accepts every message and keeps it."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.delay = delay  # seconds before answering a message's data, like a busy real server
        self.greetings = 0  # EHLO commands: one per connection (two with STARTTLS)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.greetings += 1
        return responses

    async def handle_DATA(self, server, session, envelope) -> str:
        self._keep(session, envelope)
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        return "250 2.0.0 Ok: queued as 1234"

    def _keep(self, session, envelope) -> None:
        login = getattr(session.auth_data, "login", None)  # LoginPassword or OAuthLogin
        user = login.decode() if login else None
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content),
                                          user, envelope.smtp_utf8))

    def by_recipient(self) -> dict[str, list[Received]]:
        found: dict[str, list[Received]] = {}
        with self.lock:
            for received in self.messages:
                for rcpt in received.rcpt_tos:
                    found.setdefault(rcpt, []).append(received)
        return found


class Faulty(Recorder):
    """Answers 421/451 at random (seeded), 550 for chosen addresses, and drops chosen connections after DATA."""

    def __init__(self, *, seed: int = 1, transient: float = 0.2, permanent: set[str] = frozenset(),
                 drop_after_data: set[str] = frozenset()) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.transient = transient
        self.permanent = set(permanent)
        self.drop_after_data = set(drop_after_data)
        self.dropped: list[str] = []
        self.refusals: list[str] = []

    def _maybe_refuse(self, where: str) -> str | None:
        if self.rng.random() < self.transient:
            reply = self.rng.choice(["451 4.3.0 Temporary local problem, try again later",
                                     "421 4.7.0 Too many connections, closing transmission channel"])
            self.refusals.append(f"{where}: {reply[:3]}")
            return reply
        return None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.permanent:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        refusal = self._maybe_refuse("RCPT")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope) -> str:
        refusal = self._maybe_refuse("DATA")
        if refusal:
            return refusal
        self._keep(session, envelope)
        drop = [r for r in envelope.rcpt_tos if r in self.drop_after_data and r not in self.dropped]
        if drop:
            # The message is kept (delivered) but the client never hears so.
            self.dropped.extend(drop)
            server.transport.abort()
            return "250 2.0.0 Ok: queued (never seen by the client)"
        return "250 2.0.0 Ok: queued as 1234"


@dataclass(frozen=True)
class OAuthLogin:
    login: bytes  # the user signed in (no token is kept)


GOOGLE_ERROR = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}


class OAuthRecorder(Recorder):
    """A Recorder that also signs users in with AUTH XOAUTH2 (SASL, as Google and Microsoft document it):
    base64("user=" user ^A "auth=Bearer " token ^A ^A), as the initial response or after an empty 334.

    `accepts` is the set of tokens accepted for USERNAME, or a function (user, token) -> bool, which is
    how a test makes tokens expire or be revoked. A refused token gets Google's answer: a 334 challenge
    holding an error (JSON); after the client's empty line, 535. `logins` and `refused` count users."""

    def __init__(self, accepts: Callable[[str, str], bool] | Iterable[str], *, delay: float = 0.0) -> None:
        super().__init__(delay)
        if not callable(accepts):
            tokens = frozenset(accepts)
            accepts = lambda user, token: user == USERNAME and token in tokens
        self.accepts = accepts
        self.logins: list[str] = []
        self.refused: list[str] = []
        self.error_answers: list[bytes] = []  # what clients answered to the error challenge (b"" is right)

    async def auth_XOAUTH2(self, server, args) -> AuthResult:
        if len(args) == 2:
            try:
                blob = b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        parts = blob.decode("utf-8", "replace").split("\x01")
        user = parts[0][len("user="):] if parts[0].startswith("user=") else ""
        bearer = parts[1] if len(parts) == 4 and parts[2:] == ["", ""] else ""
        token = bearer[len("auth=Bearer "):] if bearer.startswith("auth=Bearer ") else ""
        with self.lock:
            ok = bool(user and token) and self.accepts(user, token)
            (self.logins if ok else self.refused).append(user)
        if ok:
            return AuthResult(success=True, auth_data=OAuthLogin(user.encode()))
        answer = await server.challenge_auth(json.dumps(GOOGLE_ERROR))
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        with self.lock:
            self.error_answers.append(answer)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


@dataclass
class TestCA:
    cafile: Path
    server_context: ssl.SSLContext


def make_ca(folder: Path) -> TestCA:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    cafile = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return TestCA(cafile, context)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    host: str
    port: int
    security: str
    handler: Recorder
    controller: Controller = field(repr=False)

    def settings(self, *, username: str | None = USERNAME, rate_limit: float = 0, retry_wait: float = 0.01,
                 retries: int = 4, timeout: float = 10) -> str:
        """An [smtp] section of dispatch.toml for this server."""
        lines = ["[smtp]", f'host = "{self.host}"', f"port = {self.port}", f'security = "{self.security}"',
                 f'username = "{username or ""}"', 'sender = "coordinator@example.org"',
                 f"rate_limit = {rate_limit}", f"retries = {retries}", f"retry_wait = {retry_wait}",
                 f"timeout = {timeout}"]
        return "\n".join(lines) + "\n"


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USERNAME
          and auth_data.password.decode() == PASSWORD)
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class _SMTP(SMTP):
    """aiosmtpd's server with room for an AUTH XOAUTH2 line: a real token is 2 KB or more (RFC 4954 allows
    12,288 octets), aiosmtpd's default limit is 512."""

    line_length_limit = 16384
    command_size_limit = 12288
    command_size_limits = collections.defaultdict(lambda: _SMTP.command_size_limit)


class _Controller(Controller):
    def factory(self):
        return _SMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def smtp_server(handler: Recorder | None = None, *, security: str = "none", ca: TestCA | None = None,
                host: str = "127.0.0.1", smtputf8: bool = True, auth: bool = True) -> Iterator[Server]:
    """Run a server until the block ends. security: none (plain), starttls or tls."""
    handler = handler or Recorder()
    port = free_port()
    kwargs: dict = dict(hostname=host, port=port, enable_SMTPUTF8=smtputf8, server_hostname="localhost",
                        ready_timeout=10)
    if auth:
        kwargs.update(authenticator=_authenticator, auth_require_tls=security == "starttls")
    if security == "starttls":
        kwargs.update(tls_context=ca.server_context, require_starttls=True)
    elif security == "tls":
        kwargs.update(ssl_context=ca.server_context)
    controller = _Controller(handler, **kwargs)
    controller.start()
    try:
        yield Server(host, port, security, handler, controller)
    finally:
        controller.stop()
