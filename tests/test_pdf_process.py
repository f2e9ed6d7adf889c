"""Rendering processes: RendererProcess (one renderer in a process of its own) runs what a renderer here runs
and ends without a word; the worker plan (who renders, decided once); what the fork server preloads."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dispatch.pdf.engine import PdfRenderer
from dispatch.pdf.master import MasterJob, master_html
from dispatch.pdf.pool import Job, WorkerPlan, warm_up, workers_for
from dispatch.pdf.process import PRELOAD, RendererProcess
from dispatch.regions import Marks
from tests.conftest import row

DISPATCH = str(Path(sys.executable).parent / "dispatch")
LETTER = "icc-states-parties-2020"
PAGE = '<html><head><link rel="stylesheet" href="letter.css"></head><body><p>{}</p></body></html>'


def test_the_fork_server_preloads_modules_that_exist():
    for name in PRELOAD:
        assert importlib.util.find_spec(name) is not None, name
    assert "dispatch.pdf.pool" in PRELOAD  # where the workers' functions are


def test_renderer_process_closed_with_an_answer_unread_ends_without_a_word(make_workspace, capfd):
    # dispatch preview of a letter that is up to date asks its renderer process nothing: the process's first
    # answer (the PDF variants) is never read, and the connection closes under it.
    templates = make_workspace([row("NA", "Namibia")]) / "templates"
    with RendererProcess(templates, start_method="fork" if sys.platform == "linux" else "spawn") as remote:
        assert remote._connection.poll(120), "the process never answered"
        child = remote._process
    assert not child.is_alive() and child.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err


def test_renderer_process_runs_jobs_as_a_renderer_here_runs_them(make_workspace, tmp_path):
    folder = make_workspace([row("NA", "Namibia")])
    templates = folder / "templates"
    job = Job("a", PAGE.format("Letter for Andorra"), tmp_path / "there" / "a.pdf")
    marks = Marks()
    html = ('<html><head><link rel="stylesheet" href="letter.css"></head><body>'
            f'<p data-variable="who" style="height:20pt">{marks.mark("who", False)}Andorra{marks.mark("who", True)}</p></body></html>')
    parts = marks.split(html)
    master = MasterJob(parts.group, master_html(parts), 1, parts.body, parts.word)
    with RendererProcess(templates) as remote:
        there, master_there = remote.run(job), remote.run(master)
    here = Job("a", job.html, tmp_path / "here" / "a.pdf").run(PdfRenderer(templates))
    assert there.problem is None and (there.pages, there.size, there.sha256) == (here.pages, here.size, here.sha256)
    assert (tmp_path / "there" / "a.pdf").read_bytes() == (tmp_path / "here" / "a.pdf").read_bytes()
    assert master_there == master.run(PdfRenderer(templates)) and master_there.slots[0].name == "who"


@pytest.mark.parametrize("jobs, whole, every_letter, here, expected", [
    (2, False, True, False, WorkerPlan(2, fork_server=True, start_now=True)),
    (2, False, False, False, WorkerPlan(2, fork_server=True, start_now=False)),
    (2, True, True, False, WorkerPlan(2, fork_server=False, start_now=True)),
    (2, False, True, True, WorkerPlan(1, fork_server=True, start_now=False)),
    (1, False, True, False, WorkerPlan(1, fork_server=True, start_now=False)),
])
def test_the_worker_plan(jobs, whole, every_letter, here, expected):
    assert workers_for(jobs, whole=whole, every_letter=every_letter, here=here) == expected


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server is Linux's")
@pytest.mark.skipif(bool(os.environ.get("DISPATCH_START_METHOD")), reason="a forced start method has no fork server")
def test_a_warmed_up_server_is_used_by_the_plan_that_needs_it_and_stopped_by_one_that_does_not(make_workspace, tmp_path):
    from multiprocessing import forkserver

    def server() -> int | None:
        return getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)

    templates = make_workspace([row("NA", "Namibia")]) / "templates"
    warm_up()
    assert server() is not None
    workers_for(2, here=True)  # nothing rendered by workers (render --format html, a renderer given)
    assert server() is None
    warm_up()
    warmed = server()
    plan = workers_for(2, every_letter=True)
    with plan.pool(templates) as pool:
        assert pool.started and server() == warmed
        [done] = list(pool.render([Job("a", PAGE.format("Andorra"), tmp_path / "a.pdf")]))
        assert done.problem is None and done.pages == 1
    assert server() is None  # stopped with its pool


@pytest.mark.slow
def test_preview_ends_without_a_traceback(sample):
    """dispatch preview NA, first rendering the letter, then with the letter up to date (its renderer process
    then closed without being asked anything): exit 0, the PNGs, nothing on stderr but warnings."""
    previews = sample / "out" / LETTER / "preview"
    for attempt in ("rendered", "up to date"):
        shutil.rmtree(previews, ignore_errors=True)
        result = subprocess.run([DISPATCH, "-C", str(sample), "preview", "NA"], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, (attempt, result.stderr)
        assert "Traceback" not in result.stderr and "Error" not in result.stderr, (attempt, result.stderr)
        assert sorted(p.name for p in previews.iterdir()) == ["NA-page1.png", "NA-page2.png", "NA-page3.png"], attempt
        assert result.stdout.splitlines()[0] == f"out/{LETTER}/NA.pdf"
