"""The overlay document: a group's regions laid out on tall pages ("sheets"), each at its place in the master.

Every letter's regions go to the same places (a slot's place depends on the master only), one over the
other, and a region's content shared by several letters (the same salutation) is laid out once. Each
region's background is the marker colour (markers.py), so that its painting starts its drawing. Once laid
out, Sheets gives one letter's regions alone, where they are: the document WeasyPrint then draws for that
letter (overlay.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dispatch.pdf.markers import MARKER
from dispatch.pdf.master import Element, Master, Slot, walk

_OVERLAY_CSS = """
@page { size: %(w).6fpx %(h).6fpx !important; margin: 0 !important; %(boxes)s }
[data-dispatch-wrap] { display: block !important; position: static !important; float: none !important;
  margin: 0 !important; padding: 0 !important; border: 0 none !important; width: auto !important;
  height: auto !important; min-width: 0 !important; min-height: 0 !important; max-width: none !important;
  max-height: none !important; transform: none !important; columns: auto !important; overflow: visible !important;
  background: none !important; break-before: auto !important; break-after: auto !important;
  break-inside: auto !important; string-set: none !important; bookmark-level: none !important;
  counter-reset: none !important; counter-increment: none !important; outline: none !important; }
[data-dispatch-wrap]::before, [data-dispatch-wrap]::after, [data-dispatch-wrap]::marker { content: none !important; }
[data-dispatch-sheet] { display: block !important; position: relative !important; margin: 0 !important;
  padding: 0 !important; border: 0 none !important; width: %(w).6fpx !important; height: %(h).6fpx !important;
  overflow: visible !important; break-after: page !important; break-inside: avoid !important; }
"""
_MARGIN_BOXES = ("top-left-corner", "top-left", "top-center", "top-right", "top-right-corner", "right-top",
                 "right-middle", "right-bottom", "bottom-right-corner", "bottom-right", "bottom-center",
                 "bottom-left", "bottom-left-corner", "left-bottom", "left-middle", "left-top")
SHEET_HEIGHT = 14000.0  # px: an overlay page holds as many of a letter's regions as fit (PDF pages stop at 14,400 pt)


def overlay_css(master: Master) -> str:
    """The overlay documents' own stylesheet: page size, no margin boxes, wrappers without boxes, slots."""
    css = _OVERLAY_CSS % {"w": master.page_width, "h": SHEET_HEIGHT,
                          "boxes": " ".join(f"@{b} {{ content: none !important; }}" for b in _MARGIN_BOXES)}
    return css + "".join(
        f'[data-dispatch-slot="{slot.index}"] {{ position: absolute !important; left: {slot.x:.6f}px !important; '
        f"width: {slot.width:.6f}px !important; height: {slot.height:.6f}px !important; right: auto !important; "
        "bottom: auto !important; margin: 0 !important; box-sizing: border-box !important; float: none !important; "
        "transform: none !important; break-before: auto !important; break-after: auto !important; "
        "z-index: auto !important; background: rgb(%s) !important; background-clip: border-box !important; }\n"
        % ",".join(map(str, MARKER)) for slot in master.slots)


@dataclass(frozen=True)
class Instance:
    """One region's content to lay out: at its master x, at `top` (px) on overlay page `sheet`."""

    slot: Slot
    content: str
    sheet: int
    top: float

    @property
    def offset(self) -> float:
        """How far down (px) the overlay moves the region from its place in the master."""
        return self.top - self.slot.y


def placements(master: Master) -> dict[int, tuple[int, float]]:
    """Where each slot's regions are laid out in an overlay, (sheet, top in px): down the sheets in slot
    order. The same for every letter of the group, whichever letters share the overlay."""
    found, sheet, top = {}, 0, 10.0
    for slot in master.slots:
        if top + slot.height + 10 > SHEET_HEIGHT and top > 10:
            sheet, top = sheet + 1, 10.0
        found[slot.index] = (sheet, top)
        top += slot.height + 20
    return found


def plan_instances(master: Master, letters: Sequence) -> tuple[list[Instance], list[list[int]]]:
    """The distinct region contents of these letters (overlay.LayeredLetter), each at its slot's place; and for
    each letter, the instance of each of its slots (in slot order). Letters with the same salutation share
    its layout."""
    places = placements(master)
    instances: list[Instance] = []
    known: dict[tuple[int, str], int] = {}
    chosen: list[list[int]] = []
    for letter in letters:
        mine = []
        for slot in master.slots:
            key = (slot.index, letter.contents[slot.index])
            if key not in known:
                known[key] = len(instances)
                instances.append(Instance(slot, key[1], *places[slot.index]))
            mine.append(known[key])
        chosen.append(mine)
    return instances, chosen


def overlay_html(master: Master, instances: Sequence[Instance]) -> str:
    """The region instances on their sheets (a sheet's regions in slot order), inside copies of the elements
    that contain them in the letter. Each region's background is the marker colour (overlay_css): its
    painting, first of the region's own, cuts the page's content into one drawing per instance."""
    parts = ["<!DOCTYPE html>", master.html_element.start(), '<head><meta charset="utf-8">', master.head,
             "</head>"]
    body = next((a for slot in master.slots for a in slot.ancestors[:1]), Element("body", ()))
    parts.append(body.start(" data-dispatch-wrap"))
    sheet = -1
    for number in sorted(range(len(instances)), key=lambda n: (instances[n].sheet, instances[n].slot.index, n)):
        instance = instances[number]
        while sheet < instance.sheet:
            parts.append(("</div>" if sheet >= 0 else "") + "<div data-dispatch-sheet>")
            sheet += 1
        slot = instance.slot
        for ancestor in slot.ancestors[1:]:
            parts.append(ancestor.start(" data-dispatch-wrap"))
        attrs = dict(slot.element.attrs)
        attrs["style"] = (attrs.get("style", "").rstrip("; ") + f";top:{instance.top:.6f}px!important").lstrip(";")
        parts.append(Element(slot.element.tag, tuple(attrs.items())).start(
            f' data-dispatch-placement="{number}" data-dispatch-slot="{slot.index}"'))
        parts.append(instance.content)
        parts.append(f"</{slot.element.tag}>")
        for ancestor in reversed(slot.ancestors[1:]):
            parts.append(f"</{ancestor.tag}>")
    parts.append("</div></body></html>")
    return "".join(parts)


class Sheets:
    """The laid-out overlay: each instance's box, and the sheets' boxes to draw one letter's regions from."""

    def __init__(self, document, count: int) -> None:
        self.document = document
        self.boxes: dict[int, Any] = {}  # instance number -> its region's box
        self.owner: dict[int, int] = {}  # id of a sheet's child box -> the instance it holds
        self.sheets: set[int] = set()  # ids of the sheets' boxes
        self.paths: set[int] = set()  # ids of the boxes that contain a sheet
        for page in document.pages:
            self._find(page._page_box, [])
        self.complete = len(self.boxes) == count and len(self.sheets) == len(document.pages)

    def _find(self, box, path: list[int]) -> None:
        element = getattr(box, "element", None)
        if element is not None and element.get("data-dispatch-sheet") is not None and \
                type(box).__name__ not in ("LineBox", "TextBox"):
            self.sheets.add(id(box))
            self.paths.update(path)
            for child in box.children:
                for inner in walk(child):
                    inner_element = getattr(inner, "element", None)
                    number = inner_element.get("data-dispatch-placement") if inner_element is not None else None
                    if number is not None and type(inner).__name__ not in ("LineBox", "TextBox"):
                        self.owner[id(child)] = int(number)
                        self.boxes.setdefault(int(number), inner)
                        break
            return
        for child in getattr(box, "children", None) or ():
            self._find(child, [*path, id(box)])

    def letter(self, instances: set[int]):
        """A document of the sheets holding only these instances' regions, laid out where they are."""
        from weasyprint.document import Page

        def keep(box):
            if id(box) in self.sheets:
                return box.copy_with_children([c for c in box.children if self.owner.get(id(c)) in instances])
            if id(box) in self.paths:
                return box.copy_with_children([keep(child) for child in box.children])
            return box

        return self.document.copy([Page(keep(page._page_box)) for page in self.document.pages])
