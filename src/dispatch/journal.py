"""The journal: an append-only SQLite record of what happened to each letter for each recipient.

The only module that touches SQLite. Events are never updated or deleted (triggers refuse it); the
state of a recipient is read from its latest events. WAL mode and full synchronous commits make each
recorded event durable before the next step starts, so a crash at any instant leaves a readable
journal that says what was done.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import JournalError

SCHEMA_VERSION = 1
KINDS = ("rendered", "sending", "sent", "failed", "uncertain", "delivered", "delivery-withdrawn")
EMAIL_KINDS = ("sending", "sent", "failed", "uncertain")
DELIVERY_KINDS = ("delivered", "delivery-withdrawn")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        TEXT NOT NULL,
        letter    TEXT NOT NULL,
        recipient TEXT NOT NULL,
        kind      TEXT NOT NULL,
        data      TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_recipient ON events (letter, recipient, kind, id)",
    """CREATE TRIGGER IF NOT EXISTS events_are_never_changed BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_are_never_deleted BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END""",
)


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    letter: str
    recipient: str
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


def _events(rows: Iterable[tuple]) -> list[Event]:
    return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


@dataclass(frozen=True)
class EmailState:
    """Where one recipient's email stands, read from the journal."""

    recipient: str
    latest: Event | None = None  # the latest sending/sent/failed/uncertain event
    sent: Event | None = None    # the latest `sent` event, even if a later attempt followed

    @property
    def status(self) -> str:
        """pending, sent, failed, retry (a temporary failure), uncertain, or interrupted (a `sending`
        with no outcome: the run stopped while the message was with the server)."""
        if self.latest is None:
            return "pending"
        kind = self.latest.kind
        if kind == "sending":
            return "interrupted"
        if kind == "failed" and not self.latest.data.get("permanent"):
            return "retry"
        return kind


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    """dispatch.db. Open it once per run; every record() is its own committed transaction."""

    def __init__(self, path: Path, *, shown: str | None = None, timeout: float = 5.0) -> None:
        self.path = path
        self.shown = shown or path.name
        try:
            self._db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(f"written by a newer dispatch (journal version {version})", file=self.shown,
                                   hint="upgrade dispatch to work on this campaign")
            if version < SCHEMA_VERSION:
                with self._transaction():
                    for statement in _SCHEMA:
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("SELECT count(*) FROM events").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> JournalError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return JournalError("the journal is in use by another dispatch command", file=self.shown,
                                hint="wait for it to finish, then run this command again")
        if "not a database" in text or "malformed" in text or "file is encrypted" in text:
            return JournalError("the journal is damaged or is not a dispatch journal", file=self.shown,
                                hint="keep the file (it is the record of what was sent): restore it from a backup, "
                                     "or point DISPATCH_JOURNAL at another file")
        if "readonly" in text or "unable to open" in text or "disk I/O" in text or "full" in text:
            return JournalError(f"cannot write the journal ({text})", file=self.shown,
                                hint="check that the campaign folder is writable and the disk is not full")
        return JournalError(f"journal error: {text}", file=self.shown)

    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, kind, value, tb):
                db.execute("COMMIT" if kind is None else "ROLLBACK")
                return False

        return _Tx()

    def record(self, letter: str, recipient: str, kind: str, **data: Any) -> Event:
        """Append one event and commit it before returning."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        at = now()
        payload = json.dumps(data, sort_keys=True, ensure_ascii=False)
        try:
            cursor = self._db.execute(
                "INSERT INTO events (at, letter, recipient, kind, data) VALUES (?, ?, ?, ?, ?)",
                (at, letter, recipient, kind, payload))
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return Event(cursor.lastrowid, at, letter, recipient, kind, data)

    def record_many(self, events: Iterable[tuple[str, str, str, Mapping[str, Any]]]) -> int:
        """Append several events in one transaction (all or none)."""
        rows = [(now(), letter, recipient, kind, json.dumps(dict(data), sort_keys=True, ensure_ascii=False))
                for letter, recipient, kind, data in events]
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO events (at, letter, recipient, kind, data) VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return len(rows)

    def events(self, letter: str | None = None, recipient: str | None = None,
               kinds: Iterable[str] | None = None) -> list[Event]:
        """Events in the order they were recorded, optionally filtered."""
        query, args = "SELECT id, at, letter, recipient, kind, data FROM events WHERE 1=1", []
        if letter is not None:
            query += " AND letter = ?"
            args.append(letter)
        if recipient is not None:
            query += " AND recipient = ?"
            args.append(recipient)
        if kinds is not None:
            kinds = list(kinds)
            query += f" AND kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        try:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return _events(rows)

    def find_by_sha256(self, digest: str, kinds: Iterable[str] = ("rendered", "sending", "sent")) -> list[Event]:
        """Events whose file (a rendered PDF, an attachment being sent or sent) had this SHA-256, oldest first."""
        kinds = list(kinds)
        query = ("SELECT id, at, letter, recipient, kind, data FROM events "
                 f"WHERE kind IN ({','.join('?' * len(kinds))}) "
                 "AND json_extract(data, '$.sha256') = ? "
                 "ORDER BY id")
        try:
            rows = self._db.execute(query, [*kinds, digest]).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return _events(rows)

    def latest(self, letter: str, kinds: Iterable[str]) -> dict[str, Event]:
        """The latest event of the given kinds for each recipient of a letter."""
        result: dict[str, Event] = {}
        for event in self.events(letter, kinds=kinds):
            result[event.recipient] = event
        return result

    def email_states(self, letter: str) -> dict[str, EmailState]:
        """The email state of every recipient of a letter that has any email event."""
        latest: dict[str, Event] = {}
        sent: dict[str, Event] = {}
        for event in self.events(letter, kinds=EMAIL_KINDS):
            latest[event.recipient] = event
            if event.kind == "sent":
                sent[event.recipient] = event
        return {rid: EmailState(rid, event, sent.get(rid)) for rid, event in latest.items()}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
