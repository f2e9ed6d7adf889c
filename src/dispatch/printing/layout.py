"""The print run's rules: options, order, address lines, buildings, and whether an address fits the window."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from dispatch.errors import PrintError, Problem
from dispatch.models import Recipient

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


def missing_addresses(recipients: Iterable[Recipient], table) -> list[Problem]:
    """A problem for each recipient without a postal address, placed by the table (a line, or a sheet's cell)."""
    return [table.problem(f"{r.state} ({r.id}) is to be printed but has no postal address", row=r, column="address")
            for r in recipients if not r.get("address").strip()]


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


