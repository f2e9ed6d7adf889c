"""dispatch login / logout and dispatch send over XOAUTH2, against the local authorization server and aiosmtpd:
tokens renewed as they expire in the middle of a send, a grant revoked in the middle of a send, no password
prompt for an OAuth account, the token in no file, output, log or process list, and the presets of the README.
Only Microsoft's and Google's own endpoints are stood in for (they cannot be reached from the tests)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
from dispatch.mail import oauth
from dispatch.mail.accounts import load_account
from tests.mail_account import (ACCOUNT, CheckingRecorder, account_campaign, config_home, sign_in_now,  # noqa: F401
                                write_account)
from tests.oauth_server import authorization_server
from tests.smtp_server import smtp_server
from tests.processes import read_until

runner = CliRunner()
DISPATCH = Path(sys.executable).parent / "dispatch"
REPO = Path(__file__).resolve().parent.parent
HINT = "hint: sign in again: dispatch login coalition"


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def statuses(folder: Path) -> dict[str, str]:
    rows = json.loads(run("-C", str(folder), "status", "--format", "json").stdout)
    return {row["id"]: row["email"] for row in rows}


def counted(handler) -> dict[str, int]:
    return {address: len(found) for address, found in handler.by_recipient().items()}


def environment() -> dict[str, str]:
    """The test's environment (config folder, no keyring, no DISPATCH_* from the machine) for a subprocess."""
    return dict(os.environ)


def test_login_prints_the_code_polls_and_says_where_the_tokens_are(config_home: Path) -> None:
    with authorization_server(approve_after_polls=2, slow_down_once=False) as authority:
        write_account(config_home, smtp_port=2525, authority=authority)
        result = run("login", ACCOUNT)
        assert result.exit_code == 0, result.output
        [grant] = authority.grants
        assert result.stderr.splitlines()[:2] == [
            f"To sign in, open {authority.url}/verify in a browser (on any device) and enter the code {grant.user_code}",
            f"  or open {authority.url}/verify?user_code={grant.user_code}"]
        tokens = config_home / "tokens.json"
        assert result.stdout == (f"signed in account {ACCOUNT}; the tokens are kept in the file {tokens} "
                                 "(readable only by you)\n")
        assert tokens.stat().st_mode & 0o777 == 0o600
        assert grant.polls == 2 and authority.polls_too_fast == 0
        assert authority.token_requests == [{"grant_type": oauth.DEVICE_GRANT, "device_code": grant.device_code,
                                             "client_id": "dispatch-test"}] * 2
        secrets = authority.secrets()
        assert not [s for s in secrets if s in result.output]

        assert run("logout", ACCOUNT).stdout == (f"signed out account {ACCOUNT}: its tokens were removed from the "
                                                 f"file {tokens} (readable only by you)\n")
        assert not tokens.exists()
        assert run("logout", ACCOUNT).stdout == f"account {ACCOUNT} was not signed in on this machine: no tokens to remove\n"


def test_login_errors_name_the_account_and_the_next_step(config_home: Path, make_workspace, monkeypatch) -> None:
    write_account(config_home, smtp_port=2525, auth="password")
    result = run("login", "nobody")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {config_home / 'accounts.toml'}: no account 'nobody' in ")
    result = run("login", ACCOUNT)
    assert result.exit_code == 1
    assert "signs in with a password (auth = \"password\"), not OAuth" in result.stderr
    (config_home / "accounts.toml").write_text('[gmail]\nemail = "a@gmail.com"\nauth = "oauth2"\nprovider = "google"\n'
                                               'client_id = "x.apps.googleusercontent.com"\n')
    result = run("login", "gmail")
    assert result.exit_code == 1
    assert result.stderr == ("error: Google does not grant the mail scope to a sign-in with a code (account 'gmail')\n"
                             "  hint: sign in in a browser on this machine: dispatch login gmail --browser\n")
    # Without a name: the campaign's account (DISPATCH_ACCOUNT overrides it).
    folder = account_campaign(make_workspace, 1)
    assert "no account 'coalition'" in run("-C", str(folder), "login").stderr  # [smtp] account = "coalition"
    monkeypatch.setenv("DISPATCH_ACCOUNT", "gmail")
    assert "dispatch login gmail --browser" in run("-C", str(folder), "login").stderr
    monkeypatch.delenv("DISPATCH_ACCOUNT")
    nowhere = run("-C", str(folder.parent), "login")  # not a campaign folder, and no name
    assert nowhere.exit_code == 2
    assert nowhere.stderr.startswith("error: name the account, as in accounts.toml: dispatch login ACCOUNT")


@pytest.mark.slow
def test_login_in_a_browser_on_this_machine(config_home: Path, tmp_path: Path) -> None:
    """--browser opens the provider's page with the browser named by $BROWSER: here a script that follows the
    page's redirect back to dispatch on 127.0.0.1, as a browser does once the user approves."""
    browser = tmp_path / "browser"
    browser.write_text(f"#!/bin/sh\n'{sys.executable}' -c 'import sys, urllib.request; "
                       "urllib.request.urlopen(sys.argv[1], timeout=60).read()' \"$1\" >/dev/null 2>&1 &\n")
    browser.chmod(0o755)
    with authorization_server() as authority:
        write_account(config_home, smtp_port=2525, authority=authority,
                      extra=f'authorization_url = "{authority.authorization_url}"\n')
        result = subprocess.run([str(DISPATCH), "login", ACCOUNT, "--browser"], capture_output=True, text=True,
                                env={**environment(), "BROWSER": f"{browser} %s"}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.startswith("Sign in in the browser; if none opens, open this address:\n  "
                                    f"{authority.authorization_url}?response_type=code&client_id=dispatch-test&")
    assert result.stdout.startswith(f"signed in account {ACCOUNT}; the tokens are kept in the file ")
    assert (config_home / "tokens.json").is_file()


@pytest.mark.slow
def test_thirty_messages_over_xoauth2_with_a_token_that_expires_every_5_seconds(config_home: Path, make_workspace):
    with authorization_server(access_lifetime=5, slow_down_once=False, approve_after_polls=1) as authority:
        # Each message takes the server a quarter of a second: the send outlasts a token, however fast the machine.
        handler = CheckingRecorder(authority, delay=0.25)
        with smtp_server(handler) as server:
            write_account(config_home, smtp_port=server.port, authority=authority)
            folder = account_campaign(make_workspace, 30)
            assert run("login", ACCOUNT).exit_code == 0
            command = [str(DISPATCH), "-v", "-C", str(folder), "send", "--yes"]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
            seen = _command_lines_while_running(process)
            stdout, stderr = (data.decode() for data in process.communicate(timeout=300))
    assert process.returncode == 0, stdout + stderr
    assert re.search(r"^sent 30, failed 0, uncertain 0, skipped 0 in ", stdout, re.M), stdout
    assert counted(handler) == {f"mission{n:02d}@example.org": 1 for n in range(1, 31)}
    assert authority.refreshes > 0 and handler.sessions_ended > 0
    assert len(handler.logins) == handler.sessions_ended + 1 and handler.refused == []
    assert set(statuses(folder).values()) == {"sent"}
    with Journal(folder / "dispatch.db") as journal:
        assert [e.kind for e in journal.events("letter") if e.kind != "rendered"] == ["sending", "sent"] * 30
    # The token is nowhere: not in the output or the log (-v), the journal, the messages, any file of the
    # campaign, nor the command line of the process while it ran.
    assert seen, "the process list was never read"
    _assert_no_secret(authority.secrets(), stdout + stderr + "\n".join(seen), folder)
    assert "renewed the access token of account coalition" in stderr


@pytest.mark.slow
def test_a_grant_revoked_mid_send_stops_and_a_new_login_finishes_without_duplicates(config_home: Path, make_workspace):
    with authorization_server(slow_down_once=False, approve_after_polls=1) as authority:
        handler = CheckingRecorder(authority, revoke_after=3)
        with smtp_server(handler) as server:
            write_account(config_home, smtp_port=server.port, authority=authority)
            folder = account_campaign(make_workspace, 8)
            sign_in_now(authority)
            stopped = run("-C", str(folder), "send", "--yes")
            assert stopped.exit_code == 1, stopped.output
            assert re.search(r"^sent 3, failed 0, uncertain 0, skipped 0 in ", stopped.stdout, re.M), stopped.stdout
            assert stopped.stderr.splitlines()[-3:] == [
                "stopped: the sign-in of account 'coalition' is no longer valid (invalid_grant: The refresh token was "
                "revoked.)", "  " + HINT, "  not attempted: 5; run dispatch send again to send them"]
            assert statuses(folder) == {**{f"R{n:02d}": "sent" for n in (1, 2, 3)},
                                        **{f"R{n:02d}": "pending" for n in range(4, 9)}}
            # Nothing goes out while signed out: the error comes before anything else.
            again = run("-C", str(folder), "send", "--yes")
            assert again.exit_code == 1
            assert again.stderr.splitlines()[-1] == "  " + HINT
            assert run("login", ACCOUNT).exit_code == 0
            finished = run("-C", str(folder), "send", "--yes")
    assert finished.exit_code == 0, finished.output
    assert re.search(r"^sent 5, failed 0, uncertain 0, skipped 3 in ", finished.stdout, re.M), finished.stdout
    assert counted(handler) == {f"mission{n:02d}@example.org": 1 for n in range(1, 9)}
    assert set(statuses(folder).values()) == {"sent"}
    _assert_no_secret(authority.secrets(), stopped.output + again.output + finished.output, folder)


@pytest.mark.slow
def test_an_oauth_account_is_never_asked_for_a_password_in_a_terminal(config_home: Path, make_workspace):
    with authorization_server(slow_down_once=False) as authority:
        handler = CheckingRecorder(authority)
        with smtp_server(handler) as server:
            write_account(config_home, smtp_port=server.port, authority=authority)
            folder = account_campaign(make_workspace, 1)
            sign_in_now(authority)
            master, slave = os.openpty()
            process = subprocess.Popen([str(DISPATCH), "-C", str(folder), "send"], stdin=slave, stdout=slave,
                                       stderr=slave, env=environment(), close_fds=True)
            os.close(slave)
            seen = bytearray()
            try:
                read_until(master, b"Send 1 message(s)? [y/N]:", seen)
                os.write(master, b"y\n")
                read_until(master, b"messages/s)", seen)
                assert process.wait(timeout=60) == 0
            finally:
                process.kill()
                os.close(master)
    assert b"password" not in seen.lower()
    assert b"sent 1, failed 0, uncertain 0, skipped 0" in seen
    assert [m.user for m in handler.messages] == ["coordinator@coalition.example"]


def test_a_token_the_server_no_longer_takes_is_renewed_once_and_the_message_goes(config_home: Path) -> None:
    from dispatch.mail.message import Draft, build_message
    from dispatch.mail.oauth import token_source
    from dispatch.mail.settings import SmtpSettings
    from dispatch.mail.smtp import Mailer

    with authorization_server(slow_down_once=False) as authority:
        handler = CheckingRecorder(authority)
        with smtp_server(handler) as server:
            write_account(config_home, smtp_port=server.port, authority=authority)
            sign_in_now(authority)
            authority.expire_access_tokens()  # this program still thinks its token good for an hour
            settings = SmtpSettings("127.0.0.1", server.port, "none", "coordinator@coalition.example",
                                    "coordinator@coalition.example", timeout=10, auth="oauth2", account=ACCOUNT)
            mailer = Mailer(settings, token=token_source(load_account(ACCOUNT)))
            message = build_message(Draft("NA", "Coalition", "coordinator@coalition.example", "na@example.org",
                                          "Letter", "Dear colleagues,\n", b"%PDF-1.7\n", "letter.pdf"))
            try:
                outcome = mailer.deliver(message)
            finally:
                mailer.close()
    assert outcome.kind == "sent", outcome
    assert authority.refreshes == 1 and len(handler.refused) == 1 and len(handler.logins) == 1
    assert mailer.connections == 1


def test_not_signed_in_is_said_before_anything_is_rendered(config_home: Path, make_workspace) -> None:
    with authorization_server() as authority:
        write_account(config_home, smtp_port=2525, authority=authority)
        folder = account_campaign(make_workspace, 2)
        result = run("-C", str(folder), "send", "--yes")
    assert result.exit_code == 1
    assert result.stderr == "error: account 'coalition' is not signed in\n  hint: sign in first: dispatch login coalition\n"
    assert not (folder / "out" / "letter" / "R01.pdf").exists()


def test_the_account_the_campaign_names_and_the_environment_over_it(config_home: Path, make_workspace) -> None:
    from dispatch.campaign import smtp_settings
    from dispatch.workspace import open_workspace

    write_account(config_home, smtp_port=2525, auth="password",
                  extra='[other]\nemail = "other@example.org"\nsmtp_host = "127.0.0.1"\nsmtp_port = 2626\n'
                        'smtp_security = "none"\n')
    ws = open_workspace(account_campaign(make_workspace, 1, smtp='sender = "letters@coalition.example"\n'))
    settings = smtp_settings(ws, {})
    assert (settings.host, settings.port, settings.security, settings.username, settings.auth, settings.account) == \
        ("127.0.0.1", 2525, "none", "coordinator@coalition.example", "password", "coalition")
    assert settings.sender == "letters@coalition.example"  # the campaign's sender stays
    assert settings.rate_limit == 0 and settings.retry_wait == 0.01  # so do its pace and retries
    other = smtp_settings(ws, {"DISPATCH_ACCOUNT": "other", "DISPATCH_SMTP_PORT": "2727"})
    assert (other.account, other.username, other.port) == ("other", "other@example.org", 2727)
    with pytest.raises(Exception, match='auth = "oauth2" needs a named account'):
        smtp_settings(open_workspace(make_workspace([], settings='[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\n'
                                                                 'username = "me@example.org"\n'
                                                                 'sender = "me@example.org"\n')),
                      {"DISPATCH_SMTP_AUTH": "oauth2"})


def test_a_dry_run_writes_the_messages_from_the_accounts_address(config_home: Path, make_workspace) -> None:
    write_account(config_home, smtp_port=2525, auth="password")
    folder = account_campaign(make_workspace, 1)
    result = run("-C", str(folder), "send", "--dry-run")
    assert result.exit_code == 0, result.output
    outbox = folder / "out" / "letter" / "outbox" / "R01.eml"
    assert b"\r\nFrom: Coalition for the Court <coordinator@coalition.example>\r\n" in b"\r\n" + outbox.read_bytes()
    (config_home / "accounts.toml").unlink()  # a colleague's computer without the account: the dry run goes on
    result = run("-C", str(folder), "send", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: {config_home / 'accounts.toml'}: no account 'coalition' in ")
    assert "; the dry run uses dispatch.toml's [smtp] alone" in result.stderr


def test_the_readme_accounts_build_the_documented_urls_and_scopes(config_home: Path, monkeypatch) -> None:
    """The accounts.toml examples of the README, read as dispatch reads them; the request `dispatch login` sends
    to Microsoft, caught before it leaves (Microsoft cannot be reached from the tests)."""
    section = README_SECTION()
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    examples = "\n".join(b for b in blocks if "provider =" in b)
    (config_home / "accounts.toml").write_text(examples)
    tables = tomllib.loads(examples)
    microsoft = load_account(next(n for n, t in tables.items() if t.get("provider") == "microsoft"))
    google = load_account(next(n for n, t in tables.items() if t.get("provider") == "google"))
    tenant = microsoft.tenant
    assert tenant, "the Microsoft example names its tenant"
    base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
    assert (microsoft.device_authorization_url, microsoft.token_url) == (base + "/devicecode", base + "/token")
    assert microsoft.scope.split() == ["https://outlook.office.com/SMTP.Send",
                                       "https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"]
    assert (microsoft.smtp_host, microsoft.smtp_port, microsoft.smtp_security) == ("smtp.office365.com", 587, "starttls")
    assert (google.token_url, google.authorization_url, google.scope) == (
        "https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/v2/auth", "https://mail.google.com/")
    assert (google.smtp_host, google.smtp_port, google.smtp_security) == ("smtp.gmail.com", 465, "tls")
    assert not microsoft.saves_sent and not google.saves_sent  # both file what they are given in Sent

    sent = []

    def microsoft_answers(client, url, fields):  # a stand-in for login.microsoftonline.com
        sent.append((url, dict(fields)))
        if url.endswith("/devicecode"):
            return 200, {"device_code": "DC", "user_code": "ABCD-EFGH", "verification_uri":
                         "https://microsoft.com/devicelogin", "expires_in": 900, "interval": 5,
                         "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin"}
        return 200, {"access_token": "at", "refresh_token": "rt", "expires_in": 3600, "token_type": "Bearer"}

    monkeypatch.setattr(oauth, "post_form", microsoft_answers)
    result = run("login", microsoft.name)
    assert result.exit_code == 0, result.output
    assert sent[0] == (base + "/devicecode", {"client_id": microsoft.client_id, "scope": microsoft.scope})
    assert sent[1] == (base + "/token", {"grant_type": oauth.DEVICE_GRANT, "device_code": "DC",
                                         "client_id": microsoft.client_id})
    assert "open https://microsoft.com/devicelogin in a browser (on any device) and enter the code ABCD-EFGH" in \
        result.stderr


def README_SECTION() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Sending from Microsoft 365 / Gmail")
    return text[start:text.index("\n## ", start + 10)]


def test_the_readme_commands_exist() -> None:
    section = README_SECTION()
    for command in ("dispatch login coalition", "dispatch logout coalition", "dispatch send --drafts",
                    "dispatch login coalition --browser"):
        assert command in section
    for name in ("login", "logout"):
        assert run(name, "--help").exit_code == 0


# --- helpers ---------------------------------------------------------------------------------------------

def _command_lines_while_running(process: subprocess.Popen) -> list[str]:
    """The command line of the process and of its children, read from /proc until it ends."""
    seen: set[str] = set()
    while process.poll() is None:
        for pid in [process.pid, *_children(process.pid)]:
            try:
                line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if line.strip():
                seen.add(line)
        time.sleep(0.05)
    return sorted(seen)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _assert_no_secret(secrets: list[str], text: str, folder: Path) -> None:
    assert secrets
    for secret in secrets:
        assert secret not in text
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in secrets if s.encode() in data], path
