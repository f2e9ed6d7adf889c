"""Faults a laptop meets: Ctrl-C, a full disk, a damaged or busy journal. Real subprocesses, real files."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pypdf import PdfReader

from dispatch.journal import Journal
from tests.conftest import interruptible, row

DISPATCH = str(Path(sys.executable).parent / "dispatch")


def many(n: int) -> list[dict[str, str]]:
    return [row(f"R{i:03d}", f"State {i}") for i in range(n)]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_ctrl_c_during_render_stops_cleanly_and_a_rerun_finishes(make_workspace):
    folder = make_workspace(many(40))
    out = folder / "out" / "letter"
    process = subprocess.Popen(preexec_fn=interruptible, args=[DISPATCH, "render"], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and len(list(out.glob("*.pdf"))) >= 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert leftovers(folder) == []
    done = list(out.glob("*.pdf"))
    assert 3 <= len(done) < 40
    for pdf in done:  # every file present is a whole PDF
        assert len(PdfReader(str(pdf)).pages) >= 1
    again = subprocess.run([DISPATCH, "render"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(list(out.glob("*.pdf"))) == 40
    assert leftovers(folder) == []


def limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_gives_a_clear_error_and_no_partial_file(make_workspace):
    # RLIMIT_FSIZE makes every write past 40 kB fail, as a full disk would: the fonts WeasyPrint copies to
    # the temporary folder and the long letter's PDF cannot be written; the journal (under 40 kB) can.
    body = "\n\n".join(f"Paragraph {n}: the Court, {n * 7919} and {n * 104729}." for n in range(300))
    folder = make_workspace([row("NA", "Namibia")], letter=f"---\nsubject: Long\ndate: 2020-01-01\n---\n{body}\n")
    Journal(folder / "dispatch.db").close()  # the journal exists already, as after any earlier command
    result = subprocess.run([DISPATCH, "render"], cwd=folder, capture_output=True, text=True, timeout=120,
                            preexec_fn=limit_file_size(40_000))
    assert result.returncode == 1, result.stderr
    assert result.stderr == ("error: cannot render a PDF: File too large\n"
                             "  hint: check that the disk is not full, the temporary folder (TMPDIR) included\n")
    assert leftovers(folder) == [] and not (folder / "out").exists()


def test_output_folder_that_cannot_be_written(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    (folder / "out").write_text("a file where the output folder should be")
    result = subprocess.run([DISPATCH, "render"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == (f"error: {folder}/out/letter: cannot write NA.pdf: a file stands where a folder should be\n"
                             "  hint: check that the output folder is writable and the disk is not full\n")
    assert leftovers(folder) == []


def test_full_disk_while_writing_the_journal(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    result = subprocess.run([DISPATCH, "render"], cwd=folder, capture_output=True, text=True, timeout=120,
                            preexec_fn=limit_file_size(2_000))
    assert result.returncode == 1
    assert result.stderr.startswith("error: dispatch.db: cannot write the journal (disk I/O error)\n"
                                    "  hint: check that the campaign folder is writable and the disk is not full\n")
    assert not (folder / "out").exists()


def test_damaged_journal_stops_render_and_is_kept(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    (folder / "dispatch.db").write_bytes(b"\x00garbage" * 512)
    before = (folder / "dispatch.db").read_bytes()
    result = subprocess.run([DISPATCH, "render"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: dispatch.db: the journal is damaged or is not a dispatch journal\n")
    assert (folder / "dispatch.db").read_bytes() == before
    assert not (folder / "out").exists()


def test_busy_journal_is_reported_and_nothing_is_lost(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    first = subprocess.run([DISPATCH, "render"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0
    holder = sqlite3.connect(folder / "dispatch.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        env = dict(os.environ)
        # --force: the letter is up to date, and only a render that records something needs the journal.
        result = subprocess.run([DISPATCH, "render", "--force"], cwd=folder, capture_output=True, text=True,
                                timeout=120, env=env)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1
    assert "error: dispatch.db: the journal is in use by another dispatch command" in result.stderr
    db = sqlite3.connect(folder / "dispatch.db")
    assert db.execute("SELECT count(*) FROM events WHERE kind = 'rendered'").fetchone()[0] >= 1
    db.close()
