"""dispatch track: bounces, replies and uncertain messages read from the mailbox, and what was recorded."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from dispatch import campaign
from dispatch.cli.app import app, err, handle_errors, out, state, workspace
from dispatch.cli.records import refresh_report

_SHOWN = {"bounced": "bounced", "delayed": "delayed", "replied": "replied", "auto-replied": "auto-reply",
          "resolved": "uncertain resolved"}


@app.command()
@handle_errors
def track(folder: Annotated[Optional[list[str]], typer.Option(
              "--folder", metavar="NAME", help="Read this folder (repeatable; default: [track] folders in "
                                               "dispatch.toml, else INBOX).", show_default=False)] = None,
          reread: Annotated[bool, typer.Option(
              "--reread", help="Read every message again, not only those that arrived since the last run "
                               "(nothing is recorded twice).")] = False) -> None:
    """Read the mailbox for bounces, replies and automatic replies to the emails sent, and look for the
    uncertain ones in Sent; record what is found in the journal. The mailbox is never changed: nothing is
    deleted, moved or marked as read."""
    ws = workspace()
    settings = campaign.imap_settings(ws)
    password = campaign.imap_password(settings)
    if settings.auth == "password" and password is None and sys.stdin.isatty() and sys.stdout.isatty():
        password = typer.prompt(f"IMAP password for {settings.username} on {settings.host}", hide_input=True,
                                err=True)
    summary = campaign.track(ws, settings, password, folders=folder, reread=reread)
    if not state.quiet:
        _show_details(summary)
    out.print(f"{summary.count('bounced')} bounced, {summary.count('delayed')} delayed, "
              f"{summary.count('replied')} replied, {summary.count('auto-replied')} auto-replies, "
              f"{summary.count('resolved')} uncertain resolved; {summary.read} message(s) read, "
              f"{len(summary.skipped)} skipped", markup=False)
    if summary.count("bounced"):
        out.print("dispatch status --bounced lists who to look up; correct their address in recipients.csv, "
                  "then dispatch send sends to the new address", markup=False)
    if summary.recorded:
        refresh_report(ws, None)


def _show_details(summary) -> None:
    for one in summary.folders:
        note = f"; {one.note}" if one.note else ""
        out.print(f"{one.name}: {one.read} new message(s) read{note}", markup=False)
    for one in sorted(summary.recorded, key=lambda r: list(_SHOWN).index(r.kind)):
        out.print(f"{_SHOWN[one.kind]}: {one.recipient} ({one.letter}): {one.detail}", markup=False)
    for letter, rid, why in summary.uncertain:
        out.print(f"still uncertain: {rid} ({letter}): {why}", markup=False)
    for where, why in summary.skipped:
        err.print(f"skipped: {where}: {why}", markup=False)
    if summary.repeated:
        out.print(f"{summary.repeated} answer(s) read again were already recorded", markup=False)
