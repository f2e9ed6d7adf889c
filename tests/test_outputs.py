"""What commands write into out/: recorded before it is put in place, and never through a link out of out/."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from dispatch.cli import app
from tests.conftest import row

runner = CliRunner()
ROWS = [row("NA", "Namibia"), row("FR", "France")]


def run(folder, *args):
    return runner.invoke(app, ["-C", str(folder), *args])


def leftovers(folder):
    return sorted(p.name for p in (folder / "out").rglob("*.tmp"))


@pytest.mark.slow
def test_a_journal_that_refuses_writes_leaves_the_letters_in_out_as_they_were(make_workspace):
    folder = make_workspace(ROWS)
    assert run(folder, "render").exit_code == 0
    before = {p.name: p.read_bytes() for p in (folder / "out" / "letter").glob("*.pdf")}
    with sqlite3.connect(folder / "dispatch.db") as db:  # a journal that takes no more events
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    letter = folder / "letters" / "letter.md"
    letter.write_text(letter.read_text(encoding="utf-8").replace("Thank you.", "Thank you again."), encoding="utf-8")
    result = run(folder, "render")
    assert result.exit_code == 1
    assert "dispatch.db" in result.output and "Traceback" not in result.output
    after = {p.name: p.read_bytes() for p in (folder / "out" / "letter").glob("*.pdf")}
    assert after == before  # nothing unrecorded was put in place
    assert leftovers(folder) == []


@pytest.mark.slow
def test_a_dry_run_never_deletes_through_an_outbox_that_leads_elsewhere(make_workspace, tmp_path):
    folder = make_workspace([row("NA", "Namibia", email="na@example.org", channel="email")])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.eml").write_text("not dispatch's", encoding="utf-8")
    (folder / "out" / "letter").mkdir(parents=True)
    (folder / "out" / "letter" / "outbox").symlink_to(elsewhere, target_is_directory=True)
    result = run(folder, "send", "--dry-run")
    assert result.exit_code == 1, result.output
    assert "outbox/ leads out of letter/" in result.output
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.eml"]


@pytest.mark.parametrize("name", ["report-files", "preview", "print"])
def test_other_output_folders_that_lead_elsewhere_are_refused(tmp_path, name):
    from dispatch.errors import DispatchError
    from dispatch.files import confined

    out = tmp_path / "out" / "letter"
    out.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / name).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DispatchError, match=f"{name}/ leads out of letter/"):
        confined(out / name, out)
    inside = out / "inside"
    inside.mkdir()
    (out / f"{name}-2").symlink_to(inside, target_is_directory=True)
    with pytest.raises(DispatchError, match="is not a plain folder"):
        confined(out / f"{name}-2", out)
    assert confined(out / "plain", out) == out / "plain"
