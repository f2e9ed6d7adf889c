"""Mail for the `dispatch track` tests and a real MTA that bounces.

- standard RFC 3464 delivery status notifications, bounces of the corpus (tests/bounces/) rewritten to name
  the campaign's Message-IDs and addresses, replies, out-of-office answers and unrelated mail;
- the mailbox as the tests compare it before and after (each folder's UIDVALIDITY, UIDNEXT, UIDs and flags);
- exim4 (Debian's exim4-daemon-light) with its own configuration in a temporary folder, listening on
  127.0.0.1: it accepts every recipient, delivers to known@missions.example.org, and bounces a message for
  any other user there with its own delivery status notification, delivered to a Maildir folder.
"""

from __future__ import annotations

import email.utils
import grp
import imaplib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pytest

from dispatch.mail.imap import ImapClient, imap_settings
from tests.imap_server import Dovecot
from tests.processes import stop

CORPUS = Path(__file__).resolve().parent / "bounces"
COORDINATOR = "coordinator@example.org"


def rfc822_date(moment: float | None = None) -> str:
    return email.utils.formatdate(moment if moment is not None else time.time(), usegmt=True)


def _new_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def standard_dsn(message_id: str | None, to: str, *, status: str = "5.1.1", action: str = "failed",
                 returned: str = "headers", date: str | None = None, mta: str = "mx.mission.example",
                 diagnostic: str | None = None) -> bytes:
    """A multipart/report; report-type=delivery-status (RFC 3464) as Postfix writes one. returned: "headers"
    (text/rfc822-headers), "message" (message/rfc822) or "none"; message_id None: the returned headers have none."""
    boundary = f"dsn-{uuid.uuid4().hex}"
    diagnostic = diagnostic or f"smtp; 550 {status} <{to}>: Recipient address rejected: User unknown in virtual mailbox table"
    original = (f"From: Coalition for the Court <{COORDINATOR}>\r\nTo: {to}\r\nSubject: A test letter\r\n"
                + (f"Message-ID: {message_id}\r\n" if message_id else "") + f"Date: {rfc822_date()}\r\n")
    permanent = action == "failed"
    text = ("This is the mail system at host " + mta + ".\r\n\r\n"
            + ("I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients."
               if permanent else "Your message could not be delivered for 4 hours.\r\nIt will be retried until it is 5 days old.")
            + f"\r\n\r\n<{to}>: host {mta}[192.0.2.25] said: {diagnostic.split('; ', 1)[-1]}\r\n")
    report = (f"Reporting-MTA: dns; {mta}\r\nArrival-Date: {rfc822_date()}\r\n\r\n"
              f"Final-Recipient: rfc822; {to}\r\nOriginal-Recipient: rfc822;{to}\r\nAction: {action}\r\n"
              f"Status: {status}\r\nRemote-MTA: dns; {mta}\r\nDiagnostic-Code: {diagnostic}\r\n")
    parts = [f"Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{text}",
             f"Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n{report}"]
    if returned == "headers":
        parts.append(f"Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n{original}")
    elif returned == "message":
        parts.append("Content-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n\r\n"
                     f"{original}MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nYour Excellency,\r\n")
    subject = "Undelivered Mail Returned to Sender" if permanent else "Delayed Mail (still being retried)"
    head = (f"From: MAILER-DAEMON@{mta} (Mail Delivery System)\r\nTo: {COORDINATOR}\r\nSubject: {subject}\r\n"
            f"Date: {date or rfc822_date()}\r\nMessage-ID: {_new_id(mta)}\r\nAuto-Submitted: auto-replied\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
            f'\tboundary="{boundary}"\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n')
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    return (head + body).encode("ascii")


def from_corpus(name: str, replace: dict[str, str], *, date: str | None = None) -> bytes:
    """A message of the corpus with each key of `replace` written as its value (Message-IDs, addresses), and
    its Date made `date` (the bounces of the corpus are years old; a bounce matched by address must come after
    the sending)."""
    data = (CORPUS / name).read_bytes()
    for old, new in replace.items():
        assert old.encode() in data, f"{old} is not in {name}"
        data = data.replace(old.encode(), new.encode())
    if date is not None:
        end = data.find(b"\n\n") if b"\r\n\r\n" not in data[:20000] else data.find(b"\r\n\r\n")
        head, rest = data[:end], data[end:]
        head, count = re.subn(rb"(?im)^Date:[^\n]*(\n[ \t][^\n]*)*", b"Date: " + date.encode(), head, count=1)
        assert count == 1, f"no Date header in {name}"
        data = head + rest
    return data


def reply(sender: str, *, in_reply_to: str | None = None, references: str | None = None,
          subject: str = "Re: A test letter", body: str = "Thank you for your letter; we will consider it.",
          extra: Iterable[str] = (), date: str | None = None, html: str | None = None,
          message_id: str | None = None) -> bytes:
    """A message a person (or a responder, with `extra` headers) writes to the coordinator."""
    domain = sender.rpartition("@")[2]
    lines = [f"From: {sender}", f"To: {COORDINATOR}", f"Subject: {subject}", f"Date: {date or rfc822_date()}",
             f"Message-ID: {message_id or _new_id(domain)}", "MIME-Version: 1.0"]
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    lines += list(extra)
    if html is None:
        lines += ["Content-Type: text/plain; charset=utf-8", "", body, ""]
    else:
        boundary = uuid.uuid4().hex
        lines += [f'Content-Type: multipart/alternative; boundary="{boundary}"', "", f"--{boundary}",
                  "Content-Type: text/plain; charset=utf-8", "", body, f"--{boundary}",
                  "Content-Type: text/html; charset=utf-8", "", html, f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("utf-8")


# --- the mailbox ---------------------------------------------------------------------------------------

def client(server: Dovecot) -> ImapClient:
    return ImapClient(imap_settings(None, server.environ()), password=server.password)


def append_all(server: Dovecot, folder: str, messages: Iterable[bytes], flags: tuple[str, ...] = ()) -> list[int]:
    with client(server) as imap:
        return [imap.append(folder, message, flags) for message in messages]


def snapshot(server: Dovecot, folders: Iterable[str] = ("INBOX", "Sent")) -> dict:
    """Each folder's UIDVALIDITY, UIDNEXT, number of messages and {UID: flags}, read without changing them."""
    found = {}
    with client(server) as imap:
        for folder in folders:
            state = imap.examine(folder)
            found[folder] = (state.uidvalidity, state.uidnext, state.exists, imap.flags(folder) if state.exists else {})
    return found


def recreate_folder(server: Dovecot, folder: str) -> None:
    """Delete the folder and make it again: the server gives it a new UIDVALIDITY (a test of renumbering)."""
    with imaplib.IMAP4(server.host, server.port, timeout=30) as conn:
        conn.login(server.user, server.password)
        conn.delete(folder)
        typ, data = conn.create(folder)
        assert typ == "OK", data


def create_folder(server: Dovecot, folder: str) -> None:
    with imaplib.IMAP4(server.host, server.port, timeout=30) as conn:
        conn.login(server.user, server.password)
        typ, data = conn.create(folder)
        assert typ == "OK", data


# --- a real MTA: exim4 ---------------------------------------------------------------------------------

EXIM = shutil.which("exim4") or ("/usr/sbin/exim4" if Path("/usr/sbin/exim4").exists() else None)
EXIM_SKIP = "exim4 is not installed (apt-get install exim4-daemon-light); the real bounce test needs it"


@dataclass
class Exim:
    root: Path
    port: int
    process: subprocess.Popen

    host = "127.0.0.1"

    @property
    def inbox(self) -> Path:
        return self.root / "mail" / "inbox" / "new"

    def log(self) -> str:
        path = self.root / "log" / "mainlog"
        return path.read_text(errors="replace") if path.exists() else ""

    def bounces(self, count: int, deadline: float = 120) -> list[bytes]:
        """The first `count` messages delivered to the coordinator, waiting for them up to `deadline` seconds."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            files = sorted(self.inbox.glob("*")) if self.inbox.is_dir() else []
            if len(files) >= count:
                return [f.read_bytes() for f in files[:count]]
            time.sleep(0.2)
        raise AssertionError(f"exim delivered no bounce within {deadline:.0f} s:\n{self.log()[-3000:]}")


def _exim_config(root: Path, port: int, user: str, group: str) -> str:
    return f"""\
primary_hostname = mta.missions.example.org
exim_user = {user}
exim_group = {group}
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
pid_file_path = {root}/exim.pid
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
domainlist local_domains = missions.example.org : coalition.example.org
acl_smtp_rcpt = accept_all
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
keep_environment =
ignore_bounce_errors_after = 0s

begin acl
accept_all:
  accept

begin routers
coordinator:
  driver = accept
  domains = coalition.example.org
  transport = to_maildir
known:
  driver = accept
  domains = missions.example.org
  local_parts = known
  transport = to_known
unknown_user:
  driver = redirect
  domains = missions.example.org
  allow_fail
  data = :fail: Unknown user

begin transports
to_maildir:
  driver = appendfile
  directory = {root}/mail/inbox
  maildir_format
  create_directory
  user = {user}
  group = {group}
  mode = 0644
to_known:
  driver = appendfile
  directory = {root}/mail/known
  maildir_format
  create_directory
  user = {user}
  group = {group}
  mode = 0644
"""


@contextmanager
def running_exim() -> Iterator[Exim]:
    """exim4 as a daemon on 127.0.0.1 with its own configuration and spool in a temporary folder; stopped and
    removed at the end. Skips the test when exim4 is missing or cannot start its daemon here."""
    if EXIM is None:
        pytest.skip(EXIM_SKIP)
    if os.getuid() == 0:
        try:
            user = pwd.getpwnam("Debian-exim")
        except KeyError:
            pytest.skip("exim4 is installed without its Debian-exim user")
        owner, name, group = (user.pw_uid, user.pw_gid), user.pw_name, grp.getgrgid(user.pw_gid).gr_name
    else:  # exim gives up its privileges for a configuration of its caller's: it runs as the caller
        owner = (os.getuid(), os.getgid())
        name, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    root = Path(tempfile.mkdtemp(prefix="dispatch-exim-"))
    process = None
    try:
        root.chmod(0o755)
        for folder in ("spool", "log", "mail"):
            (root / folder).mkdir()
            os.chown(root / folder, *owner)
        port = _free_port()
        (root / "exim.conf").write_text(_exim_config(root, port, name, group))
        with open(root / "output.log", "wb") as output:
            process = subprocess.Popen([EXIM, "-C", str(root / "exim.conf"), "-bdf", "-odi"], stdin=subprocess.DEVNULL,
                                       stdout=output, stderr=subprocess.STDOUT)
        if not _listening(port, process, deadline=30):
            text = (root / "output.log").read_text(errors="replace")
            pytest.skip(f"exim4 did not start its daemon here: {' '.join(text.split())[:300]}")
        yield Exim(root, port, process)
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int, process: subprocess.Popen, deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if sock.recv(100).startswith(b"220"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
