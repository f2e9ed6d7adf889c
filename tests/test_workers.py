"""The worker pool: PDFs written by worker processes, results in order, a bad document does not stop the rest;
an interrupted render leaves no partial file and the next run finishes the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from dispatch.errors import RenderError
from dispatch.files import sha256
from dispatch.pdf.engine import PdfRenderer, pdf_variants
from dispatch.pdf.pool import Job, PdfPool
from dispatch.pdf.process import RendererProcess
from tests.conftest import flat, interruptible, pdf_text, row

DISPATCH = str(Path(sys.executable).parent / "dispatch")

PAGE = '<html><head><link rel="stylesheet" href="letter.css"></head><body><p>{}</p></body></html>'


def test_pool_writes_pdfs_in_order_and_reports_a_bad_document(make_workspace, tmp_path):
    templates = make_workspace([row("NA", "Namibia")]) / "templates"
    jobs = [Job("a", PAGE.format("Letter for Andorra"), tmp_path / "a.pdf"),
            Job("b", PAGE.replace("letter.css", "http://127.0.0.1:9/x.css").format("b"), tmp_path / "b.pdf"),
            Job("c", PAGE.format("Letter for Chile"), tmp_path / "c.pdf")]
    with PdfPool(templates, jobs=2, window=3) as pool:
        results = list(pool.render(iter(jobs)))
    assert [d.name for d in results] == ["a", "b", "c"]
    a, b, c = results
    assert b.problem is not None and "never fetches from the network" in b.problem.message
    assert not (tmp_path / "b.pdf").exists()
    for done, text in ((a, "Letter for Andorra"), (c, "Letter for Chile")):
        assert done.problem is None and done.pages == 1
        assert sha256(done.target.read_bytes()) == done.sha256 and done.target.stat().st_size == done.size
        assert text in flat(pdf_text(done.target))
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


@pytest.mark.parametrize("start_method", ["spawn", "fork"] if sys.platform == "linux" else ["spawn"])
def test_renderer_process_renders_what_a_renderer_here_renders(make_workspace, start_method):
    templates = make_workspace([row("NA", "Namibia")]) / "templates"
    page = PAGE.format("Letter for Andorra")
    with RendererProcess(templates, pdf_variant="pdf/a-3u", start_method=start_method) as remote:
        assert remote.pdf_variants() == pdf_variants()
        pdf = remote.render(page)
        with pytest.raises(RenderError) as caught:
            remote.render(PAGE.replace("letter.css", "http://127.0.0.1:9/x.css"))
        assert "never fetches from the network" in str(caught.value)
        assert remote.render(page).data == pdf.data  # still serving after a bad document
        process = remote._process
    _wait_until(lambda: not process.is_alive(), "the renderer process outlived its context")
    here = PdfRenderer(templates, pdf_variant="pdf/a-3u").render(page)
    assert (pdf.data, pdf.pages, pdf.anchors) == (here.data, here.pages, here.anchors)


def test_renderer_process_closed_before_use_stops_at_once(make_workspace):
    templates = make_workspace([row("NA", "Namibia")]) / "templates"
    with RendererProcess(templates) as remote:
        process = remote._process
    _wait_until(lambda: not process.is_alive(), "the renderer process outlived its context")


def many_rows(count: int) -> list[dict[str, str]]:
    return [row(f"R{number:03d}", f"State {number}") for number in range(count)]


def render_in_background(make_workspace, letters: int, until_pdfs: int) -> tuple[Path, Path, subprocess.Popen]:
    """`dispatch render --jobs 2` on a new campaign, running until it has written until_pdfs PDFs."""
    folder = make_workspace(many_rows(letters))
    out = folder / "out" / "letter"
    # A process group of its own, as a terminal gives a command: a signal to the group reaches the workers too.
    process = subprocess.Popen(preexec_fn=interruptible, args=[DISPATCH, "-C", str(folder), "render", "--jobs", "2"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("*.pdf"))) < until_pdfs:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no PDF appeared"
        time.sleep(0.05)
    return folder, out, process


def check_finished(folder: Path, count: int) -> None:
    out = folder / "out" / "letter"
    result = subprocess.run([DISPATCH, "-C", str(folder), "render"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.iterdir() if not p.name.endswith(".pdf")] == []
    assert len(list(out.glob("*.pdf"))) == count
    for pdf in out.glob("*.pdf"):
        assert len(PdfReader(str(pdf)).pages) == 1
    again = subprocess.run([DISPATCH, "-C", str(folder), "render"], capture_output=True, text=True, timeout=600)
    assert again.stdout.splitlines()[-1].startswith(f"rendered 0, {count} up to date, 0 failed into out/letter/ in ")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(make_workspace):
    folder, out, process = render_in_background(make_workspace, 12, until_pdfs=2)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.endswith("interrupted: nothing half-written was left behind; run the command again to finish.\n")
    assert "Traceback" not in stderr
    assert [p.name for p in out.iterdir() if not p.name.endswith(".pdf")] == []
    assert len(list(out.glob("*.pdf"))) < 12
    check_finished(folder, 12)


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


@pytest.mark.slow
def test_workers_of_a_killed_render_stop_and_the_rerun_finishes(make_workspace):
    folder, out, process = render_in_background(make_workspace, 8, until_pdfs=1)
    # On Linux the workers are forked by a fork server (a child of the command); elsewhere they are its children.
    server = [pid for pid in _children(process.pid) if "forkserver" in _cmdline(pid)]
    workers = _children(server[0]) if server else [pid for pid in _children(process.pid) if "spawn_main" in _cmdline(pid)]
    assert len(workers) == 2
    os.kill(process.pid, signal.SIGKILL)  # the command only: its workers must notice and stop by themselves
    process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers + server):
        assert time.monotonic() < deadline, "workers outlived the command"
        time.sleep(0.1)
    for pdf in out.glob("*.pdf"):  # whatever was renamed into place is a whole PDF
        assert len(PdfReader(str(pdf)).pages) == 1
    check_finished(folder, 8)


def _wait_until(condition, what: str, seconds: float = 60) -> None:
    """Poll for a condition with a generous deadline (a busy machine may take its time)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_forced_spawn_starts_the_workers_as_new_interpreters(make_workspace, tmp_path, monkeypatch):
    from dispatch.pdf.process import context

    monkeypatch.setenv("DISPATCH_START_METHOD", "spawn")
    templates = make_workspace([row("NA", "Namibia")]) / "templates"
    assert context().get_start_method() == "spawn" and context(fork_server=False).get_start_method() == "spawn"
    with PdfPool(templates, jobs=2) as pool:
        pool.start()
        done = list(pool.render(iter([Job("a", PAGE.format("Letter for Andorra"), tmp_path / "a.pdf")])))
        assert done[0].problem is None
        workers = list(pool._executor._processes.values())
        assert workers and {type(worker).__name__ for worker in workers} == {"SpawnProcess"}
        assert all("spawn_main" in _cmdline(worker.pid) for worker in workers)  # they answered: started
    with RendererProcess(templates) as remote:
        assert type(remote._process).__name__ == "SpawnProcess"
        assert remote.pdf_variants()  # it answered: its interpreter is running
        assert "spawn_main" in _cmdline(remote._process.pid)


def test_an_unknown_start_method_is_refused_with_the_allowed_ones(monkeypatch):
    import multiprocessing

    from dispatch.pdf.process import context

    monkeypatch.setenv("DISPATCH_START_METHOD", "teleport")
    with pytest.raises(RenderError) as caught:
        context()
    message = str(caught.value) + (caught.value.problem.hint or "")
    assert "DISPATCH_START_METHOD" in message and "teleport" in message
    assert all(method in message for method in multiprocessing.get_all_start_methods())
