"""The journal is a real SQLite file: append-only, durable, clear about damage and locks."""

from __future__ import annotations

import sqlite3

import pytest

from dispatch.errors import JournalError
from dispatch.journal import Journal


def test_record_and_read_back(tmp_path):
    path = tmp_path / "dispatch.db"
    with Journal(path) as journal:
        journal.record("letter", "NA", "rendered", sha256="ab" * 32, pages=3, size=1000)
        journal.record("letter", "NA", "sending", message_id="<1@x>")
        journal.record("letter", "FR", "rendered", sha256="cd" * 32, pages=2, size=900)
    with Journal(path) as journal:
        events = journal.events("letter", "NA")
        assert [e.kind for e in events] == ["rendered", "sending"]
        assert events[0].data == {"sha256": "ab" * 32, "pages": 3, "size": 1000}
        assert set(journal.latest("letter", ["rendered"])) == {"NA", "FR"}
        assert journal.record_many([("letter", "DE", "rendered", {"pages": 1}),
                                    ("letter", "IT", "rendered", {"pages": 2})]) == 2
        assert len(journal.events("letter")) == 5


def test_events_can_never_be_changed_or_deleted(tmp_path):
    path = tmp_path / "dispatch.db"
    with Journal(path) as journal:
        journal.record("letter", "NA", "sent", reply="250 OK")
    db = sqlite3.connect(path)
    for statement in ("UPDATE events SET kind = 'failed'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    db.close()
    assert [e.kind for e in Journal(path).events()] == ["sent"]


def test_damaged_journal_is_reported_and_kept(tmp_path):
    path = tmp_path / "dispatch.db"
    path.write_bytes(b"this is not a database at all" * 100)
    before = path.read_bytes()
    with pytest.raises(JournalError) as caught:
        Journal(path)
    assert str(caught.value) == "dispatch.db: the journal is damaged or is not a dispatch journal"
    assert "backup" in caught.value.hint
    assert path.read_bytes() == before


def test_locked_journal_is_reported(tmp_path):
    path = tmp_path / "dispatch.db"
    Journal(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        journal = Journal(path, timeout=0.2)
        with pytest.raises(JournalError) as caught:
            journal.record("letter", "NA", "rendered")
        assert str(caught.value) == "dispatch.db: the journal is in use by another dispatch command"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_find_by_sha256(tmp_path):
    with Journal(tmp_path / "dispatch.db") as journal:
        journal.record("letter", "NA", "rendered", sha256="ab" * 32)
        journal.record("letter", "NA", "sending", sha256="ab" * 32, message_id="<1@x>")
        journal.record("letter", "NA", "sent", sha256="ab" * 32, message_id="<1@x>")
        journal.record("letter", "NA", "failed", sha256="ab" * 32)  # not a record of the file: ignored
        journal.record("letter", "FR", "rendered", sha256="cd" * 32)
        found = journal.find_by_sha256("ab" * 32)
        assert [(e.recipient, e.kind) for e in found] == [("NA", "rendered"), ("NA", "sending"), ("NA", "sent")]
        assert [e.recipient for e in journal.find_by_sha256("cd" * 32)] == ["FR"]
        assert journal.find_by_sha256("ef" * 32) == []
