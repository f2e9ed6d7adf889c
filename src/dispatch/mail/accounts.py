"""Named mail accounts in a per-user file (accounts.toml), outside every campaign folder.

The file holds where and how to reach the coordinator's mailbox (SMTP and IMAP hosts, the login name, the
sign-in method and, for OAuth 2.0, the provider's endpoints); never a password or a token. Presets for
Microsoft 365 and Gmail fill in what the provider documents, so an account there needs only an address
and a client ID.

    [coalition]
    email = "coordinator@coalition.example"
    auth = "oauth2"
    provider = "microsoft"
    client_id = "00000000-0000-0000-0000-000000000000"
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from dispatch.errors import SendError

FILE_NAME = "accounts.toml"
SECURITY = ("none", "starttls", "tls")
AUTH = ("password", "oauth2")
PROVIDERS = ("custom", "microsoft", "google")
SAVE_SENT = ("auto", "true", "false")

# Hosts that put a copy of each message submitted over SMTP in the Sent folder themselves: appending
# another copy over IMAP would file every message twice.
FILES_SENT_ITSELF = ("smtp.office365.com", "smtp-mail.outlook.com", "smtp.gmail.com", "smtp.googlemail.com")

_MICROSOFT_LOGIN = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
PRESETS: dict[str, dict[str, Any]] = {
    # learn.microsoft.com: "Authenticate an IMAP, POP or SMTP connection using OAuth" and
    # "Microsoft identity platform and the OAuth 2.0 device authorization grant flow".
    "microsoft": {
        "smtp_host": "smtp.office365.com", "smtp_port": 587, "smtp_security": "starttls",
        "imap_host": "outlook.office365.com", "imap_port": 993, "imap_security": "tls",
        "device_authorization_url": _MICROSOFT_LOGIN + "/devicecode",
        "authorization_url": _MICROSOFT_LOGIN + "/authorize",
        "token_url": _MICROSOFT_LOGIN + "/token",
        "scope": "https://outlook.office.com/SMTP.Send https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    },
    # developers.google.com: "OAuth 2.0 for TV and Limited-Input Device Applications", "OAuth 2.0 for
    # iOS & Desktop Apps" and the Gmail XOAUTH2 page (one scope for IMAP, POP and SMTP). Google's device
    # sign-in refuses that scope (it allows a short list of scopes only): Gmail needs the browser sign-in.
    "google": {
        "smtp_host": "smtp.gmail.com", "smtp_port": 465, "smtp_security": "tls",
        "imap_host": "imap.gmail.com", "imap_port": 993, "imap_security": "tls",
        "device_authorization_url": "https://oauth2.googleapis.com/device/code",
        "authorization_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "scope": "https://mail.google.com/",
    },
}
_DEFAULT_PORTS = {"smtp": {"none": 25, "starttls": 587, "tls": 465}, "imap": {"none": 143, "starttls": 143, "tls": 993}}
_SECRET_KEY = re.compile(r"pass|secret|token|api_?key|credential|bearer", re.IGNORECASE)
_SECRET_HINT = ("a password comes from the environment (DISPATCH_SMTP_PASSWORD, DISPATCH_IMAP_PASSWORD) or the "
                "system keyring; OAuth tokens are kept by `dispatch login ACCOUNT`, never in a file you edit")


@dataclass(frozen=True)
class Account:
    """One mailbox the coordinator sends from, as accounts.toml names it (presets filled in)."""

    name: str
    email: str
    auth: str = "password"
    provider: str = "custom"
    username: str = ""  # the login name, when it is not the address
    client_id: str = ""
    tenant: str = ""  # Microsoft: the directory (tenant) ID or domain; "organizations" when empty
    device_authorization_url: str = ""
    authorization_url: str = ""  # for the sign-in in a browser on this machine (authorization code grant)
    token_url: str = ""
    scope: str = ""
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_security: str = "starttls"
    imap_host: str = ""
    imap_port: int = 0
    imap_security: str = "tls"
    save_sent: str = "auto"
    file: str = FILE_NAME  # where it was read, for messages
    line: int | None = None

    @property
    def login(self) -> str:
        """The user name for SMTP AUTH, IMAP LOGIN and XOAUTH2."""
        return self.username or self.email

    @property
    def oauth2(self) -> bool:
        return self.auth == "oauth2"

    def smtp(self) -> dict[str, Any]:
        """The account's SMTP values in the shape of dispatch.toml's [smtp] table, as smtp_settings() reads it
        (merge the campaign's [smtp] rate_limit, timeout, retries on top; environment overrides still apply)."""
        return {"host": self.smtp_host, "port": self.smtp_port, "security": self.smtp_security,
                "username": self.login, "sender": self.email, "auth": self.auth, "account": self.name}

    @property
    def saves_sent(self) -> bool:
        """Whether dispatch should append each sent message to the IMAP \\Sent folder."""
        if self.save_sent == "auto":
            return not files_sent_itself(self.smtp_host)
        return self.save_sent == "true"


def files_sent_itself(smtp_host: str) -> bool:
    """True for the hosts known to file mail submitted over SMTP in Sent (Exchange Online, Gmail)."""
    return smtp_host.strip().lower().rstrip(".") in FILES_SENT_ITSELF


def is_loopback(host: str) -> bool:
    """True for a name or address of this machine (where an unencrypted connection stays on the machine)."""
    host = host.strip().strip("[]").lower()
    if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """dispatch's folder in the user's configuration folder ($XDG_CONFIG_HOME/dispatch on Linux)."""
    if sys.platform not in ("win32", "darwin") and environ.get("XDG_CONFIG_HOME", "").strip():
        return Path(environ["XDG_CONFIG_HOME"].strip()) / "dispatch"
    import platformdirs

    return Path(platformdirs.user_config_dir("dispatch", appauthor=False))


def accounts_path(environ: Mapping[str, str] = os.environ) -> Path:
    return config_dir(environ) / FILE_NAME


def load_account(name: str, environ: Mapping[str, str] = os.environ, path: Path | None = None) -> Account:
    """The account called `name` (the caller decides the name: DISPATCH_ACCOUNT, else dispatch.toml)."""
    path = path or accounts_path(environ)
    accounts = load_accounts(path)
    if name not in accounts:
        known = ", ".join(sorted(accounts)) or "none"
        raise SendError(f"no account {name!r} in {path} (accounts there: {known})", file=str(path),
                        hint=f"add a [{name}] table with email, auth and provider (see the README, "
                             '"Sending from Microsoft 365 / Gmail"), or correct the name in dispatch.toml '
                             "or DISPATCH_ACCOUNT")
    return accounts[name]


def load_accounts(path: Path) -> dict[str, Account]:
    """Every account in the file; an empty dict when there is no file. Raises SendError at file:line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SendError(f"cannot read {path}: {exc}", file=str(path), hint="check the file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        raise SendError(f"not valid TOML: {exc}", file=str(path), line=line,
                        hint='each account is a [name] table of key = "value" lines') from None
    lines = _Lines(text)
    accounts = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise SendError(f"{name} = ... is not an account", file=str(path), line=lines.key(None, name),
                            hint=f"put each account in its own table: [{name}] followed by its settings")
        accounts[name] = _account(name, table, str(path), lines)
    return accounts


_FIELDS = {f.name: f for f in fields(Account) if f.name not in ("name", "file", "line")}
_INTEGERS = ("smtp_port", "imap_port")


def _account(name: str, table: Mapping[str, Any], file: str, lines: "_Lines") -> Account:
    def fail(message: str, key: str | None, hint: str) -> SendError:
        return SendError(message, file=file, line=lines.key(name, key), column=f"[{name}]" + (f" {key}" if key else ""),
                         hint=hint)

    values: dict[str, Any] = {}
    for key, value in table.items():
        if _SECRET_KEY.search(key) and key not in _FIELDS:
            raise fail("no secret in this file", key, _SECRET_HINT)
        if key not in _FIELDS:
            raise fail(f"unknown setting {key!r}", key, "the settings of an account are: " + ", ".join(_FIELDS))
        if key == "save_sent" and isinstance(value, bool):
            value = "true" if value else "false"
        if key in _INTEGERS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail(f"{key} must be a number, not {value!r}", key, f"for example {key} = 587")
            if not 0 < value < 65536:
                raise fail(f"{key} = {value} is not a port number", key, "a port is a number from 1 to 65535")
        elif not isinstance(value, str):
            raise fail(f"{key} must be text in quotes, not {value!r}", key, f'for example {key} = "..."')
        else:
            value = value.strip()
        values[key] = value
    checks = (("auth", AUTH), ("provider", PROVIDERS), ("smtp_security", SECURITY), ("imap_security", SECURITY),
              ("save_sent", SAVE_SENT))
    for key, allowed in checks:
        if key in values and values[key].lower() not in allowed:
            raise fail(f"{key} = {values[key]!r}: must be one of {', '.join(allowed)}", key,
                       f'for example {key} = "{allowed[0]}"')
        if key in values:
            values[key] = values[key].lower()
    if not values.get("email"):
        raise fail("no email", None, f'add email = "you@example.org" under [{name}]')
    provider = values.get("provider", "custom")
    merged: dict[str, Any] = {}
    for key, value in PRESETS.get(provider, {}).items():
        merged[key] = value.format(tenant=values.get("tenant") or "organizations") if isinstance(value, str) else value
    merged.update(values)
    for kind in ("smtp", "imap"):
        security = merged.get(f"{kind}_security") or Account.__dataclass_fields__[f"{kind}_security"].default
        if not merged.get(f"{kind}_port"):
            merged[f"{kind}_port"] = _DEFAULT_PORTS[kind][security]
    account = Account(name=name, file=file, line=lines.key(name, None), **merged)
    if account.oauth2:
        missing = [key for key in ("client_id", "device_authorization_url", "token_url", "scope")
                   if not getattr(account, key)]
        if "device_authorization_url" in missing and account.authorization_url:
            missing.remove("device_authorization_url")  # the sign-in in a browser is enough
        if missing:
            hint = ("register dispatch in your provider's console and put its client_id here (see the README, "
                    '"Sending from Microsoft 365 / Gmail")') if provider != "custom" else \
                "a custom provider needs client_id, device_authorization_url, token_url and scope"
            raise fail(f'auth = "oauth2" needs {", ".join(missing)}', None, hint)
    return account


class _Lines:
    """Where each table and key is in the file, for messages (tomllib gives no positions)."""

    def __init__(self, text: str) -> None:
        self._found: dict[tuple[str | None, str | None], int] = {}
        table: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            header = re.match(r"^\[\s*(\"[^\"]*\"|'[^']*'|[^\]\s]+)\s*\]", line)
            if header:
                table = header.group(1).strip("\"'")
                self._found.setdefault((table, None), number)
                continue
            key = re.match(r"^(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_.-]+)\s*=", line)
            if key:
                self._found.setdefault((table, key.group(1).strip("\"'")), number)

    def key(self, table: str | None, key: str | None) -> int | None:
        return self._found.get((table, key)) or self._found.get((table, None))


def _line_from_message(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None
