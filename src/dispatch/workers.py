"""Turn HTML documents into PDF files on disk, in parallel worker processes.

Used for letters by `dispatch render`, and for any other document made from templates/. Each worker
is a fresh interpreter (start method `spawn`) that imports WeasyPrint and builds one PdfRenderer, so
the fonts and the parsed stylesheets are reused for every document it renders. The parent ships HTML
strings; a worker writes the PDF itself (temporary name, then rename) and returns only its size, page
count and SHA-256, so memory does not grow with the number of documents. At most `window` documents
are in flight at once, and results come back in the order the jobs were given, so the output and the
journal are the same whatever the number of workers.

With one worker (or one document) everything runs in the calling process: no process to start.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import DispatchError, Problem, RenderError
from .render import Done, PdfRenderer, sha256, write_atomic

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

    def run(self, renderer: PdfRenderer) -> Done:
        return _render(renderer, self)


# The renderer of this worker process (built once by _start_worker).
_renderer: PdfRenderer | None = None


def _start_worker(templates: str, log_levels: dict[str, int], pdf_variant: str | None) -> None:
    global _renderer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop (see PdfPool.close)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    for name, level in log_levels.items():  # the same verbosity as the command that started us
        logging.getLogger(name or None).setLevel(level)
    _renderer = PdfRenderer(Path(templates), pdf_variant=pdf_variant)


def _exit_with_parent(parent: int) -> None:
    """Stop this worker when the command that started it is gone (killed): nobody would read its results.

    A temporary file it was writing is removed by the next render (render.remove_stale_temporaries).
    """
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _render(renderer: PdfRenderer, job: Job) -> Done:
    try:
        pdf = renderer.render(job.html)
        write_atomic(job.target, pdf.data)
    except DispatchError as exc:
        return Done(job.name, job.target, problem=exc.problem)
    return Done(job.name, job.target, pdf.pages, len(pdf.data), sha256(pdf.data))


def _render_in_worker(job):
    return job.run(_renderer)


def _ready() -> int:
    return os.getpid()


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
                 renderer: PdfRenderer | None = None, pdf_variant: str | None = None) -> None:
        """renderer, if given, renders in this process whenever it renders here (one worker, one document).

        pdf_variant (e.g. "pdf/a-3u") is the kind of PDF every worker writes; a renderer given has its own.
        """
        self.templates = templates
        self.pdf_variant = renderer.pdf_variant if renderer is not None else pdf_variant
        self.jobs = max(1, jobs or default_jobs())
        self.window = max(self.jobs + 1, window or 2 * self.jobs)
        self._executor: ProcessPoolExecutor | None = None
        self._local: PdfRenderer | None = renderer

    def render(self, jobs: Iterable[Any], *, count: int | None = None) -> Iterator[Any]:
        """Run the jobs, yielding each one's result (job.run(renderer)) in the order given: a Done for a Job.

        count, when known, lets a single document render in this process instead of starting workers.
        """
        if self.jobs == 1 or count == 1:
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
            raise RenderError("a rendering process stopped unexpectedly (out of memory, or killed)",
                              hint="run the command again; it continues where it stopped "
                                   "(--jobs 1 renders in one process)") from None
        finally:
            for future in pending:
                future.cancel()

    def _render_here(self, jobs: Iterable[Job]) -> Iterator[Done]:
        for job in jobs:
            if self._local is None:
                self._local = PdfRenderer(self.templates, pdf_variant=self.pdf_variant)
            yield job.run(self._local)

    def start(self) -> None:
        """Start the worker processes now (they take about a second to import WeasyPrint)."""
        if self.jobs > 1:
            self._start()

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            levels = {name: logging.getLogger(name or None).getEffectiveLevel()
                      for name in ("", "weasyprint", "fontTools")}
            self._executor = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=get_context("spawn"), initializer=_start_worker,
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

    def __enter__(self) -> "PdfPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve_renderer(connection, templates: str, log_levels: dict[str, int], pdf_variant: str | None,
                    parents_end=None) -> None:
    """The process of a RendererProcess: import WeasyPrint, tell the PDF variants it writes, then render
    each HTML document it is sent, until the connection closes."""
    import traceback

    from .render import pdf_variants

    if parents_end is not None:  # forked: a copy of the other end, which would keep the connection open
        parents_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked: not the command's handler
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    for name, level in log_levels.items():
        logging.getLogger(name or None).setLevel(level)
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
    same bytes there); pdf_variants() what render.pdf_variants does, without importing WeasyPrint here.
    Anything else asked of it is answered by a PdfRenderer in this process.

    The process is forked on Linux when this process has no other thread (a copy, at once: 0.15 to
    0.2 s sooner than a new interpreter, which must import Python's startup and dispatch.render
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
        """The PDF (a render.Pdf), as PdfRenderer.render makes it; RenderError as it raises it."""
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
        self._connection.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()

    def __enter__(self) -> "RendererProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
