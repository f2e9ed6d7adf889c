"""Where and how to send: the [smtp] settings with the environment's overrides, checked before any connection."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from dispatch.errors import SendError
from dispatch.mail.credentials import stored_secret
from dispatch.mail.message import check_address

SECURITY = ("starttls", "tls", "none")
AUTH = ("password", "oauth2")
ENVIRONMENT = {
    "host": "DISPATCH_SMTP_HOST",
    "port": "DISPATCH_SMTP_PORT",
    "security": "DISPATCH_SMTP_SECURITY",
    "username": "DISPATCH_SMTP_USERNAME",
    "auth": "DISPATCH_SMTP_AUTH",
    "sender": "DISPATCH_SENDER",
}
PASSWORD_VARIABLE = "DISPATCH_SMTP_PASSWORD"
CAFILE_VARIABLE = "DISPATCH_SMTP_CAFILE"
KEYRING_SERVICE = "dispatch"
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send: [smtp] in dispatch.toml, each value overridable by the environment."""

    host: str
    port: int
    security: str
    username: str
    sender: str
    rate_limit: float = 0  # messages per minute; 0 for no limit
    timeout: float = 60    # seconds for each command and its whole reply (and for each 64 KiB of a message)
    retries: int = 4
    retry_wait: float = 2
    cafile: str | None = None
    auth: str = "password"  # "password" (AUTH PLAIN/LOGIN) or "oauth2" (SASL XOAUTH2 with an access token)
    account: str = ""       # the named account these settings come from, for the sign-in hint

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"

    @property
    def login_command(self) -> str:
        """The command that signs in (again) for auth = "oauth2"."""
        return f"dispatch login {self.account or 'ACCOUNT'}"


def sender_address(smtp: Mapping, sender_email: str, environ: Mapping[str, str] = os.environ) -> str:
    """The address messages come from: DISPATCH_SENDER, else [smtp] sender, else [sender] email."""
    return (environ.get(ENVIRONMENT["sender"]) or smtp.get("sender") or sender_email or "").strip()


def smtp_settings(smtp: Mapping, sender_email: str, environ: Mapping[str, str] = os.environ) -> SmtpSettings:
    """Settings for a real send; raises SendError saying how to fix anything missing or unsafe."""
    values = {key: smtp.get(key) for key in ("host", "port", "security", "username", "auth")}
    for key, variable in ENVIRONMENT.items():
        if key in values and environ.get(variable):
            values[key] = environ[variable].strip()
    host = (values["host"] or "").strip()
    if not host:
        raise SendError("no SMTP server is configured", file="dispatch.toml",
                        hint="set host, port, security and username under [smtp] in dispatch.toml "
                             "(or DISPATCH_SMTP_HOST); dispatch send --dry-run writes the messages without a server")
    try:
        port = int(values["port"])
    except (TypeError, ValueError):
        raise SendError(f"{ENVIRONMENT['port']}={values['port']!r} is not a port number",
                        hint="use a number such as 587 (starttls) or 465 (tls)") from None
    if not 0 < port < 65536:
        raise SendError(f"port {port} is not a port number", hint="use a number such as 587 (starttls) or 465 (tls)")
    security = str(values["security"]).lower()
    if security not in SECURITY:
        raise SendError(f"{ENVIRONMENT['security']}={values['security']!r}: security must be one of "
                        f"{', '.join(SECURITY)}", hint='"starttls" for port 587, "tls" for port 465')
    if security == "none" and not is_loopback(host):
        raise SendError(f'security = "none" is allowed only for a server on this machine, not {host}',
                        file="dispatch.toml", column="[smtp] security",
                        hint='without encryption the password and the letters cross the network readable by anyone; '
                             'use "starttls" (port 587) or "tls" (port 465)')
    username = (values["username"] or "").strip()
    auth = str(values["auth"] or "password").strip().lower()
    if auth not in AUTH:
        raise SendError(f"auth = {values['auth']!r}: auth must be one of {', '.join(AUTH)}", file="dispatch.toml",
                        column="[smtp] auth", hint='"password" for a user name and password, "oauth2" for a '
                                                   "Microsoft 365 or Google sign-in (dispatch login)")
    if auth == "oauth2" and not username:
        raise SendError('auth = "oauth2" needs the mailbox to sign in as', file="dispatch.toml",
                        column="[smtp] username", hint="set username to the mailbox's address")
    sender = sender_address(smtp, sender_email, environ)
    if not sender:
        raise SendError("no sender address", file="dispatch.toml",
                        hint="set sender under [smtp] (or email under [sender], or DISPATCH_SENDER)")
    check_address(sender, "[smtp] sender")
    cafile = environ.get(CAFILE_VARIABLE) or None
    if cafile and not Path(cafile).is_file():
        raise SendError(f"{CAFILE_VARIABLE}: no such file: {cafile}",
                        hint="point it at the PEM file of the certificate authority that signed the server's certificate")
    return SmtpSettings(host=host, port=port, security=security, username=username,
                        sender=sender, rate_limit=float(smtp.get("rate_limit", 0)), timeout=float(smtp.get("timeout", 60)),
                        retries=int(smtp.get("retries", 4)), retry_wait=float(smtp.get("retry_wait", 2)), cafile=cafile,
                        auth=auth, account=str(smtp.get("account") or ""))


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def stored_password(settings: SmtpSettings, environ: Mapping[str, str] = os.environ) -> str | None:
    """The SMTP password from the environment, or the system keyring when one is installed; None if neither."""
    if not environ.get(PASSWORD_VARIABLE):  # an empty variable counts as unset
        environ = {k: v for k, v in environ.items() if k != PASSWORD_VARIABLE}
    return stored_secret(PASSWORD_VARIABLE, f"{KEYRING_SERVICE}:{settings.host}", settings.username, environ)
