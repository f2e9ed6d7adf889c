"""Where every letter stands: one status row per recipient from the journal and the PDFs, and report.html."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

from dispatch.files import confined, sha256, write_atomic
from dispatch.inputs import Campaign
from dispatch.journal import Journal
from dispatch.pdf.raster import page_images
from dispatch.report import Files, report_html
from dispatch.status import StatusRow, delivery_text

PAGE_DPI = 116  # page 1 in the report: 960 px wide for A4, shown about 500 px wide and sharp on a dense screen


def status_rows(campaign: Campaign, journal: Journal, only: list[str] | None = None) -> list[StatusRow]:
    """One row per recipient, in file order: its PDF, its email and its hand delivery, from the journal."""
    return [row for row, _ in _rows(campaign, journal, only)]


def _rows(campaign: Campaign, journal: Journal, only: list[str] | None) -> list[tuple[StatusRow, str]]:
    """Each status row, with the copy that went out as a path inside out/<letter>/ ("" when none was kept)."""
    name = campaign.letter_name
    states = journal.email_states(name)
    standing = journal.deliveries(name)
    answers = journal.answers(name)  # replies and delays read from the mailbox by dispatch track
    shown_dir = campaign.workspace.relative(campaign.output_dir)
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
        archived = _sent_copy(state, handed)
        got = answers.get(recipient.id) if recipient.wants_email else None
        delayed = got.delayed if got and got.delayed and latest and got.delayed.id > latest.id else None
        rows.append((StatusRow(
            id=recipient.id, state=recipient.state, channel=recipient.channel,
            pdf=current[:12] if current else "missing",
            email=(state.status if state else "pending") if recipient.wants_email else "",
            time=latest.at if latest else "", message_id=data.get("message_id", ""),
            reply=f"delayed: {delayed.data.get('reply', '')}" if delayed else data.get("reply") or data.get("reason", ""),
            delivery=(f"delivered {delivery_text(handed.data, handed.at)}" if handed
                      else "not yet" if recipient.wants_print else ""),
            flag=flag, sent_copy=f"{shown_dir}/{archived}" if archived else "",
            note=" ".join(recipient.get("note").split()),
            replied=got.replied if got else "", auto_reply=got.auto_reply if got else ""), archived))
    return rows


def _sent_copy(state, handed) -> str:
    """The latest copy that went out (by email, else by hand), when it was kept: sent/... inside out/<letter>/."""
    for event in (state.sent if state else None, handed):
        if event is not None and event.data.get("archive_pdf"):
            return str(event.data["archive_pdf"])
    return ""


def write_report(campaign: Campaign, journal: Journal) -> Path:
    """Write out/<letter>/report.html (and page 1 of each letter as a PNG beside it) from the journal and the
    PDFs. A page image is made once per PDF: its name holds the PDF's hash."""
    folder = campaign.output_dir
    pages_dir = confined(folder / "report-files", folder)
    rows, files = [], {}
    for row, archived in _rows(campaign, journal, None):
        rows.append(row)
        pdf = folder / f"{row.id}.pdf"
        if not pdf.is_file():
            files[row.id] = Files(sent=archived)
            continue
        page = pages_dir / f"{row.id}-{row.pdf}-{PAGE_DPI}.png"
        if not page.is_file():
            for old in pages_dir.glob(f"{row.id}-*.png"):
                if _PAGE_NAME.fullmatch(old.name[len(row.id) + 1:]) and not old.is_symlink():
                    old.unlink()  # this letter's image of an earlier PDF (not another id's that starts alike)
            write_atomic(page, _page_png(pdf))
        files[row.id] = Files(pdf=pdf.name, page=f"{pages_dir.name}/{page.name}", sent=archived)
    now = dt.datetime.now().astimezone()
    offset = now.strftime("%z")
    generated = f"{now:%Y-%m-%d %H:%M} (UTC{offset[:3]}:{offset[3:]})"
    title = campaign.letter.title or campaign.letter_name
    target = folder / "report.html"
    write_atomic(target, report_html(title, campaign.letter_name, generated, rows, files).encode("utf-8"))
    return target


_PAGE_NAME = re.compile(r"[0-9a-f]{12}(-[0-9]+)?\.png")  # after "<id>-": <hash>[-<dpi>].png


def _page_png(pdf: Path) -> bytes:
    """Page 1 of the PDF as a PNG; in shades of grey when it has no colour (a third of the size)."""
    from PIL import ImageChops

    pages = page_images(pdf, PAGE_DPI)
    try:
        image = next(pages).convert("RGB")
    finally:
        pages.close()
    red, green, blue = image.split()
    if ImageChops.difference(red, green).getbbox() is None and ImageChops.difference(green, blue).getbbox() is None:
        image = red
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
