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

from dispatch.errors import JournalError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x44535054  # "DSPT" in the SQLite header: this file is a dispatch journal
KINDS = ("rendered", "sending", "sent", "failed", "uncertain", "delivered", "delivery-withdrawn", "printed",
         "recovered", "bounced", "delayed", "replied", "auto-replied", "drafted")
EMAIL_KINDS = ("sending", "sent", "failed", "uncertain", "bounced", "drafted")  # drafted: in Drafts, not sent
DELIVERY_KINDS = ("delivered", "delivery-withdrawn")
# What came back to the mailbox after sending (dispatch track). A `bounced` event (a permanent failure
# reported after the server took the message) is an email state; a delay and the replies are not.
ANSWER_KINDS = ("bounced", "delayed", "replied", "auto-replied")

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
        """pending, sent, failed, retry (a temporary failure), uncertain, interrupted (a `sending`
        with no outcome: the run stopped while the message was with the server), or bounced (a delivery
        status notification said the message did not arrive), or drafted (put in the mailbox's Drafts folder
        by dispatch send --drafts, not sent)."""
        if self.latest is None:
            return "pending"
        kind = self.latest.kind
        if kind == "sending":
            return "interrupted"
        if kind == "failed" and not self.latest.data.get("permanent"):
            return "retry"
        return kind


@dataclass(frozen=True)
class Answers:
    """What came back for one recipient: when the first reply and the first automatic reply were written
    (UTC, ISO 8601; empty for none), and the latest delay reported for its message."""

    replied: str = ""
    auto_reply: str = ""
    delayed: Event | None = None


# Where `dispatch track` stopped reading each folder: a second, append-only table, made the first time a
# mailbox is read (a journal that never was stays as it is; the schema version does not change).
_READS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS mailbox_reads (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          TEXT NOT NULL,
        mailbox     TEXT NOT NULL,
        folder      TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        last_uid    INTEGER NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS mailbox_reads_are_never_changed BEFORE UPDATE ON mailbox_reads
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS mailbox_reads_are_never_deleted BEFORE DELETE ON mailbox_reads
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END""",
)


def _utc(moment: str) -> str:
    """An ISO 8601 time in UTC as "2026-11-28T14:30:00Z" (as given when it is not a time)."""
    try:
        parsed = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return moment
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    """dispatch.db. Open it once per run; every record() is its own committed transaction."""

    def __init__(self, path: Path, *, shown: str | None = None, timeout: float = 5.0,
                 may_create: bool = True) -> None:
        """Open the journal at path. A new one is made only when there is no file and may_create; a file
        that is empty, damaged, written by a newer dispatch or another application's database is refused
        and left exactly as it is (see inspect)."""
        self.path = path
        self.shown = shown or path.name
        new = not path.exists()
        if new and not may_create:
            raise JournalError("the journal is missing, but letters were already rendered or sent",
                               file=self.shown, hint=MISSING_HINT)
        if not new:
            state = inspect(path, quick=False)
            if not state.ok:
                raise JournalError(state.problem, file=self.shown, hint=state.hint)
        try:
            self._db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(f"written by a newer dispatch (journal version {version})", file=self.shown,
                                   hint="upgrade dispatch to work on this campaign")
            if version < SCHEMA_VERSION or new:
                with self._transaction():
                    for statement in _SCHEMA:
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if self._db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")  # a new journal, or one of dispatch 0.1
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

    def deliveries(self, letter: str) -> dict[str, Event]:
        """The standing 'delivered' event of each recipient (a withdrawn mark does not stand)."""
        latest = self.latest(letter, DELIVERY_KINDS)
        return {rid: event for rid, event in latest.items() if event.kind == "delivered"}

    def email_states(self, letter: str) -> dict[str, EmailState]:
        """The email state of every recipient of a letter that has any email event."""
        latest: dict[str, Event] = {}
        sent: dict[str, Event] = {}
        for event in self.events(letter, kinds=EMAIL_KINDS):
            latest[event.recipient] = event
            if event.kind == "sent":
                sent[event.recipient] = event
        return {rid: EmailState(rid, event, sent.get(rid)) for rid, event in latest.items()}

    # --- what came back to the mailbox (dispatch track) ------------------------------------------------

    def answers(self, letter: str) -> dict[str, Answers]:
        """For each recipient of a letter that got an answer: the first reply and automatic reply, the latest delay."""
        found: dict[str, dict[str, Any]] = {}
        for event in self.events(letter, kinds=("replied", "auto-replied", "delayed")):
            seen = found.setdefault(event.recipient, {})
            if event.kind == "delayed":
                seen["delayed"] = event
                continue
            name = "replied" if event.kind == "replied" else "auto_reply"
            moment = str(event.data.get("date") or event.at)
            seen[name] = min(seen.get(name) or moment, moment, key=_utc)
        return {rid: Answers(**{k: _utc(v) if isinstance(v, str) else v for k, v in seen.items()})
                for rid, seen in found.items()}

    def read_position(self, mailbox: str, folder: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID read) of a mailbox's folder, as the last `record_read` left it; None before."""
        try:
            row = self._db.execute("SELECT uidvalidity, last_uid FROM mailbox_reads WHERE mailbox = ? AND folder = ? "
                                   "ORDER BY id DESC LIMIT 1", (mailbox, folder)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None  # no mailbox was ever read for this journal
            raise self._error(exc) from None
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return (int(row[0]), int(row[1])) if row else None

    def record_read(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int,
                    events: Iterable[tuple[str, str, str, Mapping[str, Any]]] = ()) -> None:
        """Append what one read of the mailbox found and how far it read, in one transaction (all or none)."""
        at = now()
        rows = [(at, letter, recipient, kind, json.dumps(dict(data), sort_keys=True, ensure_ascii=False))
                for letter, recipient, kind, data in events]
        if any(row[3] not in KINDS for row in rows):
            raise ValueError("unknown event kind")
        try:
            with self._transaction():
                for statement in _READS_SCHEMA:
                    self._db.execute(statement)
                self._db.executemany(
                    "INSERT INTO events (at, letter, recipient, kind, data) VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("INSERT INTO mailbox_reads (at, mailbox, folder, uidvalidity, last_uid) "
                                 "VALUES (?, ?, ?, ?, ?)", (at, mailbox, folder, uidvalidity, last_uid))
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- recognising a journal ---------------------------------------------------------------------------------

MISSING_HINT = ("restore dispatch.db from your backup; if it is lost, `dispatch journal repair` starts a new one "
                "in which every letter found in the sent archive or in out/ counts as possibly sent, so nothing "
                "is sent twice")
_REPAIR_HINT = ("keep this file (it is the record of what was sent): restore dispatch.db from a backup, or run "
                "`dispatch journal repair` (it moves this file aside, never deletes it)")
_OURS = {"events", "sqlite_sequence", "mailbox_reads"}


@dataclass(frozen=True)
class JournalState:
    """What a file at the journal's place is: a dispatch journal (ok), or why it cannot be used."""

    ok: bool
    problem: str = ""
    hint: str = ""
    events: int = 0
    letters: tuple[str, ...] = ()
    repairable: bool = False  # repair may move it aside (never for another application's database)


def inspect(path: Path, *, quick: bool = True) -> JournalState:
    """Look at the file without changing it. quick: also run SQLite's consistency check and count events."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except FileNotFoundError:
        return JournalState(False, "the journal is missing", MISSING_HINT, repairable=True)
    except OSError as exc:
        return JournalState(False, f"cannot read the journal ({exc.strerror})",
                            "check the file's permissions")
    if not header:
        return JournalState(False, "the journal is empty (0 bytes): an interrupted copy or restore?", _REPAIR_HINT,
                            repairable=True)
    if not header.startswith(b"SQLite format 3\x00") or len(header) < 100:
        return JournalState(False, "the journal is damaged or is not a dispatch journal",
                            _REPAIR_HINT, repairable=True)
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return JournalState(False, f"cannot open the journal ({exc})", _REPAIR_HINT, repairable=True)
    try:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]  # the header's, or the WAL's newer one
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if application_id != APPLICATION_ID and not (application_id == 0 and "events" in tables and tables <= _OURS):
            owner = f"application id {application_id:#x}" if application_id else f"tables {', '.join(sorted(tables)) or 'none'}"
            return JournalState(False, f"this file is not a dispatch journal ({owner})",
                                "dispatch never writes into another application's database: point DISPATCH_JOURNAL "
                                "at the campaign's own dispatch.db (or unset it)")
        if not quick:
            return JournalState(True)
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            return JournalState(False, f"the journal is damaged ({check})", _REPAIR_HINT, repairable=True)
        events = db.execute("SELECT count(*) FROM events").fetchone()[0]
        letters = tuple(r[0] for r in db.execute("SELECT DISTINCT letter FROM events ORDER BY letter"))
        return JournalState(True, events=events, letters=letters)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):  # another command writes: the file is a database in use
            return JournalState(True, problem="in use")
        return JournalState(False, f"the journal is damaged ({exc})", _REPAIR_HINT, repairable=True)
    except sqlite3.DatabaseError as exc:
        return JournalState(False, f"the journal is damaged ({exc})", _REPAIR_HINT, repairable=True)
    finally:
        db.close()
