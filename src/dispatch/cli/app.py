"""The Typer application: global options, library errors turned into messages and exit codes, the exit.

The command line is the only part of dispatch that prints, prompts, shows progress or configures logging.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable

import typer
from rich.console import Console
from typer.core import TyperCommand

from dispatch import __version__
from dispatch.errors import DispatchError, Problem

if TYPE_CHECKING:
    from rich.progress import Progress

    from dispatch.workspace import Workspace
class Command(TyperCommand):
    """A command whose help names each value as a user writes it (ID, N, FOLDER, PDF...): an argument is shown
    by its metavar alone, without Typer's Python type (`<list[str]>`), and a range in words."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument" and param.metavar:
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: typer.Context, formatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if param.param_type_name == "argument":
                sections["Arguments"].append((param.metavar or name, _range_in_words(param, text)))
            else:
                sections["Options"].append((name, _range_in_words(param, text)))
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _range_in_words(param, text: str) -> str:
    """"[x>=1]" (Typer's notation for min=1) as "[at least 1]"."""
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is None and high is None:
        return text
    typer_says = f"x<={high}" if low is None else f"x>={low}" if high is None else f"{low}<=x<={high}"
    words = f"at most {high}" if low is None else f"at least {low}" if high is None else f"{low} to {high}"
    return text.replace(typer_says, words)


class Typer(typer.Typer):
    """Commands made with @app.command() get the help of Command."""

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs):
        return super().command(name, cls=cls or Command, **kwargs)


app = Typer(
    name="dispatch",
    help="Merge one letter with a list of recipients, render a PDF for each, and send or print them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)

out = Console(highlight=False, soft_wrap=True, emoji=False)

err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class State:
    workspace_dir: Path = Path(".")
    quiet: bool = False


state = State()


def print_problem(problem: Problem) -> None:
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
                print_problem(problem)
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


def workspace() -> Workspace:
    """The campaign folder given with -C (default: the current folder)."""
    from dispatch import campaign

    return campaign.open_workspace(state.workspace_dir)


def _show_version(value: bool) -> None:
    if value:  # eager: answered while the options are read, before a command is asked for
        out.print(f"dispatch {__version__}")
        raise typer.Exit()


@app.callback()
def main(workspace: Annotated[Path, typer.Option("-C", "--workspace", metavar="FOLDER", help="The campaign folder (default: the current folder).", show_default=False)] = Path("."),
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


def progress_bar() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err,
                    disable=state.quiet or not err.is_terminal, transient=True)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # a polite kill stops as cleanly as Ctrl-C


def run() -> None:
    """The command line (dispatch.launch.run, the `dispatch` command, has started what it can start early)."""
    signal.signal(signal.SIGTERM, _stop)
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


