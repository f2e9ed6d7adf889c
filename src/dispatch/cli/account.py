"""dispatch login | logout: sign a mail account in once (OAuth 2.0), or forget its tokens."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dispatch import campaign
from dispatch.cli.app import app, err, handle_errors, out, state, workspace
from dispatch.errors import DispatchError

AccountArgument = Annotated[Optional[str], typer.Argument(
    metavar="ACCOUNT", show_default=False,
    help="The account's name in accounts.toml (default: DISPATCH_ACCOUNT, else [smtp] account of the campaign).")]


def _account(name: str | None) -> str:
    if name:
        return name
    try:
        found = campaign.account_name(workspace())
    except DispatchError:  # not in a campaign folder
        found = campaign.account_name(None)
    if not found:
        err.print("error: name the account, as in accounts.toml: dispatch login ACCOUNT (or set [smtp] account in "
                  "the campaign's dispatch.toml, or DISPATCH_ACCOUNT)", markup=False)
        raise typer.Exit(2)
    return found


def _show_code(authorization) -> None:
    """The address and the code to enter in any browser (on stderr, so stdout stays for results)."""
    err.print(f"To sign in, open {authorization.verification_uri} in a browser (on any device) and enter the code "
              f"{authorization.user_code}", markup=False)
    if authorization.verification_uri_complete:
        err.print(f"  or open {authorization.verification_uri_complete}", markup=False)
    minutes = max(1, authorization.expires_in // 60)
    err.print(f"  waiting for the sign-in (the code is valid for {minutes} minute(s); Ctrl-C stops)", markup=False)


def _open_browser(url: str) -> None:
    import webbrowser

    err.print(f"Sign in in the browser; if none opens, open this address:\n  {url}", markup=False)
    webbrowser.open(url)  # the browser named by $BROWSER, else the system's


@app.command()
@handle_errors
def login(account: AccountArgument = None,
          browser: Annotated[bool, typer.Option("--browser", help="Sign in in a browser on this machine instead of "
                                                                  "with a code (Gmail needs this).")] = False) -> None:
    """Sign a mail account in once (OAuth 2.0, for auth = "oauth2" in accounts.toml) and keep its tokens.

    Shows an address and a code to enter in any browser, then waits until the sign-in is approved. The tokens
    are kept in the system keyring, or where there is none in a file of your config folder that only you can
    read; dispatch send renews them as they expire. dispatch logout ACCOUNT forgets them."""
    name = _account(account)
    where = campaign.login(name, _show_code, browser=_open_browser if browser else None)
    if not state.quiet:
        out.print(f"signed in account {name}; the tokens are kept in {where}", markup=False)


@app.command()
@handle_errors
def logout(account: AccountArgument = None) -> None:
    """Forget a mail account's tokens (from the system keyring and the token file). Revoking dispatch's access at
    the provider (the account's security page) also stops the tokens that were copied elsewhere."""
    name = _account(account)
    removed = campaign.logout(name)
    if removed:
        out.print(f"signed out account {name}: its tokens were removed from {' and '.join(removed)}", markup=False)
    else:
        out.print(f"account {name} was not signed in on this machine: no tokens to remove", markup=False)
