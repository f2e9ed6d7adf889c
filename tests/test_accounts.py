"""accounts.toml: the per-user file of named mail accounts, its presets and its errors at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatch.errors import SendError
from dispatch.mail.accounts import accounts_path, config_dir, files_sent_itself, load_account, load_accounts

# The interface section of the sign-in feature, word for word.
COALITION = """\
# $XDG_CONFIG_HOME/dispatch/accounts.toml on Linux (platformdirs' user config folder elsewhere)
[coalition]
email = "coordinator@coalition.example"
auth = "oauth2"                      # or "password" (then the password comes as today: environment, keyring, prompt)
provider = "custom"                  # "microsoft" and "google" fill in the URLs, scopes and hosts below
client_id = "dispatch-test"
device_authorization_url = "http://127.0.0.1:8765/device"
token_url = "http://127.0.0.1:8765/token"
scope = "mail"
smtp_host = "127.0.0.1"
smtp_port = 2525
smtp_security = "none"               # none, starttls, tls
imap_host = "127.0.0.1"
imap_port = 1143
imap_security = "none"
save_sent = "auto"                   # auto, true, false
"""


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = tmp_path / "config" / "dispatch"
    folder.mkdir(parents=True)
    return folder


def write(folder: Path, text: str) -> Path:
    path = folder / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_lives_in_the_users_config_folder(config_home: Path) -> None:
    assert accounts_path() == config_home / "accounts.toml"
    assert config_dir({"XDG_CONFIG_HOME": "/elsewhere"}) == Path("/elsewhere/dispatch")


def test_the_documented_account_reads_as_written(config_home: Path) -> None:
    write(config_home, COALITION)
    account = load_account("coalition")
    assert account.email == account.login == "coordinator@coalition.example"
    assert account.oauth2 and account.provider == "custom" and account.client_id == "dispatch-test"
    assert (account.device_authorization_url, account.token_url, account.scope) == (
        "http://127.0.0.1:8765/device", "http://127.0.0.1:8765/token", "mail")
    assert (account.smtp_host, account.smtp_port, account.smtp_security) == ("127.0.0.1", 2525, "none")
    assert (account.imap_host, account.imap_port, account.imap_security) == ("127.0.0.1", 1143, "none")
    assert account.line == 2 and account.file == str(config_home / "accounts.toml")
    assert account.smtp() == {"host": "127.0.0.1", "port": 2525, "security": "none",
                              "username": "coordinator@coalition.example", "sender": "coordinator@coalition.example",
                              "auth": "oauth2", "account": "coalition"}
    # A local server does not file sent mail itself: "auto" appends a copy to \Sent.
    assert account.saves_sent


def test_microsoft_preset_builds_the_documented_endpoints_and_scopes(config_home: Path) -> None:
    write(config_home, '[ngo]\nemail = "a@ngo.example"\nauth = "oauth2"\nprovider = "microsoft"\n'
                       'client_id = "11111111-2222-3333-4444-555555555555"\n'
                       '[tenant]\nemail = "b@ngo.example"\nauth = "oauth2"\nprovider = "microsoft"\n'
                       'client_id = "x"\ntenant = "ngo.onmicrosoft.com"\n')
    account = load_account("ngo")
    assert account.device_authorization_url == \
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode"
    assert account.token_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
    assert account.authorization_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize"
    assert account.scope.split() == ["https://outlook.office.com/SMTP.Send",
                                     "https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"]
    assert (account.smtp_host, account.smtp_port, account.smtp_security) == ("smtp.office365.com", 587, "starttls")
    assert (account.imap_host, account.imap_port, account.imap_security) == ("outlook.office365.com", 993, "tls")
    assert not account.saves_sent  # Exchange Online files SMTP submissions in Sent Items itself
    tenant = load_account("tenant")
    assert tenant.token_url == "https://login.microsoftonline.com/ngo.onmicrosoft.com/oauth2/v2.0/token"


def test_google_preset_and_a_port_choice(config_home: Path) -> None:
    write(config_home, '[gmail]\nemail = "a@gmail.com"\nauth = "oauth2"\nprovider = "google"\nclient_id = "x"\n'
                       '[starttls]\nemail = "b@gmail.com"\nprovider = "google"\nsmtp_port = 587\n'
                       'smtp_security = "starttls"\nsave_sent = true\n')
    account = load_account("gmail")
    assert account.device_authorization_url == "https://oauth2.googleapis.com/device/code"
    assert account.token_url == "https://oauth2.googleapis.com/token"
    assert account.authorization_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert account.scope == "https://mail.google.com/"
    assert (account.smtp_host, account.smtp_port, account.smtp_security) == ("smtp.gmail.com", 465, "tls")
    assert (account.imap_host, account.imap_port) == ("imap.gmail.com", 993)
    assert not account.saves_sent
    other = load_account("starttls")
    assert (other.smtp_port, other.smtp_security, other.auth) == (587, "starttls", "password")
    assert other.saves_sent  # forced with save_sent = true
    assert files_sent_itself("SMTP.Gmail.com.") and not files_sent_itself("mail.example.org")


@pytest.mark.parametrize("key, value", [("password", '"hunter2-Pa55"'), ("refresh_token", '"rt-0xAAAA"'),
                                        ("client_secret", '"GOCSPX-zzzz"'), ("smtp_password", '"Pa55-word"'),
                                        ("access_token", '"eyJ0eXAi"')])
def test_a_secret_in_the_file_is_refused_at_its_line(config_home: Path, key: str, value: str) -> None:
    path = write(config_home, f'[a]\nemail = "a@example.org"\n\n{key} = {value}\n')
    with pytest.raises(SendError) as caught:
        load_account("a")
    assert str(caught.value) == f"{path}:4: [a] {key}: no secret in this file"
    assert "keyring" in caught.value.hint and "dispatch login" in caught.value.hint
    assert value.strip('"') not in str(caught.value)


@pytest.mark.parametrize("text, line, message", [
    ('[a]\nemail = "a@x.org"\nsmtp_hots = "x"\n', 3, "unknown setting 'smtp_hots'"),
    ('[a]\nemail = "a@x.org"\nsmtp_port = "587"\n', 3, "smtp_port must be a number, not '587'"),
    ('[a]\nemail = "a@x.org"\nimap_port = true\n', 3, "imap_port must be a number, not True"),
    ('[a]\nemail = "a@x.org"\nsmtp_port = 70000\n', 3, "smtp_port = 70000 is not a port number"),
    ('[a]\nemail = "a@x.org"\n\nsmtp_host = 5\n', 4, "smtp_host must be text in quotes, not 5"),
    ('[a]\nemail = "a@x.org"\nauth = "xoauth"\n', 3, "auth = 'xoauth': must be one of password, oauth2"),
    ('[a]\nemail = "a@x.org"\nsave_sent = "sometimes"\n', 3, "save_sent = 'sometimes': must be one of auto, true, false"),
    ('[a]\nemail = "a@x.org"\nprovider = "yahoo"\n', 3, "provider = 'yahoo': must be one of custom, microsoft, google"),
    ('[a]\nauth = "password"\n', 1, "no email"),
    ('[a]\nemail = "a@x.org"\nauth = "oauth2"\n', 1, 'auth = "oauth2" needs client_id, device_authorization_url, '
                                                    'token_url, scope'),
    ('[a]\nemail = "a@x.org"\nauth = "oauth2"\nauthorization_url = "https://x/a"\n', 1,
     'auth = "oauth2" needs client_id, token_url, scope'),
])
def test_wrong_values_are_reported_at_file_and_line(config_home: Path, text: str, line: int, message: str) -> None:
    path = write(config_home, text)
    with pytest.raises(SendError) as caught:
        load_account("a")
    assert caught.value.problem.file == str(path)
    assert caught.value.problem.line == line
    assert caught.value.problem.message.endswith(message)
    assert caught.value.hint


def test_broken_toml_and_unknown_account(config_home: Path) -> None:
    path = write(config_home, '[a]\nemail = "a@x.org"\nsmtp_host = \n')
    with pytest.raises(SendError) as caught:
        load_account("a")
    assert caught.value.problem.line == 3 and "not valid TOML" in str(caught.value)
    write(config_home, '[a]\nemail = "a@x.org"\n[b]\nemail = "b@x.org"\n')
    with pytest.raises(SendError) as caught:
        load_account("c")
    assert str(caught.value) == f"{path}: no account 'c' in {path} (accounts there: a, b)"


def test_no_file_means_no_accounts(config_home: Path) -> None:
    assert load_accounts(config_home / "accounts.toml") == {}
    with pytest.raises(SendError, match="accounts there: none"):
        load_account("coalition")


def test_a_bom_from_a_windows_editor_is_accepted(config_home: Path) -> None:
    (config_home / "accounts.toml").write_bytes("\ufeff[a]\nemail = \"a@x.org\"\n".encode("utf-8"))
    assert load_account("a").email == "a@x.org"
