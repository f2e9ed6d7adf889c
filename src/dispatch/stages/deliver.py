"""Hand delivery: recording (or withdrawing) that a printed letter was handed over, and when."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dispatch.archive import keep
from dispatch.errors import DispatchError
from dispatch.inputs import Campaign
from dispatch.journal import DELIVERY_KINDS, Event, Journal
from dispatch.models import Recipient

_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?$")


def parse_delivery_time(text: str | None, *, now: dt.datetime | None = None) -> dt.datetime:
    """ISO 8601 date and time ('2026-11-28T14:30' or '2026-11-28 14:30'), local unless it has an offset."""
    now = now or dt.datetime.now().astimezone()
    if text is None:
        return now.replace(microsecond=0)
    hint = "write the date and time as 2026-11-28T14:30 or \"2026-11-28 14:30\" (local time)"
    if not _LOCAL_TIME.match(text.strip()):
        raise DispatchError(f"--at: {text!r} is not a date and time", hint=hint)
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise DispatchError(f"--at: {text!r} is not a valid date and time ({exc})", hint=hint) from None
    moment = moment.astimezone() if moment.tzinfo is None else moment
    if moment > now + dt.timedelta(minutes=5):
        raise DispatchError(f"--at: {text!r} is in the future", hint="give the time the letter was handed over")
    return moment


@dataclass(frozen=True)
class Delivery:
    recipient: Recipient
    event: Event


def mark(campaign: Campaign, journal: Journal, ids: list[str], *, by: str | None = None, at: str | None = None,
         note: str | None = None, undo: bool = False) -> list[Delivery]:
    """Record (or, with undo, withdraw) the hand delivery of each recipient; all of them or none."""
    ws = campaign.workspace
    chosen = campaign.recipients.select(ids)
    moment = None if undo else parse_delivery_time(at)
    standing = journal.deliveries(campaign.letter_name)
    for r in chosen:
        if undo and r.id not in standing:
            raise DispatchError(f"{r.state} ({r.id}) is not marked delivered", file=ws.relative(journal.path),
                                hint="nothing to withdraw; see dispatch status")
        if not undo and r.id in standing:
            when = standing[r.id].data.get("delivered_at", standing[r.id].at)
            raise DispatchError(f"{r.state} ({r.id}) is already marked delivered ({when})",
                                file=ws.relative(journal.path),
                                hint=f"to correct it, withdraw the mark first: dispatch mark {r.id} --delivered --undo")
    data: dict = {}
    if undo:
        kind = "delivery-withdrawn"
    else:
        kind = "delivered"
        data["delivered_at"] = moment.isoformat(timespec="minutes")
        if by:
            data["by"] = by
    if note:
        data["note"] = note
    journal.record_many([(campaign.letter_name, r.id, kind, {**data, **({} if undo else _handed(campaign, journal, r))})
                         for r in chosen])
    recorded = journal.latest(campaign.letter_name, DELIVERY_KINDS)
    return [Delivery(r, recorded[r.id]) for r in chosen]


def _handed(campaign: Campaign, journal: Journal, recipient: Recipient) -> dict:
    """Which exact file was handed over: the copy printed last (already in the sent archive), else the letter
    in out/ now, kept in the archive as the one delivered by hand."""
    printed = journal.latest(campaign.letter_name, ["printed"]).get(recipient.id)
    if printed is not None and printed.data.get("archive_pdf"):
        return {"sha256": printed.data.get("sha256", ""), "archive_pdf": printed.data["archive_pdf"]}
    pdf = campaign.output_dir / f"{recipient.id}.pdf"
    if not pdf.is_file():
        return {}
    data = pdf.read_bytes()
    kept = keep(campaign.output_dir, recipient.id, "hand", {"pdf": data})["pdf"]
    return {"sha256": kept.sha256, "archive_pdf": kept.path}
