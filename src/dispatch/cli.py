"""The command line: parse options, call one library function, print what happened.

The only module that prints, prompts or configures logging.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import __version__, campaign
from .errors import DispatchError, Problem
from .workspace import Workspace, open_workspace

app = typer.Typer(
    name="dispatch",
    help="Merge one letter with a list of recipients, render a PDF for each, and send or print them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

WorkspaceOption = Annotated[Path, typer.Option("-C", "--workspace", help="The campaign folder (default: the current folder).",
                                               show_default=False)]
LetterOption = Annotated[Optional[str], typer.Option("--letter", "-l", help="Letter name in letters/ (default: [campaign] letter in dispatch.toml).")]
OnlyOption = Annotated[Optional[list[str]], typer.Option("--only", help="Only this recipient id (repeatable).")]


class State:
    workspace_dir: Path = Path(".")
    quiet: bool = False


state = State()


def _print_problem(problem: Problem) -> None:
    label = "warning" if problem.severity == "warning" else "error"
    err.print(f"{label}: {problem}", markup=False)
    if problem.hint:
        err.print(f"  hint: {problem.hint}", markup=False)


def handle_errors(command: Callable) -> Callable:
    """Turn the library's errors into one clear message and exit 1; a bug into a short note and a log file."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DispatchError as exc:
            for problem in exc.problems:
                _print_problem(problem)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing half-written was left behind; run the command again to finish.")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: keep the user's screen short, keep the details in a file
            fd, path = tempfile.mkstemp(prefix="dispatch-crash-", suffix=".log")
            with os.fdopen(fd, "w") as handle:
                handle.write(f"dispatch {__version__}\n{' '.join(sys.argv[:2])}\n\n")
                traceback.print_exc(file=handle)
            err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False)
            err.print(f"  this is a bug in dispatch; the details are in {path}", markup=False)
            raise typer.Exit(70) from None

    return wrapper


def _workspace() -> Workspace:
    return open_workspace(state.workspace_dir)


@app.callback()
def main(workspace: WorkspaceOption = Path("."),
         quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the final summary.")] = False,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens, for troubleshooting.")] = False,
         version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False) -> None:
    """dispatch: personalised letters, rendered, sent and recorded."""
    if version:
        out.print(f"dispatch {__version__}")
        raise typer.Exit()
    state.workspace_dir = workspace
    state.quiet = quiet
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")
    if not verbose:
        for noisy in ("weasyprint", "fontTools"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


@app.command()
@handle_errors
def init(directory: Annotated[Path, typer.Argument(help="Folder to create.")]) -> None:
    """Create a new campaign folder with a sample letter, recipients and templates."""
    created = campaign.init(directory)
    out.print(f"created {directory} with {len(created)} files", markup=False)
    out.print(f"next: cd {directory} && dispatch validate && dispatch render", markup=False)


@app.command()
@handle_errors
def validate(letter: LetterOption = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON, for scripts.")] = False) -> None:
    """Check recipients.csv, the letter and the templates; report every problem at once."""
    ws = _workspace()
    problems = campaign.validate(ws, letter)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    if as_json:
        count = None if errors else len(campaign.load(ws, letter).recipients.rows)
        out.print_json(data={"ok": not errors, "letter": ws.letter_name(letter), "recipients": count,
                             "errors": errors, "warnings": warnings,
                             "problems": [dataclasses.asdict(p) for p in problems]})
        raise typer.Exit(1 if errors else 0)
    for problem in problems:
        _print_problem(problem)
    if errors:
        err.print(f"{errors} error(s), {warnings} warning(s): fix the errors, then run dispatch validate again", markup=False)
        raise typer.Exit(1)
    loaded = campaign.load(ws, letter)
    out.print(f"ok: {len(loaded.recipients.rows)} recipients, letter '{loaded.letter_name}'"
              + (f", {warnings} warning(s)" if warnings else ""), markup=False)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err,
                    disable=state.quiet or not err.is_terminal, transient=True)


def _render_line(summary: campaign.RenderSummary, fmt: str, where: str, elapsed: float) -> str:
    if fmt == "html":
        return f"rendered {len(summary.rendered)} HTML file(s) into {where}/ in {elapsed:.1f} s"
    reasons = ", ".join(f"{count} {reason}" for reason, count in summary.reasons().items())
    return (f"rendered {len(summary.rendered)}" + (f" ({reasons})" if reasons else "")
            + f", {summary.up_to_date} up to date, {len(summary.failed)} failed into {where}/ in {elapsed:.1f} s")


@app.command()
@handle_errors
def render(letter: LetterOption = None, only: OnlyOption = None,
           fmt: Annotated[str, typer.Option("--format", "-f", help="pdf, or html to debug a template.")] = "pdf",
           jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1,
                                                       help="Letters rendered at once (default: one per CPU).",
                                                       show_default=False)] = None,
           force: Annotated[bool, typer.Option("--force", help="Render every letter, even those up to date.")] = False) -> None:
    """Render one letter per recipient into out/<letter>/<id>.pdf (only those new or changed)."""
    ws = _workspace()
    started = time.monotonic()
    with _progress() as progress:
        task = progress.add_task("rendering", total=None, rate="")
        first: list[float] = []

        def on_start(total: int, up_to_date: int) -> None:
            progress.update(task, total=total)

        def on_progress(result) -> None:
            now = time.monotonic()
            first.append(now)
            done = len(first)
            # The rate from the first letter on, so starting the workers does not count as slowness.
            rate = (done - 1) / (now - first[0]) if done > 1 else 0.0
            progress.update(task, advance=1, rate=f"{rate:.1f} letters/s" if rate else "")
            if fmt == "pdf" and not state.quiet:
                out.print(f"{result.path.name}: {result.reason}, {result.pages} page(s)", markup=False)

        summary = campaign.render(ws, letter=letter, only=only, fmt=fmt, jobs=jobs, force=force,
                                  on_start=on_start, on_progress=on_progress)
    for problem in summary.failed or ([] if state.quiet else summary.warnings):
        _print_problem(problem)
    elapsed = time.monotonic() - started
    out.print(_render_line(summary, fmt, ws.relative(summary.output_dir), elapsed), markup=False)
    if summary.failed:
        raise typer.Exit(1)


@app.command()
@handle_errors
def preview(recipient: Annotated[str, typer.Argument(help="Recipient id, e.g. NA.")], letter: LetterOption = None,
            open_: Annotated[bool, typer.Option("--open", help="Open the PDF with this computer's PDF viewer.")] = False,
            watch: Annotated[bool, typer.Option("--watch", help="Render again whenever the letter, a template, "
                                                "dispatch.toml or recipients.csv changes (Ctrl-C to stop).")] = False) -> None:
    """Render one recipient's letter and a PNG image of each page."""
    ws = _workspace()
    if not watch:
        result = campaign.preview(ws, recipient, letter=letter)
        out.print(ws.relative(result.pdf), markup=False)
        for page in result.pages:
            out.print(ws.relative(page), markup=False)
        if open_:
            _open_viewer(ws, result.pdf)
        return
    opened = False

    def on_event(event: campaign.WatchEvent) -> None:
        nonlocal opened
        because = f" ({', '.join(event.changed)} changed)" if event.changed else ""
        if event.error is not None:
            for problem in event.error.problems:
                _print_problem(problem)
            err.print(f"not rendered{because}; fix the file and save it again", markup=False)
            return
        out.print(f"rendered {ws.relative(event.preview.pdf)} in {event.seconds:.1f} s{because}", markup=False)
        if open_ and not opened:
            opened = True
            _open_viewer(ws, event.preview.pdf)

    err.print(f"watching {ws.relative(ws.letters)}/, {ws.relative(ws.templates)}/, dispatch.toml and "
              f"{ws.relative(ws.recipients_file)}; press Ctrl-C to stop", markup=False)
    campaign.watch_preview(ws.root, recipient, letter=letter, on_event=on_event)


def _open_viewer(ws: Workspace, pdf: Path) -> None:
    """Hand the PDF to the desktop's viewer (xdg-open, open or the Windows shell), when there is one."""
    if sys.platform.startswith("win") or shutil.which("open" if sys.platform == "darwin" else "xdg-open"):
        typer.launch(str(pdf))
    else:
        err.print(f"no PDF viewer found on this computer; open {ws.relative(pdf)} yourself", markup=False)


@app.command(name="print")
@handle_errors
def print_(letter: LetterOption = None, only: OnlyOption = None,
           order: Annotated[Optional[str], typer.Option("--order", help="state (default), group (regional group, then state) or csv (file order); default: [print] order.", show_default=False)] = None,
           duplex: Annotated[Optional[bool], typer.Option("--duplex/--simplex", help="Printing on both sides: add a blank back so every letter starts on a new sheet (default: [print] duplex).", show_default=False)] = None,
           envelope: Annotated[Optional[str], typer.Option("--envelope", help="DL, C5 or C4 (default: [print] envelope).", show_default=False)] = None,
           allow_missing_address: Annotated[bool, typer.Option("--allow-missing-address", help="Print the letters of recipients without a postal address too (they get no envelope or label).")] = False) -> None:
    """Make the print run for hand delivery: letters, envelopes, labels and the courier's manifest."""
    ws = _workspace()
    started = time.monotonic()
    with _progress() as progress:
        task = progress.add_task("rendering", total=None, rate="")
        summary = campaign.print_run(ws, letter=letter, only=only, order=order, duplex=duplex, envelope=envelope,
                                     allow_missing_address=allow_missing_address,
                                     on_start=lambda total, up_to_date: progress.update(task, total=total),
                                     on_progress=lambda result: progress.update(task, advance=1))
    bundle, options = summary.bundle, summary.options
    if not state.quiet:
        for warning in summary.warnings:
            if warning.column != "address":  # the print run reports missing addresses itself, below
                _print_problem(warning)
    where = ws.relative(summary.folder)
    blanks = f" (with {bundle.blank_pages} blank back(s) for duplex)" if options.duplex else ""
    out.print(f"letters.pdf: {bundle.letters} letter(s), {bundle.pages} page(s){blanks}, by {options.order}", markup=False)
    if bundle.envelopes:
        out.print(f"envelopes.pdf: {bundle.envelopes} {options.envelope.name} envelope(s)", markup=False)
        out.print(f"labels.pdf: {bundle.labels} label(s) on {bundle.label_sheets} sheet(s) of "
                  f"{options.labels.columns} x {options.labels.rows}", markup=False)
    out.print(f"manifest.pdf, manifest.csv: the courier's checklist, by building", markup=False)
    if bundle.without_address:
        ids = ", ".join(r.id for r in bundle.without_address)
        err.print(f"warning: no envelope or label for {len(bundle.without_address)} recipient(s) without a postal "
                  f"address: {ids}", markup=False)
    out.print(f"written to {where}/ in {time.monotonic() - started:.1f} s; "
              "after delivery: dispatch mark ID --delivered --by NAME", markup=False)


@app.command()
@handle_errors
def mark(ids: Annotated[list[str], typer.Argument(help="Recipient ids, e.g. NA FR.", show_default=False)],
         delivered: Annotated[bool, typer.Option("--delivered", help="Record that the letter was delivered by hand.")] = False,
         by: Annotated[Optional[str], typer.Option("--by", help="Who received it (or who delivered it).")] = None,
         at: Annotated[Optional[str], typer.Option("--at", help="When, local time: 2026-11-28T14:30 (default: now).")] = None,
         note: Annotated[Optional[str], typer.Option("--note", help="Anything worth keeping with the mark.")] = None,
         undo: Annotated[bool, typer.Option("--undo", help="Withdraw a mistaken mark.")] = False,
         letter: LetterOption = None) -> None:
    """Record in the journal that letters were delivered by hand (or withdraw the mark with --undo)."""
    if not delivered:
        err.print("error: say what to record: dispatch mark ID --delivered", markup=False)
        raise typer.Exit(2)
    ws = _workspace()
    marks = campaign.mark_delivered(ws, ids, letter=letter, by=by, at=at, note=note, undo=undo)
    for item in marks:
        r = item.recipient
        if undo:
            out.print(f"{r.id}: delivery mark withdrawn ({r.state})", markup=False)
        else:
            out.print(f"{r.id}: delivered {_delivered_text(item.event)} ({r.state})", markup=False)


def _delivered_text(event) -> str:
    when = event.data.get("delivered_at", event.at).replace("T", " ")[:16]
    return when + (f" to {event.data['by']}" if event.data.get("by") else "")


@app.command()
@handle_errors
def status(letter: LetterOption = None, only: OnlyOption = None) -> None:
    """Show each recipient's channel and hand delivery, from the journal."""
    ws = _workspace()
    name, rows = campaign.status(ws, letter=letter, only=only)
    width = max([2] + [len(row.recipient.id) for row in rows])
    state_width = min(32, max([5] + [len(row.recipient.state) for row in rows]))
    out.print(f"{'id':<{width}}  {'state':<{state_width}}  {'channel':<7}  hand delivery", markup=False)
    for row in rows:
        r = row.recipient
        delivered = f"delivered {_delivered_text(row.delivered)}" if row.delivered else ("-" if not r.wants_print else "not yet")
        out.print(f"{r.id:<{width}}  {r.state[:state_width]:<{state_width}}  {r.channel:<7}  {delivered}", markup=False)
    done = sum(1 for row in rows if row.delivered)
    to_print = sum(1 for row in rows if row.recipient.wants_print)
    out.print(f"letter '{name}': {done} of {to_print} letter(s) to print delivered by hand", markup=False)
@app.command()
@handle_errors
def proof(letter: LetterOption = None) -> None:
    """Write a proof sheet (page 1 of every letter, 12 to a page) and a report of what differs between letters."""
    ws = _workspace()
    with _progress() as progress:
        task = progress.add_task("proof sheet", total=None, rate="")
        result = campaign.proof(ws, letter=letter, on_progress=lambda _id: progress.update(task, advance=1))
    out.print(f"{ws.relative(result.sheet)}: {result.letters} letters on {result.sheet_pages} page(s)", markup=False)
    out.print(f"{ws.relative(result.report)}: the fields merged into each letter and the lines that differ", markup=False)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # a polite kill stops as cleanly as Ctrl-C


def run() -> None:
    signal.signal(signal.SIGTERM, _stop)
    app()
