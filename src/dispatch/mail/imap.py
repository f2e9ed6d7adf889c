"""IMAP: the coordinator's mailbox, for a copy in Sent, drafts, and reading what came back.

TLS is verified (DISPATCH_IMAP_CAFILE for an organisation's own authority); unencrypted only on this
machine. Login with a password, or XOAUTH2 with the account's OAuth token. Reading never changes the
mailbox: folders are opened with EXAMINE (read-only) and messages fetched with BODY.PEEK[] (no \\Seen).

Every read from the server is bounded: each wait by `timeout`, each operation by `deadline`, each line,
literal and answer by a size, so a broken or hostile server ends in a clear error, never a hang or a
process that fills the memory.
"""

from __future__ import annotations

import imaplib
import logging
import os
import re
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

from dispatch.errors import SendError
from dispatch.mail.accounts import SECURITY, Account, is_loopback
from dispatch.mail.credentials import stored_secret
from dispatch.mail.imap_wire import BoundedIMAP4, quote, text
from dispatch.mail.oauth import xoauth2

log = logging.getLogger(__name__)

ENVIRONMENT = {"host": "DISPATCH_IMAP_HOST", "port": "DISPATCH_IMAP_PORT", "security": "DISPATCH_IMAP_SECURITY",
               "username": "DISPATCH_IMAP_USERNAME"}
PASSWORD_VARIABLE = "DISPATCH_IMAP_PASSWORD"
CAFILE_VARIABLE = "DISPATCH_IMAP_CAFILE"
SENT, DRAFTS = "\\Sent", "\\Drafts"


class ImapError(SendError):
    """The mailbox could not be reached, refused something, or answered out of bounds."""


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str
    username: str
    auth: str = "password"  # or "oauth2"
    cafile: str | None = None
    account: str | None = None
    timeout: float = 30.0  # seconds to wait for any one read
    deadline: float = 120.0  # seconds for one operation in all (connecting, one fetch, one append)
    max_message: int = 32 << 20  # bytes of one message fetched at most; larger ones are fetched cut

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"


def imap_settings(account: Account | None = None, environ: Mapping[str, str] = os.environ) -> ImapSettings:
    """The account's IMAP settings with the DISPATCH_IMAP_* variables on top; ImapError saying what is missing."""
    values = {"host": "", "port": "", "security": "tls", "username": ""}
    if account is not None:
        values = {"host": account.imap_host, "port": account.imap_port, "security": account.imap_security,
                  "username": account.login}
    for key, variable in ENVIRONMENT.items():
        if environ.get(variable, "").strip():
            values[key] = environ[variable].strip()
    host = str(values["host"]).strip()
    if not host:
        raise ImapError("no IMAP server is configured", hint="set imap_host in the account (accounts.toml) or "
                                                             f"{ENVIRONMENT['host']}")
    security = str(values["security"]).lower()
    if security not in SECURITY:
        raise ImapError(f"IMAP security {values['security']!r} must be one of {', '.join(SECURITY)}",
                        hint='"tls" for port 993, "starttls" for port 143')
    try:
        port = int(values["port"] or (993 if security == "tls" else 143))
    except ValueError:
        raise ImapError(f"{ENVIRONMENT['port']}={values['port']!r} is not a port number", hint="for example 993") from None
    if not 0 < port < 65536:
        raise ImapError(f"IMAP port {port} is not a port number", hint="for example 993")
    if security == "none" and not is_loopback(host):
        raise ImapError(f'IMAP security "none" is allowed only for a server on this machine, not {host}',
                        hint='use "tls" (port 993) or "starttls" (port 143): without encryption the password '
                             "and the mail cross the network readable by anyone")
    cafile = environ.get(CAFILE_VARIABLE) or None
    if cafile and not Path(cafile).is_file():
        raise ImapError(f"{CAFILE_VARIABLE}: no such file: {cafile}",
                        hint="point it at the PEM file of the authority that signed the server's certificate")
    auth = account.auth if account is not None else "password"
    if environ.get(PASSWORD_VARIABLE):
        auth = "password"
    return ImapSettings(host, port, security, str(values["username"]).strip(), auth, cafile,
                        account.name if account is not None else None)


def imap_password(settings: ImapSettings, environ: Mapping[str, str] = os.environ) -> str | None:
    """DISPATCH_IMAP_PASSWORD, else the keyring entry of the SMTP password's form ("dispatch:HOST", user)."""
    if not environ.get(PASSWORD_VARIABLE):
        environ = {k: v for k, v in environ.items() if k != PASSWORD_VARIABLE}
    return stored_secret(PASSWORD_VARIABLE, f"dispatch:{settings.host}", settings.username, environ)


@dataclass(frozen=True)
class Folder:
    name: str  # as the server names it (modified UTF-7), to use in commands
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True)
class Fetched:
    uid: int
    size: int  # as the server reports it
    flags: frozenset[str]
    data: bytes  # the whole message, or its first max_message bytes when `cut`
    cut: bool = False


class ImapClient:
    """One IMAP connection. Use as a context manager; every method raises ImapError for what goes wrong."""

    def __init__(self, settings: ImapSettings, *, password: str | None = None,
                 token: Callable[[], str] | None = None) -> None:
        self.settings = settings
        self._password = password
        self._token = token
        self._conn: BoundedIMAP4 | None = None
        self._selected: str | None = None

    def __enter__(self) -> "ImapClient":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # connection -------------------------------------------------------------------------------------

    def open(self) -> None:
        s = self.settings
        context = ssl.create_default_context(cafile=s.cafile) if s.security != "none" else None
        try:
            with self._talking("connecting", connecting=True):
                conn = BoundedIMAP4(s, context if s.security == "tls" else None)
            self._conn = conn
            with self._talking("securing the connection"):
                if s.security == "starttls":
                    if "STARTTLS" not in conn.capabilities:
                        raise ImapError(f"{s.host}:{s.port} does not offer STARTTLS, so the connection cannot be "
                                        "encrypted", hint='check the port: 143 goes with "starttls", 993 with "tls"')
                    conn.starttls(context)
            with self._talking("signing in"):
                self._authenticate(conn)
                conn.capabilities = tuple(conn.capability()[1][-1].decode("ascii", "replace").upper().split())
        except BaseException:
            self.close()
            raise
        log.info("IMAP: connected to %s as %s", s.where, s.username)

    def _authenticate(self, conn: "BoundedIMAP4") -> None:
        s = self.settings
        if s.auth == "oauth2":
            if self._token is None:
                raise ImapError("no OAuth token source", hint=f"sign in first: dispatch login {s.account or 'ACCOUNT'}")
            if "AUTH=XOAUTH2" not in conn.capabilities:
                raise ImapError(f"{s.host} does not offer XOAUTH2 sign-in", hint='use auth = "password" for it')
            for attempt in (1, 2):
                token = self._token() if attempt == 1 else getattr(self._token, "refresh", self._token)()
                answers = iter([xoauth2(s.username, token)])
                try:  # after a refusal the server sends an error challenge: the empty answer ends the exchange
                    conn.authenticate("XOAUTH2", lambda _challenge, answers=answers: next(answers, b""))
                    return
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error as exc:
                    refusal = text(exc)
            raise ImapError(f"{s.host} refused the sign-in token of {s.username} ({refusal})",
                            hint="check the account's email or username; sign in again: "
                                 f"dispatch login {s.account or 'ACCOUNT'}")
        if self._password is None:
            raise ImapError(f"no IMAP password for {s.username} on {s.host}",
                            hint=f"set {PASSWORD_VARIABLE}, or store it in the system keyring")
        if "LOGINDISABLED" in conn.capabilities:
            raise ImapError(f"{s.host} does not allow a password login on this connection",
                            hint='use "tls" (port 993) or "starttls"')
        try:
            conn.login_quoted(s.username, self._password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise ImapError(f"{s.host} refused the username or password for {s.username} ({text(exc)})",
                            hint=f"check the username and the password ({PASSWORD_VARIABLE} or the keyring)") from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.begin(10)
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                conn.drop()

    @contextmanager
    def _talking(self, what: str, connecting: bool = False) -> Iterator[None]:
        """One operation: a fresh deadline and byte budget; imaplib's errors become ImapError."""
        if self._conn is not None:
            self._conn.begin()
        elif not connecting:
            raise ImapError("the IMAP connection is closed", hint="open it again (ImapClient.open)")
        s = self.settings
        try:
            yield
        except ssl.SSLCertVerificationError as exc:
            raise ImapError(f"the certificate of {s.host}:{s.port} cannot be verified ({exc.verify_message})",
                            hint=f"if the server uses your organisation's own authority, set {CAFILE_VARIABLE} "
                                 "to its PEM file") from None
        except (imaplib.IMAP4.abort, OSError) as exc:
            problem = self._conn.problem if self._conn is not None else None
            if self._conn is not None:
                self._conn.drop()
                self._conn = None
            raise ImapError(f"IMAP {what} on {s.where}: {problem or text(exc)}",
                            hint="check the IMAP host, port and security, and the network") from None
        except imaplib.IMAP4.error as exc:
            raise ImapError(f"{s.host} refused {what}: {text(exc)}", hint="see the server's answer") from None

    def _command(self, *args: str) -> list:
        if self._conn is None:
            raise ImapError("the IMAP connection is closed", hint="open it again")
        typ, data = self._conn.run(*args)
        if typ != "OK":
            raise imaplib.IMAP4.error(" ".join(text(d) for d in data if d))
        return data

    # folders --------------------------------------------------------------------------------------

    def special_folders(self) -> dict[str, str]:
        """{special-use flag: folder name}, e.g. {"\\Sent": "Sent Items"} (RFC 6154; flags in LIST otherwise)."""
        found: dict[str, str] = {}
        with self._talking("listing folders"):
            data = None
            if "SPECIAL-USE" in self._conn.capabilities:
                try:
                    data = self._command("LIST", "(SPECIAL-USE)", '""', '"*"')
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error:  # LIST-EXTENDED refused: the flags come with a plain LIST too
                    data = None
            if data is None:
                data = self._command("LIST", '""', '"*"')
        for item in data:
            flags, name = _list_entry(item)
            for flag in flags:
                if flag.lower() in _SPECIAL_USE and name is not None:
                    found.setdefault(_SPECIAL_USE[flag.lower()], name)
        return found

    def folder(self, use: str) -> str:
        """The folder with this special-use flag (SENT or DRAFTS); ImapError when the server marks none."""
        name = self.special_folders().get(use)
        if name is None:
            raise ImapError(f"{self.settings.host} marks no folder as {use} (RFC 6154 special use)",
                            hint="ask the mail provider; most servers mark Sent and Drafts")
        return name

    def append(self, folder: str, message: bytes, flags: tuple[str, ...] = (), date: float | None = None) -> int | None:
        """Put the message, byte for byte, in the folder; its UID when the server says (UIDPLUS)."""
        with self._talking(f"saving a message in {folder}"):
            typ, data = self._conn.append(quote(folder), "(" + " ".join(flags) + ")" if flags else None,
                                          date if date is not None else time.time(), message)
            if typ != "OK":
                raise imaplib.IMAP4.error(text(data[-1]))
        found = re.search(rb"\[APPENDUID \d+ (\d+)\]", data[-1] or b"")
        return int(found.group(1)) if found else None

    def save_sent(self, message: bytes) -> int | None:
        return self.append(self.folder(SENT), message, ("\\Seen",))

    def save_draft(self, message: bytes) -> int | None:
        return self.append(self.folder(DRAFTS), message, ("\\Draft", "\\Seen"))

    # reading, read-only -------------------------------------------------------------------------------

    def examine(self, folder: str) -> Folder:
        """Open the folder read-only (EXAMINE): nothing read can change a flag."""
        with self._talking(f"opening {folder}"):
            typ, data = self._conn.select(quote(folder), readonly=True)
            if typ != "OK":
                raise imaplib.IMAP4.error(text(data[-1]))
            validity = self._conn.response("UIDVALIDITY")[1][0]
            uidnext = self._conn.response("UIDNEXT")[1][0]
        self._selected = folder
        return Folder(folder, int(validity or 0), int(uidnext) if uidnext else None, int(data[0] or 0))

    def uids_after(self, folder: str, last_uid: int = 0) -> list[int]:
        self.examine(folder)
        with self._talking(f"searching {folder}"):
            data = self._command("UID", "SEARCH", "UID", f"{last_uid + 1}:*")
        # "N:*" names the last message even when its UID is below N: keep only the new ones.
        return sorted(u for u in (int(x) for x in b" ".join(d for d in data if d).split()) if u > last_uid)

    def fetch_after(self, folder: str, last_uid: int = 0) -> Iterator[Fetched]:
        """The messages of the folder with a UID above last_uid, oldest first, each fetched with BODY.PEEK[]."""
        for uid in self.uids_after(folder, last_uid):
            fetched = self.fetch(uid)
            if fetched is not None:
                yield fetched

    def fetch(self, uid: int) -> Fetched | None:
        """One message of the folder last examined (None when it is gone); cut at max_message bytes."""
        limit = self.settings.max_message
        with self._talking(f"reading message {uid}"):
            meta = self._command("UID", "FETCH", str(uid), "(UID FLAGS RFC822.SIZE)")
            size_flags = [_fetch_meta(item) for item in meta if item]
            size_flags = [m for m in size_flags if m and m[0] == uid]
            if not size_flags:
                return None
            _, size, flags = size_flags[0]
            part = "BODY.PEEK[]" if size <= limit else f"BODY.PEEK[]<0.{limit}>"
            data = self._command("UID", "FETCH", str(uid), f"({part})")
        body = next((item[1] for item in data if isinstance(item, tuple) and (_fetch_meta(item) or (0,))[0] == uid), None)
        if body is None:
            return None
        return Fetched(uid, size, flags, body, size > limit)

    def flags(self, folder: str) -> dict[int, frozenset[str]]:
        """{UID: flags} of every message in the folder (read-only)."""
        self.examine(folder)
        with self._talking(f"reading the flags in {folder}"):
            data = self._command("UID", "FETCH", "1:*", "(UID FLAGS)")
        found = {}
        for item in data:
            meta = _fetch_meta(item if isinstance(item, bytes) else item[0]) if item else None
            if meta:
                found[meta[0]] = meta[2]
        return found

    def find_message_id(self, folder: str, message_id: str) -> list[int]:
        """UIDs of the messages in the folder whose Message-ID header is exactly this one."""
        wanted = message_id.strip()
        if not wanted or not wanted.isascii() or any(c in wanted for c in '"\\\r\n'):
            return []
        self.examine(folder)
        with self._talking(f"searching {folder}"):
            data = self._command("UID", "SEARCH", "HEADER", "Message-ID", quote(wanted))
            candidates = [int(x) for x in b" ".join(d for d in data if d).split()][:50]
            exact = []
            for uid in candidates:
                header = self._command("UID", "FETCH", str(uid), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                fields = b"".join(item[1] for item in header if isinstance(item, tuple))
                values = re.findall(rb"(?im)^message-id:\s*(.*(?:\r?\n[ \t].*)*)", fields)
                if any(b"".join(v.split()).decode("ascii", "replace") == wanted for v in values):
                    exact.append(uid)
        return exact


_SPECIAL_USE = {f.lower(): f for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")}
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$', re.IGNORECASE | re.DOTALL)
_META = re.compile(rb"^\d+ \((?=.*\bUID (?P<uid>\d+))(?=.*\bFLAGS \((?P<flags>[^)]*)\))?(?=.*\bRFC822\.SIZE (?P<size>\d+))?",
                   re.DOTALL)


def _list_entry(item: bytes | tuple) -> tuple[list[str], str | None]:
    if isinstance(item, tuple):  # the name came as a literal
        head, name = item[0], item[1].decode("utf-8", "replace")
        found = _LIST.match(head.rstrip() + b" x")
    else:
        found = _LIST.match(item or b"")
        name = None
        if found:
            raw = found.group("name").strip()
            name = re.sub(rb'\\(.)', rb"\1", raw[1:-1]).decode("utf-8", "replace") if raw.startswith(b'"') \
                else raw.decode("utf-8", "replace")
    return (found.group("flags").decode("ascii", "replace").split() if found else []), name


def _fetch_meta(item: bytes | tuple) -> tuple[int, int, frozenset[str]] | None:
    found = _META.match(item[0] if isinstance(item, tuple) else item)
    if not found:
        return None
    # \Recent is the server's note for one session, not a property of the message: left out.
    flags = frozenset(f for f in (found.group("flags") or b"").decode("ascii", "replace").split()
                      if f.lower() != "\\recent")
    return int(found.group("uid")), int(found.group("size") or 0), flags


