"""Sign-in in a browser on this machine: the authorization code grant (RFC 6749 section 4.1) with PKCE
(RFC 7636) and a loopback redirect (RFC 8252 section 7.3).

The device sign-in (dispatch.mail.oauth) works everywhere, over SSH too; this one is for where a browser
is at hand, and for Gmail, whose device sign-in does not grant the mail scope. dispatch listens on
127.0.0.1 at a free port for the one redirect that carries the code, checks its `state`, and trades the
code and the PKCE verifier for tokens.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable, Mapping

from dispatch.errors import SendError
from dispatch.mail.accounts import Account
from dispatch.mail.oauth import OAuthClient, oauth_client, post_form, refused, tokens_from
from dispatch.mail.tokens import TokenStore, token_store

log = logging.getLogger(__name__)

WAIT = 300.0  # seconds the user has to finish in the browser
_PAGE = ("<!doctype html><meta charset=utf-8><title>dispatch</title><p>{}</p>"
         "<p>You can close this tab and go back to the terminal.</p>")


def sign_in_with_browser(account: Account, open_browser: Callable[[str], None], *,
                         store: TokenStore | None = None, environ: Mapping[str, str] = os.environ,
                         wait: float = WAIT) -> str:
    """The whole `dispatch login --browser`: open_browser(url) shows the provider's sign-in page (the caller
    opens a browser, or prints the address); returns where the tokens are kept, in words."""
    client = oauth_client(account, environ)
    if not client.authorization_url:
        raise SendError(f"account {account.name!r} has no authorization_url", file=account.file, line=account.line,
                        hint=f"add authorization_url under [{account.name}], or sign in with a code: "
                             f"dispatch login {account.name}")
    store = store or token_store(environ)
    verifier = secrets.token_urlsafe(64)
    state = secrets.token_urlsafe(24)
    with _Redirect(state) as redirect:
        host = "localhost" if client.provider == "microsoft" else "127.0.0.1"  # what each provider registers
        redirect_uri = f"http://{host}:{redirect.port}/"
        open_browser(authorization_address(client, redirect_uri, state, _challenge(verifier)))
        code = redirect.wait(wait, client.account)
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
              "client_id": client.client_id, "code_verifier": verifier}
    if client.client_secret:
        fields["client_secret"] = client.client_secret
    status, data = post_form(client, client.token_url, fields)
    if status != 200:
        raise refused(client, "the sign-in failed", data, status, fields.values())
    store.save(account.name, tokens_from(client, data))
    log.info("signed in account %s in a browser; tokens kept in %s", account.name, store.description)
    return store.description


def authorization_address(client: OAuthClient, redirect_uri: str, state: str, challenge: str) -> str:
    """The provider's sign-in page for this request."""
    query = {"response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri,
             "scope": client.scope, "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
    if client.provider == "google":  # a refresh token only with these (Google's "OAuth 2.0 for desktop apps")
        query.update(access_type="offline", prompt="consent")
    separator = "&" if urllib.parse.urlsplit(client.authorization_url).query else "?"
    return client.authorization_url + separator + urllib.parse.urlencode(query)


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _Redirect:
    """A one-shot HTTP listener on 127.0.0.1 for the provider's redirect back to dispatch."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.result: dict[str, str] | None = None
        self._done = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a connection that sends nothing does not hold the listener

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                if query.get("state") != outer.state:  # not the answer to our request: ignore it
                    return self._page(400, "This is not the sign-in dispatch is waiting for.")
                outer.result = query
                outer._done.set()
                self._page(200, "Signed in." if "code" in query else "The sign-in was not completed.")

            def _page(self, status: int, text: str) -> None:
                body = _PAGE.format(text).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # the query holds the code: never logged
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self._server.timeout = 0.2
        self.port = self._server.server_address[1]

    def __enter__(self) -> "_Redirect":
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.server_close()

    def wait(self, seconds: float, account: str) -> str:
        deadline = time.monotonic() + seconds
        while not self._done.is_set():
            if time.monotonic() > deadline:
                raise SendError(f"the sign-in for account {account!r} was not finished within {seconds:.0f} s",
                                hint=f"run dispatch login {account} --browser again, or sign in with a code: "
                                     f"dispatch login {account}")
            self._server.handle_request()
        result = self.result or {}
        if "code" not in result:
            said = "".join(c for c in result.get("error", "no code") if c.isprintable())[:80]
            raise SendError(f"the sign-in for account {account!r} was not completed in the browser ({said})",
                            hint=f"run dispatch login {account} --browser again and approve the request")
        return result["code"]
