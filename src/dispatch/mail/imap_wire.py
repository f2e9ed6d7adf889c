"""imaplib with every read from the server bounded.

imaplib waits as long as the server keeps sending, reads a literal of whatever size the server announces,
and keeps every line it is sent. Here each operation has a deadline (begin() starts one), each wait a
timeout, and each line, literal and answer a size; a bound reached ends the connection with a reason in
`problem`, never a hang or a process that fills the memory.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dispatch.mail.imap import ImapSettings


def quote(value: str) -> str:
    """An IMAP quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text(value: object) -> str:
    """A server's answer or an error, on one line and short."""
    if isinstance(value, OSError) and value.strerror:
        return value.strerror
    found = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(found.split())[:300]


class BoundedIMAP4(imaplib.IMAP4):
    """imaplib with every read bounded: a deadline per operation, a timeout per wait, sizes per line,
    literal and answer. (imaplib reads a literal of whatever size the server announces.)"""

    max_line = 1 << 20

    def __init__(self, settings: ImapSettings, tls: ssl.SSLContext | None) -> None:
        self._settings, self._tls, self._buffer = settings, tls, bytearray()
        self.problem: str | None = None
        self.max_literal = settings.max_message
        self.begin()
        try:
            super().__init__(settings.host, settings.port, settings.timeout)
        except OSError:
            if self.problem:  # the deadline closed the socket during the TLS handshake
                raise self.abort(self.problem) from None
            raise

    def begin(self, seconds: float | None = None) -> None:
        self._deadline = time.monotonic() + (seconds or self._settings.deadline)
        self._budget = self.max_literal + (4 << 20)
        self.problem = None

    def _create_socket(self, timeout):
        sock = super()._create_socket(timeout)
        return self._handshake(sock, self._tls) if self._tls else sock

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        """TLS handshake within the deadline (a timer closes a socket that a server drips the handshake into)."""
        timer = threading.Timer(max(self._deadline - time.monotonic(), 0.1), self._expire, args=(sock,))
        timer.daemon = True
        timer.start()
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        finally:
            timer.cancel()

    def _expire(self, sock: socket.socket) -> None:
        self.problem = f"no complete answer within {self._settings.deadline:.0f} s"
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def starttls(self, ssl_context=None):
        typ, data = self._simple_command("STARTTLS")
        if typ != "OK":
            raise self.error("STARTTLS refused: " + text(data[-1]))
        if self._buffer:  # bytes sent before the handshake could be an injected answer
            self.problem = "the server sent data ahead of the TLS handshake"
            raise self.abort(self.problem)
        self.sock = self._handshake(self.sock, ssl_context)
        self.file = self.sock.makefile("rb")
        self._tls_established = True
        self._get_capabilities()
        return typ, data

    def login_quoted(self, user: str, password: str) -> None:
        typ, data = self._simple_command("LOGIN", quote(user), quote(password))
        if typ != "OK":
            raise self.error(text(data[-1]))
        self.state = "AUTH"

    def run(self, *args: str) -> tuple[str, list]:
        name = args[0].upper()
        if name == "UID":
            return self.uid(*args[1:])
        typ, data = self._simple_command(*args)
        return self._untagged_response(typ, data, name)

    def drop(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fail(self, problem: str) -> None:
        self.problem = problem
        raise self.abort(problem)

    def _fill(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._fail(f"no complete answer within {self._settings.deadline:.0f} s")
        self.sock.settimeout(min(self._settings.timeout, remaining))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            if remaining <= self._settings.timeout:
                self._fail(f"no complete answer within {self._settings.deadline:.0f} s")
            self._fail(f"no answer for {self._settings.timeout:.0f} s")
        if not chunk:
            self._fail(self.problem or "the server closed the connection")
        self._buffer += chunk

    def readline(self) -> bytes:
        start = 0
        while (end := self._buffer.find(b"\n", start)) < 0:
            if len(self._buffer) > self.max_line:
                self._fail(f"the server sent a line longer than {self.max_line} bytes")
            start = len(self._buffer)
            self._fill()
        return self._take(end + 1)

    def read(self, size: int) -> bytes:
        if size > self.max_literal:
            self._fail(f"the server announced {size} bytes, more than the {self.max_literal} allowed")
        while len(self._buffer) < size:
            self._fill()
        return self._take(size)

    def _take(self, size: int) -> bytes:
        self._budget -= size
        if self._budget < 0:
            self._fail("the server's answer was larger than allowed")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data
