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
A render decides once who renders (workers_for: how many workers, forked or new interpreters, started
at once or when needed); a command that may render calls warm_up first, as early as it can.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from dispatch.errors import DispatchError, RenderError
from dispatch.files import sha256, write_atomic
from dispatch.pdf.engine import Done, PdfRenderer
from dispatch.pdf.process import (RendererProcess, context, log_levels, prepare, skip_main_script, start_server,
                                  stop_server)

__all__ = ["Done", "Job", "PdfPool", "RendererProcess", "WorkerPlan", "default_jobs", "start_server", "stop_server",
           "warm_up", "workers_for"]

log = logging.getLogger(__name__)


def default_jobs() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def warm_up() -> None:
    """Have the workers' WeasyPrint imported now, while the command reads its options and the campaign.

    For a command that may render PDFs, called as early as it can be (before the options are read): it
    starts the fork server the workers come from (Linux; elsewhere it does nothing, workers start with
    their pool). workers_for, called once the command knows what it renders, then uses it or stops it.
    A DISPATCH_START_METHOD that names no start method is reported by the render, not here."""
    with contextlib.suppress(RenderError):
        start_server()


@dataclass(frozen=True)
class WorkerPlan:
    """Who renders the letters of one render: decided once, by workers_for."""

    jobs: int  # processes that render; 1: this process renders, no worker is started
    fork_server: bool  # workers forked from the server that preloaded WeasyPrint, else new interpreters
    start_now: bool  # workers start at once (every letter will be rendered), importing WeasyPrint meanwhile

    def pool(self, templates: Path, *, pdf_variant: str | None = None,
             renderer: PdfRenderer | RendererProcess | None = None) -> "PdfPool":
        """The pool that renders as planned (a context manager; its workers started if start_now)."""
        pool = PdfPool(templates, self.jobs, renderer=renderer, pdf_variant=pdf_variant, fork_server=self.fork_server)
        if self.start_now:
            pool.start()
        return pool


def workers_for(jobs: int | None = None, *, whole: bool = False, every_letter: bool = False,
                here: bool = False) -> WorkerPlan:
    """The workers of one render, decided once.

    jobs: worker processes asked for (None: one per CPU). here: render in this process (a renderer was
    given, or nothing will be rendered, as with --format html). whole: every letter is rendered whole
    (--no-layers, a PDF variant that cannot be layered); workers are then new interpreters, in which a
    whole letter takes about a tenth less CPU than in a forked process (for many small overlay jobs,
    the fork server's quick start matters more). every_letter: every letter will be rendered (forced,
    or none rendered yet); workers then start at once, so that they import WeasyPrint while the
    campaign is checked, and letters are rendered while it is.

    A fork server that warm_up started and that this plan does not use at once is stopped: it would take
    CPU time from the check. If letters turn out to need rendering, the pool starts it again."""
    count = 1 if here else max(1, jobs or default_jobs())
    plan = WorkerPlan(count, fork_server=not whole, start_now=count > 1 and every_letter)
    if not (plan.fork_server and plan.start_now):
        stop_server()
    return plan


@dataclass(frozen=True)
class Job:
    """One document to render: a name to report it by, its HTML, and where its PDF goes."""

    name: str
    html: str
    target: Path
    stage: bool = False  # leave the PDF under a temporary name for the caller to rename (Done.staged)

    def run(self, renderer: PdfRenderer) -> Done:
        try:
            pdf = renderer.render(self.html)
            written = write_atomic(self.target, pdf.data, staged=self.stage)
        except DispatchError as exc:
            return Done(self.name, self.target, problem=exc.problem)
        return Done(self.name, self.target, pdf.pages, len(pdf.data), sha256(pdf.data),
                    staged=written if self.stage else None)


# The renderer of this worker process (built once by _start_worker).
_renderer: PdfRenderer | None = None


def _start_worker(templates: str, levels: dict[str, int], pdf_variant: str | None) -> None:
    global _renderer
    prepare(levels)
    _renderer = PdfRenderer(Path(templates), pdf_variant=pdf_variant)


def _render_in_worker(job):
    return job.run(_renderer)


def _ready() -> int:
    return os.getpid()


def _run(renderer: PdfRenderer | RendererProcess, job: Any) -> Any:
    """job.run(renderer), in the renderer's own process for a RendererProcess."""
    return renderer.run(job) if isinstance(renderer, RendererProcess) else job.run(renderer)


class PdfPool:
    """Renders Jobs with `jobs` worker processes; use it as a context manager.

        with PdfPool(templates, jobs=2) as pool:
            for done in pool.render(jobs):
                ...
    """

    def __init__(self, templates: Path, jobs: int | None = None, *, window: int | None = None,
                 renderer: PdfRenderer | RendererProcess | None = None, pdf_variant: str | None = None,
                 fork_server: bool = True) -> None:
        """renderer, if given, renders whenever the pool renders here (one worker, one document): a PdfRenderer
        in this process, or a RendererProcess in its own.

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
        self._local: PdfRenderer | RendererProcess | None = renderer
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
            yield _run(self._local, job)

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
            self._executor = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=context(self.fork_server), initializer=_start_worker,
                initargs=(str(self.templates), log_levels(), self.pdf_variant))
            with skip_main_script():  # processes are started by submit(): start them all here
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


def _stopped() -> RenderError:
    return RenderError("a rendering process stopped unexpectedly (out of memory, or killed)",
                       hint="run the command again; it continues where it stopped (--jobs 1 renders in one process)")


