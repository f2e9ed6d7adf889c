"""A real OAuth 2.0 authorization server for the tests, on 127.0.0.1 in a thread (http.server).

It speaks the device authorization grant (RFC 8628) at /device and /token, the authorization code grant
with PKCE at /authorize (approved at once, redirected to the client's loopback address), the refresh grant
(RFC 6749) at /token, and token introspection (RFC 7662) at /introspect, where Dovecot's oauth2 passdb and the test SMTP
server check the tokens it issued. The test decides when the user approves (approve(), a visit to the
verification address, or approve_after_polls), asks for one slow_down, makes access tokens expire after a
few seconds, and revokes the grant. It counts refreshes and remembers every secret it issued, so a test can
grep outputs for them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

CLIENT_ID = "dispatch-test"
USERNAME = "coordinator@coalition.example"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class Grant:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    state: str = "pending"  # pending, approved, denied, used
    polls: int = 0
    last_poll: float = 0.0
    refresh_token: str | None = None
    revoked: bool = False
    challenge: str = ""  # authorization code grant: the PKCE challenge and the redirect address
    redirect_uri: str = ""


@dataclass
class AuthorizationServer:
    """State and switches of the server; every method is safe to call from the test's thread."""

    access_lifetime: float = 5.0  # seconds an access token is valid
    interval: int = 1  # the polling interval it asks for
    slow_down_once: bool = True  # answer the first poll with slow_down
    approve_after_polls: int | None = None  # approve by itself after this many polls (for CLI tests)
    rotate_refresh_tokens: bool = True
    decline_in_browser: bool = False
    username: str = USERNAME
    client_id: str = CLIENT_ID
    lock: threading.Lock = field(default_factory=threading.Lock)
    grants: list[Grant] = field(default_factory=list)
    access_tokens: dict[str, tuple[Grant, float]] = field(default_factory=dict)
    refreshes: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)  # what clients sent to /token (tests check)
    polls_too_fast: int = 0
    slow_downs: int = 0
    url: str = ""

    # --- for the test ------------------------------------------------------------------------------

    @property
    def device_url(self) -> str:
        return self.url + "/device"

    @property
    def authorization_url(self) -> str:
        return self.url + "/authorize"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def introspection_url(self) -> str:
        return self.url + "/introspect"

    def approve(self, user_code: str | None = None) -> None:
        """The user enters the code and approves (the newest request when no code is given)."""
        with self.lock:
            self._grant(user_code).state = "approved"

    def deny(self, user_code: str | None = None) -> None:
        with self.lock:
            self._grant(user_code).state = "denied"

    def revoke(self) -> None:
        """The user (or an admin) revokes every grant: refresh tokens and access tokens stop working."""
        with self.lock:
            for grant in self.grants:
                grant.revoked = True

    def is_current(self, token: str) -> bool:
        """Whether the access token is one this server issued, not expired and not revoked."""
        with self.lock:
            found = self.access_tokens.get(token)
            return bool(found) and not found[0].revoked and time.time() < found[1]

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens = {t: (g, 0.0) for t, (g, _) in self.access_tokens.items()}

    def secrets(self) -> list[str]:
        """Every token and device code issued so far (for tests that grep outputs for them)."""
        with self.lock:
            found = list(self.access_tokens)
            for grant in self.grants:
                found.append(grant.device_code)
                if grant.refresh_token:
                    found.append(grant.refresh_token)
            return found

    def _grant(self, user_code: str | None) -> Grant:
        for grant in reversed(self.grants):
            if user_code is None or grant.user_code == user_code:
                return grant
        raise KeyError(f"no device request with user code {user_code!r}")

    # --- the endpoints ---------------------------------------------------------------------------------

    def device(self, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        grant = Grant("dc-" + secrets.token_urlsafe(24), secrets.token_hex(4).upper(), form["client_id"],
                      form.get("scope", ""))
        with self.lock:
            self.grants.append(grant)
        return 200, {"device_code": grant.device_code, "user_code": grant.user_code,
                     "verification_uri": self.url + "/verify",
                     "verification_uri_complete": self.url + "/verify?user_code=" + grant.user_code,
                     "expires_in": 600, "interval": self.interval}

    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        with self.lock:
            self.token_requests.append(dict(form))
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") == DEVICE_GRANT:
            return self._device_token(form.get("device_code", ""))
        if form.get("grant_type") == "refresh_token":
            return self._refresh(form.get("refresh_token", ""))
        if form.get("grant_type") == "authorization_code":
            return self._code_token(form)
        return 400, {"error": "unsupported_grant_type"}

    def _device_token(self, device_code: str) -> tuple[int, dict]:
        with self.lock:
            grant = next((g for g in self.grants if g.device_code == device_code), None)
            if grant is None or grant.state == "used":
                return 400, {"error": "invalid_grant"}
            now = time.monotonic()
            interval = self.interval + (5 if self.slow_downs else 0)
            if grant.last_poll and now - grant.last_poll < interval - 0.05:
                self.polls_too_fast += 1
            grant.last_poll = now
            grant.polls += 1
            if self.slow_down_once and not self.slow_downs:
                self.slow_downs += 1
                return 400, {"error": "slow_down"}
            if self.approve_after_polls is not None and grant.polls >= self.approve_after_polls \
                    and grant.state == "pending":
                grant.state = "approved"
            if grant.state == "pending":
                return 400, {"error": "authorization_pending"}
            if grant.state == "denied":
                return 400, {"error": "access_denied"}
            grant.state = "used"
            grant.refresh_token = "rt-" + secrets.token_urlsafe(32)
            return 200, self._issue(grant)

    def authorize(self, query: dict[str, str]) -> tuple[int, dict, str | None]:
        """The browser's sign-in page, answered at once: approved (or denied with decline_in_browser) and
        redirected to the client's loopback address with the code (RFC 6749 section 4.1.2)."""
        redirect = query.get("redirect_uri", "")
        loopback = redirect.startswith(("http://127.0.0.1:", "http://localhost:"))
        if query.get("client_id") != self.client_id or not loopback:
            return 400, {"error": "invalid_request"}, None
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 400, {"error": "invalid_request"}, None
        answer = {"state": query.get("state", "")}
        if self.decline_in_browser:
            answer["error"] = "access_denied"
        else:
            grant = Grant("ac-" + secrets.token_urlsafe(24), "", query["client_id"], query.get("scope", ""),
                          state="approved", challenge=query.get("code_challenge", ""), redirect_uri=redirect)
            with self.lock:
                self.grants.append(grant)
            answer["code"] = grant.device_code
        return 302, {}, redirect + "?" + urllib.parse.urlencode(answer)

    def _code_token(self, form: dict[str, str]) -> tuple[int, dict]:
        with self.lock:
            grant = next((g for g in self.grants if g.device_code == form.get("code") and g.state == "approved"
                          and g.challenge), None)
            if grant is None or grant.redirect_uri != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant"}
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            grant.state = "used"
            grant.refresh_token = "rt-" + secrets.token_urlsafe(32)
            return 200, self._issue(grant)

    def _refresh(self, refresh_token: str) -> tuple[int, dict]:
        with self.lock:
            grant = next((g for g in self.grants if g.refresh_token and g.refresh_token == refresh_token), None)
            if grant is None or grant.revoked:
                return 400, {"error": "invalid_grant", "error_description": "The refresh token was revoked."}
            self.refreshes += 1
            if self.rotate_refresh_tokens:
                grant.refresh_token = "rt-" + secrets.token_urlsafe(32)
            return 200, self._issue(grant)

    def _issue(self, grant: Grant) -> dict:
        access = "at-" + secrets.token_urlsafe(32)
        self.access_tokens[access] = (grant, time.time() + self.access_lifetime)
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.access_lifetime,
                "refresh_token": grant.refresh_token, "scope": grant.scope}

    def introspect(self, form: dict[str, str]) -> tuple[int, dict]:
        if self.is_current(form.get("token", "")):
            return 200, {"active": True, "username": self.username}
        return 200, {"active": False}


class _Handler(BaseHTTPRequestHandler):
    server_version = "test-oauth/1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("ascii", "replace")))
        state: AuthorizationServer = self.server.state  # type: ignore[attr-defined]
        routes = {"/device": state.device, "/token": state.token, "/introspect": state.introspect}
        route = routes.get(urllib.parse.urlsplit(self.path).path)
        self._answer(*(route(form) if route else (404, {"error": "not_found"})))

    def do_GET(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path)
        state: AuthorizationServer = self.server.state  # type: ignore[attr-defined]
        code = dict(urllib.parse.parse_qsl(parts.query)).get("user_code")
        if parts.path == "/authorize":
            status, body, location = state.authorize(dict(urllib.parse.parse_qsl(parts.query)))
            if location:
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            return self._answer(status, body)
        if parts.path == "/verify" and code:
            try:
                state.approve(code)
            except KeyError:
                return self._answer(404, {"error": "unknown user code"})
            return self._answer(200, {"approved": code})
        self._answer(404, {"error": "not_found"})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # quiet: the tests read the counters instead
        pass


@contextmanager
def authorization_server(**options) -> Iterator[AuthorizationServer]:
    """Start the server on 127.0.0.1 at a free port; stop it at the end."""
    state = AuthorizationServer(**options)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# --- a hostile HTTP server, to show that answers are bounded in size and time ----------------------------

@contextmanager
def hostile_http_server(mode: str) -> Iterator[str]:
    """A raw socket server answering every connection in a bad way; yields its base URL.

    mode "endless": a 200 answer whose body never ends; "drip": headers one byte every 0.2 s, forever;
    "silent": accepts and never answers.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        try:
            conn.settimeout(1)
            try:
                conn.recv(65536)
            except OSError:
                pass
            if mode == "endless":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
                chunk = b'{"access_token": "' + b"x" * 65536
                while not stop.is_set():
                    conn.sendall(chunk)
            elif mode == "drip":
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 10_000:
                    if stop.wait(0.2):
                        break
                    conn.sendall(bytes([byte]))
            else:
                stop.wait()
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
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
