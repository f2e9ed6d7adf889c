"""A campaign that sends from a named account (accounts.toml), with the servers it talks to: the local
authorization server (tests/oauth_server.py), aiosmtpd signing in with XOAUTH2 against that server's current
tokens, and Dovecot (tests/imap_server.py) for the Sent and Drafts folders.

The SMTP server checks a session's token at each MAIL FROM: when it has expired or was revoked it answers
421 and closes the connection, as a provider ending a session would; that is where a long send signs in
again with a renewed token. With `revoke_after` it revokes the grant once it has taken that many messages.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from pathlib import Path

import pytest

from dispatch.mail.accounts import load_account
from dispatch.mail.imap import ImapClient, ImapSettings
from dispatch.mail.oauth import sign_in
from tests.conftest import SENDER, email_row
from tests.imap_server import Dovecot
from tests.oauth_server import CLIENT_ID, AuthorizationServer
from tests.smtp_server import OAuthRecorder

ACCOUNT = "coalition"
ADDRESS = "coordinator@coalition.example"  # the mailbox the local authorization server and Dovecot know


class CheckingRecorder(OAuthRecorder):
    """Accepts the authorization server's current tokens; ends a session whose token is no longer current."""

    def __init__(self, authority: AuthorizationServer, *, revoke_after: int | None = None, delay: float = 0.0) -> None:
        self.authority = authority
        self.revoke_after = revoke_after
        self.sessions_ended = 0
        self._tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> its token
        self._signing_in = None

        def accepts(user: str, token: str) -> bool:
            ok = authority.is_current(token)
            if ok and self._signing_in is not None:
                self._tokens[self._signing_in] = token
            return ok

        super().__init__(accepts, delay=delay)

    async def auth_XOAUTH2(self, server, args):
        self._signing_in = server  # accepts() runs before the first await when the token comes with AUTH
        try:
            return await super().auth_XOAUTH2(server, args)
        finally:
            self._signing_in = None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        token = self._tokens.get(server)
        if token is None:
            return "530 5.7.0 Authentication required"
        if not self.authority.is_current(token):
            with self.lock:
                self.sessions_ended += 1
            asyncio.get_running_loop().call_soon(server.transport.close)  # after the reply is written
            return "421 4.7.0 The access token of this session is no longer valid; closing the connection"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        status = await super().handle_DATA(server, session, envelope)
        with self.lock:
            taken = len(self.messages)
        if self.revoke_after is not None and taken == self.revoke_after:
            self.authority.revoke()
        return status


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's config folder in tmp_path (accounts.toml, tokens.json), no system keyring, no DISPATCH_*
    setting from the machine."""
    for name in [n for n in os.environ if n.startswith("DISPATCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    folder = tmp_path / "config" / "dispatch"
    folder.mkdir(parents=True)
    return folder


def write_account(config_home: Path, *, smtp_port: int, authority: AuthorizationServer | None = None,
                  imap_port: int | None = None, auth: str = "oauth2", save_sent: str = "false",
                  email: str = ADDRESS, extra: str = "") -> Path:
    """accounts.toml with the [coalition] account of the interface, pointing at the test servers."""
    lines = [f"[{ACCOUNT}]", f'email = "{email}"', f'auth = "{auth}"', 'provider = "custom"']
    if authority is not None:
        lines += [f'client_id = "{CLIENT_ID}"', f'device_authorization_url = "{authority.device_url}"',
                  f'token_url = "{authority.token_url}"', 'scope = "mail"']
    lines += ['smtp_host = "127.0.0.1"', f"smtp_port = {smtp_port}", 'smtp_security = "none"']
    if imap_port is not None:
        lines += ['imap_host = "127.0.0.1"', f"imap_port = {imap_port}", 'imap_security = "none"']
    lines += [f'save_sent = "{save_sent}"']
    path = config_home / "accounts.toml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def rows(count: int, channel: str = "email") -> list[dict[str, str]]:
    return [email_row(f"R{n:02d}", f"State {n}", f"mission{n:02d}@example.org", channel=channel)
            for n in range(1, count + 1)]


def account_campaign(make_workspace, count: int, *, smtp: str = "") -> Path:
    """A campaign of `count` email recipients whose dispatch.toml names the account, and nothing else of SMTP."""
    settings = SENDER + f'[smtp]\naccount = "{ACCOUNT}"\nrate_limit = 0\nretry_wait = 0.01\ntimeout = 10\n' + smtp
    return make_workspace(rows(count), settings=settings)


def sign_in_now(authority: AuthorizationServer) -> str:
    """Sign the account in through the library (the user approves at once); where the tokens are kept."""
    return sign_in(load_account(ACCOUNT), lambda shown: authority.approve(shown.user_code), sleep=lambda _: None)


def mailbox(dovecot: Dovecot) -> ImapClient:
    """A password login to the test mailbox, to look at what dispatch put there."""
    return ImapClient(ImapSettings(dovecot.host, dovecot.port, "none", dovecot.user), password=dovecot.password)


def folder_messages(dovecot: Dovecot, folder: str) -> list[bytes]:
    with mailbox(dovecot) as imap:
        return [fetched.data for fetched in imap.fetch_after(folder)]
