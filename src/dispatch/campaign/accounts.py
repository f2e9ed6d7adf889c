"""Named mail accounts: the one a campaign sends from, and signing in to it (dispatch login, dispatch logout).

The account lives in the user's accounts.toml, outside the campaign folder; dispatch.toml names it
(`[smtp] account = "coalition"`), DISPATCH_ACCOUNT overrides that, and DISPATCH_SMTP_* still override
single values. Its tokens are kept by dispatch.mail.tokens (the system keyring, or a file only the user can
read), never in a file of the campaign.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Mapping

from dispatch.errors import SendError
from dispatch.workspace import Workspace

if TYPE_CHECKING:
    from dispatch.mail.accounts import Account
    from dispatch.mail.oauth import DeviceAuthorization

ACCOUNT_VARIABLE = "DISPATCH_ACCOUNT"


def account_name(ws: Workspace | None, environ: Mapping[str, str] = os.environ) -> str:
    """The account to use: DISPATCH_ACCOUNT, else the campaign's [smtp] account; "" for none."""
    name = environ.get(ACCOUNT_VARIABLE, "").strip()
    if name or ws is None:
        return name
    return str(ws.settings.get("smtp", "account") or "").strip()


def campaign_account(ws: Workspace, environ: Mapping[str, str] = os.environ) -> Account | None:
    """The named account, read from accounts.toml; None when the campaign names none (SendError when the
    name is not in the file)."""
    from dispatch.mail.accounts import load_account

    name = account_name(ws, environ)
    return load_account(name, environ) if name else None


def smtp_values(ws: Workspace, account: Account | None) -> dict[str, Any]:
    """dispatch.toml's [smtp] with the account's server, login, sign-in method and address filled in (the
    campaign keeps its rate_limit, timeout and retries, and its sender when it sets one)."""
    values = ws.settings.section("smtp")
    if account is None:
        return values
    merged = {**values, **account.smtp()}
    chosen = ws.settings.values.get("smtp", {}).get("sender")
    if chosen:
        merged["sender"] = chosen
    return merged


def login(name: str, show: Callable[[DeviceAuthorization], None], *, browser: Callable[[str], None] | None = None,
          environ: Mapping[str, str] = os.environ) -> str:
    """Sign the account in once (`dispatch login NAME`) and keep its tokens; returns where they are kept.

    Without `browser`: the device sign-in (RFC 8628): show(authorization) displays the address and the code
    to enter in any browser, then the provider is polled until the user approves. With `browser(url)`: the
    sign-in in a browser on this machine, redirected back to dispatch on 127.0.0.1."""
    from dispatch.mail.accounts import load_account
    from dispatch.mail.oauth import sign_in

    account = load_account(name, environ)
    if browser is not None:
        from dispatch.mail.oauth_browser import sign_in_with_browser

        return sign_in_with_browser(account, browser, environ=environ)
    if account.provider == "google" and account.oauth2:
        raise SendError(f"Google does not grant the mail scope to a sign-in with a code (account {name!r})",
                        hint=f"sign in in a browser on this machine: dispatch login {name} --browser")
    return sign_in(account, show, environ=environ)


def logout(name: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Forget the account's tokens (`dispatch logout NAME`); where they were removed from (empty: none kept)."""
    from dispatch.mail.oauth import sign_out

    return sign_out(name, environ)
