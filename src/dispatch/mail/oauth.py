"""OAuth 2.0 sign-in for mail: the device authorization grant (RFC 8628) and the refresh grant (RFC 6749).

One plain implementation of the protocol serves every provider: Microsoft's identity platform and Google
speak it as the RFCs do (Microsoft answers "authorization_declined" where the RFC says "access_denied", and
Google names the page "verification_url"; both are understood). Each request is a form-encoded POST over
HTTPS (plain HTTP only to this machine), and each answer is bounded in size and in time, so a hostile or
broken token server can neither hang a send nor fill the memory.

A TokenSource hands out a current access token, refreshing it with the refresh token shortly before it
expires, also in the middle of a long send; SMTP and IMAP call it when they authenticate (XOAUTH2).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from dispatch.errors import SendError
from dispatch.mail.accounts import Account, is_loopback
from dispatch.mail.tokens import TokenStore, Tokens, forget_tokens, token_store

log = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_SECRET_VARIABLE = "DISPATCH_OAUTH_CLIENT_SECRET"  # Google's clients need one (not a secret for them)
CAFILE_VARIABLE = "DISPATCH_OAUTH_CAFILE"
MAX_RESPONSE = 64 * 1024  # a token response is a few kilobytes
TIMEOUT = 30.0  # seconds for a whole request: connection, answer and body
_MAX_INTERVAL = 60
_MAX_WAIT = 3600


@dataclass(frozen=True)
class OAuthClient:
    """Where and as whom dispatch asks for tokens."""

    account: str
    client_id: str
    device_authorization_url: str
    token_url: str
    scope: str
    client_secret: str | None = field(default=None, repr=False)
    cafile: str | None = None
    timeout: float = TIMEOUT
    authorization_url: str = ""
    provider: str = "custom"


def oauth_client(account: Account, environ: Mapping[str, str] = os.environ) -> OAuthClient:
    if not account.oauth2:
        raise SendError(f'account {account.name!r} signs in with a password (auth = "password"), not OAuth',
                        file=account.file, line=account.line,
                        hint=f'set auth = "oauth2" under [{account.name}] to sign in with dispatch login')
    return OAuthClient(account.name, account.client_id, account.device_authorization_url, account.token_url,
                       account.scope, environ.get(CLIENT_SECRET_VARIABLE) or None, environ.get(CAFILE_VARIABLE) or None,
                       authorization_url=account.authorization_url, provider=account.provider)


def xoauth2(user: str, access_token: str) -> bytes:
    """The SASL XOAUTH2 initial response (before base64), as Microsoft and Google document it."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01".encode()


def xoauth2_base64(user: str, access_token: str) -> str:
    return base64.b64encode(xoauth2(user, access_token)).decode("ascii")


# --- the device authorization grant ---------------------------------------------------------------

@dataclass(frozen=True)
class DeviceAuthorization:
    """What to show the user: open verification_uri in any browser and enter user_code."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int
    message: str | None  # the provider's own sentence, when it sends one (Microsoft does)
    device_code: str = field(repr=False)


def start_device_authorization(client: OAuthClient) -> DeviceAuthorization:
    """Ask the provider for a device code and a user code (RFC 8628 section 3.1)."""
    fields = {"client_id": client.client_id, "scope": client.scope}
    status, data = post_form(client, client.device_authorization_url, fields)
    if status != 200:
        raise refused(client, "the sign-in could not start", data, status, fields.values())
    code, user_code = data.get("device_code"), data.get("user_code")
    uri = data.get("verification_uri") or data.get("verification_url")
    if not all(isinstance(v, str) and v for v in (code, user_code, uri)):
        raise SendError(f"{_host(client.device_authorization_url)} answered without a device code, a user code and "
                        "a verification address", hint="check device_authorization_url in accounts.toml")
    complete = data.get("verification_uri_complete")
    message = data.get("message")
    return DeviceAuthorization(_printable(user_code, 64), _printable(uri, 2048),
                               _printable(complete, 2048) if isinstance(complete, str) else None,
                               _bounded(data.get("expires_in"), 1800, 1, _MAX_WAIT),
                               _bounded(data.get("interval"), 5, 1, _MAX_INTERVAL),
                               _printable(message, 1000) if isinstance(message, str) else None, code)


def wait_for_approval(client: OAuthClient, authorization: DeviceAuthorization, *,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> Tokens:
    """Poll the token endpoint at the server's interval until the user approves (RFC 8628 section 3.4-3.5)."""
    interval = authorization.interval
    deadline = clock() + authorization.expires_in
    fields = {"grant_type": DEVICE_GRANT, "device_code": authorization.device_code, "client_id": client.client_id}
    if client.client_secret:
        fields["client_secret"] = client.client_secret
    while True:
        sleep(interval)
        if clock() > deadline:
            raise _expired(client)
        status, data = post_form(client, client.token_url, fields)
        if status == 200:
            return tokens_from(client, data)
        error = data.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval = min(interval + 5, _MAX_INTERVAL)
            log.info("the token server asked to poll more slowly: every %d s", interval)
            continue
        if error == "expired_token":
            raise _expired(client)
        if error in ("access_denied", "authorization_declined"):
            raise SendError(f"the sign-in for account {client.account!r} was declined in the browser",
                            hint=f"run dispatch login {client.account} again and approve the request")
        raise refused(client, "the sign-in failed", data, status, fields.values())


def sign_in(account: Account, show: Callable[[DeviceAuthorization], None], *, store: TokenStore | None = None,
            environ: Mapping[str, str] = os.environ, sleep: Callable[[float], None] = time.sleep) -> str:
    """The whole `dispatch login`: start, show the code (the caller prints it), wait, keep the tokens.
    Returns where the tokens are kept, in words."""
    client = oauth_client(account, environ)
    if not client.device_authorization_url:
        raise SendError(f"account {account.name!r} has no device_authorization_url", file=account.file,
                        line=account.line, hint=f"sign in in a browser on this machine: dispatch login {account.name} "
                                                "--browser, or add device_authorization_url")
    store = store or token_store(environ)
    authorization = start_device_authorization(client)
    show(authorization)
    tokens = wait_for_approval(client, authorization, sleep=sleep)
    store.save(account.name, tokens)
    log.info("signed in account %s; tokens kept in %s", account.name, store.description)
    return store.description


def sign_out(account_name: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The whole `dispatch logout`: forget the account's tokens; where they were removed from (may be empty)."""
    return forget_tokens(account_name, environ)


# --- the refresh grant and the current token --------------------------------------------------------

def refresh_tokens(client: OAuthClient, refresh_token: str) -> Tokens:
    """A new access token for the refresh token (RFC 6749 section 6)."""
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client.client_id,
              "scope": client.scope}
    if client.client_secret:
        fields["client_secret"] = client.client_secret
    status, data = post_form(client, client.token_url, fields)
    if status == 200:
        tokens = tokens_from(client, data)
        if tokens.refresh_token is None:  # the server keeps the old one valid (RFC 6749 section 6)
            tokens = Tokens(tokens.access_token, refresh_token, tokens.expires_at, tokens.issued_at,
                            tokens.token_type, tokens.scope)
        return tokens
    if data.get("error") == "invalid_grant":
        raise SignInExpired(f"the sign-in of account {client.account!r} is no longer valid "
                            f"({_said(data, fields.values())})",
                            hint=f"sign in again: dispatch login {client.account}")
    raise refused(client, "the access token could not be renewed", data, status, fields.values())


class SignInExpired(SendError):
    """The grant was revoked or has expired: only a new `dispatch login` helps."""


class TokenSource:
    """The current access token of one account, renewed shortly before it expires; safe to call from threads."""

    def __init__(self, client: OAuthClient, store: TokenStore, tokens: Tokens, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self._store = store
        self._tokens = tokens
        self._clock = clock
        self._lock = threading.Lock()
        self.refreshes = 0

    def __call__(self) -> str:
        with self._lock:
            if not self._expiring():
                return self._tokens.access_token
            return self._refresh()

    def refresh(self) -> str:
        """A new access token now (after a server refused the current one)."""
        with self._lock:
            return self._refresh()

    def _expiring(self) -> bool:
        tokens = self._tokens
        lifetime = max(tokens.expires_at - tokens.issued_at, 0.0)
        margin = min(60.0, lifetime / 10)
        return self._clock() >= tokens.expires_at - margin

    def _refresh(self) -> str:
        if not self._tokens.refresh_token:
            raise SignInExpired(f"the sign-in of account {self.client.account!r} has expired and cannot be renewed",
                                hint=f"sign in again: dispatch login {self.client.account}")
        self._tokens = refresh_tokens(self.client, self._tokens.refresh_token)
        self.refreshes += 1
        log.info("renewed the access token of account %s", self.client.account)
        try:
            self._store.save(self.client.account, self._tokens)
        except SendError as exc:  # the send goes on with the new token; the next run may need a new login
            log.warning("the renewed token of account %s could not be kept: %s", self.client.account, exc)
        return self._tokens.access_token


def token_source(account: Account, environ: Mapping[str, str] = os.environ,
                 store: TokenStore | None = None) -> TokenSource:
    """The account's TokenSource from the stored tokens; SendError "sign in first" when there are none."""
    client = oauth_client(account, environ)
    store = store or token_store(environ)
    tokens = store.load(account.name)
    if tokens is None:
        raise SendError(f"account {account.name!r} is not signed in", hint=f"sign in first: dispatch login {account.name}")
    return TokenSource(client, store, tokens)


# --- HTTP, bounded ----------------------------------------------------------------------------------

def post_form(client: OAuthClient, url: str, fields: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """POST the form to the provider; (status, JSON object). Bounded: `client.timeout` seconds in all,
    MAX_RESPONSE bytes."""
    parts = urllib.parse.urlsplit(url)
    host, where = parts.hostname or "", _host(url)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=client.cafile)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, parts.port, timeout=client.timeout,
                                                                        context=context)
    elif parts.scheme == "http" and is_loopback(host):
        conn = http.client.HTTPConnection(host, parts.port, timeout=client.timeout)
    else:
        raise SendError(f"{url!r} is not an https:// address", hint="the token server must be reached over HTTPS "
                                                                    "(plain http only for a server on this machine)")
    expired = threading.Event()

    def stop() -> None:  # the deadline for the whole exchange: unblocks a read that a slow server drips
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(client.timeout, stop)
    timer.daemon = True
    timer.start()
    body = urllib.parse.urlencode(fields).encode("ascii")
    try:
        conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body,
                     {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
                      "User-Agent": "dispatch"})
        response = conn.getresponse()
        data = bytearray()
        while chunk := response.read1(16384):
            data += chunk
            if len(data) > MAX_RESPONSE:
                raise SendError(f"{where} sent an answer larger than {MAX_RESPONSE // 1024} KiB",
                                hint="check token_url and device_authorization_url in accounts.toml")
            if expired.is_set():
                break
        if expired.is_set():
            raise OSError("deadline")
        status = response.status
    except ssl.SSLCertVerificationError as exc:
        raise SendError(f"the certificate of {where} cannot be verified ({exc.verify_message})",
                        hint=f"if your organisation uses its own certificate authority, set {CAFILE_VARIABLE} "
                             "to its PEM file") from None
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set() or isinstance(exc, TimeoutError):  # the deadline, or a wait as long as it
            raise SendError(f"{where} did not answer within {client.timeout:.0f} s",
                            hint="try again later; check the network and the token server's address") from None
        raise SendError(f"cannot reach {where}: {getattr(exc, 'strerror', None) or type(exc).__name__}",
                        hint="check the network and token_url / device_authorization_url in accounts.toml") from None
    finally:
        timer.cancel()
        conn.close()
    try:
        parsed = json.loads(bytes(data))
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        if status == 200:
            raise SendError(f"{where} answered with something that is not a JSON object",
                            hint="check token_url and device_authorization_url in accounts.toml")
        parsed = {}
    return status, parsed


def tokens_from(client: OAuthClient, data: Mapping[str, Any]) -> Tokens:
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise SendError(f"{_host(client.token_url)} answered without an access token",
                        hint="check token_url in accounts.toml")
    token_type = str(data.get("token_type") or "Bearer")
    if token_type.lower() != "bearer":
        raise SendError(f"{_host(client.token_url)} gave a {_printable(token_type, 40)!r} token; mail servers "
                        "take Bearer tokens", hint="check token_url in accounts.toml")
    refresh = data.get("refresh_token")
    now = time.time()
    lifetime = _bounded(data.get("expires_in"), 3600, 1, 10 * 365 * 86400)
    return Tokens(access, refresh if isinstance(refresh, str) and refresh else None, now + lifetime, now,
                  "Bearer", _printable(data.get("scope") or "", 2000) if isinstance(data.get("scope"), str) else "")


def refused(client: OAuthClient, what: str, data: Mapping[str, Any], status: int, sent: Any) -> SendError:
    error = data.get("error")
    said = _said(data, sent) if error else f"HTTP {status}"
    hints = {
        "invalid_client": "check client_id in accounts.toml (and the app registration at the provider)",
        "unauthorized_client": "the provider does not allow this client the device sign-in: allow public "
                               "client flows in the app registration",
        "invalid_scope": "check scope in accounts.toml; Google allows only some scopes in the device sign-in",
    }
    return SendError(f"{what} for account {client.account!r}: {said}",
                     hint=hints.get(str(error), f"check the account's OAuth settings; then dispatch login {client.account}"))


def _said(data: Mapping[str, Any], sent: Any) -> str:
    """The server's error code and description, shortened, printable and without anything we sent."""
    text = _printable(str(data.get("error") or "error"), 80)
    description = data.get("error_description")
    if isinstance(description, str) and description.strip():
        text += ": " + _printable(description, 300)
    for value in sent:
        if isinstance(value, str) and len(value) >= 8:
            text = text.replace(value, "[redacted]")
    return text


def _expired(client: OAuthClient) -> SendError:
    return SendError(f"the sign-in code for account {client.account!r} expired before it was entered",
                     hint=f"run dispatch login {client.account} again and enter the code within the time shown")


def _printable(value: str, limit: int) -> str:
    cleaned = "".join(c if c.isprintable() else " " for c in value).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _bounded(value: Any, default: int, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(low, min(number, high))


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.netloc or url
