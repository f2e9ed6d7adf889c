"""A journal lost or damaged: look at it, and start a new one from what the campaign's folders still show.

Nothing is sent twice after a repair: every email kept in the sent archive, and every letter in out/ that the
archive does not account for, is recorded as possibly sent (`uncertain`); printed and hand-delivered copies
in the archive are recorded as such. The damaged file is moved aside, never deleted or rewritten.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path

from dispatch import archive
from dispatch.errors import JournalError
from dispatch.files import sha256
from dispatch.journal import Journal, JournalState, inspect
from dispatch.workspace import Workspace

RECOVERED = ("recovered after the journal was lost: it may have been sent; check the Sent folder "
             "(dispatch track), then dispatch send --resend-uncertain --only ID if it did not go out")


def has_letters(ws: Workspace) -> bool:
    """Whether out/ shows that letters were rendered or sent (a journal should exist, then)."""
    out = ws.output
    if not out.is_dir():
        return False
    return any(any(p.is_file() for p in folder.glob("*.pdf")) or (folder / archive.FOLDER).is_dir()
               for folder in out.iterdir() if folder.is_dir() and not folder.is_symlink())


def check(ws: Workspace) -> JournalState:
    path = ws.journal_file
    if not path.exists() and not has_letters(ws):
        return JournalState(True)  # a campaign that has not rendered anything yet: the journal comes with it
    return inspect(path)


@dataclass
class Repair:
    moved_to: Path | None = None
    recorded: dict[str, int] = field(default_factory=dict)  # kind -> events


def repair(ws: Workspace) -> Repair:
    """Move a damaged or empty journal aside and record what out/ and its sent archive show (see above)."""
    path = ws.journal_file
    state = check(ws)
    if state.ok and path.exists():
        raise JournalError("the journal is sound: nothing to repair", file=ws.relative(path),
                           hint="dispatch journal check tells what it holds")
    if not state.ok and not state.repairable:
        raise JournalError(state.problem, file=ws.relative(path), hint=state.hint)
    result = Repair()
    if path.exists():
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        result.moved_to = path.with_name(f"{path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            if os.path.lexists(f"{path}{suffix}"):
                os.rename(f"{path}{suffix}", f"{result.moved_to}{suffix}")
    with Journal(path, shown=ws.relative(path)) as journal:
        for letter_dir in sorted(p for p in ws.output.iterdir() if p.is_dir() and not p.is_symlink()) \
                if ws.output.is_dir() else []:
            _recover_letter(journal, letter_dir, result)
    return result


def _recover_letter(journal: Journal, letter_dir: Path, result: Repair) -> None:
    letter = letter_dir.name
    events: list[tuple[str, str, str, dict]] = []
    emailed: set[str] = set()
    for entry in archive.entries(letter_dir):
        when = entry.moment.isoformat(timespec="seconds")
        data: dict = {"recovered": True, "archived_at": when}
        if entry.pdf is not None:
            data.update(sha256=sha256(entry.pdf.read_bytes()), archive_pdf=entry.pdf.relative_to(letter_dir).as_posix())
        if entry.channel == "email":
            emailed.add(entry.recipient_id)
            if entry.eml is not None:
                headers = BytesHeaderParser().parsebytes(entry.eml.read_bytes()[:65536])
                data.update(message_id=str(headers.get("Message-ID", "")), to=str(headers.get("To", "")),
                            archive_eml=entry.eml.relative_to(letter_dir).as_posix())
            events.append((letter, entry.recipient_id, "uncertain", {**data, "reason": RECOVERED}))
        elif entry.channel == "draft":  # put in the Drafts folder, not sent: a plain send leaves it alone
            emailed.add(entry.recipient_id)
            if entry.eml is not None:
                headers = BytesHeaderParser().parsebytes(entry.eml.read_bytes()[:65536])
                data.update(message_id=str(headers.get("Message-ID", "")),
                            archive_eml=entry.eml.relative_to(letter_dir).as_posix())
            events.append((letter, entry.recipient_id, "drafted", data))
        elif entry.channel == "print":
            events.append((letter, entry.recipient_id, "printed", data))
        elif entry.channel == "hand":
            events.append((letter, entry.recipient_id, "delivered", {**data, "delivered_at": when}))
    for pdf in sorted(letter_dir.glob("*.pdf")):
        rid = pdf.stem
        if rid in emailed or pdf.is_symlink():
            continue
        events.append((letter, rid, "uncertain", {"recovered": True, "sha256": sha256(pdf.read_bytes()),
                                                  "reason": RECOVERED}))
    journal.record_many(events)
    for _, _, kind, _ in events:
        result.recorded[kind] = result.recorded.get(kind, 0) + 1
