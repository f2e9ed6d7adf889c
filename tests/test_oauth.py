"""OAuth sign-in against a real local authorization server: the device grant, the refresh grant, revocation,
where tokens are kept, and answers bounded in size and time."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import keyring
import keyring.backend
import pytest

from dispatch.errors import SendError
from dispatch.mail.accounts import Account, load_account
from dispatch.mail.oauth import (DEVICE_GRANT, OAuthClient, SignInExpired, oauth_client, refresh_tokens, sign_in,
                                 sign_out, start_device_authorization, token_source, wait_for_approval, xoauth2)
from dispatch.mail.oauth_browser import authorization_address, sign_in_with_browser
from dispatch.mail.tokens import FileStore, Tokens, token_file, token_store, token_store_description
from tests.oauth_server import CLIENT_ID, AuthorizationServer, authorization_server, hostile_http_server


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's config folder in tmp_path, and no system keyring: tokens go to the file."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.delenv("DISPATCH_TOKEN_STORE", raising=False)
    return tmp_path / "config" / "dispatch"


def write_account(config_home: Path, server: AuthorizationServer | str, name: str = "coalition") -> Account:
    url = server if isinstance(server, str) else server.url
    config_home.mkdir(parents=True, exist_ok=True)
    (config_home / "accounts.toml").write_text(
        f'[{name}]\nemail = "coordinator@coalition.example"\nauth = "oauth2"\nprovider = "custom"\n'
        f'client_id = "{CLIENT_ID}"\ndevice_authorization_url = "{url}/device"\ntoken_url = "{url}/token"\n'
        f'scope = "mail"\nsmtp_host = "127.0.0.1"\nsmtp_port = 2525\nsmtp_security = "none"\n', encoding="utf-8")
    return load_account(name)


def approve_when_shown(server: AuthorizationServer, after: float = 1.5):
    """The user reads the code, opens the page and approves a moment later (in another thread)."""
    shown = []

    def show(authorization) -> None:
        shown.append(authorization)
        threading.Timer(after, server.approve, args=(authorization.user_code,)).start()

    return show, shown


def test_device_sign_in_pending_then_approved_keeps_tokens_in_a_private_file(config_home: Path) -> None:
    with authorization_server(slow_down_once=False) as server:
        account = write_account(config_home, server)
        show, shown = approve_when_shown(server)
        where = sign_in(account, show)
        assert shown[0].verification_uri == server.url + "/verify" and shown[0].user_code
        assert "device_code" not in repr(shown[0]) and shown[0].device_code not in repr(shown[0])
        grant = server.grants[0]
        assert grant.polls >= 2, "at least one authorization_pending before the approval"
        assert server.polls_too_fast == 0
        polls = [r for r in server.token_requests if r["grant_type"] == DEVICE_GRANT]
        assert polls[0] == {"grant_type": DEVICE_GRANT, "device_code": grant.device_code, "client_id": CLIENT_ID}
        path = token_file()
        assert where == f"the file {path} (readable only by you)" == token_store_description()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        stored = json.loads(path.read_text())["coalition"]
        assert server.is_current(stored["access_token"]) and stored["refresh_token"] == grant.refresh_token
        assert token_source(account)() == stored["access_token"]


@pytest.mark.slow
def test_slow_down_adds_five_seconds_to_the_interval(config_home: Path) -> None:
    with authorization_server(slow_down_once=True, interval=1) as server:
        account = write_account(config_home, server)
        client = oauth_client(account)
        authorization = start_device_authorization(client)
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 3:
                server.approve(authorization.user_code)
            threading.Event().wait(seconds)

        tokens = wait_for_approval(client, authorization, sleep=sleep)
        assert waits == [1, 6, 6]
        assert server.slow_downs == 1 and server.polls_too_fast == 0
        assert server.is_current(tokens.access_token)


def test_declined_and_expired_sign_ins_say_what_to_do(config_home: Path) -> None:
    with authorization_server(slow_down_once=False) as server:
        account = write_account(config_home, server)
        client = oauth_client(account)
        authorization = start_device_authorization(client)
        server.deny(authorization.user_code)
        with pytest.raises(SendError) as caught:
            wait_for_approval(client, authorization)
        assert "declined" in str(caught.value) and caught.value.hint.startswith("run dispatch login coalition")
        authorization = start_device_authorization(client)
        ticks = iter([0.0, 10_000.0])
        with pytest.raises(SendError, match="expired before it was entered"):
            wait_for_approval(client, authorization, sleep=lambda s: None, clock=lambda: next(ticks))
    assert not token_file().exists()


def test_an_unknown_client_is_refused_with_a_hint(config_home: Path) -> None:
    with authorization_server() as server:
        account = write_account(config_home, server)
        client = OAuthClient("coalition", "someone-else", account.device_authorization_url, account.token_url, "mail")
        with pytest.raises(SendError) as caught:
            start_device_authorization(client)
        assert str(caught.value) == ("the sign-in could not start for account 'coalition': "
                                     "invalid_client: unknown client")
        assert "client_id" in caught.value.hint


def signed_in(config_home: Path, server: AuthorizationServer) -> Account:
    account = write_account(config_home, server)
    show, _ = approve_when_shown(server, after=0)
    sign_in(account, show)
    return account


def test_the_token_is_refreshed_when_it_expires(config_home: Path) -> None:
    with authorization_server(slow_down_once=False, access_lifetime=2) as server:
        account = signed_in(config_home, server)
        source = token_source(account)
        first = source()
        assert source() == first and server.refreshes == 0  # still fresh: no request
        threading.Event().wait(2.1)
        second = source()
        assert second != first and server.is_current(second) and not server.is_current(first)
        assert server.refreshes == 1 == source.refreshes
        refresh = [r for r in server.token_requests if r["grant_type"] == "refresh_token"][0]
        assert set(refresh) == {"grant_type", "refresh_token", "client_id", "scope"} and refresh["scope"] == "mail"
        # The rotated refresh token is kept: a new process continues without a new sign-in.
        assert FileStore(token_file()).load("coalition").access_token == second
        assert token_source(account)() == second


def test_a_forced_refresh_and_threads_share_one_token(config_home: Path) -> None:
    with authorization_server(slow_down_once=False, access_lifetime=60) as server:
        source = token_source(signed_in(config_home, server))
        renewed = source.refresh()
        got: list[str] = []
        threads = [threading.Thread(target=lambda: got.append(source())) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert got == [renewed] * 8 and server.refreshes == 1


def test_a_revoked_grant_stops_with_the_sign_in_hint_and_no_token_in_the_text(
        config_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with authorization_server(slow_down_once=False, access_lifetime=1) as server:
        account = signed_in(config_home, server)
        source = token_source(account)
        source()
        server.revoke()
        threading.Event().wait(1.1)
        with pytest.raises(SignInExpired) as caught:
            source()
        assert isinstance(caught.value, SendError)
        assert str(caught.value) == ("the sign-in of account 'coalition' is no longer valid "
                                     "(invalid_grant: The refresh token was revoked.)")
        assert caught.value.hint == "sign in again: dispatch login coalition"
        everything = str(caught.value) + repr(caught.value) + caught.value.hint + caplog.text
        secrets = server.secrets()
        assert len(secrets) >= 3
        assert not [s for s in secrets if s in everything]
        assert "access_token" not in repr(FileStore(token_file()).load("coalition"))


def test_a_server_echoing_the_refresh_token_does_not_put_it_in_the_error(config_home: Path) -> None:
    with authorization_server(slow_down_once=False) as server:
        account = signed_in(config_home, server)
        client = oauth_client(account)
        stored = FileStore(token_file()).load("coalition")
        real = server.token

        def echo(form):
            return 400, {"error": "invalid_request", "error_description": "bad token " + form.get("refresh_token", "")}
        server.token = echo
        try:
            with pytest.raises(SendError) as caught:
                refresh_tokens(client, stored.refresh_token)
        finally:
            server.token = real
        assert stored.refresh_token not in str(caught.value) and "[redacted]" in str(caught.value)


def test_not_signed_in_and_sign_out(config_home: Path) -> None:
    with authorization_server(slow_down_once=False) as server:
        account = write_account(config_home, server)
        with pytest.raises(SendError) as caught:
            token_source(account)
        assert caught.value.hint == "sign in first: dispatch login coalition"
        show, _ = approve_when_shown(server, after=0)
        sign_in(account, show)
        assert sign_out("coalition") == [f"the file {token_file()} (readable only by you)"]
        assert not token_file().exists()
        assert sign_out("coalition") == []
        with pytest.raises(SendError, match="not signed in"):
            token_source(account)


def test_the_token_file_is_private_from_its_creation(config_home: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        store = FileStore(token_file())
        store.save("a", Tokens("access-1", "refresh-1", 1e10, 0))
        store.save("b", Tokens("access-2", None, 1e10, 0))
    finally:
        os.umask(old)
    assert stat.S_IMODE(token_file().stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file().parent.stat().st_mode) == 0o700
    assert store.load("a").refresh_token == "refresh-1" and store.load("b").access_token == "access-2"
    assert [p.name for p in token_file().parent.iterdir()] == ["tokens.json"]  # no temporary file left
    token_file().chmod(0o644)
    assert store.load("a") is not None
    assert stat.S_IMODE(token_file().stat().st_mode) == 0o600


def test_the_store_is_chosen_from_the_environment(config_home: Path) -> None:
    assert isinstance(token_store(), FileStore)
    with pytest.raises(SendError, match="no usable system keyring"):
        token_store({**os.environ, "DISPATCH_TOKEN_STORE": "keyring"})
    assert isinstance(token_store({**os.environ, "DISPATCH_TOKEN_STORE": "file"}), FileStore)


def test_plain_http_is_refused_for_a_remote_token_server(config_home: Path) -> None:
    client = OAuthClient("a", "c", "http://login.example.org/device", "http://login.example.org/token", "mail")
    with pytest.raises(SendError, match="is not an https:// address"):
        start_device_authorization(client)


@pytest.mark.parametrize("mode, message", [("endless", "larger than 64 KiB"), ("drip", "did not answer within 2 s"),
                                           ("silent", "did not answer within 2 s")])
def test_a_hostile_token_server_neither_hangs_nor_fills_memory(config_home: Path, mode: str, message: str) -> None:
    with hostile_http_server(mode) as url:
        client = OAuthClient("a", "c", url + "/device", url + "/token", "mail", timeout=2)
        with pytest.raises(SendError, match=message):
            start_device_authorization(client)


def test_xoauth2_initial_response() -> None:
    assert xoauth2("a@b.org", "tok") == b"user=a@b.org\x01auth=Bearer tok\x01\x01"


def browser(url: str) -> None:
    """The user's browser: loads the sign-in page and follows its redirect back to dispatch (in a thread)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    threading.Thread(target=lambda: opener.open(url, timeout=30).read(), daemon=True).start()


def test_browser_sign_in_with_pkce_and_a_loopback_redirect(config_home: Path) -> None:
    with authorization_server() as server:
        account = write_account(config_home, server)
        account = dataclasses.replace(account, authorization_url=server.authorization_url)
        opened: list[str] = []
        where = sign_in_with_browser(account, lambda url: (opened.append(url), browser(url)))
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(opened[0]).query))
        assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
        assert query["client_id"] == CLIENT_ID and query["scope"] == "mail" and len(query["state"]) >= 32
        assert query["redirect_uri"].startswith("http://127.0.0.1:")
        (request,) = server.token_requests
        assert request["grant_type"] == "authorization_code" and request["redirect_uri"] == query["redirect_uri"]
        assert 43 <= len(request["code_verifier"]) <= 128 and request["code_verifier"] not in opened[0]
        assert where == token_store_description()
        assert server.is_current(token_source(account)())


def test_a_sign_in_declined_in_the_browser(config_home: Path) -> None:
    with authorization_server(decline_in_browser=True) as server:
        account = dataclasses.replace(write_account(config_home, server), authorization_url=server.authorization_url)
        with pytest.raises(SendError) as caught:
            sign_in_with_browser(account, browser)
        assert str(caught.value) == "the sign-in for account 'coalition' was not completed in the browser (access_denied)"
        assert caught.value.hint == "run dispatch login coalition --browser again and approve the request"
        with pytest.raises(SendError, match="not finished within 1 s"):
            sign_in_with_browser(account, lambda url: None, wait=1)
    assert not token_file().exists()


def test_provider_sign_in_pages(config_home: Path) -> None:
    config_home.mkdir(parents=True)
    (config_home / "accounts.toml").write_text(
        '[gmail]\nemail = "a@gmail.com"\nauth = "oauth2"\nprovider = "google"\nclient_id = "g"\n'
        '[m365]\nemail = "a@ngo.example"\nauth = "oauth2"\nprovider = "microsoft"\nclient_id = "m"\n')
    google = oauth_client(load_account("gmail"))
    address = authorization_address(google, "http://127.0.0.1:5000/", "st", "ch")
    assert address.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(address).query))
    assert query == {"response_type": "code", "client_id": "g", "redirect_uri": "http://127.0.0.1:5000/",
                     "scope": "https://mail.google.com/", "state": "st", "code_challenge": "ch",
                     "code_challenge_method": "S256", "access_type": "offline", "prompt": "consent"}
    microsoft = oauth_client(load_account("m365"))
    assert authorization_address(microsoft, "http://localhost:5000/", "st", "ch").startswith(
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize?response_type=code&client_id=m&")


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring back end in memory. A stand-in, because no real system keyring (Secret Service over D-Bus,
    macOS Keychain, Windows Credential Manager) can run in CI: it goes through keyring's own API all the same."""

    priority = 10

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


def test_a_usable_system_keyring_is_preferred(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    try:
        store = token_store()
        described = f"the system keyring ({memory.name})"
        assert store.description == described == token_store_description()
        store.save("coalition", Tokens("access-k", "refresh-k", 1e10, 0))
        assert list(memory.entries) == [("dispatch-oauth", "coalition")]
        assert store.load("coalition").refresh_token == "refresh-k"
        assert not token_file().exists()
        FileStore(token_file()).save("coalition", Tokens("old", None, 1e10, 0))  # from before the keyring
        assert sign_out("coalition") == [described, f"the file {token_file()} (readable only by you)"]
        assert memory.entries == {} and not token_file().exists()
        assert isinstance(token_store({"DISPATCH_TOKEN_STORE": "file"}), FileStore)
    finally:
        keyring.set_keyring(previous)
