"""Turn HTML documents into PDF files on disk, in parallel worker processes.

Used for letters by `dispatch render`, and for any other document made from templates/. Each worker
builds one PdfRenderer, so the fonts and the parsed stylesheets are reused for every document it
renders. No worker is a copy of the command: on Linux they are forked from a server process that a
new interpreter starts and that imports WeasyPrint once (start method `forkserver`, WeasyPrint
preloaded), so the second worker costs a fork instead of a second second-long import; elsewhere each
worker is a new interpreter (`spawn`) that imports WeasyPrint itself. The parent ships HTML
strings; a worker writes the PDF itself (temporary name, then rename) and returns only its size, page
count and SHA-256, so memory does not grow with the number of documents. At most `window` documents
are in flight at once, and results come back in the order the jobs were given, so the output and the
journal are the same whatever the number of workers.

With one worker (or one document) everything runs in the calling process: no process to start.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import DispatchError, RenderError
from .pdf import Done, PdfRenderer, sha256, write_atomic

log = logging.getLogger(__name__)


def default_jobs() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Job:
    """One document to render: a name to report it by, its HTML, and where its PDF goes."""

    name: str
    html: str
    target: Path
    stage: bool = False  # leave the PDF under a temporary name for the caller to rename (Done.staged)

    def run(self, renderer: PdfRenderer) -> Done:
        return _render(renderer, self)


# The renderer of this worker process (built once by _start_worker).
_renderer: PdfRenderer | None = None


def _start_worker(templates: str, log_levels: dict[str, int], pdf_variant: str | None) -> None:
    global _renderer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop (see PdfPool.close)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    for name, level in log_levels.items():  # the same verbosity as the command that started us
        logging.getLogger(name or None).setLevel(level)
    _own_temporary_folder()
    _renderer = PdfRenderer(Path(templates), pdf_variant=pdf_variant)


_TEMPORARY_PREFIX = "dispatch-worker-"


def _own_temporary_folder() -> None:
    """Put this process's temporary files in a folder of its own, removed as the process ends.

    WeasyPrint copies the @font-face fonts into a temporary folder that it removes when its font
    configuration is deleted; a forked process ends without deleting anything."""
    tempfile.tempdir = tempfile.mkdtemp(prefix=_TEMPORARY_PREFIX)
    Finalize(None, shutil.rmtree, args=(tempfile.tempdir, True), exitpriority=0)


def _exit_with_parent() -> None:
    """Stop this worker when the command that started it is gone (killed): nobody would read its results.

    The command is the process that asked for this one, not its parent when a fork server made it: its
    sentinel (a pipe the command holds open) reads as closed once the command is gone. A temporary file
    this worker was writing is removed by the next render (pdf.remove_stale_temporaries).
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


def _render(renderer: PdfRenderer, job: Job) -> Done:
    try:
        pdf = renderer.render(job.html)
        written = write_atomic(job.target, pdf.data, staged=job.stage)
    except DispatchError as exc:
        return Done(job.name, job.target, problem=exc.problem)
    return Done(job.name, job.target, pdf.pages, len(pdf.data), sha256(pdf.data),
                staged=written if job.stage else None)


def _render_in_worker(job):
    return job.run(_renderer)


def _ready() -> int:
    return os.getpid()


# What the fork server imports once for all the workers it forks (see _context).
PRELOAD = ["dispatch.workers", "dispatch.layers", "weasyprint", "weasyprint.html", "weasyprint.pdf.metadata", "pikepdf"]


def _context(fork_server: bool = True):
    """Where the workers come from: a fork server that preloaded WeasyPrint on Linux, new interpreters elsewhere
    (or when fork_server is False)."""
    if fork_server and sys.platform == "linux":
        context = get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return get_context("spawn")


@contextmanager
def _workers_skip_main_script():
    """Start processes that do not re-import the command's script as their __main__.

    `spawn` re-imports the parent's main script in each new process; for the `dispatch` command that
    is the whole CLI (Typer, Rich, pandas): most of a second and ~60 MB per worker, for nothing, since
    workers only run functions of this module. Without a __file__, spawn leaves __main__ alone.
    """
    main = sys.modules.get("__main__")
    path = main.__dict__.pop("__file__", None) if main is not None and main.__spec__ is None else None
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


class PdfPool:
    """Renders Jobs with `jobs` worker processes; use it as a context manager.

        with PdfPool(templates, jobs=2) as pool:
            for done in pool.render(jobs):
                ...
    """

    def __init__(self, templates: Path, jobs: int | None = None, *, window: int | None = None,
                 renderer: PdfRenderer | None = None, pdf_variant: str | None = None,
                 fork_server: bool = True) -> None:
        """renderer, if given, renders in this process whenever it renders here (one worker, one document).

        pdf_variant (e.g. "pdf/a-3u") is the kind of PDF every worker writes; a renderer given has its own.
        fork_server False: workers are new interpreters even where a fork server could make them. They take
        longer to start, but a whole letter renders in them with about a tenth less CPU time than in a
        forked process (measured, bench/render.py --whole); for many small overlay jobs the start matters more.
        """
        self.templates = templates
        self.pdf_variant = renderer.pdf_variant if renderer is not None else pdf_variant
        self.jobs = max(1, jobs or default_jobs())
        self.window = max(self.jobs + 1, window or 2 * self.jobs)
        self._executor: ProcessPoolExecutor | None = None
        self._local: PdfRenderer | None = renderer
        self._started = False  # start() was called: workers, not this process, render from now on
        self.fork_server = fork_server

    def render(self, jobs: Iterable[Any], *, count: int | None = None) -> Iterator[Any]:
        """Run the jobs, yielding each one's result (job.run(renderer)) in the order given: a Done for a Job.

        count, when known, lets a single document render in this process instead of starting workers
        (when they are not started yet: once they are, they have WeasyPrint imported and this process not).
        """
        if self.jobs == 1 or (count == 1 and not self._started):
            yield from self._render_here(jobs)
            return
        executor = self._start()
        pending: deque[Future] = deque()
        try:
            for job in jobs:
                pending.append(executor.submit(_render_in_worker, job))
                while len(pending) >= self.window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            raise _stopped() from None
        finally:
            for future in pending:
                future.cancel()

    @property
    def started(self) -> bool:
        """Whether documents go to the workers (start() was called), not to this process."""
        return self.jobs > 1 and self._started

    def submit(self, job: Any) -> Future:
        """Start one job now; its Future gives job.run(renderer). With one worker it runs here, at once."""
        if self.jobs == 1:
            future: Future = Future()
            future.set_result(next(self._render_here([job])))
            return future
        try:
            return self._start().submit(_render_in_worker, job)
        except BrokenProcessPool:
            raise _stopped() from None

    def result(self, future: Future) -> Any:
        """What a submitted job gave (RenderError if its worker stopped)."""
        try:
            return future.result()
        except BrokenProcessPool:
            raise _stopped() from None

    def _render_here(self, jobs: Iterable[Job]) -> Iterator[Done]:
        for job in jobs:
            if self._local is None:
                self._local = PdfRenderer(self.templates, pdf_variant=self.pdf_variant)
            yield job.run(self._local)

    def start(self) -> None:
        """Have the workers get ready now: they take most of a second to import WeasyPrint, which they do
        while this process goes on (the fork server imports it once; without one, each worker does)."""
        if self.jobs == 1:
            return
        self._started = True
        if not (self.fork_server and start_server()):
            self._start()

    def _start(self) -> ProcessPoolExecutor:
        """The executor, its workers started (waits, with a fork server, until it has preloaded WeasyPrint)."""
        if self._executor is None:
            self._started = True
            levels = {name: logging.getLogger(name or None).getEffectiveLevel()
                      for name in ("", "weasyprint", "fontTools")}
            self._executor = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=_context(self.fork_server), initializer=_start_worker,
                initargs=(str(self.templates), levels, self.pdf_variant))
            with _workers_skip_main_script():  # processes are started by submit(): start them all here
                for _ in range(self.jobs):
                    self._executor.submit(_ready)
        return self._executor

    def close(self) -> None:
        """Stop the workers. Documents being rendered are finished (and written whole), the rest dropped."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._started:
            self._started = False
            stop_server()

    def __enter__(self) -> "PdfPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_server() -> bool:
    """Start the fork server the workers come from, where there is one (Linux), and return at once: it
    imports WeasyPrint meanwhile. False where workers are new interpreters (they start with the pool)."""
    context = _context()
    if context.get_start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    with _workers_skip_main_script():
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


def _stopped() -> RenderError:
    return RenderError("a rendering process stopped unexpectedly (out of memory, or killed)",
                       hint="run the command again; it continues where it stopped (--jobs 1 renders in one process)")


def _serve_renderer(connection, templates: str, log_levels: dict[str, int], pdf_variant: str | None,
                    parents_end=None) -> None:
    """The process of a RendererProcess: import WeasyPrint, tell the PDF variants it writes, then render
    each HTML document it is sent, until the connection closes."""
    import traceback

    from .pdf import pdf_variants

    if parents_end is not None:  # forked: a copy of the other end, which would keep the connection open
        parents_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked: not the command's handler
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    for name, level in log_levels.items():
        logging.getLogger(name or None).setLevel(level)
    _own_temporary_folder()
    try:
        connection.send(("variants", pdf_variants()))
        try:
            renderer, problem = PdfRenderer(Path(templates), pdf_variant=pdf_variant), None
        except DispatchError as exc:
            renderer, problem = None, exc.problem
        while True:
            try:
                html = connection.recv()
            except EOFError:
                return
            if renderer is None:
                connection.send(("problem", problem))
                continue
            try:
                connection.send(("pdf", renderer.render(html)))
            except DispatchError as exc:
                connection.send(("problem", exc.problem))
    except (BrokenPipeError, EOFError):  # the command is gone
        return
    except Exception:  # a bug: the command reports it
        connection.send(("bug", traceback.format_exc()))


class RendererProcess:
    """A PdfRenderer in a process of its own, started before it is needed; use it as a context manager.

    For a command that renders one document in a new process (dispatch preview): importing WeasyPrint
    takes most of a second, and the process started here does it while this one reads and checks the
    campaign (pandas, Jinja2). render(html) gives what PdfRenderer.render gives (the same code makes the
    same bytes there); pdf_variants() what pdf.pdf_variants does, without importing WeasyPrint here.
    Anything else asked of it is answered by a PdfRenderer in this process.

    The process is forked on Linux when this process has no other thread (a copy, at once: 0.15 to
    0.2 s sooner than a new interpreter, which must import Python's startup and dispatch.pdf
    again); it is spawned otherwise (another system, or threads that a fork could copy mid-work).
    """

    def __init__(self, templates: Path, *, pdf_variant: str | None = None, start_method: str | None = None) -> None:
        self.templates = templates
        self.pdf_variant = pdf_variant or None
        self._variants: tuple[str, ...] | None = None
        self._local: PdfRenderer | None = None
        if start_method is None:
            start_method = "fork" if sys.platform == "linux" and threading.active_count() == 1 else "spawn"
        context = get_context(start_method)
        self._connection, theirs = context.Pipe()
        levels = {name: logging.getLogger(name or None).getEffectiveLevel() for name in ("", "weasyprint", "fontTools")}
        self._process = context.Process(target=_serve_renderer, daemon=True, args=(
            theirs, str(templates), levels, self.pdf_variant, self._connection if start_method == "fork" else None))
        for stream in (sys.stdout, sys.stderr):  # nothing written before the fork may be written twice
            stream.flush()
        with _workers_skip_main_script():
            self._process.start()
        theirs.close()

    def pdf_variants(self) -> tuple[str, ...]:
        """The PDF variants WeasyPrint can write (waits until the process has imported it)."""
        if self._variants is None:
            self._variants = self._receive()
        return self._variants

    def render(self, html: str):
        """The PDF (a pdf.Pdf), as PdfRenderer.render makes it; RenderError as it raises it."""
        self.pdf_variants()  # the first answer of the process
        try:
            self._connection.send(html)
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
        """Stop the process (it holds nothing that needs saving: this process writes the PDFs)."""
        self._connection.close()  # the process sees it closed and ends, removing its temporary files
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()

    def __enter__(self) -> "RendererProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
