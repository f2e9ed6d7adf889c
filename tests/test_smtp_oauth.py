"""Signing in to SMTP with an access token (SASL XOAUTH2) against aiosmtpd, and the refusals a provider
gives (a token refused, password login turned off): each a clear error with the next step, and the
token in no message and no log."""

from __future__ import annotations

import base64
import logging

import pytest

from dispatch.errors import SendError
from dispatch.mail.message import Draft, build_message
from dispatch.mail.settings import SmtpSettings, smtp_settings
from dispatch.mail.smtp import ConnectionProblem, Mailer
from tests.raw_smtp_server import raw_smtp, reply
from tests.smtp_server import PASSWORD, USERNAME, OAuthRecorder, smtp_server

TOKEN = "ya29.a0AfH6SMC-test-access-token-0001"


def settings(server, **changes) -> SmtpSettings:
    values = dict(host=server.host, port=server.port, security="none", username=USERNAME,
                  sender="coordinator@example.org", timeout=10, auth="oauth2", account="coalition")
    values.update(changes)
    return SmtpSettings(**values)


def message(rid: str = "NA"):
    return build_message(Draft(recipient_id=rid, from_name="Coalition", from_address="coordinator@example.org",
                               to=f"mission.{rid.lower()}@example.org", subject="Joint letter", text="Dear colleagues,\n",
                               attachment=b"%PDF-1.7\n", attachment_name="letter.pdf"))


def tokens(*values: str):
    """A token provider handing out these tokens in turn, counting its calls."""
    calls = []

    def provider() -> str:
        calls.append(values[min(len(calls), len(values) - 1)])
        return calls[-1]
    provider.calls = calls
    return provider


def test_signs_in_with_the_token_and_sends():
    handler = OAuthRecorder({TOKEN})
    with smtp_server(handler) as server:
        mailer = Mailer(settings(server), token=tokens(TOKEN))
        try:
            outcome = mailer.deliver(message())
        finally:
            mailer.close()
    assert outcome.kind == "sent", outcome
    assert handler.logins == [USERNAME]
    assert [(m.user, m.rcpt_tos) for m in handler.messages] == [(USERNAME, ["mission.na@example.org"])]


def test_each_login_asks_the_provider_so_a_new_connection_uses_a_refreshed_token():
    current = {"token": "first-token-000000"}
    handler = OAuthRecorder(lambda user, token: user == USERNAME and token == current["token"])
    provider = tokens("first-token-000000", "second-token-00000")
    with smtp_server(handler) as server:
        mailer = Mailer(settings(server), token=provider)
        try:
            assert mailer.deliver(message("NA")).kind == "sent"
            mailer.close()                          # the connection ends (idle, or dropped by the server)
            current["token"] = "second-token-00000"  # the first token expired and was refreshed
            assert mailer.deliver(message("FR")).kind == "sent"
        finally:
            mailer.close()
    assert provider.calls == ["first-token-000000", "second-token-00000"]
    assert handler.logins == [USERNAME, USERNAME] and mailer.connections == 2
    assert len(handler.messages) == 2


def test_a_refused_token_stops_with_the_sign_in_hint_and_the_token_nowhere(caplog):
    caplog.set_level(logging.DEBUG)
    handler = OAuthRecorder({TOKEN})
    wrong = "ya29.expired-or-revoked-token-9999"
    with smtp_server(handler) as server:
        mailer = Mailer(settings(server), token=tokens(wrong))
        with pytest.raises(SendError) as caught:
            mailer.open()
    assert type(caught.value) is SendError  # not a ConnectionProblem: retrying will not help
    assert str(caught.value) == (f"127.0.0.1 refused the sign-in of {USERNAME} (535 5.7.8 Username and Password not "
                                 "accepted; the server said status 401)")
    assert caught.value.hint == "sign in again: dispatch login coalition"
    assert handler.refused == [USERNAME] and handler.logins == []
    assert handler.error_answers == [b""]  # the error challenge was answered with an empty line
    said = str(caught.value) + caught.value.hint + caplog.text
    sasl = base64.b64encode(f"user={USERNAME}\x01auth=Bearer {wrong}\x01\x01".encode()).decode()
    assert wrong not in said and sasl not in said and sasl[:16] not in said


def test_a_server_that_echoes_the_token_does_not_show_it():
    sasl = base64.b64encode(f"user={USERNAME}\x01auth=Bearer {TOKEN}\x01\x01".encode()).decode()

    def echo(session, line):
        decoded = base64.b64decode(line.split()[2]).decode()
        return session.reply(f"535 5.7.3 Authentication unsuccessful: {line.decode().strip()} ({decoded!r})")
    with raw_smtp({"AUTH": echo}, mechanisms=("XOAUTH2",)) as server:
        with pytest.raises(SendError) as caught:
            Mailer(settings(server), token=tokens(TOKEN)).open()
    shown = str(caught.value) + caught.value.hint
    assert "refused the sign-in" in shown and "[redacted]" in shown
    assert TOKEN not in shown and sasl not in shown and sasl[10:30] not in shown
    assert "Bearer" not in shown.replace("Bearer [redacted]", "")


def test_the_provider_turned_password_login_off():
    refusal = "550 5.7.30 Basic authentication is not supported for Client Submission"
    with raw_smtp({"AUTH": reply(refusal)}) as server:
        with pytest.raises(SendError) as caught:
            Mailer(settings(server, auth="password", account=""), PASSWORD).open()
    assert str(caught.value) == f"127.0.0.1 no longer accepts a password for {USERNAME} ({refusal})"
    assert 'auth = "oauth2"' in caught.value.hint and "dispatch login ACCOUNT" in caught.value.hint


def test_a_temporary_refusal_of_the_login_is_a_connection_problem():
    with raw_smtp({"AUTH": reply("454 4.7.0 Temporary authentication failure")}, mechanisms=("XOAUTH2",)) as server:
        with pytest.raises(ConnectionProblem, match="cannot check the login"):
            Mailer(settings(server), token=tokens(TOKEN)).open()


def test_no_xoauth2_offered_and_no_sign_in_are_clear_errors():
    with smtp_server(OAuthRecorder({TOKEN}), auth=False) as server:
        with pytest.raises(SendError, match=r"does not offer an OAuth 2.0 sign-in \(AUTH XOAUTH2\)"):
            Mailer(settings(server), token=tokens(TOKEN)).open()
        with pytest.raises(SendError, match="is not signed in") as caught:
            Mailer(settings(server)).open()
    assert caught.value.hint == "sign in: dispatch login coalition"


def test_a_real_sized_token_fits_the_auth_line():
    long_token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "A" * 2400 + ".sig"
    handler = OAuthRecorder({long_token})
    with smtp_server(handler) as server:
        mailer = Mailer(settings(server), token=tokens(long_token))
        try:
            mailer.open()
        finally:
            mailer.close()
    assert handler.logins == [USERNAME]


def test_auth_setting():
    smtp = {"host": "smtp.office365.com", "port": 587, "security": "starttls", "username": USERNAME,
            "auth": "oauth2", "account": "coalition"}
    parsed = smtp_settings(smtp, "me@example.org", {})
    assert (parsed.auth, parsed.account, parsed.login_command) == ("oauth2", "coalition", "dispatch login coalition")
    assert smtp_settings({**smtp, "auth": None}, "me@example.org", {}).auth == "password"
    assert smtp_settings(smtp, "me@example.org", {"DISPATCH_SMTP_AUTH": "password"}).auth == "password"
    with pytest.raises(SendError, match="auth must be one of password, oauth2"):
        smtp_settings({**smtp, "auth": "xoauth"}, "me@example.org", {})
    with pytest.raises(SendError, match='auth = "oauth2" needs the mailbox to sign in as'):
        smtp_settings({**smtp, "username": ""}, "me@example.org", {})
