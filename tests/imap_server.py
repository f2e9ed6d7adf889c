"""A real IMAP server for the tests: Dovecot (Debian's dovecot-imapd) with its own configuration in a
temporary folder, started as the current user, listening on 127.0.0.1 only.

- a plain listener (STARTTLS offered, password login allowed without TLS on loopback) and an implicit
  TLS listener, with a certificate from a throw-away authority made by trustme (`cafile` verifies it);
- users in a passwd-file (add_user()), mail in a Maildir, folders Sent (\\Sent) and Drafts (\\Drafts)
  created on first login;
- with an authorization server from tests/oauth_server.py, XOAUTH2 and OAUTHBEARER through Dovecot's oauth2
  passdb, which asks the server's /introspect (RFC 7662) whether a token is current.

Run as root (as in CI), Dovecot's login processes need an unprivileged user (Debian's dovenull and dovecot)
and mail may not belong to root (it belongs to nobody), so the folder lives in the system's temporary
folder, which those users can reach, rather than in pytest's private tmp_path.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.oauth_server import AuthorizationServer, authorization_server
from tests.processes import stop

USER = "coordinator@coalition.example"
PASSWORD = "imap-Pa55word-never-logged"
DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
SKIP_REASON = "Dovecot is not installed (apt-get install dovecot-imapd); the IMAP tests need a real server"


@dataclass
class Dovecot:
    root: Path
    port: int  # plain, STARTTLS offered
    tls_port: int  # implicit TLS
    cafile: str  # the authority that signed the server's certificate
    user: str = USER
    password: str = PASSWORD
    process: subprocess.Popen | None = None
    mail_owner: tuple[int, int] = field(default=(os.getuid(), os.getgid()))

    host = "127.0.0.1"

    def add_user(self, user: str, password: str) -> None:
        """Another mailbox (Dovecot reads the passwd-file again when it changes)."""
        with open(self.root / "passwd", "a", encoding="utf-8") as handle:
            handle.write(f"{user}:{{PLAIN}}{password}::::::\n")

    def maildir(self, user: str = USER) -> Path:
        return self.root / "mail" / user / "Maildir"

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def environ(self, security: str = "none") -> dict[str, str]:
        """DISPATCH_IMAP_* variables that reach this server."""
        port = self.tls_port if security == "tls" else self.port
        return {"DISPATCH_IMAP_HOST": self.host, "DISPATCH_IMAP_PORT": str(port), "DISPATCH_IMAP_SECURITY": security,
                "DISPATCH_IMAP_USERNAME": self.user, "DISPATCH_IMAP_PASSWORD": self.password,
                "DISPATCH_IMAP_CAFILE": self.cafile}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(root: Path, port: int, tls_port: int, introspection_url: str | None) -> str:
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    if os.getuid() == 0:
        internal, internal_group, login, chroot = "dovecot", "dovecot", "dovenull", ""
        mail_uid, mail_gid = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    else:
        internal, internal_group, login, chroot = me, group, me, "  chroot =\n"
        mail_uid, mail_gid = me, group
    oauth = ""
    mechanisms = "plain login"
    if introspection_url:
        mechanisms += " xoauth2 oauthbearer"
        (root / "oauth2.conf.ext").write_text(
            f"introspection_mode = post\nintrospection_url = {introspection_url}\nforce_introspection = yes\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            "timeout_msecs = 10000\n")
        oauth = f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {root}/oauth2.conf.ext\n}}\n"
    return f"""\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
disable_plaintext_auth = no
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = 1
auth_failure_delay = 0
auth_mechanisms = {mechanisms}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
  mechanisms = plain login
}}
{oauth}userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = create
  }}
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service auth {{
  user = {"root" if os.getuid() == 0 else me}
}}
"""


@contextmanager
def running_dovecot(introspection_url: str | None = None) -> Iterator[Dovecot]:
    """Start Dovecot; stop it and remove its folder at the end. Skips the test when Dovecot is missing."""
    if DOVECOT is None:
        pytest.skip(SKIP_REASON)
    import trustme

    root = Path(tempfile.mkdtemp(prefix="dispatch-dovecot-"))
    try:
        root.chmod(0o711)  # Dovecot's own users pass through to their folders, list nothing
        for name in ("run", "state", "mail"):
            (root / name).mkdir()
        authority = trustme.CA()
        server = authority.issue_cert("127.0.0.1", "localhost")
        server.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
        server.private_key_pem.write_to_path(str(root / "server.key"))
        authority.cert_pem.write_to_path(str(root / "ca.pem"))
        (root / "passwd").write_text("")
        mail_owner = (os.getuid(), os.getgid())
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            mail_owner = (nobody.pw_uid, nobody.pw_gid)
            os.chown(root / "mail", *mail_owner)
        dovecot = _start(root, introspection_url, mail_owner)
        try:
            yield dovecot
        finally:
            _stop(dovecot)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(root: Path, introspection_url: str | None, mail_owner: tuple[int, int]) -> Dovecot:
    last = ""
    for _ in range(3):  # a port taken between choosing and binding: choose again
        port, tls_port = _free_port(), _free_port()
        (root / "dovecot.conf").write_text(_config(root, port, tls_port, introspection_url))
        dovecot = Dovecot(root, port, tls_port, str(root / "ca.pem"), mail_owner=mail_owner)
        dovecot.add_user(USER, PASSWORD)
        with open(root / "output.log", "wb") as output:
            dovecot.process = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                                               stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        if _wait_for_greeting(dovecot, deadline=60):
            return dovecot
        _stop(dovecot)
        last = dovecot.log() + (root / "output.log").read_text(errors="replace")
        (root / "passwd").write_text("")
    raise RuntimeError(f"Dovecot did not start:\n{last[-3000:]}")


def _wait_for_greeting(dovecot: Dovecot, deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if dovecot.process.poll() is not None:
            return False
        try:
            with socket.create_connection((dovecot.host, dovecot.port), timeout=5) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _stop(dovecot: Dovecot) -> None:
    stop(dovecot.process)


@contextmanager
def hostile_imap_server(mode: str) -> Iterator[int]:
    """A raw socket server that misbehaves as an IMAP server; yields its port.

    "drip": the greeting one byte every 0.3 s, forever; "endless-line": a greeting line that never ends;
    "huge-literal": a greeting announcing a literal of a terabyte; "slow-literal": a literal of 500 kB sent
    a byte every 0.3 s; "no-starttls": a server that offers no STARTTLS; "starttls-injection": an answer
    to STARTTLS followed at once by an unencrypted line (the attack of CVE-2011-0411).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def drip(conn: socket.socket, data: bytes) -> None:
        for byte in data:
            if stop.wait(0.3):
                return
            conn.sendall(bytes([byte]))

    def serve(conn: socket.socket) -> None:
        try:
            if mode == "drip":
                drip(conn, b"* OK " + b"x" * 100_000)
            elif mode == "endless-line":
                while not stop.is_set():
                    conn.sendall(b"* OK " + b"x" * 65536)
            elif mode == "huge-literal":
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1] hello {1000000000000}\r\n")
                while not stop.is_set():
                    conn.sendall(b"y" * 65536)
            elif mode == "slow-literal":
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1] hello {500000}\r\n")
                drip(conn, b"z" * 500_000)
            elif mode in ("no-starttls", "starttls-injection"):
                capabilities = b"IMAP4rev1 STARTTLS" if mode == "starttls-injection" else b"IMAP4rev1"
                conn.sendall(b"* OK [CAPABILITY " + capabilities + b" AUTH=PLAIN] ready\r\n")
                line = conn.makefile("rb").readline()
                tag = line.split(b" ", 1)[0]
                conn.sendall(tag + b" OK begin TLS now\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n")
                stop.wait(10)
        except OSError:
            pass
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A fresh Dovecot with one user (USER, PASSWORD) and its Sent and Drafts folders."""
    with running_dovecot() as server:
        yield server


@pytest.fixture
def oauth_dovecot() -> Iterator[tuple[AuthorizationServer, Dovecot]]:
    """An authorization server and a Dovecot that accepts its current tokens (XOAUTH2, OAUTHBEARER)."""
    with authorization_server(slow_down_once=False) as authority:
        with running_dovecot(authority.introspection_url) as server:
            yield authority, server
