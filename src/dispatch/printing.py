"""The print run for hand delivery: one print-ready file of letters, envelopes, labels and the courier's manifest.

Works on letters already rendered to PDF. The envelope, label and manifest layouts are HTML templates in the
workspace's templates/; campaign.py passes in the sandboxed template loader and the confined PDF renderer, so
this module never reads a file a template names and never fetches anything.
"""

from __future__ import annotations

import io
import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from .errors import PrintError, Problem
from .models import Recipient
from .tables import csv_bytes

log = logging.getLogger(__name__)

ORDERS = ("state", "group", "csv")
LABEL_SIZES_PT = (10, 9, 8, 7)       # shrink to fit: the first size at which the address fits
ENVELOPE_SIZES_PT = (11, 10, 9, 8)
A4 = (210.0, 297.0)


@dataclass(frozen=True)
class Envelope:
    """An envelope: its face as printed (landscape), and the window a folded letter shows through.

    Window geometry is given in the orientation the folded sheet lies in (portrait for C4), in mm from the
    envelope's top-left corner; `panel` is how much of the sheet, from its top edge, faces the window.
    """

    name: str
    width: float                 # the printed face, landscape
    height: float
    address: tuple[float, float, float, float]   # printed address zone: left, top, width, height
    inner: tuple[float, float]   # inside of the pocket, in the sheet's orientation
    folded: tuple[float, float]  # the sheet as it goes in: width, height
    panel: float                 # the part of the sheet (from its top edge) that faces the window
    window: tuple[float, float, float, float]    # left, top, width, height

    @property
    def play(self) -> tuple[float, float]:
        """How far the folded sheet can slide inside the envelope, across and down."""
        return (max(0.0, self.inner[0] - self.folded[0]), max(0.0, self.inner[1] - self.folded[1]))


# Sizes: ISO 269 / DIN 678 (DL 220 x 110, C5 229 x 162, C4 229 x 324 mm). Windows: DIN 680 (window envelopes),
# as envelope makers publish it: a 90 x 45 mm window 20 mm from the left edge and, on DL, 15 mm from the bottom
# edge, i.e. 50 mm from the top; C5 and C4 window envelopes for DIN 5008 form B letters put the window in the
# same place from the top-left corner (20 mm, 50 mm), so the letter's address field (45 mm from the top of the
# sheet, the recipient 5 mm below it) shows in all three. Check a sample of your own stock: makers differ. The inside of the pocket is taken as the outer
# size less 1 mm of seam on each side. Folds: DIN 5008 / DIN 676 (A4 in three at 105 and 210 mm for DL;
# once at 148.5 mm for C5; flat for C4). Printed address zone (envelopes without a window): the lower right,
# clear of the 15 mm coding strip at the bottom and 15 mm from the right edge (Deutsche Post, UPU S42).
ENVELOPES: dict[str, Envelope] = {
    "DL": Envelope("DL", 220, 110, address=(105, 42, 100, 53), inner=(218, 108), folded=(210, 105),
                   panel=105, window=(20, 50, 90, 45)),
    "C5": Envelope("C5", 229, 162, address=(114, 80, 100, 67), inner=(227, 160), folded=(210, 148.5),
                   panel=148.5, window=(20, 50, 90, 45)),
    "C4": Envelope("C4", 324, 229, address=(184, 120, 125, 94), inner=(227, 322), folded=(210, 297),
                   panel=297, window=(20, 50, 90, 45)),
}


@dataclass(frozen=True)
class LabelGrid:
    """Labels on an A4 sheet, in mm."""

    columns: int
    rows: int
    width: float
    height: float
    top: float
    left: float
    column_gap: float
    row_gap: float
    padding: float

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows

    def position(self, index: int) -> tuple[int, float, float]:
        """(sheet, left, top) of the index-th label."""
        sheet, place = divmod(index, self.per_sheet)
        row, column = divmod(place, self.columns)
        return (sheet, self.left + column * (self.width + self.column_gap),
                self.top + row * (self.height + self.row_gap))


# Built-in sheets, edge to edge across the width of A4 (measured from the makers' data sheets):
# Avery Zweckform 3652: 3 x 7 labels of 70 x 42.3 mm; Avery Zweckform 3474: 3 x 8 labels of 70 x 37 mm.
LABEL_SHEETS: dict[str, dict[str, float]] = {
    "3x7": {"columns": 3, "rows": 7, "width": 70.0, "height": 42.3, "column_gap": 0.0, "row_gap": 0.0},
    "3x8": {"columns": 3, "rows": 8, "width": 70.0, "height": 37.0, "column_gap": 0.0, "row_gap": 0.0},
}


@dataclass(frozen=True)
class PrintOptions:
    envelope: Envelope
    order: str
    duplex: bool
    window: bool
    labels: LabelGrid


def print_options(settings: Mapping[str, Any], *, envelope: str | None = None, order: str | None = None,
                  duplex: bool | None = None) -> PrintOptions:
    """The [print] settings, with the command line's choices on top."""
    envelope = envelope or settings["envelope"]
    if envelope.upper() not in ENVELOPES:
        raise PrintError(f"unknown envelope {envelope!r}", hint=f"use one of {', '.join(ENVELOPES)}")
    order = order or settings["order"]
    if order not in ORDERS:
        raise PrintError(f"unknown order {order!r}", hint=f"use one of {', '.join(ORDERS)}")
    return PrintOptions(ENVELOPES[envelope.upper()], order, settings["duplex"] if duplex is None else duplex,
                        settings["window"], label_grid(settings))


def label_grid(settings: Mapping[str, Any]) -> LabelGrid:
    """The label sheet: a built-in one, with any label_* setting in dispatch.toml overriding its value."""
    base = dict(LABEL_SHEETS[settings["labels"]])
    for key in ("columns", "rows"):
        if settings[f"label_{key}"] > 0:
            base[key] = settings[f"label_{key}"]
    for key in ("width", "height"):
        if settings[f"label_{key}_mm"] > 0:
            base[key] = settings[f"label_{key}_mm"]
    for key in ("column_gap", "row_gap"):
        if settings[f"label_{key}_mm"] >= 0:
            base[key] = settings[f"label_{key}_mm"]
    columns, rows = int(base["columns"]), int(base["rows"])
    used_width = columns * base["width"] + (columns - 1) * base["column_gap"]
    used_height = rows * base["height"] + (rows - 1) * base["row_gap"]
    left = settings["label_left_mm"] if settings["label_left_mm"] >= 0 else (A4[0] - used_width) / 2
    top = settings["label_top_mm"] if settings["label_top_mm"] >= 0 else (A4[1] - used_height) / 2
    padding = settings["label_padding_mm"]
    if left < 0 or top < 0 or left + used_width > A4[0] + 0.01 or top + used_height > A4[1] + 0.01:
        raise PrintError(f"{columns} x {rows} labels of {base['width']:g} x {base['height']:g} mm do not fit on an A4 sheet",
                         file="dispatch.toml", column="[print]",
                         hint="check label_columns, label_rows, label_width_mm, label_height_mm and the margins")
    if 2 * padding >= min(base["width"], base["height"]):
        raise PrintError(f"label_padding_mm = {padding:g} leaves no room for the address", file="dispatch.toml",
                         column="[print]", hint="use a padding of a few mm")
    return LabelGrid(columns, rows, base["width"], base["height"], top, left, base["column_gap"],
                     base["row_gap"], padding)


# --- who, in which order ---------------------------------------------------------------------------------

def sort_key(text: str) -> str:
    """Alphabetical order as people expect it: accents and case do not count (Côte d'Ivoire under C)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def order_recipients(recipients: Iterable[Recipient], order: str) -> list[Recipient]:
    rows = list(recipients)
    if order == "csv":
        return sorted(rows, key=lambda r: r.line)
    if order == "group":
        return sorted(rows, key=lambda r: (not r.get("regional_group").strip(), sort_key(r.get("regional_group")),
                                           sort_key(r.state), r.line))
    return sorted(rows, key=lambda r: (sort_key(r.state), r.line))


def address_lines(recipient: Recipient) -> list[str]:
    """The address block, as on the letter: addressee, mission, postal address."""
    lines = [*recipient.addressee_lines, recipient.get("mission").strip()]
    lines += [line.strip() for line in recipient.get("address").splitlines() if line.strip()]
    return lines


def missing_addresses(recipients: Iterable[Recipient], file: str) -> list[Problem]:
    return [Problem(f"{r.state} ({r.id}) is to be printed but has no postal address", file=file, line=r.line,
                    column="address") for r in recipients if not r.get("address").strip()]


_BUILDING_WORDS = {
    "street": "st", "str": "st", "avenue": "ave", "av": "ave", "plaza": "plz", "place": "pl",
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th", "sixth": "6th",
    "seventh": "7th", "eighth": "8th", "ninth": "9th", "tenth": "10th", "east": "e", "west": "w",
    "one": "1", "two": "2", "three": "3",
}
_UNIT_WORDS = {"floor", "fl", "suite", "ste", "room", "rm", "level", "unit", "apt"}


def building_key(address: str) -> str:
    """The building an address is in: its first line's street and number, written one way.

    "866 United Nations Plaza, Room 304" and "866 UN Plaza, Suite 500" are the same building.
    """
    first = next((line for line in address.splitlines() if line.strip()), "")
    street = first.split(",")[0]
    words = re.findall(r"[0-9a-z]+", sort_key(street))
    text = " ".join(words)
    text = re.sub(r"\bunited nations\b", "un", text)
    key: list[str] = []
    for word in text.split():
        if word in _UNIT_WORDS or word.startswith("#"):
            break
        word = re.sub(r"^(\d+)(st|nd|rd|th)$", r"\1th", _BUILDING_WORDS.get(word, word))
        key.append(word)
    return " ".join(key)


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
    items = [PrintItem(i.number, i.recipient, i.letter_pdf, count) for i, count in zip(items, pages)]
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
                                 file="recipients.csv", line=r.line, column="address",
                                 hint="shorten the address lines (or the addressee), or choose larger labels in [print]")
            chosen[n] += 1
        log.info("shrinking %d address(es) to fit %s", len(over), what)


# --- the courier's manifest ------------------------------------------------------------------------------

def manifest_groups(items: Sequence[PrintItem]) -> list[dict[str, Any]]:
    """Letters grouped by building, in the order the courier meets them in the stack; no address last."""
    groups: dict[str, dict[str, Any]] = {}
    for item in items:
        address = item.recipient.get("address")
        key = building_key(address) if item.has_address else ""
        if key not in groups:
            first = next((line.strip() for line in address.splitlines() if line.strip()), "")
            groups[key] = {"building": first.split(",")[0].strip() if key else "No postal address", "rows": []}
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
