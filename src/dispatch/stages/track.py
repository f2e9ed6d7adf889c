"""Where every letter stands: one status row per recipient from the journal and the PDFs, and report.html."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dispatch.files import confined, sha256, write_atomic
from dispatch.inputs import Campaign
from dispatch.journal import Journal
from dispatch.pdf.raster import thumbnail_png
from dispatch.report import report_html
from dispatch.status import StatusRow, delivery_text


def status_rows(campaign: Campaign, journal: Journal, only: list[str] | None = None) -> list[StatusRow]:
    """One row per recipient, in file order: its PDF, its email and its hand delivery, from the journal."""
    name = campaign.letter_name
    states = journal.email_states(name)
    standing = journal.deliveries(name)
    answers = journal.answers(name)  # replies and delays read from the mailbox by dispatch track
    rows = []
    for recipient in campaign.recipients.select(only):
        path = campaign.output_dir / f"{recipient.id}.pdf"
        current = sha256(path.read_bytes()) if path.is_file() else ""
        state = states.get(recipient.id) if recipient.wants_email else None
        latest = state.latest if state else None
        data = latest.data if latest else {}
        flag = ""
        if state and state.sent is not None and current != state.sent.data.get("sha256"):
            flag = "PDF changed after it was sent" if current else "PDF deleted after it was sent"
        handed = standing.get(recipient.id)
        got = answers.get(recipient.id) if recipient.wants_email else None
        delayed = got.delayed if got and got.delayed and latest and got.delayed.id > latest.id else None
        rows.append(StatusRow(
            id=recipient.id, state=recipient.state, channel=recipient.channel,
            pdf=current[:12] if current else "missing",
            email=(state.status if state else "pending") if recipient.wants_email else "",
            time=latest.at if latest else "", message_id=data.get("message_id", ""),
            reply=f"delayed: {delayed.data.get('reply', '')}" if delayed else data.get("reply") or data.get("reason", ""),
            delivery=(f"delivered {delivery_text(handed.data, handed.at)}" if handed
                      else "not yet" if recipient.wants_print else ""),
            flag=flag, sent_copy=_sent_copy(campaign, recipient.id, state, handed),
            replied=got.replied if got else "", auto_reply=got.auto_reply if got else ""))
    return rows


def _sent_copy(campaign: Campaign, rid: str, state, handed) -> str:
    """out/<letter>/sent/... of the latest copy that went out (by email, else by hand), when it was kept."""
    for event in (state.sent if state else None, handed):
        if event is not None and event.data.get("archive_pdf"):
            return f"{campaign.workspace.relative(campaign.output_dir)}/{event.data['archive_pdf']}"
    return ""


def write_report(campaign: Campaign, journal: Journal) -> Path:
    """Write out/<letter>/report.html (and page-1 thumbnails beside it) from the journal and the PDFs."""
    name = campaign.letter_name
    rows = status_rows(campaign, journal)
    folder = campaign.output_dir
    thumbs_dir = confined(folder / "report-files", folder)
    thumbnails: dict[str, str] = {}
    rendered: dict[str, str] = {}
    for row in rows:
        pdf = folder / f"{row.id}.pdf"
        if not pdf.is_file():
            rendered[row.id] = "missing"
            continue
        rendered[row.id] = f"{row.pdf}"
        thumb = thumbs_dir / f"{row.id}-{row.pdf}.png"
        if not thumb.is_file():
            for old in thumbs_dir.glob(f"{row.id}-*.png"):
                if not old.is_symlink():
                    old.unlink()
            write_atomic(thumb, thumbnail_png(pdf, width_px=180)[0])
        thumbnails[row.id] = f"report-files/{thumb.name}"
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    target = folder / "report.html"
    write_atomic(target, report_html(name, generated, rows, thumbnails, rendered).encode("utf-8"))
    return target
