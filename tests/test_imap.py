"""IMAP against a real Dovecot: special-use folders, APPEND to Sent and Drafts, read-only reading, search by
Message-ID, XOAUTH2 with refreshed tokens; and a hostile server that must end in a clear error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dispatch.errors import SendError
from dispatch.mail.accounts import Account
from dispatch.mail.imap import DRAFTS, SENT, ImapClient, ImapError, ImapSettings, imap_password, imap_settings
from dispatch.mail.oauth import SignInExpired, sign_in, token_source
from tests.imap_server import PASSWORD, USER, Dovecot, dovecot, hostile_imap_server, oauth_dovecot  # noqa: F401
from tests.oauth_server import CLIENT_ID, AuthorizationServer


def message(message_id: str, body: str = "Dear Ambassador,\r\n\r\nThe letter is attached.\r\n") -> bytes:
    return (f"From: Coordinator <{USER}>\r\nTo: mission@example.org\r\nSubject: Joint letter\r\n"
            f"Date: Tue, 28 Apr 2020 10:00:00 +0000\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def client(server: Dovecot, security: str = "none", **options) -> ImapClient:
    settings = imap_settings(None, server.environ(security))
    if options:
        settings = ImapSettings(**{**settings.__dict__, **options})
    return ImapClient(settings, password=server.password)


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_special_use_folders_are_found_by_flag_over_each_kind_of_connection(dovecot: Dovecot, security: str) -> None:
    with client(dovecot, security) as imap:
        assert imap.special_folders() == {SENT: "Sent", DRAFTS: "Drafts"}
        assert imap.folder(SENT) == "Sent" and imap.folder(DRAFTS) == "Drafts"
        with pytest.raises(ImapError, match=r"marks no folder as \\Trash"):
            imap.folder("\\Trash")


def test_append_to_sent_and_drafts_keeps_the_exact_bytes(dovecot: Dovecot) -> None:
    sent, draft = message("<sent-1@coalition.example>"), message("<draft-1@coalition.example>", "Brouillon é\r\n")
    with client(dovecot) as imap:
        sent_uid = imap.save_sent(sent)
        draft_uid = imap.save_draft(draft)
        assert imap.examine("Sent").exists == 1 and imap.examine("Drafts").exists == 1
        assert imap.flags("Sent") == {sent_uid: frozenset({"\\Seen"})}
        assert imap.flags("Drafts") == {draft_uid: frozenset({"\\Seen", "\\Draft"})}
        assert [m.data for m in imap.fetch_after("Sent")] == [sent]
        assert [m.data for m in imap.fetch_after("Drafts")] == [draft]
    files = list((dovecot.maildir() / ".Sent" / "cur").iterdir())
    assert [f.read_bytes() for f in files] == [sent.replace(b"\r\n", b"\n")]  # Dovecot keeps Maildir files in LF


def test_reading_leaves_the_mailbox_unchanged(dovecot: Dovecot) -> None:
    with client(dovecot) as imap:
        for number in range(5):
            imap.append("INBOX", message(f"<in-{number}@example.org>"), ("\\Flagged",) if number == 2 else ())
        before = imap.flags("INBOX")
        state = imap.examine("INBOX")
    assert before[3] == frozenset({"\\Flagged"}) and before[1] == frozenset()
    with client(dovecot) as imap:
        fetched = list(imap.fetch_after("INBOX", 0))
        assert [m.uid for m in fetched] == sorted(before)
        assert fetched[0].data == message("<in-0@example.org>")
        assert imap.find_message_id("INBOX", "<in-4@example.org>") == [5]
    with client(dovecot) as imap:
        assert imap.flags("INBOX") == before  # no \Seen, nothing removed
        assert imap.examine("INBOX") == state  # same UIDVALIDITY, UIDNEXT, count


def test_new_messages_only_and_uidvalidity(dovecot: Dovecot) -> None:
    with client(dovecot) as imap:
        imap.append("INBOX", message("<a@example.org>"))
        imap.append("INBOX", message("<b@example.org>"))
        folder = imap.examine("INBOX")
        assert folder.uidvalidity > 0 and folder.uidnext == 3
        assert imap.uids_after("INBOX", 0) == [1, 2]
        assert imap.uids_after("INBOX", 1) == [2]
        assert imap.uids_after("INBOX", 2) == []  # "3:*" names message 2 on the server: not new
        assert list(imap.fetch_after("INBOX", 2)) == []


def test_search_by_message_id_is_exact(dovecot: Dovecot) -> None:
    with client(dovecot) as imap:
        imap.append("Sent", message("<id-1@coalition.example>"))
        imap.append("Sent", message("<id-1@coalition.example.org>"))
        imap.append("Sent", message("<xid-1@coalition.example>"))
        assert imap.find_message_id("Sent", "<id-1@coalition.example>") == [1]
        assert imap.find_message_id("Sent", "<missing@coalition.example>") == []
        assert imap.find_message_id("Sent", 'bad"id') == []


def test_a_large_message_is_fetched_cut(dovecot: Dovecot) -> None:
    big = message("<big@example.org>", "x" * 70 + "\r\n") + b"y" * 200_000 + b"\r\n"
    with client(dovecot, max_message=50_000) as imap:
        imap.append("INBOX", big)
        (fetched,) = imap.fetch_after("INBOX")
    assert fetched.cut and fetched.size == len(big) and fetched.data == big[:50_000]


def test_the_certificate_is_verified(dovecot: Dovecot) -> None:
    environ = {**dovecot.environ("tls")}
    del environ["DISPATCH_IMAP_CAFILE"]
    with pytest.raises(ImapError) as caught:
        ImapClient(imap_settings(None, environ), password=PASSWORD).open()
    assert "cannot be verified" in str(caught.value) and "DISPATCH_IMAP_CAFILE" in caught.value.hint


def test_a_wrong_password_is_refused_without_showing_it(dovecot: Dovecot) -> None:
    settings = imap_settings(None, dovecot.environ())
    with pytest.raises(ImapError) as caught:
        ImapClient(settings, password="Wr0ng-Pa55word").open()
    assert str(caught.value).startswith(f"127.0.0.1 refused the username or password for {USER}")
    assert "Wr0ng-Pa55word" not in str(caught.value) + caught.value.hint


def test_settings_from_the_account_and_the_environment(tmp_path: Path) -> None:
    account = Account(name="coalition", email=USER, imap_host="imap.example.org", imap_port=993, imap_security="tls",
                      auth="oauth2")
    settings = imap_settings(account, {})
    assert (settings.host, settings.port, settings.security, settings.username, settings.auth) == (
        "imap.example.org", 993, "tls", USER, "oauth2")
    cafile = tmp_path / "ca.pem"
    cafile.write_text("x")
    overridden = imap_settings(account, {"DISPATCH_IMAP_HOST": "127.0.0.1", "DISPATCH_IMAP_PORT": "1143",
                                         "DISPATCH_IMAP_SECURITY": "none", "DISPATCH_IMAP_USERNAME": "other",
                                         "DISPATCH_IMAP_PASSWORD": "pw", "DISPATCH_IMAP_CAFILE": str(cafile)})
    assert (overridden.host, overridden.port, overridden.security, overridden.username, overridden.auth,
            overridden.cafile) == ("127.0.0.1", 1143, "none", "other", "password", str(cafile))
    assert imap_password(overridden, {"DISPATCH_IMAP_PASSWORD": "pw"}) == "pw"
    with pytest.raises(ImapError, match='"none" is allowed only for a server on this machine'):
        imap_settings(account, {"DISPATCH_IMAP_SECURITY": "none"})
    with pytest.raises(ImapError, match="no IMAP server is configured"):
        imap_settings(None, {})
    with pytest.raises(ImapError, match="no such file"):
        imap_settings(account, {"DISPATCH_IMAP_CAFILE": str(tmp_path / "missing.pem")})


def signed_in_account(authority: AuthorizationServer, server: Dovecot, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> Account:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    account = Account(name="coalition", email=USER, auth="oauth2", client_id=CLIENT_ID,
                      device_authorization_url=authority.device_url, token_url=authority.token_url, scope="mail",
                      imap_host="127.0.0.1", imap_port=server.port, imap_security="starttls")
    sign_in(account, lambda shown: authority.approve(shown.user_code))
    return account


def test_xoauth2_with_a_token_renewed_when_the_server_refuses_it(
        oauth_dovecot: tuple[AuthorizationServer, Dovecot], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    authority, server = oauth_dovecot
    account = signed_in_account(authority, server, tmp_path, monkeypatch)
    environ = {"DISPATCH_IMAP_CAFILE": server.cafile}
    tokens = token_source(account)
    with ImapClient(imap_settings(account, environ), token=tokens) as imap:
        assert imap.folder(SENT) == "Sent"
    assert authority.refreshes == 0
    authority.expire_access_tokens()  # the server stops accepting a token the client still thinks is fresh
    with ImapClient(imap_settings(account, environ), token=tokens) as imap:
        imap.save_sent(message("<oauth-1@coalition.example>"))
    assert authority.refreshes == 1
    authority.revoke()
    authority.expire_access_tokens()
    with pytest.raises(SignInExpired) as caught:
        ImapClient(imap_settings(account, environ), token=tokens).open()
    assert caught.value.hint == "sign in again: dispatch login coalition"
    assert "Login: user=<coordinator@coalition.example>, method=XOAUTH2" in server.log()
    secrets = authority.secrets()
    assert not [s for s in secrets if s in server.log() or s in str(caught.value)]


@pytest.mark.parametrize("mode, problem", [
    ("drip", "no complete answer within 3 s"),
    ("endless-line", "the server sent a line longer than 1048576 bytes"),
    ("huge-literal", "the server announced 1000000000000 bytes, more than the 1000000 allowed"),
    ("slow-literal", "no complete answer within 3 s"),
])
def test_a_hostile_server_ends_in_a_clear_error(mode: str, problem: str) -> None:
    with hostile_imap_server(mode) as port:
        settings = ImapSettings("127.0.0.1", port, "none", USER, timeout=1, deadline=3, max_message=1_000_000)
        started = time.monotonic()
        with pytest.raises(ImapError) as caught:
            ImapClient(settings, password=PASSWORD).open()
        assert time.monotonic() - started < 60  # bounded (3 s of deadline; generous for a busy machine)
    assert str(caught.value) == f"IMAP connecting on 127.0.0.1:{port} (none): {problem}"


def test_starttls_that_is_not_offered_or_is_tampered_with_stops(tmp_path: Path) -> None:
    with hostile_imap_server("no-starttls") as port:
        with pytest.raises(ImapError, match="does not offer STARTTLS"):
            ImapClient(ImapSettings("127.0.0.1", port, "starttls", USER, timeout=2, deadline=5),
                       password=PASSWORD).open()
    with hostile_imap_server("starttls-injection") as port:
        with pytest.raises(ImapError, match="securing the connection"):
            ImapClient(ImapSettings("127.0.0.1", port, "starttls", USER, timeout=2, deadline=5),
                       password=PASSWORD).open()


def test_no_password_and_no_token(dovecot: Dovecot) -> None:
    settings = imap_settings(None, dovecot.environ())
    with pytest.raises(ImapError, match="no IMAP password"):
        ImapClient(settings).open()
    with pytest.raises(ImapError, match="no OAuth token source"):
        ImapClient(ImapSettings(**{**settings.__dict__, "auth": "oauth2"})).open()
    assert issubclass(ImapError, SendError)


def test_a_closed_connection_says_so(dovecot: Dovecot) -> None:
    imap = client(dovecot)
    with imap:
        imap.examine("INBOX")
    with pytest.raises(ImapError, match="the IMAP connection is closed"):
        imap.special_folders()
