"""dispatch send: the plan shown, confirmation asked, each message sent once and recorded (or, with --drafts,
put in the mailbox's Drafts folder)."""

from __future__ import annotations

import time
import sys
from typing import Annotated, Optional

import typer

from dispatch import campaign
from rich.console import Console

from dispatch.cli.app import app, err, handle_errors, out, print_problem, progress_bar, state, workspace
from dispatch.cli.records import refresh_report
from dispatch.cli.options import LetterOption, OnlyOption


from dispatch.errors import SendError


def _is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _show_plan(plan, settings) -> None:
    items = plan.items
    out.print(f"letter '{plan.letter_name}': {len(items)} message(s) to send via {settings.where}, "
              f"from {settings.sender}", markup=False)
    for item in items[:20]:
        message = item.outgoing.message
        more = len(item.outgoing.recipients) - 1
        out.print(f"  {item.recipient_id:<8} {message['To']}" + (f" (+{more} cc/bcc)" if more else "")
                  + ("" if item.reason == "new" else f"  [{item.reason}]"), markup=False)
    if len(items) > 20:
        out.print(f"  ... and {len(items) - 20} more (dispatch send --dry-run writes each message to a file)", markup=False)
    first = items[0].outgoing
    out.print("first message:", markup=False)
    for name in ("From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Message-ID"):
        value = ", ".join(first.bcc) if name == "Bcc" else first.message[name]
        if value:
            out.print(f"  {name}: {value}", markup=False)
    out.print(f"  Attachment: {first.attachment_name} ({first.attachment_size:,} bytes, "
              f"SHA-256 {items[0].sha256[:12]})", markup=False)
    out.print("", markup=False)
    for line in first.message.get_body(("plain",)).get_content().splitlines():
        out.print(f"  | {line}", markup=False)
    out.print("", markup=False)


def _show_left_out(summary) -> None:
    if summary.already_sent:
        out.print(f"skipped {len(summary.already_sent)} already sent (dispatch send --resend ID sends one again)",
                  markup=False)
    if summary.drafted_earlier:
        out.print(f"skipped {len(summary.drafted_earlier)} with a draft in the mailbox (send it from there; "
                  "dispatch send --resend ID sends one from here instead)", markup=False)
    for rid, reply in summary.failed_earlier:
        out.print(f"failed earlier: {rid}: {reply} (correct the address, or dispatch send --resend {rid})", markup=False)
    _show_uncertain(out, summary.uncertain_earlier)
    if summary.later:
        out.print(f"left for a later run (--limit): {len(summary.later)}; dispatch send sends them", markup=False)


def _show_uncertain(console: Console, uncertain: list[tuple[str, str]]) -> None:
    for rid, reason in uncertain:
        console.print(f"uncertain: {rid}: {reason}", markup=False)
    if uncertain:
        console.print("  check the Sent folder or ask the recipient; if it did not arrive: "
                      "dispatch send --resend-uncertain --only ID", markup=False)


def _print_summary(summary) -> None:
    _show_left_out(summary)
    for rid, reply in summary.failed:
        err.print(f"failed: {rid}: {reply}", markup=False)
    _show_uncertain(err, summary.uncertain)
    _show_copies(summary)
    _show_stopped(summary, "not attempted", "run dispatch send again to send them")
    rate = len(summary.sent) / summary.seconds if summary.seconds > 0 else 0.0
    skipped = len(summary.already_sent) + len(summary.drafted_earlier)
    out.print(f"sent {len(summary.sent)}, failed {len(summary.failed) + len(summary.failed_earlier)}, "
              f"uncertain {len(summary.uncertain) + len(summary.uncertain_earlier)}, skipped {skipped} "
              f"in {summary.seconds:.1f} s ({rate:.1f} messages/s)", markup=False)


def _show_stopped(summary, left: str, again: str) -> None:
    """Why the run stopped, and how many messages it left (`left`: what they were not) for `again`."""
    if summary.stopped:
        err.print(f"stopped: {summary.stopped}", markup=False)
        if summary.hint:
            err.print(f"  hint: {summary.hint}", markup=False)
        if summary.not_attempted:
            err.print(f"  {left}: {len(summary.not_attempted)}; {again}", markup=False)


def _show_copies(summary) -> None:
    """The copies in the mailbox's Sent folder: how many, and which are missing and why (the send stands)."""
    folder = f' "{summary.sent_folder}"' if summary.sent_folder else ""
    if summary.copies_saved and not state.quiet:
        out.print(f"saved a copy of {summary.copies_saved} message(s) in the Sent folder{folder}", markup=False)
    for rid, reason in summary.copies_failed:
        err.print(f"warning: no copy in the Sent folder for {rid}: {reason}", markup=False)
    if summary.copies_failed:
        err.print(f"  {len(summary.copies_failed)} message(s) were sent but have no copy in the Sent folder; "
                  "the sent archive (out/<letter>/sent/) keeps each one", markup=False)


def _print_drafts(summary) -> None:
    _show_left_out(summary)
    _show_stopped(summary, "not drafted", "run dispatch send --drafts again")
    folder = f' "{summary.drafts_folder}"' if summary.drafts_folder else ""
    out.print(f"drafted {len(summary.drafted)} in the Drafts folder{folder}, skipped "
              f"{len(summary.already_sent) + len(summary.drafted_earlier)} in {summary.seconds:.1f} s; nothing was sent",
              markup=False)
    if summary.drafted:
        out.print("review and send them from your mail program; dispatch send will not send these recipients "
                  "(dispatch send --resend ID does)", markup=False)


def _ask_password(credentials) -> None:
    """Ask for a password that is not stored (never for an OAuth sign-in), in a terminal only."""
    if credentials is not None and credentials.needs_password and _is_terminal():
        credentials.password = typer.prompt(credentials.prompt, hide_input=True, err=True)


@app.command()
@handle_errors
def send(letter: LetterOption = None, only: OnlyOption = None,
         limit: Annotated[Optional[int], typer.Option("--limit", min=1, metavar="N", help="Send at most N messages in this run.")] = None,
         yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking for confirmation.")] = False,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="Write each message to out/<letter>/outbox/<id>.eml; connect to no server.")] = False,
         resend: Annotated[Optional[list[str]], typer.Option("--resend", metavar="ID", help="Send to this recipient again, even if sent before (repeatable).")] = None,
         resend_uncertain: Annotated[bool, typer.Option("--resend-uncertain", help="Send again the messages whose delivery is uncertain (check the mailbox first).")] = False,
         drafts: Annotated[bool, typer.Option("--drafts", help="Put each message in the mailbox's Drafts folder (IMAP), to review and send from your mail program; send nothing.")] = False) -> None:
    """Email the letter to recipients whose channel is email or both: each once, recorded in the journal.

    Renders first the letters that are new or changed, shows the plan and the first message, and asks before
    sending. The mail server comes from [smtp] in dispatch.toml; DISPATCH_SMTP_HOST, DISPATCH_SMTP_PORT,
    DISPATCH_SMTP_SECURITY, DISPATCH_SMTP_USERNAME and DISPATCH_SENDER override it. The password comes from
    DISPATCH_SMTP_PASSWORD, the system keyring, or a prompt; it is never written to a file. With a named
    account ([smtp] account, or DISPATCH_ACCOUNT) the server and the sign-in come from accounts.toml;
    auth = "oauth2" signs in with the tokens of dispatch login ACCOUNT and asks for no password."""
    if drafts and dry_run:
        err.print("error: --dry-run writes files and connects to nothing; --drafts puts the messages in the mailbox: "
                  "choose one", markup=False)
        raise typer.Exit(2)
    ws = workspace()
    settings = None if dry_run or drafts else campaign.smtp_settings(ws)
    with campaign.SendRun(ws) as run:
        credentials = None  # found before anything is rendered: "not signed in" is said at once
        if drafts:
            credentials = run.mailbox()[1]
        elif settings is not None:
            credentials = run.credentials(settings)
        plan = run.prepare(letter=letter, only=only, limit=limit, resend=resend, resend_uncertain=resend_uncertain,
                           dry_run=dry_run)
        for warning in plan.warnings:
            if not state.quiet:
                print_problem(warning)
        if plan.rendered and not state.quiet:
            out.print(f"rendered {plan.rendered} missing or out-of-date letter(s) first", markup=False)
        if dry_run:
            written = run.write_outbox(plan)
            _show_left_out(plan.summary())
            where = ws.relative(plan.campaign.output_dir / "outbox")
            out.print(f"dry run: wrote {len(written)} message(s) to {where}/; nothing was sent", markup=False)
            out.print("to send them: dispatch send (shows the plan and asks), or dispatch send --yes", markup=False)
            return
        if not plan.items:
            summary = plan.summary()
            out.print("nothing to send", markup=False)
            _print_drafts(summary) if drafts else _print_summary(summary)
            raise typer.Exit(0 if summary.ok else 1)
        if drafts:
            _ask_password(credentials)
            with progress_bar() as progress:
                task = progress.add_task("drafting", total=len(plan.items), rate="")
                summary = run.drafts(plan, credentials, lambda item, outcome: progress.update(task, advance=1))
            _print_drafts(summary)
            refresh_report(ws, letter, checked=plan.campaign)
            raise typer.Exit(1 if summary.stopped else 0)
        if not yes:
            _show_plan(plan, settings)
            if not _is_terminal():
                raise SendError("not sending: confirmation is needed and this is not a terminal",
                                hint="run dispatch send in a terminal to confirm, or dispatch send --yes to send without "
                                     "asking (dispatch send --dry-run writes the messages to files to check first)")
            if not typer.confirm(f"Send {len(plan.items)} message(s)?", default=False, err=True):
                out.print("nothing was sent", markup=False)
                raise typer.Exit(1)
        _ask_password(credentials)
        with progress_bar() as progress:
            task = progress.add_task("sending", total=len(plan.items), rate="")
            started = time.monotonic()

            def on_progress(item, outcome) -> None:
                done = progress.tasks[0].completed + 1
                rate = done / max(time.monotonic() - started, 1e-6)
                progress.update(task, advance=1, rate=f"{rate:.1f} messages/s")

            summary = run.send(plan, settings, credentials, on_progress)
    _print_summary(summary)
    refresh_report(ws, letter, checked=plan.campaign)
    if not summary.ok:
        raise typer.Exit(1)
