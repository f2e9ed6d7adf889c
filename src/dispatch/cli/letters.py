"""Commands that make letters: init, validate, render, preview, proof."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
import dataclasses
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dispatch import campaign
from dispatch.cli.app import app, err, handle_errors, out, print_problem, progress_bar, state, workspace
from dispatch.cli.options import LetterOption, OnlyOption

if TYPE_CHECKING:
    from dispatch.workspace import Workspace


@app.command()
@handle_errors
def init(directory: Annotated[Path, typer.Argument(metavar="FOLDER", help="Folder to create.")]) -> None:
    """Create a new campaign folder with a sample letter, recipients and templates."""
    created = campaign.init(directory)
    out.print(f"created {directory} with {len(created)} files", markup=False)
    out.print(f"next: cd {directory} && dispatch validate && dispatch render", markup=False)


@app.command()
@handle_errors
def validate(letter: LetterOption = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON, for scripts.")] = False) -> None:
    """Check recipients.csv, the letter and the templates; report every problem at once."""
    ws = workspace()
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
        print_problem(problem)
    if errors:
        err.print(f"{errors} error(s), {warnings} warning(s): fix the errors, then run dispatch validate again", markup=False)
        raise typer.Exit(1)
    loaded = campaign.load(ws, letter)
    out.print(f"ok: {len(loaded.recipients.rows)} recipients, letter '{loaded.letter_name}'"
              + (f", {warnings} warning(s)" if warnings else ""), markup=False)


def _render_line(summary: campaign.RenderSummary, fmt: str, where: str, elapsed: float,
                 signer=None) -> str:
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
           fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="pdf, or html to debug a template.")] = "pdf",
           jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, metavar="N",
                                                       help="Letters rendered at once (default: one per CPU).",
                                                       show_default=False)] = None,
           force: Annotated[bool, typer.Option("--force", help="Render every letter, even those up to date.")] = False,
           pdf_variant: Annotated[Optional[str], typer.Option(
               "--pdf-variant", metavar="VARIANT", help="Archival PDF variant, e.g. pdf/a-3u, or 'none' for a plain PDF "
                                     "(default: [campaign] pdf_variant in dispatch.toml).")] = None,
           sign: Annotated[Optional[Path], typer.Option(
               "--sign", metavar="KEYFILE.p12",
               help="Sign each PDF with this PKCS#12 key (password from $DISPATCH_SIGN_PASSWORD, "
                    "the system keyring, or a prompt).")] = None,
           no_layers: Annotated[bool, typer.Option(
               "--no-layers", help="Render every letter whole, not as a shared master with the recipient's "
                                   "regions laid over it.")] = False,
           explain: Annotated[bool, typer.Option(
               "--explain", help="Then list the groups of letters rendered layered, their regions, and the "
                                 "letters rendered whole and why.")] = False) -> None:
    """Render one letter per recipient into out/<letter>/<id>.pdf (only those new or changed)."""
    ws = workspace()
    explanation = campaign.Explanation()
    signer = campaign.signer(sign, _ask_password) if sign else None
    started = time.monotonic()
    with progress_bar() as progress:
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
                note = f"; {result.note}" if result.note else ""
                out.print(f"{result.path.name}: {result.reason}, {result.pages} page(s){note}", markup=False)

        summary = campaign.render(ws, letter=letter, only=only, fmt=fmt, jobs=jobs, force=force,
                                  pdf_variant=pdf_variant, signer=signer, layers=not no_layers,
                                  explanation=explanation, on_start=on_start, on_progress=on_progress)
    for problem in summary.failed or ([] if state.quiet else summary.warnings):
        print_problem(problem)
    elapsed = time.monotonic() - started
    if explain and fmt == "pdf":
        for line in _explain_lines(explanation, len(summary.rendered)):
            out.print(line, markup=False)
        for result in summary.rendered:
            if result.note:
                out.print(f"  {result.recipient_id}: {result.note}", markup=False)
    out.print(_render_line(summary, fmt, ws.relative(summary.output_dir), elapsed, signer), markup=False)
    if summary.failed:
        raise typer.Exit(1)


def _explain_lines(explanation: campaign.Explanation, rendered: int) -> list[str]:
    """What `render --explain` prints: each group and its regions, then the letters rendered whole."""
    if not rendered:
        return ["nothing rendered, nothing to explain (--force renders every letter again)"]
    lines = []
    alone = [group for group in explanation.groups if len(group.members) == 1 and not group.reason]
    if len(alone) < 4:  # a few are listed with the others; many (a personalised letter) in one line
        alone = []
    for number, group in enumerate(explanation.groups, start=1):
        if group in alone:
            continue
        head = f"group {number}: {len(group.members)} letter(s), first {group.members[0]}"
        if group.reason:
            lines.append(f"{head}: rendered whole, because {group.reason}")
            continue
        lines.append(f"{head}: one master of {group.master_pages} page(s), regions laid over it:")
        for name, width, height, pages in group.regions:
            shown = ", ".join(str(p) for p in pages)
            lines.append(f"  {name}: {width:.1f} × {height:.1f} mm, page{'s' if len(pages) > 1 else ''} {shown}")
    if alone:
        names = [group.members[0] for group in alone]
        listed = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        regions = ", ".join(name for name, *_ in alone[0].regions)
        lines.append(f"{len(alone)} letters alone in their groups ({listed}): each laid over a master of its own "
                     f"({alone[0].master_pages} page(s)), regions {regions}")
    difference = explanation.difference
    if difference is not None:
        where = f" ({explanation.where})" if explanation.where else ""
        a, b = explanation.apart

        def shown(words: str) -> str:
            return f"“{words}…”" if words else "nothing"

        lines.append(f"the groups' text differs outside the regions after “…{difference.before}”{where}: "
                     f"{a} has {shown(difference.first)}, {b} {shown(difference.second)}")
        if alone:
            lines.append("  a recipient value there gives each letter a master of its own (pages after the first "
                         "are shared where they match); kept in a region (data-variable, fixed height) it would "
                         "be laid over one master for all")
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
def preview(recipient: Annotated[str, typer.Argument(metavar="ID", help="Recipient id, e.g. NA.")],
            letter: LetterOption = None,
            open_: Annotated[bool, typer.Option("--open", help="Open the PDF with this computer's PDF viewer.")] = False,
            watch: Annotated[bool, typer.Option("--watch", help="Render again whenever the letter, a template, "
                                                "dispatch.toml or recipients.csv changes (Ctrl-C to stop).")] = False) -> None:
    """Render one recipient's letter and a PNG image of each page."""
    ws = workspace()
    if not watch:
        # WeasyPrint is imported in a process of its own while this one reads and checks the campaign.
        with campaign.renderer_process(ws) as renderer:
            result = campaign.preview(ws, recipient, letter=letter, renderer=renderer)
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
                print_problem(problem)
            err.print(f"not rendered{because}; fix the file and save it again", markup=False)
            return
        out.print(f"rendered {ws.relative(event.preview.pdf)} in {event.seconds:.1f} s{because}", markup=False)
        if open_ and not opened:
            opened = True
            _open_viewer(ws, event.preview.pdf)

    try:
        err.print(f"watching {ws.relative(ws.letters)}/, {ws.relative(ws.templates)}/, dispatch.toml and "
                  f"{ws.relative(ws.recipients_file)}; press Ctrl-C to stop", markup=False)
        campaign.watch_preview(ws.root, recipient, letter=letter, on_event=on_event)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how watching ends, while waiting or while rendering (nothing half-written is left)
    err.print("stopped watching", markup=False)


def _open_viewer(ws: Workspace, pdf: Path) -> None:
    """Hand the PDF to the desktop's viewer (xdg-open, open or the Windows shell), when there is one."""
    if sys.platform.startswith("win") or shutil.which("open" if sys.platform == "darwin" else "xdg-open"):
        typer.launch(str(pdf))
    else:
        err.print(f"no PDF viewer found on this computer; open {ws.relative(pdf)} yourself", markup=False)


@app.command()
@handle_errors
def proof(letter: LetterOption = None) -> None:
    """Write a proof sheet (page 1 of every letter, 12 to a page) and a report of what differs between letters.

    Renders first the letters that are new or changed since they were last rendered."""
    ws = workspace()
    with progress_bar() as progress:
        task = progress.add_task("proof sheet", total=None, rate="")
        result = campaign.proof(ws, letter=letter, on_progress=lambda _id: progress.update(task, advance=1))
    out.print(f"{ws.relative(result.sheet)}: {result.letters} letters on {result.sheet_pages} page(s)", markup=False)
    out.print(f"{ws.relative(result.report)}: the fields merged into each letter and the lines that differ", markup=False)


def _ask_password(label: str) -> str | None:
    """A hidden prompt (on stderr) for a password no variable or keyring holds."""
    try:
        return typer.prompt(label, hide_input=True, default="", show_default=False, err=True)
    except (typer.Abort, EOFError):
        return None
