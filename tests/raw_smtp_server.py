"""A raw-socket SMTP server on 127.0.0.1 whose every reply a test can replace by a fault.

It speaks just enough SMTP (greeting, EHLO, AUTH PLAIN/LOGIN/XOAUTH2, MAIL, RCPT, DATA, RSET, NOOP,
QUIT) to carry a message, and keeps each message whose data it received whole, so a test can count
what arrived. A fault is a function called instead of the normal reply at one stage:

    with raw_smtp({"end": say(b"\\x00\\xffnot SMTP\\r\\n")}) as server:   # garbage after the data

Stages: "greeting", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA" (the command), "end" (the reply
to the message data, which has been received and kept), "QUIT". A fault returns True to go on with the
session, False to close it, or None to let the normal reply go out (see `first`).
"""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

Fault = Callable[["Session", bytes], "bool | None"]


class Session:
    """One client connection, read line by line."""

    def __init__(self, conn: socket.socket, server: "RawServer") -> None:
        self.conn = conn
        self.server = server
        self.buffer = b""

    def readline(self) -> bytes:
        while b"\n" not in self.buffer:
            try:
                chunk = self.conn.recv(65536)
            except OSError:
                return b""
            if not chunk:
                return b""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def send(self, data: bytes) -> bool:
        """Send; False once the client has hung up."""
        try:
            self.conn.sendall(data)
            return True
        except OSError:
            return False

    def reply(self, text: str) -> bool:
        return self.send(text.encode("utf-8") + b"\r\n")

    def read_data(self) -> bytes | None:
        """The message data up to the lone dot (dots undoubled), or None if the client went away first."""
        lines = []
        while True:
            line = self.readline()
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b"..") else line)


@dataclass
class RawServer:
    port: int
    faults: Mapping[str, Fault]
    mechanisms: tuple[str, ...]
    host: str = "127.0.0.1"
    messages: list[bytes] = field(default_factory=list)   # message data received whole
    auth_lines: list[bytes] = field(default_factory=list)  # what clients sent during AUTH
    hung_up: list[str] = field(default_factory=list)       # stages where a client hung up on a fault
    sessions: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, stage: str, session: Session, line: bytes) -> bool | None:
        fault = self.faults.get(stage)
        return None if fault is None else fault(session, line)

    def serve(self, conn: socket.socket) -> None:
        session = Session(conn, self)
        with self.lock:
            self.sessions += 1
        try:
            self._converse(session)
        finally:
            conn.close()

    def _converse(self, s: Session) -> None:
        done = self.fault("greeting", s, b"")
        if done is False or (done is None and not s.reply("220 raw.example.org ESMTP ready")):
            return
        while not self.stop.is_set():
            line = s.readline()
            if not line:
                return
            verb = line.split(b" ", 1)[0].strip().upper()
            stage = {b"HELO": "EHLO", b"EHLO": "EHLO", b"AUTH": "AUTH", b"MAIL": "MAIL", b"RCPT": "RCPT",
                     b"DATA": "DATA", b"QUIT": "QUIT", b"STARTTLS": "STARTTLS"}.get(verb)
            if stage == "AUTH":
                with self.lock:
                    self.auth_lines.append(line)
            went_on = self.fault(stage, s, line) if stage else None
            if went_on is False:
                return
            if went_on:
                continue
            if not self._normal(s, verb, line):
                return

    def _normal(self, s: Session, verb: bytes, line: bytes) -> bool:
        if verb in (b"EHLO", b"HELO"):
            features = ["raw.example.org", "8BITMIME", "SMTPUTF8"]
            if self.mechanisms:
                features.append("AUTH " + " ".join(self.mechanisms))
            text = "".join(f"250-{f}\r\n" for f in features[:-1]) + f"250 {features[-1]}\r\n"
            return s.send(text.encode())
        if verb == b"AUTH":
            if line.split()[1:2] == [b"LOGIN"] and len(line.split()) == 2:
                s.reply("334 VXNlcm5hbWU6")
                self.auth_lines.append(s.readline())
            if line.split()[1:2] == [b"LOGIN"]:
                s.reply("334 UGFzc3dvcmQ6")
                self.auth_lines.append(s.readline())
            return s.reply("235 2.7.0 Authentication successful")
        if verb == b"DATA":
            s.reply("354 End data with <CR><LF>.<CR><LF>")
            data = s.read_data()
            if data is None:
                return False
            with self.lock:
                self.messages.append(data)
            went_on = self.fault("end", s, b"")
            if went_on is not None:
                return went_on
            return s.reply("250 2.0.0 Ok: queued as RAW1")
        if verb == b"QUIT":
            s.reply("221 2.0.0 Bye")
            return False
        if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            return s.reply("250 2.0.0 Ok")
        return s.reply("500 5.5.2 Error: command not recognized")


@contextmanager
def raw_smtp(faults: Mapping[str, Fault] | None = None, *, mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
             ) -> Iterator[RawServer]:
    """Run the server until the block ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    server = RawServer(listener.getsockname()[1], dict(faults or {}), mechanisms)
    threads: list[threading.Thread] = []
    conns: list[socket.socket] = []

    def accept() -> None:
        while not server.stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.settimeout(None)
            conns.append(conn)
            thread = threading.Thread(target=server.serve, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        server.stop.set()
        acceptor.join(5)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(5)
        listener.close()


# faults -----------------------------------------------------------------------------------------

def say(data: bytes, *, then_close: bool = True) -> Fault:
    """Send these bytes instead of the reply, then close (or go on)."""
    def fault(s: Session, line: bytes) -> bool:
        s.send(data)
        return not then_close
    return fault


def reply(text: str) -> Fault:
    """A (valid) reply of the test's choosing; the session goes on."""
    def fault(s: Session, line: bytes) -> bool:
        return s.reply(text)
    return fault


def hang_up() -> Fault:
    """Close the connection without a word."""
    return lambda s, line: False


def first(fault: Fault, times: int = 1) -> Fault:
    """The fault for the first `times` times this stage comes, then the normal replies."""
    left = [times]

    def once(s: Session, line: bytes) -> bool | None:
        if left[0] <= 0:
            return None
        left[0] -= 1
        return fault(s, line)
    return once


def endless(stage: str, data: bytes, *, pause: float = 0.0, limit: float = 120.0) -> Fault:
    """Send `data` again and again (one byte every `pause` seconds if pause is set) until the client
    hangs up, which is recorded in server.hung_up, or `limit` seconds pass; then close."""
    def fault(s: Session, line: bytes) -> bool:
        import time

        end = time.monotonic() + limit
        pieces = [bytes([b]) for b in data] if pause else [data]
        while time.monotonic() < end and not s.server.stop.is_set():
            for piece in pieces:
                if not s.send(piece):
                    with s.server.lock:
                        s.server.hung_up.append(stage)
                    return False
                if pause:
                    s.server.stop.wait(pause)
        return False
    return fault
