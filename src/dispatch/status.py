"""`dispatch status`: one row per recipient of a letter, as a table, CSV (safe for spreadsheets) or JSON.

The table shows what a coordinator reads first (who, by which channel, where the letter stands, since when,
and what to know about it) in 100 columns, measured in the cells a terminal draws (a Chinese or Japanese
character takes two); the wide table shows every column, uncut. CSV and JSON always hold every column.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from dataclasses import asdict, astuple, dataclass, fields
from typing import Any, Mapping, Sequence

from dispatch.tables import csv_bytes

FORMATS = ("table", "csv", "json")
WIDTH = 100  # the table's width in terminal cells
ELLIPSIS = "…"


@dataclass(frozen=True)
class StatusRow:
    id: str
    state: str
    channel: str
    pdf: str         # the first 12 hex digits of the PDF's SHA-256, or "missing"
    email: str       # pending, sent, failed, retry, uncertain, interrupted, bounced; empty when not sent by email
    time: str        # of the latest email event (UTC, ISO 8601)
    message_id: str
    reply: str       # the server's reply, what is known about an uncertain message, or the DSN's status and diagnostic
    delivery: str    # by hand: "delivered <when> to <whom>", "not yet", or empty when not printed
    flag: str        # e.g. "PDF changed after it was sent"
    sent_copy: str = ""  # the exact file that went out, in the sent archive (out/<letter>/sent/...)
    note: str = ""   # the recipient's note column in recipients.csv
    replied: str = ""     # when the first reply was written (UTC, ISO 8601), from dispatch track; empty if none
    auto_reply: str = ""  # when the first automatic reply (out of office...) was written; empty if none


COLUMNS = tuple(f.name for f in fields(StatusRow))
SHOWN = ("id", "state", "channel", "status", "when", "note")  # the table's columns, as `standing`, `when`, `remarks`
WIDE = ("id", "state", "channel", "pdf", "email", "time", "message_id", "reply", "delivery", "flag", "note",
        "sent_copy", "replied", "auto_reply")
_HEADINGS = {"delivery": "hand delivery", "message_id": "Message-ID", "sent_copy": "sent copy", "auto_reply": "auto-reply"}
_TROUBLE = ("failed", "retry", "uncertain", "interrupted", "bounced")  # the server's reply is worth reading first
_TIMES = ("time", "replied", "auto_reply")  # shown in local time in the table


def delivery_text(data: Mapping[str, Any], at: str) -> str:
    """When (local time, to the minute) and to whom a letter was delivered by hand."""
    when = str(data.get("delivered_at", at)).replace("T", " ")[:16]
    return when + (f" to {data['by']}" if data.get("by") else "")


# --- what a row says, in words -------------------------------------------------------------------------

def standing(row: StatusRow) -> str:
    """Where the letter stands: the email's status, the hand delivery's (delivered, not yet), or both."""
    hand = "delivered" if row.delivery.startswith("delivered") else "not yet" if row.delivery else ""
    return ", ".join(part for part in (row.email, hand) if part)


def local_time(iso: str) -> str:
    """An ISO 8601 time as local time to the minute ("2026-11-28 14:30"); empty stays empty."""
    if not iso:
        return ""
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso.replace("T", " ")[:16]


_DELIVERED_AT = re.compile(r"^delivered (\d{4}-\d\d-\d\d \d\d:\d\d)")


def when(row: StatusRow) -> str:
    """The time of the latest thing that happened to the letter (sent, failed, delivered), local, to the minute."""
    emailed = local_time(row.time)
    handed = _DELIVERED_AT.match(row.delivery)
    latest = max(emailed, handed.group(1) if handed else "")
    return latest


def remarks(row: StatusRow) -> str:
    """What to know about a row, most pressing first: its flag, the server's reply to a message in trouble,
    then the note from recipients.csv."""
    reply = row.reply if row.email in _TROUBLE else ""
    return "; ".join(part for part in (row.flag, reply, row.note) if part)


# --- CSV and JSON: every column ------------------------------------------------------------------------

def to_csv(rows: list[StatusRow]) -> bytes:
    return csv_bytes(COLUMNS, [astuple(r) for r in rows])


def to_json(rows: list[StatusRow]) -> str:
    return json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2) + "\n"


# --- the table -----------------------------------------------------------------------------------------

def to_table(rows: Sequence[StatusRow], *, width: int = WIDTH, wide: bool = False) -> str:
    """Aligned columns for a terminal, empty cells as '-', times in local time to the minute.

    By default the columns a coordinator reads first, fitted to `width` terminal cells: a state name or a
    note too long for its column is cut and ends in '…'. wide: every column, nothing cut (for `less -S`)."""
    if wide:
        headings = [_HEADINGS.get(name, name) for name in WIDE]
        table = [[_cell(local_time(getattr(r, name)) if name in _TIMES else getattr(r, name)) for name in WIDE] for r in rows]
        return _lines(headings, table, [None] * len(WIDE))
    table = [[_cell(r.id), _cell(r.state), _cell(r.channel), _cell(standing(r)), _cell(when(r)), _cell(remarks(r))]
             for r in rows]
    return _lines(list(SHOWN), table, _fit(list(SHOWN), table, width))


def _cell(value: str) -> str:
    return " ".join(str(value).split()) or "-"


_GAP = 2  # cells between columns
_ID_MOST = 12  # an id longer than this is cut (ids are short codes)


def _fit(headings: list[str], table: list[list[str]], width: int) -> list[int | None]:
    """Each column's width in cells. Channel, status and when are never cut; the id is cut past 12 cells;
    the state and the note share what is left (the state up to 45 % of it when both are long)."""
    natural = [max([cells(h)] + [cells(r[i]) for r in table]) for i, h in enumerate(headings)]
    ident, state, channel, status, time, note = natural
    ident = min(ident, max(_ID_MOST, cells(headings[0])))
    room = width - ident - channel - status - time - _GAP * (len(headings) - 1)
    if state + note > room:
        floor = max(cells(headings[1]), room * 9 // 20)
        state = min(state, max(floor, room - note))
        note = max(cells(headings[-1]), room - state)
    return [ident, state, channel, status, time, note]


def _lines(headings: list[str], table: list[list[str]], widths: list[int | None]) -> str:
    if not table:
        return " ".join(headings) + "\n"
    shown = [[clip(value, w) if w is not None else value for value, w in zip(line, widths)]
             for line in [headings] + table]
    column = [max(cells(line[i]) for line in shown) for i in range(len(headings))]
    out = []
    for line in shown:
        text = (" " * _GAP).join(value + " " * (w - cells(value)) for value, w in zip(line, column))
        out.append(text.rstrip())
    return "\n".join(out) + "\n"


# --- widths as a terminal draws them ---------------------------------------------------------------------

def char_cells(ch: str) -> int:
    """How many cells a terminal gives a character: 2 for East Asian wide and full-width characters (中, 日,
    ｱ), 0 for combining marks and format characters, else 1 (Latin, Greek, Cyrillic, Arabic, Hebrew...)."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf", "Cc"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cells(text: str) -> int:
    """The width of a text in terminal cells."""
    return sum(char_cells(ch) for ch in text)


def clip(text: str, width: int) -> str:
    """The text cut to at most `width` cells, ending in '…' when it was cut."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    kept, used = [], 0
    for ch in text:
        size = char_cells(ch)
        if used + size > width - 1:
            break
        kept.append(ch)
        used += size
    return "".join(kept).rstrip() + ELLIPSIS
