"""The command line: parse options, call one library function, print what happened.

The only module that prints, prompts or configures logging.
"""

from __future__ import annotations

import dataclasses
import enum
import atexit
import functools
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer
from rich.console import Console

from . import __version__
from .credentials import stored_secret
from .errors import DispatchError, Problem, SendError
from .signing import Signer, open_signer, read_key_file
from .status import FORMATS as STATUS_FORMATS
from .status import delivery_text
from .status import to_csv as status_csv
from .status import to_json as status_json
from .status import to_table as status_table
from .verify import read_trust, verify_files

StatusFormat = enum.Enum("StatusFormat", {name: name for name in STATUS_FORMATS}, type=str)
from .workspace import Workspace, open_workspace

if TYPE_CHECKING:
    from rich.progress import Progress

    from . import campaign

# Each command imports the pipeline (campaign: pandas, Jinja2, ...) when it runs, and WeasyPrint is
# imported only where a PDF is made: `dispatch --help` or a mistyped option answers at once.

app = typer.Typer(
    name="dispatch",
    help="Merge one letter with a list of recipients, render a PDF for each, and send or print them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

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


def _show_version(value: bool) -> None:
    if value:  # eager: answered while the options are read, before a command is asked for
        out.print(f"dispatch {__version__}")
        raise typer.Exit()


@app.callback()
def main(workspace: WorkspaceOption = Path("."),
         quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the final summary.")] = False,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens, for troubleshooting.")] = False,
         version: Annotated[bool, typer.Option("--version", help="Show the version and exit.", is_eager=True,
                                               callback=_show_version)] = False) -> None:
    """dispatch: personalised letters, rendered, sent and recorded."""
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
    from . import campaign

    created = campaign.init(directory)
    out.print(f"created {directory} with {len(created)} files", markup=False)
    out.print(f"next: cd {directory} && dispatch validate && dispatch render", markup=False)


@app.command()
@handle_errors
def validate(letter: LetterOption = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON, for scripts.")] = False) -> None:
    """Check recipients.csv, the letter and the templates; report every problem at once."""
    from . import campaign

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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err,
                    disable=state.quiet or not err.is_terminal, transient=True)


SIGN_PASSWORD_VARIABLE = "DISPATCH_SIGN_PASSWORD"
KEYRING_SERVICE = "dispatch-signing-key"


def _secret(variable: str, keyring_service: str, keyring_user: str, prompt: str) -> str | None:
    """A password from the environment, else the system keyring (when installed), else a hidden prompt."""
    stored = stored_secret(variable, keyring_service, keyring_user)
    if stored is not None:
        return stored
    try:
        return typer.prompt(prompt, hide_input=True, default="", show_default=False, err=True)
    except (typer.Abort, EOFError):
        return None


def _signer(key_file: Path | None) -> Signer | None:
    if key_file is None:
        return None
    data = read_key_file(key_file)  # a wrong file name is reported before the password is asked for
    password = _secret(SIGN_PASSWORD_VARIABLE, KEYRING_SERVICE, str(key_file.resolve()),
                       f"Password of {key_file.name}")
    return open_signer(key_file, password, data=data)


def _render_line(summary: campaign.RenderSummary, fmt: str, where: str, elapsed: float,
                 signer: Signer | None = None) -> str:
    if fmt == "html":
        return f"rendered {len(summary.rendered)} HTML file(s) into {where}/ in {elapsed:.1f} s"
    reasons = ", ".join(f"{count} {reason}" for reason, count in summary.reasons().items())
    signed = f", signed by {signer.name}" if signer is not None else ""
    return (f"rendered {len(summary.rendered)}" + (f" ({reasons})" if reasons else "")
            + f", {summary.up_to_date} up to date, {len(summary.failed)} failed{signed} into {where}/ "
            + f"in {elapsed:.1f} s")


@app.command()
@handle_errors
def render(letter: LetterOption = None, only: OnlyOption = None,
           fmt: Annotated[str, typer.Option("--format", "-f", help="pdf, or html to debug a template.")] = "pdf",
           jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1,
                                                       help="Letters rendered at once (default: one per CPU).",
                                                       show_default=False)] = None,
           force: Annotated[bool, typer.Option("--force", help="Render every letter, even those up to date.")] = False,
           pdf_variant: Annotated[Optional[str], typer.Option(
               "--pdf-variant", help="Archival PDF variant, e.g. pdf/a-3u, or 'none' for a plain PDF "
                                     "(default: [campaign] pdf_variant in dispatch.toml).")] = None,
           sign: Annotated[Optional[Path], typer.Option(
               "--sign", metavar="KEYFILE.p12",
               help=f"Sign each PDF with this PKCS#12 key (password from ${SIGN_PASSWORD_VARIABLE}, "
                    "the system keyring, or a prompt).")] = None,
           no_layers: Annotated[bool, typer.Option(
               "--no-layers", help="Render every letter whole, not as a shared master with the recipient's "
                                   "regions laid over it.")] = False,
           explain: Annotated[bool, typer.Option(
               "--explain", help="Then list the groups of letters rendered layered, their regions, and the "
                                 "letters rendered whole and why.")] = False) -> None:
    """Render one letter per recipient into out/<letter>/<id>.pdf (only those new or changed)."""
    from . import campaign

    ws = _workspace()
    explanation = campaign.Explanation()
    signer = _signer(sign)
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
                                  pdf_variant=pdf_variant, signer=signer, layers=not no_layers,
                                  explanation=explanation, on_start=on_start, on_progress=on_progress)
    for problem in summary.failed or ([] if state.quiet else summary.warnings):
        _print_problem(problem)
    elapsed = time.monotonic() - started
    if explain and fmt == "pdf":
        for line in _explain_lines(explanation, len(summary.rendered)):
            out.print(line, markup=False)
    out.print(_render_line(summary, fmt, ws.relative(summary.output_dir), elapsed, signer), markup=False)
    if summary.failed:
        raise typer.Exit(1)


def _explain_lines(explanation: campaign.Explanation, rendered: int) -> list[str]:
    """What `render --explain` prints: each group and its regions, then the letters rendered whole."""
    if not rendered:
        return ["nothing rendered, nothing to explain (--force renders every letter again)"]
    lines = []
    for number, group in enumerate(explanation.groups, start=1):
        head = f"group {number}: {len(group.members)} letter(s), first {group.members[0]}"
        if group.reason:
            lines.append(f"{head}: rendered whole, because {group.reason}")
            continue
        lines.append(f"{head}: one master of {group.master_pages} page(s), regions laid over it:")
        for name, width, height, pages in group.regions:
            shown = ", ".join(str(p) for p in pages)
            lines.append(f"  {name}: {width:.1f} × {height:.1f} mm, page{'s' if len(pages) > 1 else ''} {shown}")
    whole = explanation.whole
    lines.append(f"layered: {rendered - len(whole)} letter(s); rendered whole: {len(whole)}")
    reasons: dict[str, list[str]] = {}
    for name, reason in whole.items():
        reasons.setdefault(reason, []).append(name)
    for reason, names in reasons.items():
        listed = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        lines.append(f"  {listed}: {reason}")
    return lines


@app.command()
@handle_errors
def verify(files: Annotated[list[Path], typer.Argument(help="Signed PDF files to check.", show_default=False)],
           trust: Annotated[Optional[list[Path]], typer.Option(
               "--trust", metavar="CERT.pem",
               help="A certificate the signer must chain to (repeatable); without it the signer is shown, "
                    "not checked.")] = None) -> None:
    """Check each PDF's signature and that it is the file the journal recorded as sent (or rendered)."""
    from . import campaign

    ws = _workspace()
    with campaign.open_journal(ws) as journal:
        results = verify_files(files, journal, trust=read_trust(trust or []))
    failed = 0
    for result in results:
        shown = ws.relative(result.path)
        sig = result.signature
        if sig.ok:
            trusted = "trusted" if sig.trusted else "signer not checked against a trusted certificate"
            out.print(f"{shown}: signature valid, signed by {sig.signer}, {trusted}", markup=False)
        else:
            out.print(f"{shown}: signature INVALID: {sig.problem}", markup=False)
        mark = "matches" if result.event is not None else "does NOT match"
        out.print(f"  {mark} the journal: {result.journal_note}", markup=False)
        failed += not result.ok
    if failed:
        err.print(f"{failed} of {len(results)} file(s) failed verification", markup=False)
        raise typer.Exit(1)
    out.print(f"ok: {len(results)} file(s) verified", markup=False)


@app.command()
@handle_errors
def preview(recipient: Annotated[str, typer.Argument(help="Recipient id, e.g. NA.")], letter: LetterOption = None,
            open_: Annotated[bool, typer.Option("--open", help="Open the PDF with this computer's PDF viewer.")] = False,
            watch: Annotated[bool, typer.Option("--watch", help="Render again whenever the letter, a template, "
                                                "dispatch.toml or recipients.csv changes (Ctrl-C to stop).")] = False) -> None:
    """Render one recipient's letter and a PNG image of each page."""
    ws = _workspace()
    if not watch:
        from .workers import RendererProcess

        # WeasyPrint is imported in a process of its own while this one reads and checks the campaign.
        with RendererProcess(ws.templates, pdf_variant=ws.settings.pdf_variant or None) as renderer:
            from . import campaign

            result = campaign.preview(ws, recipient, letter=letter, renderer=renderer)
        out.print(ws.relative(result.pdf), markup=False)
        for page in result.pages:
            out.print(ws.relative(page), markup=False)
        if open_:
            _open_viewer(ws, result.pdf)
        return
    from . import campaign

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
    from . import campaign

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
    out.print("manifest.pdf, manifest.csv: the courier's checklist, by building", markup=False)
    if bundle.without_address:
        ids = ", ".join(r.id for r in bundle.without_address)
        err.print(f"warning: no envelope or label for {len(bundle.without_address)} recipient(s) without a postal "
                  f"address: {ids}", markup=False)
    out.print(f"written to {where}/ in {time.monotonic() - started:.1f} s; "
              "after delivery: dispatch mark ID --delivered --by NAME", markup=False)
    _refresh_report(ws, letter)


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
    from . import campaign

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
    _refresh_report(ws, letter)


def _delivered_text(event) -> str:
    return delivery_text(event.data, event.at)


@app.command()
@handle_errors
def proof(letter: LetterOption = None) -> None:
    """Write a proof sheet (page 1 of every letter, 12 to a page) and a report of what differs between letters."""
    from . import campaign

    ws = _workspace()
    with _progress() as progress:
        task = progress.add_task("proof sheet", total=None, rate="")
        result = campaign.proof(ws, letter=letter, on_progress=lambda _id: progress.update(task, advance=1))
    out.print(f"{ws.relative(result.sheet)}: {result.letters} letters on {result.sheet_pages} page(s)", markup=False)
    out.print(f"{ws.relative(result.report)}: the fields merged into each letter and the lines that differ", markup=False)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # a polite kill stops as cleanly as Ctrl-C


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
    if summary.stopped:
        err.print(f"stopped: {summary.stopped}", markup=False)
        if summary.not_attempted:
            err.print(f"  not attempted: {len(summary.not_attempted)}; run dispatch send again to send them", markup=False)
    rate = len(summary.sent) / summary.seconds if summary.seconds > 0 else 0.0
    skipped = len(summary.already_sent)
    out.print(f"sent {len(summary.sent)}, failed {len(summary.failed) + len(summary.failed_earlier)}, "
              f"uncertain {len(summary.uncertain) + len(summary.uncertain_earlier)}, skipped {skipped} "
              f"in {summary.seconds:.1f} s ({rate:.1f} messages/s)", markup=False)


@app.command()
@handle_errors
def send(letter: LetterOption = None, only: OnlyOption = None,
         limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Send at most N messages in this run.")] = None,
         yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking for confirmation.")] = False,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="Write each message to out/<letter>/outbox/<id>.eml; connect to no server.")] = False,
         resend: Annotated[Optional[list[str]], typer.Option("--resend", help="Send to this recipient again, even if sent before (repeatable).")] = None,
         resend_uncertain: Annotated[bool, typer.Option("--resend-uncertain", help="Send again the messages whose delivery is uncertain (check the mailbox first).")] = False) -> None:
    """Email the letter to recipients whose channel is email or both: each once, with a journal."""
    from . import campaign

    ws = _workspace()
    settings = None if dry_run else campaign.smtp_settings(ws)
    with campaign.SendRun(ws) as run:
        plan = run.prepare(letter=letter, only=only, limit=limit, resend=resend, resend_uncertain=resend_uncertain,
                           dry_run=dry_run)
        for warning in plan.warnings:
            if not state.quiet:
                _print_problem(warning)
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
            _print_summary(summary)
            raise typer.Exit(0 if summary.ok else 1)
        if not yes:
            _show_plan(plan, settings)
            if not _is_terminal():
                raise SendError("not sending: confirmation is needed and this is not a terminal",
                                hint="run dispatch send in a terminal to confirm, or dispatch send --yes to send without "
                                     "asking (dispatch send --dry-run writes the messages to files to check first)")
            if not typer.confirm(f"Send {len(plan.items)} message(s)?", default=False):
                out.print("nothing was sent", markup=False)
                raise typer.Exit(1)
        password = campaign.smtp_password(settings) if settings.username else None
        if settings.username and password is None and _is_terminal():
            password = typer.prompt(f"SMTP password for {settings.username} on {settings.host}", hide_input=True)
        with _progress() as progress:
            task = progress.add_task("sending", total=len(plan.items), rate="")
            started = time.monotonic()

            def on_progress(item, outcome) -> None:
                done = progress.tasks[0].completed + 1
                rate = done / max(time.monotonic() - started, 1e-6)
                progress.update(task, advance=1, rate=f"{rate:.1f} messages/s")

            summary = run.send(plan, settings, password, on_progress)
    _print_summary(summary)
    _refresh_report(ws, letter)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
@handle_errors
def status(letter: LetterOption = None, only: OnlyOption = None,
           fmt: Annotated[StatusFormat, typer.Option("--format", "-f", help="table, csv or json.")] = StatusFormat.table) -> None:
    """Show each recipient's PDF, email status, server reply and hand delivery, from the journal."""
    from . import campaign

    name, rows = campaign.status(_workspace(), letter=letter, only=only)
    if fmt.value == "csv":
        typer.echo(status_csv(rows), nl=False)
        return
    if fmt.value == "json":
        typer.echo(status_json(rows), nl=False)
        return
    typer.echo(status_table(rows), nl=False)
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
    from . import campaign

    ws = _workspace()
    target = campaign.write_report(ws, letter=letter)
    out.print(f"{ws.relative(target)}: open it in a web browser (it needs no server or network)", markup=False)


def _refresh_report(ws: Workspace, letter: str | None) -> None:
    """send, print and mark keep the report current."""
    from . import campaign

    target = campaign.write_report(ws, letter=letter)
    if not state.quiet:
        out.print(f"report: {ws.relative(target)}", markup=False)


def run() -> None:
    signal.signal(signal.SIGTERM, _stop)
    if _command(sys.argv[1:]) == "render":
        from .workers import start_server

        start_server()  # the workers' WeasyPrint is imported while Typer reads the arguments (a quarter second)
    try:
        app()
    except SystemExit as exc:
        _end(exc.code)
    _end(0)


def _end(code) -> None:
    """Exit with code once output is flushed and the exit handlers have run (logging, worker processes,
    temporary folders), without tearing the interpreter down object by object: a tenth of a second and
    more with pandas, Jinja2 and a campaign's letters loaded, and nothing left to save by then."""
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    if "weasyprint" in sys.modules:  # a PDF was made here: its fonts' temporary folder goes when it is deleted
        gc.collect()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            code = code or 1
    os._exit(code)


def _command(args: list[str]) -> str | None:
    """The command word of a command line: the first word that is neither an option nor -C's folder."""
    folder = False
    for arg in args:
        if folder:
            folder = False
        elif arg in ("-C", "--workspace"):
            folder = True
        elif not arg.startswith("-"):
            return arg
    return None
