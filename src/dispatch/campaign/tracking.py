"""The pipeline of `dispatch track`: the mailbox's settings and sign-in, the run lock, the journal, the stage."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Mapping, Sequence

from dispatch.errors import SendError, SettingsError
from dispatch.workspace import SETTINGS_FILE, Workspace

if TYPE_CHECKING:
    from dispatch.journal import Journal
    from dispatch.mail.imap import ImapSettings
    from dispatch.stages.inbox import TrackSummary

ACCOUNT_VARIABLE = "DISPATCH_ACCOUNT"


def imap_settings(ws: Workspace, environ: Mapping[str, str] = os.environ) -> ImapSettings:
    """The IMAP settings of the mailbox answers come to: the account (DISPATCH_ACCOUNT, else [smtp] account)
    with the DISPATCH_IMAP_* variables on top; the login defaults to [smtp] username. SendError if unusable."""
    from dispatch.mail.imap import imap_settings as mailbox_settings

    settings = mailbox_settings(_account(ws, environ), environ)
    if not settings.username:
        username = str(ws.settings.get("smtp", "username") or "").strip()
        if not username:
            raise SendError("no IMAP username", hint="set DISPATCH_IMAP_USERNAME, the account's email, or "
                                                     "[smtp] username in dispatch.toml")
        settings = replace(settings, username=username)
    return settings


def imap_password(settings: ImapSettings, environ: Mapping[str, str] = os.environ) -> str | None:
    """DISPATCH_IMAP_PASSWORD or the keyring's; None for an OAuth sign-in, or when neither has one."""
    from dispatch.mail.imap import imap_password as stored

    return None if settings.auth == "oauth2" else stored(settings, environ)


def track(ws: Workspace, settings: ImapSettings, password: str | None, *, folders: Sequence[str] | None = None,
          reread: bool = False, journal: Journal | None = None,
          environ: Mapping[str, str] = os.environ) -> TrackSummary:
    """Read the mailbox's folders for bounces, replies and automatic replies to the campaign's emails, and
    look for the uncertain ones in Sent; record what is found in the journal (see stages/inbox.py).

    folders: default [track] folders in dispatch.toml (INBOX). The run lock of `dispatch send` is held, so the
    journal does not change under it and a message being sent right now is not taken for an interrupted one."""
    from dispatch.campaign import _journal
    from dispatch.mail.reading import MailboxReader
    from dispatch.runlock import RunLock
    from dispatch.stages import inbox

    chosen = _folders(ws, folders)
    token = None
    if settings.auth == "oauth2":
        from dispatch.mail.accounts import load_account
        from dispatch.mail.oauth import token_source

        token = token_source(load_account(settings.account or "", environ), environ)
    lock_file = ws.journal_file.with_name(ws.journal_file.name + ".lock")
    try:
        lock = RunLock(lock_file, shown=ws.relative(lock_file))
        lock.acquire()
    except SendError as exc:
        raise SendError(f"{exc.problem.message}; dispatch track reads the mailbox once it is done",
                        file=exc.problem.file, hint="run dispatch track again when the send has finished") from None
    try:
        with _journal(ws, journal) as opened:
            if not opened.events(kinds=("sending",)):
                raise SendError("nothing was sent by email yet, so there is nothing to look for in the mailbox",
                                hint="dispatch send first; dispatch track then reads what comes back")
            with MailboxReader(settings, password=password, token=token) as reader:
                return inbox.track(opened, reader, mailbox=f"{settings.username} at {settings.host}",
                                   folders=chosen, reread=reread)
    finally:
        lock.release()


def _account(ws: Workspace, environ: Mapping[str, str]):
    name = environ.get(ACCOUNT_VARIABLE, "").strip() or str(ws.settings.values.get("smtp", {}).get("account") or "")
    if not name:
        return None
    from dispatch.mail.accounts import load_account

    return load_account(name.strip(), environ)


def _folders(ws: Workspace, given: Sequence[str] | None) -> list[str]:
    """The folders to read: those given (--folder), else [track] folders; each a non-empty name."""
    if given:
        chosen = list(given)
    else:
        chosen = list(ws.settings.get("track", "folders"))
    bad = [name for name in chosen if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n")]
    if bad or not chosen:
        raise SettingsError("folders must be a list of folder names, e.g. folders = [\"INBOX\", \"Bounces\"]",
                            file=SETTINGS_FILE, line=ws.settings.line("track", "folders"), column="[track] folders",
                            hint="the folder names as your mail program shows them; INBOX is where most answers "
                                 "arrive")
    return [name.strip() for name in chosen]
