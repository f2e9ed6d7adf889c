"""The print run's files, made in memory: letters in one PDF, envelopes, labels and the courier's manifest.

Works on letters already rendered to PDF. The envelope, label and manifest layouts are HTML templates in the
workspace's templates/; the caller passes in the sandboxed template loader and the confined PDF renderer, so
this module never reads a file a template names and never fetches anything.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from dispatch.errors import PrintError
from dispatch.models import Recipient
from dispatch.tables import csv_bytes

from dispatch.printing.layout import (ENVELOPE_SIZES_PT, LABEL_SIZES_PT, Envelope, LabelGrid, PrintOptions,
                                       address_lines, building_key)

log = logging.getLogger(__name__)


# --- the files -------------------------------------------------------------------------------------------

class Renderer(Protocol):
    def render(self, html: str) -> Any: ...  # a Pdf: .data, .pages, .anchors


class Layouts(Protocol):
    def html(self, name: str, variables: Mapping[str, Any]) -> str: ...


@dataclass(frozen=True)
class PrintItem:
    """One letter in the print run."""

    number: int
    recipient: Recipient
    letter_pdf: Path
    pages: int = 0
    place: Mapping[str, Any] = field(default_factory=dict)  # where its address is (file, line, sheet, cell)

    @property
    def lines(self) -> list[str]:
        return address_lines(self.recipient)

    @property
    def has_address(self) -> bool:
        return bool(self.recipient.get("address").strip())


@dataclass
class PrintBundle:
    files: dict[str, bytes] = field(default_factory=dict)
    letters: int = 0
    pages: int = 0
    blank_pages: int = 0
    envelopes: int = 0
    labels: int = 0
    label_sheets: int = 0
    without_address: list[Recipient] = field(default_factory=list)


def build(items: Sequence[PrintItem], options: PrintOptions, *, layouts: Layouts, renderer: Renderer,
          sender: Mapping[str, str], title: str, today: str) -> PrintBundle:
    """Every file of the print run, in memory (the caller writes them)."""
    bundle = PrintBundle(letters=len(items))
    data, pages, blanks = bundle_letters([(f"{i.number}. {i.recipient.state}", i.letter_pdf) for i in items],
                                         duplex=options.duplex, title=title)
    items = [PrintItem(i.number, i.recipient, i.letter_pdf, count, i.place) for i, count in zip(items, pages)]
    bundle.files["letters.pdf"] = data
    bundle.pages, bundle.blank_pages = sum(pages) + blanks, blanks
    addressed = [i for i in items if i.has_address]
    bundle.without_address = [i.recipient for i in items if not i.has_address]
    if addressed:
        bundle.files["envelopes.pdf"] = envelopes_pdf(addressed, options.envelope, layouts=layouts,
                                                      renderer=renderer, sender=sender)
        labels = labels_pdf(addressed, options.labels, layouts=layouts, renderer=renderer)
        bundle.files["labels.pdf"] = labels.data
        bundle.label_sheets = labels.pages
    bundle.envelopes = bundle.labels = len(addressed)
    groups = manifest_groups(items)
    variables = {"title": title, "today": today, "groups": groups, "letters": len(items),
                 "pages": bundle.pages, "duplex": options.duplex}
    bundle.files["manifest.pdf"] = renderer.render(layouts.html("manifest.html.j2", variables)).data
    bundle.files["manifest.csv"] = manifest_csv(groups)
    return bundle


def bundle_letters(letters: Sequence[tuple[str, Path]], *, duplex: bool, title: str) -> tuple[bytes, list[int], int]:
    """All letters in one PDF, with a bookmark each; in duplex, a blank back after every odd-length letter."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    counts: list[int] = []
    blanks = 0
    for label, path in letters:
        reader = PdfReader(str(path))
        writer.append(reader, outline_item=label, import_outline=False)
        counts.append(len(reader.pages))
        if duplex and len(reader.pages) % 2:
            box = reader.pages[-1].mediabox
            writer.add_blank_page(width=box.width, height=box.height)
            blanks += 1
    writer.add_metadata({"/Title": title, "/Producer": "dispatch"})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue(), counts, blanks


def envelopes_pdf(items: Sequence[PrintItem], envelope: Envelope, *, layouts: Layouts, renderer: Renderer,
                  sender: Mapping[str, str]) -> bytes:
    left, top, width, height = envelope.address
    sender_lines = [line.strip() for line in [sender.get("name", ""), *sender.get("address", "").splitlines()]
                    if line.strip()]

    def html(sizes: Sequence[float]) -> str:
        return layouts.html("envelope.html.j2", {
            "envelope": {"name": envelope.name, "width": envelope.width, "height": envelope.height},
            "zone": {"left": left, "top": top, "width": width, "height": height},
            "sender": {"lines": sender_lines},
            "items": [{"index": n, "id": i.recipient.id, "lines": i.lines, "size": size}
                      for n, (i, size) in enumerate(zip(items, sizes))],
        })

    return fit(html, items, ENVELOPE_SIZES_PT, height, renderer,
               what=f"the address zone of a {envelope.name} envelope ({width:g} x {height:g} mm)").data


def labels_pdf(items: Sequence[PrintItem], grid: LabelGrid, *, layouts: Layouts, renderer: Renderer):
    def html(sizes: Sequence[float]) -> str:
        labels = []
        for n, (item, size) in enumerate(zip(items, sizes)):
            sheet, left, top = grid.position(n)
            labels.append({"index": n, "sheet": sheet, "left": left, "top": top, "id": item.recipient.id,
                           "lines": item.lines, "size": size})
        sheets = [[label for label in labels if label["sheet"] == s] for s in range(math.ceil(len(items) / grid.per_sheet))]
        return layouts.html("labels.html.j2", {"grid": grid, "sheets": sheets})

    return fit(html, items, LABEL_SIZES_PT, grid.height - 2 * grid.padding, renderer,
               what=f"a {grid.width:g} x {grid.height:g} mm label")


def fit(html: Callable[[Sequence[float]], str], items: Sequence[PrintItem], sizes: Sequence[float],
        room: float, renderer: Renderer, *, what: str):
    """Render with every address at the largest size at which it fits `room` mm of height; shrink those that don't.

    The template gives each address block the id text-N; WeasyPrint reports where that block landed and how
    tall it came out. Lines wrap and long words break, so the width always fits; when the height does not fit
    even at the smallest size, that recipient is an error.
    """
    chosen = [0] * len(items)
    while True:
        pdf = renderer.render(html([sizes[c] for c in chosen]))
        over = []
        for n in range(len(items)):
            box = pdf.anchors.get(f"text-{n}")
            if box is None:
                raise PrintError("the template does not mark the address blocks", file="templates/",
                                 hint='each address block needs id="text-N" (N = 0, 1, ...; see the templates '
                                      "that dispatch init writes)")
            if box[4] - box[2] > room + 0.05:
                over.append(n)
        if not over:
            return pdf
        for n in over:
            if chosen[n] + 1 == len(sizes):
                r = items[n].recipient
                raise PrintError(f"the address of {r.state} ({r.id}) does not fit on {what}, even at {sizes[-1]:g} pt",
                                 **(items[n].place or {"file": "recipients.csv", "line": r.line, "column": "address"}),
                                 hint="shorten the address lines (or the addressee), or choose larger labels in [print]")
            chosen[n] += 1
        log.info("shrinking %d address(es) to fit %s", len(over), what)


# --- the courier's manifest ------------------------------------------------------------------------------

NO_ADDRESS = "No postal address: deliver by hand or have collected"


def manifest_groups(items: Sequence[PrintItem]) -> list[dict[str, Any]]:
    """Letters grouped by building, in the order the courier meets them in the stack; no address last."""
    groups: dict[str, dict[str, Any]] = {}
    for item in items:
        address = item.recipient.get("address")
        key = building_key(address) if item.has_address else ""
        if key not in groups:
            first = next((line.strip() for line in address.splitlines() if line.strip()), "")
            groups[key] = {"building": first.split(",")[0].strip() if key else NO_ADDRESS, "rows": []}
        groups[key]["rows"].append({
            "number": item.number, "id": item.recipient.id, "state": item.recipient.state,
            "mission": item.recipient.get("mission").strip(), "pages": item.pages,
            "address": [line.strip() for line in address.splitlines() if line.strip()],
        })
    ordered = [g for k, g in groups.items() if k] + ([groups[""]] if "" in groups else [])
    return ordered


MANIFEST_COLUMNS = ("number", "id", "state", "mission", "address", "building", "pages", "date", "time", "received_by")


def manifest_csv(groups: Sequence[Mapping[str, Any]]) -> bytes:
    rows = [(row["number"], row["id"], row["state"], row["mission"], ", ".join(row["address"]), group["building"],
             row["pages"], "", "", "") for group in groups for row in group["rows"]]
    return csv_bytes(MANIFEST_COLUMNS, rows)


# --- window envelopes ------------------------------------------------------------------------------------

def address_boxes(letter_pdf: Path, lines: Sequence[str]) -> list[tuple[float, float, float, float]]:
    """The character boxes (left, top, right, bottom; mm from the page's top-left) of the address on page 1."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(letter_pdf))
    try:
        page = document[0]
        height = page.get_height()
        text = page.get_textpage()
        count = text.count_chars()
        chars = [(index, text.get_text_range(index, 1)) for index in range(count)]
        visible = [(index, ch) for index, ch in chars if ch.strip()]
        squashed = "".join(ch for _, ch in visible)
        wanted = "".join("".join(lines).split())
        start = squashed.find(wanted)
        if not wanted or start < 0:
            return []
        boxes = []
        for index, _ in visible[start:start + len(wanted)]:
            left, bottom, right, top = text.get_charbox(index)
            boxes.append((left * MM_PER_PT, (height - top) * MM_PER_PT, right * MM_PER_PT,
                          (height - bottom) * MM_PER_PT))
        return boxes
    finally:
        document.close()


MM_PER_PT = 25.4 / 72


def window_problem(boxes: Sequence[tuple[float, float, float, float]], envelope: Envelope) -> str | None:
    """Why the address would not show in the window, wherever the folded letter slides; None when it always does.

    The folded sheet's top-left corner is anywhere from the pocket's top-left corner to `play` mm right and
    down of it. A translation keeps the boxes' extremes extreme, so checking the four corners covers every
    position.
    """
    if not boxes:
        return "the address was not found on page 1 of the letter"
    left = min(b[0] for b in boxes)
    top = min(b[1] for b in boxes)
    right = max(b[2] for b in boxes)
    bottom = max(b[3] for b in boxes)
    if bottom > envelope.panel:
        return f"the address reaches {bottom:.1f} mm from the top of the sheet, below the fold at {envelope.panel:g} mm"
    play_x, play_y = envelope.play
    w_left, w_top, w_width, w_height = envelope.window
    faults = []
    if left < w_left:
        faults.append(f"starts {w_left - left:.1f} mm left of the window")
    if right + play_x > w_left + w_width:
        faults.append(f"reaches {right + play_x - w_left - w_width:.1f} mm past its right edge")
    if top < w_top:
        faults.append(f"starts {w_top - top:.1f} mm above the window")
    if bottom + play_y > w_top + w_height:
        faults.append(f"reaches {bottom + play_y - w_top - w_height:.1f} mm below it")
    if not faults:
        return None
    return (f"in a {envelope.name} window envelope the letter can slide {play_x:g} x {play_y:g} mm, and the address "
            + " and ".join(faults))
