"""`dispatch status`: one row per recipient of a letter, as a table, CSV (safe for spreadsheets) or JSON."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, astuple, dataclass, fields
from typing import Any, Mapping

from dispatch.tables import csv_bytes

FORMATS = ("table", "csv", "json")
STATE_WIDTH = 32  # longer names are cut in the table (not in CSV or JSON)


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
    replied: str = ""     # when the first reply was written (UTC, ISO 8601), from dispatch track; empty if none
    auto_reply: str = ""  # when the first automatic reply (out of office...) was written; empty if none


COLUMNS = tuple(f.name for f in fields(StatusRow))
TABLE_COLUMNS = tuple(c for c in COLUMNS if c != "sent_copy")  # the terminal shows the flag; CSV and JSON the path
_HEADINGS = {"delivery": "hand delivery"}


def delivery_text(data: Mapping[str, Any], at: str) -> str:
    """When (local time, to the minute) and to whom a letter was delivered by hand."""
    when = str(data.get("delivered_at", at)).replace("T", " ")[:16]
    return when + (f" to {data['by']}" if data.get("by") else "")


def to_csv(rows: list[StatusRow]) -> bytes:
    return csv_bytes(COLUMNS, [astuple(r) for r in rows])


def to_json(rows: list[StatusRow]) -> str:
    return json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2) + "\n"


def to_table(rows: list[StatusRow]) -> str:
    """Aligned columns for the terminal: empty cells as '-', times in local time to the minute."""
    shown = [[_cell(name, getattr(r, name)) for name in TABLE_COLUMNS] for r in rows]
    headings = [_HEADINGS.get(name, name) for name in TABLE_COLUMNS]
    widths = [max([len(h)] + [len(r[i]) for r in shown]) for i, h in enumerate(headings)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in [headings] + shown]
    return "\n".join(lines) + "\n"


def _cell(name: str, value: str) -> str:
    value = " ".join(str(value).split())
    if name == "state":
        value = value[:STATE_WIDTH]
    if name == "time" and value:
        value = dt.datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M")
    return value or "-"
