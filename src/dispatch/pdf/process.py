"""Processes that render: how they start (a fork server that preloaded WeasyPrint, or new interpreters),
how they end (with the command, quietly, their temporary files removed), and RendererProcess, one
renderer in a process of its own for a command that renders one letter (dispatch preview).

The worker pool (pool.py) starts its workers from here; nothing here prints: a process that finds the
command gone ends without a word.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

from dispatch.errors import DispatchError, RenderError
from dispatch.pdf.engine import PdfRenderer

_TEMPORARY_PREFIX = "dispatch-worker-"

# What the fork server imports once for all the workers it forks (see context): the workers' own functions
# (pool.py), the jobs they run (master.py, overlay.py, which import the rest of dispatch.pdf), and the
# parts of WeasyPrint and pikepdf that every job needs.
PRELOAD = ["dispatch.pdf.pool", "dispatch.pdf.master", "dispatch.pdf.overlay", "weasyprint", "weasyprint.html",
           "weasyprint.pdf.metadata", "pikepdf"]


def log_levels() -> dict[str, int]:
    """The verbosity of this command, for the processes it starts."""
    return {name: logging.getLogger(name or None).getEffectiveLevel() for name in ("", "weasyprint", "fontTools")}


def prepare(levels: dict[str, int]) -> None:
    """What every rendering process does first: leave Ctrl-C to the command, end with it, log as it does,
    and keep its temporary files in a folder of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command decides when to stop
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    _own_temporary_folder()


def _own_temporary_folder() -> None:
    """Put this process's temporary files in a folder of its own, removed as the process ends.

    WeasyPrint copies the @font-face fonts into a temporary folder that it removes when its font
    configuration is deleted; a forked process ends without deleting anything."""
    tempfile.tempdir = tempfile.mkdtemp(prefix=_TEMPORARY_PREFIX)
    Finalize(None, shutil.rmtree, args=(tempfile.tempdir, True), exitpriority=0)


def _exit_with_parent() -> None:
    """Stop this process when the command that started it is gone (killed): nobody would read its results.

    The command is the process that asked for this one, not its parent when a fork server made it: its
    sentinel (a pipe the command holds open) reads as closed once the command is gone. A temporary file
    this process was writing is removed by the next render (files.remove_stale_temporaries).
    """
    from multiprocessing.connection import wait

    command = multiprocessing.parent_process()
    if command is not None and command.sentinel is not None:
        wait([command.sentinel])
    else:
        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(0.5)
    if tempfile.tempdir and Path(tempfile.tempdir).name.startswith(_TEMPORARY_PREFIX):
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)  # its own folder (see _own_temporary_folder)
    os._exit(1)


START_METHOD_VARIABLE = "DISPATCH_START_METHOD"


def forced_start_method() -> str | None:
    """The start method DISPATCH_START_METHOD asks for (one of multiprocessing.get_all_start_methods()), or
    None when it is unset or empty. Forcing `spawn` on Linux runs what macOS and Windows run."""
    forced = os.environ.get(START_METHOD_VARIABLE, "").strip()
    if not forced:
        return None
    allowed = multiprocessing.get_all_start_methods()
    if forced not in allowed:
        raise RenderError(f"{START_METHOD_VARIABLE}={forced!r} is not a start method of this system",
                          hint=f"use one of: {', '.join(allowed)}, or unset {START_METHOD_VARIABLE}")
    return forced


def context(fork_server: bool = True):
    """Where the workers come from: the start method DISPATCH_START_METHOD forces, if set; otherwise a fork
    server that preloaded WeasyPrint on Linux (where fork exists), new interpreters elsewhere (or when
    fork_server is False)."""
    forced = forced_start_method()
    if forced is not None:
        found = get_context(forced)
        if forced == "forkserver":
            found.set_forkserver_preload(PRELOAD)
        return found
    if fork_server and sys.platform == "linux" and "forkserver" in multiprocessing.get_all_start_methods():
        found = get_context("forkserver")
        found.set_forkserver_preload(PRELOAD)
        return found
    return get_context("spawn")


@contextmanager
def skip_main_script():
    """Start processes that do not re-import the command's script as their __main__.

    `spawn` re-imports the parent's main script in each new process; for the `dispatch` command that
    is the whole CLI (Typer, Rich, pandas): most of a second and ~60 MB per worker, for nothing, since
    workers only run functions of dispatch.pdf. Without a __file__, spawn leaves __main__ alone.
    """
    main = sys.modules.get("__main__")
    path = main.__dict__.pop("__file__", None) if main is not None and main.__spec__ is None else None
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


def start_server() -> bool:
    """Start the fork server the workers come from, where there is one (Linux), and return at once: it
    imports WeasyPrint meanwhile. False where workers are new interpreters (they start with the pool)."""
    if context().get_start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    with skip_main_script():
        forkserver.ensure_running()
    return True


def stop_server() -> None:
    """Stop the fork server, if one runs, and wait for it: it holds the command's standard output open (a
    pipe reading it would wait for the server's own exit) and its CPU time counts as this command's.
    Its workers have stopped; what it holds needs no saving, so it is ended at once (SIGTERM)."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None or not hasattr(server, "_stop"):
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(OSError):
        server._stop()


def _serve_renderer(connection, templates: str, levels: dict[str, int], pdf_variant: str | None,
                    parents_end=None) -> None:
    """The process of a RendererProcess: import WeasyPrint, tell the PDF variants it writes, then answer each
    request (an HTML document to render, or a job to run) until the command closes the connection. Ends
    quietly when the command is gone, whether or not it read every answer."""
    import traceback

    from dispatch.pdf.engine import pdf_variants

    if parents_end is not None:  # forked: a copy of the other end, which would keep the connection open
        parents_end.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked: not the command's handler
    prepare(levels)
    try:
        connection.send(("variants", pdf_variants()))
        try:
            renderer, problem = PdfRenderer(Path(templates), pdf_variant=pdf_variant), None
        except DispatchError as exc:
            renderer, problem = None, exc.problem
        for name in PRELOAD:  # what the jobs it may be asked to run need (a letter's master and overlay)
            importlib.import_module(name)
        while True:
            kind, value = connection.recv()
            if renderer is None:
                connection.send(("problem", problem))
                continue
            try:
                connection.send(("pdf", renderer.render(value)) if kind == "render" else ("result", value.run(renderer)))
            except DispatchError as exc:
                connection.send(("problem", exc.problem))
    except (EOFError, OSError):  # the command closed the connection (or is gone): nothing more to do
        return
    except Exception:  # a bug: the command reports it, if it still listens
        with contextlib.suppress(OSError):
            connection.send(("bug", traceback.format_exc()))


class RendererProcess:
    """A PdfRenderer in a process of its own, started before it is needed; use it as a context manager.

    For a command that renders one letter in a new process (dispatch preview): importing WeasyPrint takes
    most of a second, and the process started here does it while this one reads and checks the campaign
    (pandas, Jinja2). render(html) gives what PdfRenderer.render gives, run(job) what job.run(renderer)
    gives (the same code makes the same bytes there); pdf_variants() what engine.pdf_variants does,
    without importing WeasyPrint here. Anything else asked of it is answered by a PdfRenderer in this
    process.

    The process starts as DISPATCH_START_METHOD says, if set; otherwise it is forked on Linux when this
    process has no other thread (a copy, at once: 0.15 to
    0.2 s sooner than a new interpreter, which must import Python's startup and dispatch.pdf
    again); it is spawned otherwise (another system, or threads that a fork could copy mid-work).
    """

    def __init__(self, templates: Path, *, pdf_variant: str | None = None, start_method: str | None = None) -> None:
        self.templates = templates
        self.pdf_variant = pdf_variant or None
        self._variants: tuple[str, ...] | None = None
        self._local: PdfRenderer | None = None
        if start_method is None:
            start_method = forced_start_method()
        if start_method is None:
            start_method = ("fork" if sys.platform == "linux" and threading.active_count() == 1
                            and "fork" in multiprocessing.get_all_start_methods() else "spawn")
        found = get_context(start_method)
        self._connection, theirs = found.Pipe()
        self._process = found.Process(target=_serve_renderer, daemon=True, args=(
            theirs, str(templates), log_levels(), self.pdf_variant, self._connection if start_method == "fork" else None))
        for stream in (sys.stdout, sys.stderr):  # nothing written before the fork may be written twice
            stream.flush()
        with skip_main_script():
            self._process.start()
        theirs.close()

    def pdf_variants(self) -> tuple[str, ...]:
        """The PDF variants WeasyPrint can write (waits until the process has imported it)."""
        if self._variants is None:
            self._variants = self._receive()
        return self._variants

    def render(self, html: str):
        """The PDF (an engine.Pdf), as PdfRenderer.render makes it; RenderError as it raises it."""
        return self._ask("render", html)

    def run(self, job: Any) -> Any:
        """What job.run(renderer) gives, run by the renderer of the process (a pool.Job, a MasterJob...)."""
        return self._ask("run", job)

    def _ask(self, kind: str, value: Any) -> Any:
        self.pdf_variants()  # the first answer of the process
        try:
            self._connection.send((kind, value))
        except OSError:
            self._stopped()
        return self._receive()

    def _receive(self):
        try:
            kind, value = self._connection.recv()
        except (EOFError, OSError):
            self._stopped()
        if kind == "problem":
            raise RenderError(value.message, file=value.file, line=value.line, column=value.column, hint=value.hint)
        if kind == "bug":
            raise RuntimeError(f"in the rendering process: {value}")
        return value

    def _stopped(self) -> None:  # raises
        raise RenderError("the rendering process stopped unexpectedly (out of memory, or killed)",
                          hint="run the command again") from None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._local is None:
            self._local = PdfRenderer(self.templates, pdf_variant=self.pdf_variant)
        return getattr(self._local, name)

    def close(self) -> None:
        """Stop the process (it holds nothing that needs saving: what it writes is written whole or not at all)."""
        self._connection.close()  # the process sees it closed and ends, removing its temporary files
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()

    def __enter__(self) -> "RendererProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
