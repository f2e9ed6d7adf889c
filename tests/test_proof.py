"""Proof sheet, proof report, and preview --watch / --open, on real PDFs and real processes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pypdf import PdfReader
from typer.testing import CliRunner

from dispatch.cli import app
from tests.conftest import LETTER, flat, interruptible, pdf_text, row

DISPATCH = str(Path(sys.executable).parent / "dispatch")
runner = CliRunner()


def test_proof_sheet_and_report(make_workspace):
    rows = [row(f"S{i:02d}", f"State {i}", address=f"{i} First Avenue\nNew York") for i in range(14)]
    rows[3]["address"] = ""  # an unfilled field where most letters have one
    folder = make_workspace(rows)
    result = runner.invoke(app, ["-C", str(folder), "proof"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "out/letter/proof.pdf: 14 letters on 2 page(s)",
        "out/letter/proof.txt: the fields merged into each letter and the lines that differ"]
    sheet = PdfReader(str(folder / "out" / "letter" / "proof.pdf"))
    assert len(sheet.pages) == 2
    first, second = (flat(page.extract_text()) for page in sheet.pages)
    assert all(f"S{i:02d} State {i} · 1 p." in first for i in range(12))
    assert "S12 State 12" in second and "S13 State 13" in second and "S11" not in second
    report = (folder / "out" / "letter" / "proof.txt").read_text(encoding="utf-8")
    assert "Fields the letter and the templates use: address, id, language, mission, salutation, state" in report
    assert "[S01] State 1 (1 page)\n  id: S01\n  state: State 1\n" in report
    assert "    We write to State 1 about the Court." in report
    assert "Check these (1):\n  [S03] State 3: 'address' is empty\n" in report
    assert "Thank you." not in report  # the same in every letter


def wait_for(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_preview_watch_renders_again_when_a_template_changes(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    pdf = folder / "out" / "letter" / "NA.pdf"
    process = subprocess.Popen(preexec_fn=interruptible, args=[DISPATCH, "preview", "NA", "--watch"], cwd=folder, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: digest(pdf) is not None)
        first = digest(pdf)
        assert "Watched edit" not in flat(pdf_text(pdf))
        time.sleep(0.5)
        letter = folder / "letters" / "letter.md"
        letter.write_text(LETTER.replace("Thank you.", "Thank you. Watched edit."), encoding="utf-8")
        assert wait_for(lambda: digest(pdf) not in (None, first)), "the PDF was not rendered again"
        assert wait_for(lambda: "Watched edit" in flat(pdf_text(pdf)))
        css = folder / "templates" / "letter.css"
        css.write_text(css.read_text() + "\n.salutation { font-weight: 700; }\n")
        second = digest(pdf)
        assert wait_for(lambda: digest(pdf) not in (None, second)), "a CSS change did not render again"
        letter.write_text(LETTER.replace("{{ state }}", "{{ sate }}"), encoding="utf-8")
        time.sleep(2.0)
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("rendered out/letter/NA.pdf in ")
    assert any("(letters/letter.md changed)" in line for line in lines[1:])
    assert any("(templates/letter.css changed)" in line for line in lines[1:])
    assert "error: letters/letter.md:10: 'sate' is undefined" in stderr
    assert "not rendered (letters/letter.md changed); fix the file and save it again" in stderr
    assert "Traceback" not in stderr


def test_preview_open_hands_the_pdf_to_the_viewer(make_workspace, tmp_path):
    # No desktop here: a stand-in `xdg-open` on PATH records what it was asked to open.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "opened.txt"
    viewer = bin_dir / "xdg-open"
    viewer.write_text(f"#!/bin/sh\necho \"$1\" > {record}\n")
    viewer.chmod(0o755)
    folder = make_workspace([row("NA", "Namibia")])
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    result = subprocess.run([DISPATCH, "preview", "NA", "--open"], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert wait_for(record.exists, 10)
    assert record.read_text().strip() == str(folder / "out" / "letter" / "NA.pdf")


def test_preview_open_without_a_viewer_says_so(make_workspace, tmp_path):
    folder = make_workspace([row("NA", "Namibia")])
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    result = subprocess.run([DISPATCH, "preview", "NA", "--open"], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    assert result.stderr == "no PDF viewer found on this computer; open out/letter/NA.pdf yourself\n"
