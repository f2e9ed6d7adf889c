"""The command line: parse options, call one library function, print what happened.

The only module that prints, prompts or configures logging.
"""

from __future__ import annotations

import functools
import logging
import os
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
def validate(letter: LetterOption = None) -> None:
    """Check recipients.csv, the letter and the templates; report every problem at once."""
    ws = _workspace()
    problems = campaign.validate(ws, letter)
    for problem in problems:
        _print_problem(problem)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
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


@app.command()
@handle_errors
def render(letter: LetterOption = None, only: OnlyOption = None,
           fmt: Annotated[str, typer.Option("--format", "-f", help="pdf, or html to debug a template.")] = "pdf") -> None:
    """Render one letter per recipient into out/<letter>/<id>.pdf."""
    ws = _workspace()
    started = time.monotonic()
    with _progress() as progress:
        task = progress.add_task("rendering", total=None, rate="")

        def on_start(total: int) -> None:
            progress.update(task, total=total)

        def on_progress(result) -> None:
            done = progress.tasks[0].completed + 1
            rate = done / max(time.monotonic() - started, 1e-6)
            progress.update(task, advance=1, rate=f"{rate:.1f} letters/s")

        summary = campaign.render(ws, letter=letter, only=only, fmt=fmt, on_start=on_start, on_progress=on_progress)
    for warning in summary.warnings:
        if not state.quiet:
            _print_problem(warning)
    elapsed = time.monotonic() - started
    where = ws.relative(summary.output_dir)
    pages = f", {summary.pages} pages" if fmt == "pdf" else ""
    out.print(f"rendered {len(summary.rendered)} {fmt.upper()} file(s){pages} into {where}/ in {elapsed:.1f} s",
              markup=False)


@app.command()
@handle_errors
def preview(recipient: Annotated[str, typer.Argument(help="Recipient id, e.g. NA.")], letter: LetterOption = None) -> None:
    """Render one recipient's letter and a PNG image of each page."""
    ws = _workspace()
    result = campaign.preview(ws, recipient, letter=letter)
    out.print(ws.relative(result.pdf), markup=False)
    for page in result.pages:
        out.print(ws.relative(page), markup=False)


def run() -> None:
    app()
