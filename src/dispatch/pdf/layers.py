"""Layered rendering: lay out what recipients share once, then lay each recipient's regions over it.

As print shops do variable-data printing. Recipients whose letters differ only inside their regions
(see regions.py) form a group. For each group:

1. The master: the letter with its regions emptied is laid out and written once. Each empty region
   holds a marker, a 1 px square of a colour of its own; in the PDF the marker's drawing is replaced by
   a call to a "slot", a form XObject the size of the region (grown by SLOT_BLEED), filled per recipient.
   So a region's text comes in the page's content exactly where the full letter has it (same reading
   order, same text extraction).
2. The overlays: the distinct contents of the regions of many recipients are laid out in one
   WeasyPrint document, down tall pages, each region at its master x and width, styled by the same
   stylesheets, inside copies of the elements that contain it in the letter (so inherited styles and
   selectors apply). Each region's background is the marker colour: its painting cuts the page's
   content into one drawing per region.
3. Each recipient's PDF: the master's bytes, then an incremental update (pdfupdate.py) whose slots
   draw that recipient's regions, with the recipient's own metadata (title, subject, keywords, custom
   fields, XMP), written atomically.

Guards: every region must have a fixed height and be found at the same place on every page it shows
on; in the overlay it must land on its master box, look the same (font, size, colour, alignment...),
and its content must fit in its box. A group that fails a guard is rendered whole (MasterJob gives a
FellBack with the reason); a letter that fails one is rendered whole by its overlay job, which says why.
"""

from __future__ import annotations

import html as htmllib
import io
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from html.parser import HTMLParser
from typing import Any, Sequence

from .errors import DispatchError
from .pdf import Done, PdfRenderer, sha256, write_atomic
from .pdfupdate import Base, Objects, flate_stream, scalar, stream_body, update
from .regions import ATTRIBUTE, Parts

PT_PER_PX = 0.75
SLOT_BLEED = 3.0  # pt: ink that may pass a region's box (italic overhang, descenders); pt
TOLERANCE = 0.05  # px: how far an overlay box may be from its master box
MARKER = (7, 11, 13)  # + slot number on the blue channel
MAX_SLOTS = 200
# What decides how a region's text looks: compared between the master and the overlay.
STYLE_KEYS = ("font_family", "font_size", "font_weight", "font_style", "font_stretch", "font_variant_caps",
              "line_height", "color", "text_align_all", "text_align_last", "direction", "letter_spacing",
              "word_spacing", "text_transform", "text_indent", "white_space", "hyphens", "lang",
              "padding_top", "padding_right", "padding_bottom", "padding_left", "border_top_width",
              "border_left_width", "text_decoration_line", "font_feature_settings", "font_kerning")


def supports(pdf_variant: str | None) -> str | None:
    """None when letters of this PDF variant can be layered, else why not."""
    if not pdf_variant or re.fullmatch(r"pdf/a-[1-4][bu]", pdf_variant):
        return None
    return f"{pdf_variant} needs every word tagged in the structure of the page: rendered whole"


def _variant_parts(pdf_variant: str | None) -> tuple[int, str] | None:
    match = re.fullmatch(r"pdf/a-([1-4])([bu])", pdf_variant or "")
    return (int(match.group(1)), match.group(2).upper()) if match else None


def master_html(parts: Parts) -> str:
    """The shared HTML with a marker in each region (slot k's marker has blue MARKER[2] + k)."""
    r, g, b = MARKER
    return parts.fill_slots(lambda k: (
        f'<span data-dispatch-slot="{k}" style="display:inline-block;width:1px;height:1px;'
        f'background-color:rgb({r},{g},{b + k})"></span>'))


@dataclass(frozen=True)
class Element:
    """An element of the letter as the overlay needs to copy it: tag and attributes."""

    tag: str
    attrs: tuple[tuple[str, str], ...]

    def start(self, extra: str = "") -> str:
        attrs = "".join(f' {k}="{htmllib.escape(v)}"' for k, v in self.attrs)
        return f"<{self.tag}{attrs}{extra}>"


@dataclass(frozen=True)
class Slot:
    """Where one region sits in the master: its border box in px from the page's top-left corner."""

    index: int
    name: str
    pages: tuple[int, ...]
    x: float
    y: float
    width: float
    height: float
    element: Element
    ancestors: tuple[Element, ...]  # from <body> down to the region's parent (body included)
    style: tuple[str, ...]


@dataclass(frozen=True)
class Master:
    """One group's master: the PDF with empty slots, and what the overlays need to fill them."""

    group: str
    pdf: bytes
    pages: int
    page_width: float  # px
    page_height: float
    html_element: Element
    head: str  # the master's <head> content without <title>/<meta>: stylesheets and <style>
    slots: tuple[Slot, ...]
    pdf_variant: str | None = None
    base: Base | None = None  # the master as the base of each letter's update section
    slot_objects: tuple[tuple[int, bytes], ...] = ()  # per slot: its form's object number and /BBox
    metadata_object: int | None = None  # the XMP stream's object number
    producer: bytes = b""  # the master's /Producer, written
    body: str = ""  # the group's HTML from </head> on, a mark in each region (see whole_html)
    word: str = ""

    def whole_html(self, letter: "Letter") -> str:
        """The letter's HTML, whole: its own head, then the group's body with its regions' content."""
        return "".join(letter.head) + re.sub("\ue000" + self.word + "#(\\d+)\ue001",
                                    lambda m: letter.contents[int(m.group(1))], self.body)


@dataclass(frozen=True)
class FellBack:
    """A recipient (or group) that is rendered whole, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class MasterJob:
    """Lay out and write one group's master."""

    group: str
    html: str
    count: int  # recipients in the group (for messages)
    body: str = ""  # see Master.body
    word: str = ""

    def run(self, renderer: PdfRenderer) -> Master | FellBack:
        reason = supports(renderer.pdf_variant)
        if reason:
            return FellBack(self.group, reason)
        try:
            document = renderer.layout(self.html)
            slots, size = _find_slots(document)
            pdf = _with_slots(renderer.write(document), slots, size[1])
        except _Unfit as exc:
            return FellBack(self.group, str(exc))
        except DispatchError as exc:  # rendered whole, the letter reports it with its name
            return FellBack(self.group, exc.problem.message)
        root = document.pages[0]._page_box.children[0].element
        return Master(self.group, pdf, len(document.pages), size[0], size[1], _element(root),
                      _head_for_overlay(self.html), tuple(slots), renderer.pdf_variant, **_base_facts(pdf, slots),
                      body=self.body, word=self.word)


@dataclass(frozen=True)
class Letter:
    """One recipient's part of an overlay job."""

    name: str
    target: Path
    contents: tuple[str, ...]  # each slot's content (HTML)
    head: tuple[str, ...]  # the recipient's own <head> in pieces (regions.Parts.head), for the PDF's metadata


@dataclass(frozen=True)
class OverlayJob:
    """Lay out the regions of several recipients of one group, and write each one's PDF."""

    master: Master
    letters: tuple[Letter, ...]
    stage: bool = False  # leave each PDF under a temporary name for the caller to rename (Done.staged)

    def run(self, renderer: PdfRenderer) -> list:
        return _overlay(renderer, self.master, self.letters, self.stage)


@dataclass(frozen=True)
class WarmUp:
    """Lay out and write a small document with the letter's stylesheets and one letter's regions, in a worker
    that would wait while a master is laid out: its first overlay then finds the fonts loaded."""

    html: str

    @classmethod
    def of(cls, master_html: str, contents: Sequence[str]) -> "WarmUp":
        regions = "".join(f"<div>{content}</div>" for content in contents)
        return cls(f'<!DOCTYPE html><html><head><meta charset="utf-8">{_head_for_overlay(master_html)}</head>'
                   f"<body>{regions}</body></html>")

    def run(self, renderer: PdfRenderer) -> None:
        try:
            renderer.write(renderer.layout(self.html, plain=True), plain=True)
        except DispatchError:  # the overlay that follows meets the same problem and reports it
            pass


class _Unfit(Exception):
    """The layout cannot be layered (the message says why)."""


def _walk(box):
    if type(box).__name__ == "AbsolutePlaceholder":
        box = box._box  # an absolutely positioned box stands in the tree behind a placeholder
    yield box
    for child in getattr(box, "children", None) or ():
        yield from _walk(child)


def _region_boxes(page_box) -> list[Any]:
    """The boxes of elements with data-variable, outermost only, in painting order of the tree."""
    found, seen = [], set()
    for box in _walk(page_box):
        element = getattr(box, "element", None)
        if element is None or element.get(ATTRIBUTE) is None or id(element) in seen:
            continue
        if type(box).__name__ in ("LineBox", "TextBox"):
            continue
        seen.add(id(element))
        found.append(box)
    return found


def _style(box) -> tuple[str, ...]:
    return tuple(repr(box.style[key]) for key in STYLE_KEYS)


def _element(element) -> Element:
    return Element(str(element.tag), tuple((str(k), str(v)) for k, v in element.attrib.items()))


def _find_slots(document) -> tuple[list[Slot], tuple[float, float]]:
    first = document.pages[0]._page_box
    size = (first.margin_width(), first.margin_height())
    root = first.children[0].element
    parents = {child: parent for parent in root.iter() for child in parent}
    by_index: dict[int, dict[str, Any]] = {}
    for number, page in enumerate(document.pages):
        page_box = page._page_box
        if (page_box.margin_width(), page_box.margin_height()) != size:
            raise _Unfit("the pages are not all the same size")
        for box in _region_boxes(page_box):
            element = box.element
            name = element.get(ATTRIBUTE)
            marker = next((e for e in element.iter() if e.get("data-dispatch-slot") is not None), None)
            if marker is None:
                raise _Unfit(f"region {name!r} has no slot")
            if box.style["height"] == "auto":
                raise _Unfit(f"region {name!r} has no fixed height in the stylesheet, so its content could move "
                             "the rest of the letter")
            if getattr(box.style["background_color"], "alpha", 0) or any(
                    kind != "none" for kind, _ in box.style["background_image"]):
                raise _Unfit(f"region {name!r} has a background (its overlay marks it with one of its own)")
            index = int(marker.get("data-dispatch-slot"))
            rect = (box.border_box_x(), box.border_box_y(), box.border_width(), box.border_height())
            known = by_index.get(index)
            if known is None:
                chain, node = [], parents.get(element)
                while node is not None and node is not root:
                    chain.append(_element(node))
                    node = parents.get(node)
                by_index[index] = {"name": name, "pages": [number], "rect": rect, "element": _element(element),
                                   "ancestors": tuple(reversed(chain)), "style": _style(box)}
            elif any(abs(a - b) > TOLERANCE for a, b in zip(rect, known["rect"])):
                raise _Unfit(f"region {name!r} is not at the same place on every page")
            else:
                known["pages"].append(number)
    if not by_index:
        raise _Unfit("the layout has no regions (data-variable)")
    if len(by_index) > MAX_SLOTS:
        raise _Unfit(f"the layout has more than {MAX_SLOTS} regions")
    slots = [Slot(index, v["name"], tuple(v["pages"]), *v["rect"], v["element"], v["ancestors"], v["style"])
             for index, v in sorted(by_index.items())]
    for a in slots:
        for b in slots:
            if a.index < b.index and _overlap(a, b):
                raise _Unfit(f"regions {a.name!r} and {b.name!r} overlap")
    return slots, size


def _overlap(a: Slot, b: Slot) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def _head_for_overlay(html: str) -> str:
    """The master's stylesheets (<link> and <style>) for the overlay's <head>."""
    head = html[:max(html.find("</head>"), 0)]
    return "\n".join(re.findall(r"<link\b[^>]*>|<style\b[^>]*>.*?</style>", head, re.S | re.I))


# ---- the master PDF: markers become slots ----

def _with_slots(data: bytes, slots: Sequence[Slot], page_height_px: float) -> bytes:
    """The master PDF with each marker's drawing replaced by a call to its slot's form XObject."""
    import pikepdf

    height = page_height_px * PT_PER_PX
    by_index = {slot.index: slot for slot in slots}
    with pikepdf.open(io.BytesIO(data)) as pdf:
        forms = {}
        for slot in slots:
            x0, x1 = slot.x * PT_PER_PX - SLOT_BLEED, (slot.x + slot.width) * PT_PER_PX + SLOT_BLEED
            y0 = height - (slot.y + slot.height) * PT_PER_PX - SLOT_BLEED
            y1 = height - slot.y * PT_PER_PX + SLOT_BLEED
            forms[slot.index] = pdf.make_stream(b"/Sheet Do", Type=pikepdf.Name.XObject,
                                                Subtype=pikepdf.Name.Form, BBox=[x0, y0, x1, y1],
                                                Resources=pikepdf.Dictionary(XObject=pikepdf.Dictionary()))
        for number, page in enumerate(pdf.pages):
            expected = {s.index for s in slots if number in s.pages}
            found = _replace_markers(pdf, page, by_index)
            if sorted(found) != sorted(expected):
                raise _Unfit("a region's place in the page could not be found in the PDF "
                             "(inside a transparent or transformed element?)")
            if found:
                resources = page.obj.get("/Resources")
                if "/XObject" not in resources:
                    resources.XObject = pikepdf.Dictionary()
                for index in found:
                    resources.XObject[f"/DispatchSlot{index}"] = forms[index]
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True, object_stream_mode=pikepdf.ObjectStreamMode.disable)
        return out.getvalue()


def _base_facts(data: bytes, slots: Sequence[Slot]) -> dict:
    """Where the master keeps what each letter's update replaces: slots, /Info, XMP."""
    import pikepdf

    with pikepdf.open(io.BytesIO(data)) as pdf:
        objects = []
        for slot in slots:
            form = pdf.pages[slot.pages[0]].obj.Resources.XObject[f"/DispatchSlot{slot.index}"]
            objects.append((form.objgen[0], form.BBox.unparse()))
        metadata = pdf.Root.get("/Metadata")
        producer = pdf.docinfo.get("/Producer")
        return {"base": Base.read(data, pdf), "slot_objects": tuple(objects),
                "metadata_object": metadata.objgen[0] if metadata is not None else None,
                "producer": producer.unparse() if producer is not None else b""}


# What a marker's painting is made of: a group (q ... Q), clipped to its box, filled with its colour.
_MARKER_OPS = frozenset(["q", "Q", "re", "W", "W*", "n", "BMC", "BDC", "EMC", "gs", "rg", "f", "f*"])


@dataclass(frozen=True)
class _Marker:
    """A marker's painting in a content stream: operations start..end, the transformation before it."""

    start: int
    end: int
    index: int  # the blue channel's step above MARKER (the slot number in a master)
    ctm: Any


def _markers(operations: list, names: list[str] | None = None) -> list[_Marker]:
    """Every marker painted in a page's operations, with the whole group that paints it (its clip too).

    names: each operation's operator, if the caller has them already."""
    import pikepdf

    r, g, b = (c / 255 for c in MARKER)
    names = names if names is not None else [str(operation.operator) for operation in operations]
    ctms, stack, ctm = [], [], pikepdf.Matrix()
    for i, op in enumerate(names):
        ctms.append(ctm)
        if op == "q":
            stack.append(ctm)
        elif op == "Q":
            ctm = stack.pop() if stack else pikepdf.Matrix()
        elif op == "cm":
            ctm = pikepdf.Matrix(*[float(v) for v in operations[i].operands]) @ ctm
    found = []
    for i, op in enumerate(names):
        if op != "rg":
            continue
        operands = operations[i].operands
        if len(operands) != 3:
            continue
        red, green, blue = (float(v) for v in operands)
        index = round((blue - b) * 255)
        if not (abs(red - r) < 5e-4 and abs(green - g) < 5e-4 and abs(blue - b - index / 255) < 5e-4):
            continue
        end = next((j for j in range(i + 1, min(i + 10, len(names))) if names[j] in ("f", "f*")), None)
        if end is None:
            continue
        start = i
        while True:  # widen to the enclosing q ... Q while it holds nothing but the marker's painting
            s, e = _enclosing_group(names, start, end)
            if s is None or any(n not in _MARKER_OPS for n in names[s:e + 1]) or not _balanced(names[s:e + 1]):
                break
            start, end = s, e
        found.append(_Marker(start, end, index, ctms[start]))
    return found


def _enclosing_group(names: list[str], start: int, end: int) -> tuple[int | None, int]:
    depth, s = 0, start - 1
    while s >= 0 and not (names[s] == "q" and depth == 0):
        depth += {"Q": 1, "q": -1}.get(names[s], 0)
        s -= 1
    depth, e = 0, end + 1
    while e < len(names) and not (names[e] == "Q" and depth == 0):
        depth += {"q": 1, "Q": -1}.get(names[e], 0)
        e += 1
    return (s, e) if s >= 0 and e < len(names) else (None, e)


def _balanced(names: list[str]) -> bool:
    depth = 0
    for name in names:
        depth += 1 if name in ("BMC", "BDC") else -1 if name == "EMC" else 0
        if depth < 0:
            return False
    return depth == 0


def _replace_markers(pdf, page, slots: dict) -> list[int]:
    """Replace each slot marker's painting in the page by a call to the slot's form; the slots found."""
    import pikepdf

    operations = pikepdf.parse_content_stream(page)
    markers = [m for m in _markers(operations) if m.index in slots]
    if not markers:
        return []
    out, last = [], 0
    for marker in markers:
        out += operations[last:marker.start]
        out += [pikepdf.ContentStreamInstruction([], pikepdf.Operator("q")),
                pikepdf.ContentStreamInstruction(list(marker.ctm.inverse().shorthand), pikepdf.Operator("cm")),
                pikepdf.ContentStreamInstruction([pikepdf.Name(f"/DispatchSlot{marker.index}")], pikepdf.Operator("Do")),
                pikepdf.ContentStreamInstruction([], pikepdf.Operator("Q"))]
        last = marker.end + 1
    out += operations[last:]
    page.obj.Contents = pdf.make_stream(pikepdf.unparse_content_stream(out))
    return [m.index for m in markers]


# ---- the overlays ----

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
SHEET_HEIGHT = 14000.0  # px: an overlay page holds as many letters' regions as fit (PDF pages stop at 14,400 pt)


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
class _Instance:
    """One region's content to lay out: at its master x, at `top` (px) on overlay page `sheet`."""

    slot: Slot
    content: str
    sheet: int
    top: float

    @property
    def offset(self) -> float:
        """How far down (px) the overlay moves the region from its place in the master."""
        return self.top - self.slot.y


def plan_instances(master: Master, letters: Sequence[Letter]) -> tuple[list[_Instance], list[list[int]]]:
    """The distinct region contents of these letters, stacked down tall overlay pages; and for each
    letter, the instance of each of its slots. Letters with the same salutation share its drawing."""
    instances: list[_Instance] = []
    known: dict[tuple[int, str], int] = {}
    chosen: list[list[int]] = []
    sheet, top = 0, 10.0
    for letter in letters:
        mine = []
        for slot in master.slots:
            key = (slot.index, letter.contents[slot.index])
            if key not in known:
                if top + slot.height + 10 > SHEET_HEIGHT and top > 10:
                    sheet, top = sheet + 1, 10.0
                known[key] = len(instances)
                instances.append(_Instance(slot, key[1], sheet, top))
                top += slot.height + 20
            mine.append(known[key])
        chosen.append(mine)
    return instances, chosen


def overlay_html(master: Master, instances: Sequence[_Instance]) -> str:
    """The region instances down tall pages, inside copies of the elements that contain them in the letter.
    Each region's background is the marker colour (overlay_css): its painting, first of the region's own,
    cuts the page's content into one drawing per instance."""
    parts = ["<!DOCTYPE html>", master.html_element.start(), '<head><meta charset="utf-8">', master.head,
             "</head>"]
    body = next((a for slot in master.slots for a in slot.ancestors[:1]), Element("body", ()))
    parts.append(body.start(" data-dispatch-wrap"))
    sheet = -1
    for number, instance in enumerate(instances):
        if instance.sheet != sheet:
            parts.append(("</div>" if sheet >= 0 else "") + "<div data-dispatch-sheet>")
            sheet = instance.sheet
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


def _check_region(box, slot: Slot, offset: float, *, compare_style: bool) -> str | None:
    """None when a region of the overlay sits on its master box (moved by offset) and fits; else the problem."""
    if box is None:
        return f"region {slot.name!r} could not be laid out on its own"
    rect = (box.border_box_x(), box.border_box_y() - offset, box.border_width(), box.border_height())
    if any(abs(a - b) > TOLERANCE for a, b in zip(rect, (slot.x, slot.y, slot.width, slot.height))):
        return f"region {slot.name!r} does not land where it is in the letter"
    if compare_style and _style(box) != slot.style:
        changed = [k for k, a, b in zip(STYLE_KEYS, _style(box), slot.style) if a != b]
        return (f"region {slot.name!r} looks different outside the letter ({', '.join(changed[:3])}): "
                "its style depends on its neighbours")
    overflow = _overflow(box)
    return f"the {slot.name} does not fit in its box ({overflow})" if overflow else None


def _overflow(region) -> str | None:
    left, top = region.content_box_x(), region.content_box_y()
    right, bottom = left + region.width, top + region.height
    tall = wide = 0.0
    for box in _walk(region):
        if box is region or not hasattr(box, "border_box_x"):
            continue
        x, y = box.border_box_x(), box.border_box_y()
        w, h = box.border_width(), box.border_height()
        kind = type(box).__name__
        if kind not in ("TextBox", "InlineBox"):  # glyphs may pass their line's height
            tall = max(tall, y + h - bottom)
        if kind == "TextBox":
            wide = max(wide, left - x, x + w - right)
    if tall > 0.5:
        return f"{tall * PT_PER_PX:.1f} pt too tall"
    if wide > 0.5:
        return f"a line is {wide * PT_PER_PX:.1f} pt too wide"
    return None


def _overlay(renderer: PdfRenderer, master: Master, letters: Sequence[Letter],
             stage: bool = False) -> list[tuple[Done, str | None]]:
    """Each letter's Done, with the reason it was rendered whole (None when it was layered)."""
    import pikepdf

    instances, chosen = plan_instances(master, letters)
    try:
        document = renderer.layout(overlay_html(master, instances), plain=True,
                                   stylesheets=(renderer.stylesheet(overlay_css(master)),))
    except DispatchError as exc:
        return [_whole(renderer, master, letter, exc.problem.message, stage) for letter in letters]
    boxes: list[Any] = []  # the instances' boxes, in document order
    seen: set[int] = set()
    for page in document.pages:
        for box in _walk(page._page_box):
            element = getattr(box, "element", None)
            if element is None or id(element) in seen or type(box).__name__ in ("LineBox", "TextBox"):
                continue
            if element.get("data-dispatch-placement") is not None:
                seen.add(id(element))
                boxes.append(box)
    if len(boxes) != len(instances) or len(document.pages) != instances[-1].sheet + 1:
        return [_whole(renderer, master, letter, "the regions could not be laid out on their own", stage)
                for letter in letters]
    styled: set[int] = set()
    found = []
    for box, instance in zip(boxes, instances):
        found.append(_check_region(box, instance.slot, instance.offset,
                                   compare_style=instance.slot.index not in styled))
        styled.add(instance.slot.index)
    group_problem = next((p for p in found if p and "looks different" in p), None)
    problems = [group_problem or next((found[i] for i in mine if found[i]), None) for mine in chosen]
    data = renderer.write(document, plain=True)
    results: list = []  # (Done, reason), or the index in `written` of a letter being written
    with pikepdf.open(io.BytesIO(data)) as overlay:
        drawings: list[bytes] = []
        objects = Objects(master.base.size)  # fonts and graphic states, written once for the whole batch
        resources = []
        for page in overlay.pages:
            drawings += _cut_at_markers(page)
            resources.append(objects.value(page.obj.Resources, top=True))
        if len(drawings) != len(instances):
            problems = ["the regions' drawings could not be told apart"] * len(letters)
        sheet_height = SHEET_HEIGHT * PT_PER_PX
        # Each file is written (and synced to the disk) by a thread while the next one is assembled: the
        # thread mostly waits for the disk, and lets go of the interpreter meanwhile.
        with ThreadPoolExecutor(1) as writer:
            written: list[tuple[Letter, bytes, Future]] = []
            for letter, mine, problem in zip(letters, chosen, problems):
                if problem:
                    results.append(_whole(renderer, master, letter, problem, stage))
                    continue
                fills = [(drawings[i], resources[instances[i].sheet],
                          master.page_height * PT_PER_PX - sheet_height + instances[i].offset * PT_PER_PX)
                         for i in mine]
                pdf = _assemble(master, objects, fills, letter)
                written.append((letter, pdf, writer.submit(write_atomic, letter.target, pdf, staged=stage)))
                results.append(len(written) - 1)
            for n, result in enumerate(results):
                if isinstance(result, int):
                    letter, pdf, future = written[result]
                    results[n] = (_written(letter, pdf, future, master.pages, stage), None)
    return results


def _written(letter: Letter, pdf: bytes, future: Future, pages: int, stage: bool) -> Done:
    """The Done of a letter whose PDF a thread was writing (write_atomic), once it is written or failed."""
    try:
        written = future.result()
    except DispatchError as exc:
        return Done(letter.name, letter.target, problem=exc.problem)
    return Done(letter.name, letter.target, pages, len(pdf), sha256(pdf), staged=written if stage else None)


def _whole(renderer: PdfRenderer, master: Master, letter: Letter, reason: str,
           stage: bool = False) -> tuple[Done, str]:
    """The letter rendered whole (the way every letter is without layers), and why."""
    try:
        pdf = renderer.render(master.whole_html(letter))
        written = write_atomic(letter.target, pdf.data, staged=stage)
    except DispatchError as exc:
        return Done(letter.name, letter.target, problem=exc.problem), reason
    return Done(letter.name, letter.target, pdf.pages, len(pdf.data), sha256(pdf.data),
                staged=written if stage else None), reason


def _cut_at_markers(page) -> list[bytes]:
    """The page's content cut into one drawing per marker: the operations between a marker's painting and
    the next one's, preceded by the transformation in force there, so that each drawing stands on its own."""
    import pikepdf

    operations = pikepdf.parse_content_stream(page)
    names = [str(operation.operator) for operation in operations]
    markers = _markers(operations, names)
    drawings = []
    for n, marker in enumerate(markers):
        stop = markers[n + 1].start if n + 1 < len(markers) else len(operations)
        chunk, level = [], 0
        for i in range(marker.end + 1, stop):
            name = names[i]
            if name == "Q":
                if level == 0:
                    continue  # closes a group opened before the marker: not this drawing's
                level -= 1
            elif name == "q":
                level += 1
            chunk.append(i)
        while chunk and level and names[chunk[-1]] == "q":  # opened for the next marker
            chunk.pop()
            level -= 1
        head = [pikepdf.ContentStreamInstruction([], pikepdf.Operator("q")),
                pikepdf.ContentStreamInstruction(list(_ctm_after(operations, names, marker).shorthand),
                                                 pikepdf.Operator("cm"))]
        tail = [pikepdf.ContentStreamInstruction([], pikepdf.Operator("Q"))] * (1 + level)
        drawings.append(pikepdf.unparse_content_stream(head + [operations[i] for i in chunk] + tail))
    return drawings


def _ctm_after(operations: list, names: list[str], marker: _Marker):
    """The transformation in force just after a marker's painting (its group closed)."""
    import pikepdf

    ctm, stack = marker.ctm, []
    for i in range(marker.start, marker.end + 1):
        name = names[i]
        if name == "q":
            stack.append(ctm)
        elif name == "Q":
            ctm = stack.pop() if stack else ctm
        elif name == "cm":
            ctm = pikepdf.Matrix(*[float(v) for v in operations[i].operands]) @ ctm
    return ctm


def _assemble(master: Master, objects: Objects, fills: Sequence[tuple[bytes, bytes, float]], letter: Letter) -> bytes:
    """The letter's PDF: the master, then an update that fills its slots and sets its metadata.

    fills: for each slot, its drawing, the resources it uses (written) and how far up it moves."""
    bodies = dict(objects.bodies)
    number = objects.next
    for (slot_object, bbox), (drawing, resources, lift) in zip(master.slot_objects, fills):
        bodies[number] = flate_stream(b"/Type/XObject/Subtype/Form/BBox[-100000 -100000 100000 100000]"
                                      b"/Matrix[1 0 0 1 0 %s]/Resources" % scalar(round(lift, 6)) + resources, drawing)
        bodies[slot_object] = stream_body(
            b"<</Type/XObject/Subtype/Form/BBox" + bbox + b"/Resources<</XObject<</Sheet %d 0 R>>>>>>" % number,
            b"/Sheet Do")
        number += 1
    metadata = head_metadata("".join(letter.head))
    parts = _variant_parts(master.pdf_variant)
    if parts and master.metadata_object is not None:
        bodies[master.metadata_object] = stream_body(b"<</Type/Metadata/Subtype/XML>>", _xmp(metadata, *parts))
    return update(master.base, bodies, number, _info(metadata, master.producer))


def _info(metadata, producer: bytes) -> bytes:
    """The /Info dictionary WeasyPrint writes for this metadata (weasyprint.pdf.generate_pdf)."""
    import pikepdf

    entries = [(b"/Producer", producer)] if producer else []
    standard = {b"/Title": metadata.title, b"/Author": ", ".join(metadata.authors),
                b"/Subject": metadata.description, b"/Keywords": ", ".join(metadata.keywords),
                b"/Creator": metadata.generator}
    entries += [(key, pikepdf.String(value).unparse()) for key, value in standard.items() if value]
    for key, value in metadata.custom.items():
        key = "".join(char for char in key if char.isalnum()).encode("ascii", errors="ignore").decode()
        if key:
            entries.append((pikepdf.Name(f"/{key}").unparse(), pikepdf.String(value).unparse()))
    return b"<<" + b"".join(k + b" " + v for k, v in dict(entries).items()) + b">>"


def _xmp(metadata, version: int, conformance: str) -> bytes:
    header = b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    footer = b'</x:xmpmeta>\n<?xpacket end="r"?>'
    xml = metadata.generate_rdf_metadata("a", version, conformance)
    return b"\n".join((header, xml, *metadata.xmp_metadata, footer))


class _HeadReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.metas: list[dict[str, str]] = []
        self._in_title = False
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "meta":
            self.metas.append({k: v or "" for k, v in attrs})
        elif tag == "title" and self.title is None:
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title" and self._in_title:
            self._in_title, self.title = False, "".join(self._text)

    def handle_data(self, data):
        if self._in_title:
            self._text.append(data)


def head_metadata(head: str):
    """The PDF metadata of an HTML <head>, read as WeasyPrint reads it (weasyprint.html.get_html_metadata):
    <title>, and <meta> author, description, keywords, generator, dcterms dates and the others as custom."""
    from weasyprint.html import parse_w3c_date
    from weasyprint.pdf.metadata import DocumentMetadata

    reader = _HeadReader()
    reader.feed(head)
    values: dict[str, Any] = {"title": reader.title, "authors": [], "keywords": [], "custom": {}}
    whitespace = " \t\n\f\r"
    for meta in reader.metas:
        name, content = meta.get("name", "").lower(), meta.get("content", "")
        if name == "keywords":
            for keyword in content.split(","):
                keyword = keyword.strip(whitespace)
                if keyword not in values["keywords"]:
                    values["keywords"].append(keyword)
        elif name == "author":
            values["authors"].append(content)
        elif name in ("description", "generator"):
            values.setdefault(name, content)
        elif name in ("dcterms.created", "dcterms.modified"):
            values.setdefault(name.split(".")[1], parse_w3c_date(name, content))
        elif name and name not in values["custom"]:
            values["custom"][name] = content
    return DocumentMetadata(**values)
