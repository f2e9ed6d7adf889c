"""The sample campaign (letters/, recipients.csv, templates/, dispatch.toml at the repository's root), copied
into a test's folder to be broken on purpose, and the command line run on it as a user runs it."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from typer.testing import CliRunner

from dispatch.cli import app

REPO = Path(__file__).resolve().parent.parent
LETTER = "letters/icc-states-parties-2020.md"
OUTBOX = "out/icc-states-parties-2020/outbox"


def sample_campaign(folder: Path, only: list[str] | None = None) -> Path:
    """A copy of the sample campaign in folder/sample; only: keep these recipients (ids), in the sample's order."""
    target = folder / "sample"
    target.mkdir(parents=True)
    for name in ("dispatch.toml", "recipients.csv"):
        shutil.copy(REPO / name, target / name)
    for name in ("letters", "templates"):
        shutil.copytree(REPO / name, target / name)
    if only is not None:
        with open(target / "recipients.csv", encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0] in only]
        assert len(kept) == len(only) + 1, "an id to keep is not in the sample"
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(kept)
        (target / "recipients.csv").write_text(buffer.getvalue(), encoding="utf-8")
    return target


def dispatch(folder: Path, *args: str):
    """The command's result as a user sees it (exit code, stdout, stderr); exceptions are the CLI's to report."""
    return CliRunner().invoke(app, ["-C", str(folder), *args])


def line_of(path: Path, text: str) -> int:
    """The number of the first line of path that holds text."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} is not in {path}")


def add_to_layout(campaign: Path, statement: str) -> int:
    """Put statement at the top of the letter's body in templates/letter.html.j2; its line number."""
    layout = campaign / "templates" / "letter.html.j2"
    lines = layout.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, start=1) if line.startswith("<main"))
    lines.insert(number, statement + "\n")
    layout.write_text("".join(lines), encoding="utf-8")
    return number + 1


def append_line(path: Path, text: str) -> int:
    """Add text as the last line of path (a new file if there is none); its line number."""
    source = path.read_text(encoding="utf-8") if path.exists() else ""
    if source and not source.endswith("\n"):
        source += "\n"
    path.write_text(source + text + "\n", encoding="utf-8")
    return source.count("\n") + 1


def replace_in(path: Path, old: str, new: str) -> None:
    source = path.read_text(encoding="utf-8")
    assert old in source, f"{old!r} is not in {path}"
    path.write_text(source.replace(old, new, 1), encoding="utf-8")


def assert_clear_error(result, first_line: str) -> None:
    """Exit code 1, first line `error: <first_line>`, a hint, no traceback."""
    lines = result.stderr.splitlines()
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert lines and lines[0] == f"error: {first_line}", lines[:3]
    assert len(lines) > 1 and lines[1].startswith("  hint: "), lines[:3]
    assert "Traceback" not in result.output and "internal error" not in result.output
