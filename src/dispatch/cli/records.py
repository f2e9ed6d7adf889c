"""Commands about what happened: print, mark, status, report, verify."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dispatch import campaign
from dispatch.cli.app import app, err, handle_errors, out, print_problem, progress_bar, state, workspace
from dispatch.cli.options import LetterOption, OnlyOption, StatusFormat

if TYPE_CHECKING:
    from dispatch.workspace import Workspace


@app.command(name="print")
@handle_errors
def print_(letter: LetterOption = None, only: OnlyOption = None,
           order: Annotated[Optional[str], typer.Option("--order", metavar="ORDER", help="state (default), group (regional group, then state) or csv (file order); default: [print] order.", show_default=False)] = None,
           duplex: Annotated[Optional[bool], typer.Option("--duplex/--simplex", help="Printing on both sides: add a blank back so every letter starts on a new sheet (default: [print] duplex).", show_default=False)] = None,
           envelope: Annotated[Optional[str], typer.Option("--envelope", metavar="SIZE", help="DL, C5 or C4 (default: [print] envelope).", show_default=False)] = None,
           require_address: Annotated[bool, typer.Option("--require-address", help="Stop when a recipient to be printed has no postal address, listing them all.")] = False,
           allow_missing_address: Annotated[bool, typer.Option("--allow-missing-address", hidden=True, help="The default now; kept for scripts.")] = False) -> None:
    """Render the letters to print that are new or changed, then make the print run for hand delivery in
    out/<letter>/print/: the letters, envelopes, labels and the courier's manifest.

    A recipient without a postal address gets no envelope or label: the letter is printed and listed last in
    the manifest, to deliver by hand or have collected (--require-address stops instead)."""
    if require_address and allow_missing_address:
        err.print("error: --require-address and --allow-missing-address say opposite things: choose one", markup=False)
        raise typer.Exit(2)
    ws = workspace()
    started = time.monotonic()
    with progress_bar() as progress:
        task = progress.add_task("rendering", total=None, rate="")
        summary = campaign.print_run(ws, letter=letter, only=only, order=order, duplex=duplex, envelope=envelope,
                                     allow_missing_address=not require_address,
                                     on_start=lambda total, up_to_date: progress.update(task, total=total),
                                     on_progress=lambda result: progress.update(task, advance=1))
    bundle, options = summary.bundle, summary.options
    if not state.quiet:
        for warning in summary.warnings:
            if warning.column != "address":  # the print run reports missing addresses itself, below
                print_problem(warning)
    where = ws.relative(summary.folder)
    blanks = f" (with {bundle.blank_pages} blank back(s) for duplex)" if options.duplex else ""
    out.print(f"letters.pdf: {bundle.letters} letter(s), {bundle.pages} page(s){blanks}, by {options.order}", markup=False)
    if bundle.envelopes:
        out.print(f"envelopes.pdf: {bundle.envelopes} {options.envelope.name} envelope(s)", markup=False)
        out.print(f"labels.pdf: {bundle.labels} label(s) on {bundle.label_sheets} sheet(s) of "
                  f"{options.labels.columns} x {options.labels.rows}", markup=False)
    out.print("manifest.pdf, manifest.csv: the courier's checklist, by building", markup=False)
    if bundle.without_address and not state.quiet:
        _warn_without_address(bundle.without_address, bundle.letters)
    out.print(f"written to {where}/ in {time.monotonic() - started:.1f} s; "
              "after delivery: dispatch mark ID --delivered --by NAME", markup=False)
    refresh_report(ws, letter)


def _warn_without_address(recipients, letters: int) -> None:
    """Who has no envelope or label, and what to do with their letters: the twelve first ids, then a count."""
    ids = [r.id for r in recipients]
    listed = ", ".join(ids[:12]) + (f" and {len(ids) - 12} more" if len(ids) > 12 else "")
    err.print(f"warning: {len(ids)} of {letters} letter(s) have no postal address, so no envelope or label: {listed}",
              markup=False)
    err.print("  hint: their letters are in letters.pdf and listed last in the manifest, to deliver by hand or have "
              "collected; add the address to recipients.csv for an envelope and a label "
              "(dispatch print --require-address stops when one is missing)", markup=False)


@app.command()
@handle_errors
def mark(ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Recipient ids, e.g. NA FR.", show_default=False)],
         delivered: Annotated[bool, typer.Option("--delivered", help="Record that the letter was delivered by hand.")] = False,
         by: Annotated[Optional[str], typer.Option("--by", metavar="NAME", help="Who received it (or who delivered it).")] = None,
         at: Annotated[Optional[str], typer.Option("--at", metavar="TIME", help="When, local time: 2026-11-28T14:30 (default: now).")] = None,
         note: Annotated[Optional[str], typer.Option("--note", metavar="TEXT", help="Anything worth keeping with the mark.")] = None,
         undo: Annotated[bool, typer.Option("--undo", help="Withdraw a mistaken mark.")] = False,
         letter: LetterOption = None) -> None:
    """Record in the journal that letters were delivered by hand (or withdraw the mark with --undo)."""
    if not delivered:
        err.print("error: say what to record: dispatch mark ID --delivered", markup=False)
        raise typer.Exit(2)
    ws = workspace()
    marks = campaign.mark_delivered(ws, ids, letter=letter, by=by, at=at, note=note, undo=undo)
    for item in marks:
        r = item.recipient
        if undo:
            out.print(f"{r.id}: delivery mark withdrawn ({r.state})", markup=False)
        else:
            out.print(f"{r.id}: delivered {_delivered_text(item.event)} ({r.state})", markup=False)
    refresh_report(ws, letter)


def _delivered_text(event) -> str:
    return campaign.delivery_text(event.data, event.at)


@app.command()
@handle_errors
def status(letter: LetterOption = None, only: OnlyOption = None,
           fmt: Annotated[StatusFormat, typer.Option("--format", "-f", metavar="FORMAT", help="table, csv or json (CSV and JSON hold every column).")] = StatusFormat.table,
           bounced: Annotated[bool, typer.Option("--bounced", help="Only the recipients whose email bounced (dispatch track): the addresses to look up.")] = False,
           wide: Annotated[bool, typer.Option("--wide", help="Every column (PDF, email, time, Message-ID, server reply, hand delivery, flag, note, sent copy...), nothing cut: for a wide terminal or less -S.")] = False) -> None:
    """Show where each letter stands, from the journal: one row per recipient.

    The table fits 100 columns: id, state, channel, status (the email's, the hand delivery's), when, and the
    note (a changed PDF or a failed message first, then the note from recipients.csv)."""
    name, rows = campaign.status(workspace(), letter=letter, only=only)
    if bounced:
        rows = [row for row in rows if row.email == "bounced"]
    typer.echo(campaign.format_status(rows, fmt.value, wide=wide), nl=False)
    if fmt.value != "table":
        return
    if bounced:
        out.print(f"letter '{name}': {len(rows)} email(s) bounced; correct the address in recipients.csv, then "
                  "dispatch send sends to the new one", markup=False)
        return
    emails = [row for row in rows if row.email]
    sent = sum(1 for row in emails if row.email == "sent")
    done = sum(1 for row in rows if row.delivery.startswith("delivered"))
    to_print = sum(1 for row in rows if row.channel in ("print", "both"))
    out.print(f"letter '{name}': {sent} of {len(emails)} email(s) sent", markup=False)
    out.print(f"letter '{name}': {done} of {to_print} letter(s) to print delivered by hand", markup=False)


@app.command()
@handle_errors
def report(letter: LetterOption = None) -> None:
    """Write out/<letter>/report.html: where every letter stands, one page that works offline."""
    ws = workspace()
    target = campaign.write_report(ws, letter=letter)
    out.print(f"{ws.relative(target)}: open it in a web browser (it needs no server or network)", markup=False)


def refresh_report(ws: Workspace, letter: str | None, *, checked=None) -> None:
    """send, print and mark keep the report current (from the campaign the command read, when given)."""
    target = campaign.write_report(ws, letter=letter, campaign=checked)
    if not state.quiet:
        out.print(f"report: {ws.relative(target)}", markup=False)


@app.command()
@handle_errors
def verify(files: Annotated[list[Path], typer.Argument(metavar="PDF...", help="PDF files to check.", show_default=False)],
           trust: Annotated[Optional[list[Path]], typer.Option(
               "--trust", metavar="CERT.pem",
               help="A certificate the signer must chain to (repeatable); without it the signer is shown, "
                    "not checked.")] = None,
           require_signature: Annotated[bool, typer.Option(
               "--require-signature", help="Fail for a file that is not signed (by default an unsigned letter has "
                                           "nothing to check and only its journal record is verified).")] = False) -> None:
    """Check each PDF's signature and that it is the file the journal recorded as sent (or rendered)."""
    ws = workspace()
    results = campaign.verify(ws, files, trust or [], require_signature=require_signature)
    failed = 0
    for result in results:
        shown = ws.relative(result.path)
        sig = result.signature
        if sig.ok:
            trusted = "trusted" if sig.trusted else "signer not checked against a trusted certificate"
            out.print(f"{shown}: signature valid, signed by {sig.signer}, {trusted}", markup=False)
        elif result.unsigned:
            required = "; a signature is required (--require-signature)" if require_signature else ""
            out.print(f"{shown}: not signed (nothing to check){required}", markup=False)
        else:
            out.print(f"{shown}: signature INVALID: {sig.problem}", markup=False)
        mark = "matches" if result.event is not None else "does NOT match"
        out.print(f"  {mark} the journal: {result.journal_note}", markup=False)
        failed += not result.ok
    if failed:
        err.print(f"{failed} of {len(results)} file(s) failed verification", markup=False)
        raise typer.Exit(1)
    out.print(f"ok: {len(results)} file(s) verified", markup=False)
