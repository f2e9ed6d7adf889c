"""A journal that is missing, emptied, damaged or another application's: every command stops and leaves the file
as it is; `dispatch journal check` says what it is and `dispatch journal repair` starts again without sending twice."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
from tests.conftest import SENDER, email_row, row
from tests.smtp_server import smtp_server

runner = CliRunner()
pytestmark = pytest.mark.slow
ROWS = [email_row("NA", "Namibia", "mission.na@example.org"), email_row("FR", "France", "mission.fr@example.org"),
        row("DE", "Germany")]


def run(folder, *args):
    return runner.invoke(app, ["-C", str(folder), *args], catch_exceptions=False)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sent_campaign(make_workspace, smtp_env):
    with smtp_server() as server:
        folder = make_workspace(ROWS, settings=SENDER + server.settings())
        result = run(folder, "send", "--yes")
        assert result.exit_code == 0, result.output
        assert len(server.handler.messages) == 2
        yield folder, server


@pytest.mark.parametrize("damage", ["empty", "garbage", "missing"])
def test_a_damaged_journal_stops_send_and_is_left_untouched(sent_campaign, damage):
    folder, server = sent_campaign
    db = folder / "dispatch.db"
    for suffix in ("-wal", "-shm"):
        (folder / f"dispatch.db{suffix}").unlink(missing_ok=True)
    if damage == "empty":
        db.write_bytes(b"")
    elif damage == "garbage":
        db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    else:
        db.unlink()
    before = db.read_bytes() if db.exists() else None
    for command in (["send", "--yes"], ["render", "--force"], ["status"], ["mark", "DE", "--delivered"]):
        result = run(folder, *command)
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.startswith("error: dispatch.db: the journal is "), result.stderr
        assert "dispatch journal repair" in result.stderr
        assert (db.read_bytes() if db.exists() else None) == before
    assert len(server.handler.messages) == 2  # nothing went out again
    check = run(folder, "journal", "check")
    assert check.exit_code == 1 and "the journal is" in check.stderr


def test_repair_counts_every_archived_email_as_possibly_sent_and_nothing_goes_twice(sent_campaign):
    folder, server = sent_campaign
    db = folder / "dispatch.db"
    for suffix in ("", "-wal", "-shm"):
        (folder / f"dispatch.db{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"")
    repaired = run(folder, "journal", "repair")
    assert repaired.exit_code == 0, repaired.output
    moved = [p for p in folder.iterdir() if p.name.startswith("dispatch.db.damaged-")]
    assert [p.read_bytes() for p in moved if not p.name.endswith(("-wal", "-shm"))] == [b""]  # kept, not deleted
    assert "recorded 2 uncertain" in repaired.stdout  # NA and FR, from the archive (send renders no DE letter)
    again = run(folder, "send", "--yes")
    assert len(server.handler.messages) == 2, again.output
    assert "uncertain: NA: recovered after the journal was lost" in again.output
    with Journal(db) as journal:
        recovered = journal.latest("letter", ["uncertain"])
    assert recovered["NA"].data["message_id"] == server.handler.messages[0].message["Message-ID"]
    assert run(folder, "journal", "check").stdout.startswith("dispatch.db: sound dispatch journal, ")


def test_another_applications_database_is_never_written_to(make_workspace, tmp_path, monkeypatch):
    folder = make_workspace([row("NA", "Namibia")])
    foreign = tmp_path / "accounts.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (12.5)")
    db.close()
    before = digest(foreign)
    monkeypatch.setenv("DISPATCH_JOURNAL", str(foreign))
    result = run(folder, "render")
    assert result.exit_code == 1
    assert "this file is not a dispatch journal (tables invoices)" in result.stderr
    assert digest(foreign) == before
    repair = run(folder, "journal", "repair")
    assert repair.exit_code == 1 and digest(foreign) == before
    assert not (folder / "out").exists()


def test_a_journal_of_an_earlier_dispatch_is_recognised_and_kept(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    with sqlite3.connect(folder / "dispatch.db") as db:  # as dispatch 0.1 made it: no application id
        db.execute("""CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, letter TEXT NOT
                      NULL, recipient TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}')""")
        db.execute("INSERT INTO events (at, letter, recipient, kind, data) VALUES "
                   "('2026-01-01T00:00:00+00:00', 'letter', 'NA', 'delivered', '{}')")
        db.execute("PRAGMA user_version=1")
    db.close()
    assert run(folder, "render").exit_code == 0
    with Journal(folder / "dispatch.db") as journal:
        assert [e.kind for e in journal.events("letter", "NA")] == ["delivered", "rendered"]
