"""An SMTP connection that cannot hang or fill the memory, and never lets a credential out in a reply.

smtplib's own reader waits `timeout` for each read, so a server that sends one byte a second, or an
endless `250-` continuation, holds a run forever and grows its memory without limit. `Connection`
replaces that reader:

- a deadline per exchange: connecting with the TLS handshake and the greeting, then each command
  (EHLO, STARTTLS and its handshake, AUTH and each answer to a challenge, MAIL, RCPT, DATA, QUIT)
  with its whole reply, each 64 KiB of a message's data, and the reply to the end of the data;
- caps on a reply: MAX_LINE bytes a line, MAX_REPLY_LINES lines, MAX_REPLY_BYTES bytes;
- only valid replies: every line `ddd text` or `ddd-text` with one code throughout.
Whatever breaks these rules closes the connection and raises `ReplyProblem` (an
`SMTPServerDisconnected`), so a caller can treat it as the lost connection it is.

Every reply is returned with the credentials sent on this connection redacted (`Redactor`): the
password, the access token and their base64 forms as AUTH sent them, also in part. Redacting here,
where replies come in, covers every way a reply leaves the program: outcomes, journal, messages and
smtplib's own exceptions.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import sys
import time
from typing import NoReturn

MAX_LINE = 8192             # bytes in one reply line, as smtplib allows (RFC 5321 asks 512)
MAX_REPLY_LINES = 200       # lines in one reply (an EHLO reply has about 10)
MAX_REPLY_BYTES = 64 * 1024
DATA_CHUNK = 64 * 1024      # a message's data goes out in pieces, each with its own deadline
REDACTED = b"[redacted]"

_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]?)([^\r\n]*)\r?\n")
_TOKEN_RUN = re.compile(rb"[A-Za-z0-9+/=_.~-]{8,}")
_GRAM = 8  # a run of this many characters shared with a credential counts as a piece of it


class ReplyProblem(smtplib.SMTPServerDisconnected):
    """No valid reply in time (deadline, size cap, not SMTP, end of stream): the connection is closed."""


class Redactor:
    """Removes credentials from server replies: each secret whole, and any run of base64-like text that
    shares 8 characters with one (a server may echo a cut or re-wrapped AUTH line)."""

    def __init__(self) -> None:
        self._secrets: set[bytes] = set()
        self._grams: set[bytes] = set()

    def add(self, secret: str | bytes) -> None:
        value = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(value) < 4 or value in self._secrets:  # a shorter value would redact half of every reply
            return
        self._secrets.add(value)
        self._grams.update(value[i:i + _GRAM] for i in range(len(value) - _GRAM + 1))

    def __call__(self, text: bytes) -> bytes:
        if not self._secrets:
            return text
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return _TOKEN_RUN.sub(self._run, text)

    def _run(self, match: re.Match) -> bytes:
        run = match.group(0)
        if run == REDACTED:
            return run
        grams = self._grams
        if any(run[i:i + _GRAM] in grams for i in range(len(run) - _GRAM + 1)):
            return REDACTED
        return run


class Connection(smtplib.SMTP):
    """smtplib.SMTP with a deadline per exchange, capped and checked replies, redacted credentials, and
    implicit TLS when given `implicit_tls` (port 465)."""

    def __init__(self, host: str, port: int, *, timeout: float, implicit_tls: ssl.SSLContext | None = None,
                 redactor: Redactor | None = None) -> None:
        self.seconds = float(timeout)
        self.redact = redactor or Redactor()
        self._implicit_tls = implicit_tls
        self._pending = bytearray()
        self._deadline: float | None = None
        self._in_auth = False
        super().__init__(host, port, timeout=timeout)  # connects and reads the greeting

    # deadlines --------------------------------------------------------------------------------

    def _arm(self) -> None:
        self._deadline = time.monotonic() + self.seconds

    def _remaining(self, what: str) -> float:
        """Seconds left before the deadline; past it, closes and raises ReplyProblem("<what> within N s")."""
        if self._deadline is None:
            self._arm()
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._fail(f"{what} within {self.seconds:g} s")
        return remaining

    def _fail(self, problem: str) -> NoReturn:
        self.close()
        raise ReplyProblem(problem)

    # connecting -------------------------------------------------------------------------------

    def connect(self, host: str = "localhost", port: int = 0, source_address=None):
        self._arm()  # the connection, the TLS handshake and the greeting share one deadline
        return super().connect(host, port, source_address)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), self._remaining("no connection"), self.source_address)
        if self._implicit_tls is None:
            return sock
        try:
            sock.settimeout(self._remaining("no TLS handshake"))  # a handshake's reads share this one timeout
            return self._implicit_tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def starttls(self, *, context: ssl.SSLContext):  # type: ignore[override]
        """STARTTLS, with the handshake under the command's deadline; nothing the server sent before the
        handshake is kept (RFC 3207, and a defence against commands injected in plain text)."""
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server.")
        code, reply = self.docmd("STARTTLS")
        if code != 220:
            raise smtplib.SMTPResponseException(code, reply)
        self._pending.clear()
        self._arm()
        self.sock.settimeout(self._remaining("no TLS handshake"))
        self.sock = context.wrap_socket(self.sock, server_hostname=self._host)
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        return code, reply

    # sending ----------------------------------------------------------------------------------

    def send(self, s) -> None:
        """Send one command line; its deadline starts here and ends with its reply."""
        if not self.sock:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        if isinstance(s, str):
            s = s.encode(self.command_encoding)
        if self._in_auth:
            self._remember_auth(s)
        sys.audit("smtplib.send", self, s)
        self._arm()
        self._sendall(s, "the command could not be sent")

    def send_data(self, data: bytes) -> None:
        """A message's data after DATA, in pieces of DATA_CHUNK bytes, each with its own deadline; then the
        deadline for the reply starts."""
        view = memoryview(data)
        for start in range(0, len(view), DATA_CHUNK):
            self._arm()
            self._sendall(view[start:start + DATA_CHUNK], "the message could not be transmitted")
        self._arm()

    def _sendall(self, data, what: str) -> None:
        if not self.sock:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        timeout = self._remaining(what)
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
        except TimeoutError:
            self._fail(f"{what} within {self.seconds:g} s")
        except OSError as exc:
            self.close()
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc.strerror or exc}") from None

    def auth(self, mechanism, authobject, *, initial_response_ok=True):
        """As smtplib's, remembering every credential sent so that no reply shows it."""
        self._in_auth = True
        try:
            return super().auth(mechanism, authobject, initial_response_ok=initial_response_ok)
        finally:
            self._in_auth = False

    def _remember_auth(self, line: bytes) -> None:
        words = line.split()
        if words[:1] == [b"AUTH"]:
            words = words[2:]  # "AUTH PLAIN <initial response>": the mechanism is no secret
        for word in words:
            self.redact.add(word)

    # reading ----------------------------------------------------------------------------------

    def getreply(self):
        """The next reply as (code, text), text with credentials redacted. Raises ReplyProblem, having
        closed the connection, for anything but a complete, valid reply in time."""
        lines: list[bytes] = []
        size = 0
        code = None
        try:
            while True:
                line = self._read_line()
                size += len(line)
                if size > MAX_REPLY_BYTES or len(lines) >= MAX_REPLY_LINES:
                    self._fail(f"the server's reply passed {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES // 1024} KiB")
                match = _REPLY_LINE.fullmatch(line)
                if match is None or (code is not None and match.group(1) != code):
                    self._fail("the server answered something that is not SMTP: " + _glimpse(self.redact(line)))
                code = match.group(1)
                lines.append(match.group(3).strip(b" \t"))
                if match.group(2) != b"-":
                    break
        finally:
            self._deadline = None
        text = self.redact(b"\n".join(lines))
        if self.debuglevel > 0:
            self._print_debug("reply:", code, text)
        return int(code), text

    def _read_line(self) -> bytes:
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                if end + 1 > MAX_LINE:
                    self._fail(f"a line of the server's reply passed {MAX_LINE} bytes")
                line = bytes(self._pending[:end + 1])
                del self._pending[:end + 1]
                return line
            if len(self._pending) > MAX_LINE:
                self._fail(f"a line of the server's reply passed {MAX_LINE} bytes")
            if not self.sock:
                raise ReplyProblem("the connection is closed")
            timeout = self._remaining("no complete reply")
            try:
                self.sock.settimeout(timeout)
                chunk = self.sock.recv(4096)
            except TimeoutError:
                self._fail(f"no complete reply within {self.seconds:g} s")
            except OSError as exc:
                self._fail(f"Connection unexpectedly closed: {exc.strerror or exc}")
            if not chunk:
                self._fail("Connection unexpectedly closed" + (" in the middle of a reply" if self._pending else ""))
            self._pending += chunk

    def close(self) -> None:
        self._pending.clear()
        super().close()


def _glimpse(line: bytes) -> str:
    """The start of a line that is not a reply, printable, short and quoted."""
    text = "".join(chr(b) if 32 <= b < 127 else "?" for b in line.rstrip(b"\r\n")[:40])
    return repr(text + ("..." if len(line.rstrip(b"\r\n")) > 40 else ""))
