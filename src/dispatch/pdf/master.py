"""Layered rendering, the master: a group's letter laid out once, with an empty slot where each region is.

As print shops do variable-data printing. Recipients whose letters differ only inside their regions
(see regions.py) form a group, and each letter is its group's master plus its own regions:

1. The master (here): the letter with its regions emptied is laid out and written once. Each empty
   region holds a marker (markers.py); where WeasyPrint would paint the marker, it calls a "slot" instead
   (slots.py), a form XObject the size of the region (grown by SLOT_BLEED), filled per recipient. So a
   region's text comes in the page's content exactly where the full letter has it (same reading order,
   same text extraction). A marker WeasyPrint does not paint as an element of its own is found in the
   written PDF and its painting replaced there (_with_slots).
2. The overlays (overlay.py): the regions of many recipients laid out in one WeasyPrint document, each
   region at its master place, styled by the same stylesheets; each letter's drawings written with the
   fonts subset to its own characters.
3. Each recipient's PDF: the master's bytes, then an incremental update (increment.py) whose slots draw
   that recipient's regions, with the recipient's own metadata (metadata.py), written atomically.

A letter's PDF depends on its own row only: the master on what its group shares (the group's key), the
overlay on the letter's regions; never on which other letters were rendered with it.

Guards: every region must have a fixed height and be found at the same place on every page it shows
on; in the overlay it must land on its master box, look the same (font, size, colour, alignment...),
and its content must fit in its box. A group that fails a guard is rendered whole (MasterJob gives a
FellBack with the reason); a letter that fails one is rendered whole by its overlay job, which says why.
"""

from __future__ import annotations

import html as htmllib
import io
import logging
import re
from dataclasses import dataclass
from typing import Any, Sequence

from dispatch.errors import DispatchError
from dispatch.pdf.engine import PdfRenderer
from dispatch.pdf.increment import Base
from dispatch.pdf.markers import MARKER, replace_markers
from dispatch.pdf.slots import TITLE, painted_slots, titled_markers
from dispatch.pdf.tails import shared_pages
from dispatch.regions import ATTRIBUTE, Parts

log = logging.getLogger(__name__)

PT_PER_PX = 0.75
SLOT_BLEED = 3.0  # pt: ink that may pass a region's box (italic overhang, descenders)
TOLERANCE = 0.05  # px: how far an overlay box may be from its master box
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


def variant_parts(pdf_variant: str | None) -> tuple[int, str] | None:
    """A PDF/A variant's part and conformance level ("pdf/a-3u" -> (3, "U")); None for others."""
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
    # Per tagged slot: its index, and the object number and dictionary (without /T) of its marker's structure
    # element, which each letter's update rewrites with the region's text as /ActualText (see slots.titled_markers).
    slot_tags: tuple[tuple[int, int, bytes], ...] = ()
    body: str = ""  # the group's HTML from </head> on, a mark in each region (see whole_html)
    word: str = ""

    def whole_html(self, letter) -> str:
        """The letter's HTML, whole (see whole_html)."""
        return whole_html(self.body, self.word, letter)


def whole_html(body: str, word: str, letter) -> str:
    """A letter's HTML, whole: its own head, then its group's body (Master.body) with its regions' content.

    letter: a LayeredLetter (overlay.py), or anything with its contents and head."""
    return "".join(letter.head) + re.sub("\ue000" + word + "#(\\d+)\ue001",
                                         lambda m: letter.contents[int(m.group(1))], body)


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
            with shared_pages():  # pages after the first laid out once for letters that match there
                document = renderer.layout(self.html)
            slots, size = _find_slots(document)
            pdf, facts = _written(renderer, document, slots, size[1])
        except Unfit as exc:
            return FellBack(self.group, str(exc))
        except DispatchError as exc:  # rendered whole, the letter reports it with its name
            return FellBack(self.group, exc.problem.message)
        root = document.pages[0]._page_box.children[0].element
        return Master(self.group, pdf, len(document.pages), size[0], size[1], element_of(root),
                      head_for_overlay(self.html), tuple(slots), renderer.pdf_variant, **facts,
                      body=self.body, word=self.word)


class Unfit(Exception):
    """The layout cannot be layered (the message says why)."""


def walk(box):
    """A laid-out box and every box inside it, absolutely positioned ones included."""
    if type(box).__name__ == "AbsolutePlaceholder":
        box = box._box  # an absolutely positioned box stands in the tree behind a placeholder
    yield box
    for child in getattr(box, "children", None) or ():
        yield from walk(child)


def _region_boxes(page_box) -> list[Any]:
    """The boxes of elements with data-variable, outermost only, in painting order of the tree."""
    found, seen = [], set()
    for box in walk(page_box):
        element = getattr(box, "element", None)
        if element is None or element.get(ATTRIBUTE) is None or id(element) in seen:
            continue
        if type(box).__name__ in ("LineBox", "TextBox"):
            continue
        seen.add(id(element))
        found.append(box)
    return found


def region_style(box) -> tuple[str, ...]:
    """What decides how a region's text looks (STYLE_KEYS), as comparable strings."""
    return tuple(repr(box.style[key]) for key in STYLE_KEYS)


def element_of(element) -> Element:
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
            raise Unfit("the pages are not all the same size")
        for box in _region_boxes(page_box):
            element = box.element
            name = element.get(ATTRIBUTE)
            marker = next((e for e in element.iter() if e.get("data-dispatch-slot") is not None), None)
            if marker is None:
                raise Unfit(f"region {name!r} has no slot")
            if box.style["height"] == "auto":
                raise Unfit(f"region {name!r} has no fixed height in the stylesheet, so its content could move "
                            "the rest of the letter")
            if getattr(box.style["background_color"], "alpha", 0) or any(
                    kind != "none" for kind, _ in box.style["background_image"]):
                raise Unfit(f"region {name!r} has a background (its overlay marks it with one of its own)")
            index = int(marker.get("data-dispatch-slot"))
            rect = (box.border_box_x(), box.border_box_y(), box.border_width(), box.border_height())
            known = by_index.get(index)
            if known is None:
                chain, node = [], parents.get(element)
                while node is not None and node is not root:
                    chain.append(element_of(node))
                    node = parents.get(node)
                by_index[index] = {"name": name, "pages": [number], "rect": rect, "element": element_of(element),
                                   "ancestors": tuple(reversed(chain)), "style": region_style(box)}
            elif any(abs(a - b) > TOLERANCE for a, b in zip(rect, known["rect"])):
                raise Unfit(f"region {name!r} is not at the same place on every page")
            else:
                known["pages"].append(number)
    if not by_index:
        raise Unfit("the layout has no regions (data-variable)")
    if len(by_index) > MAX_SLOTS:
        raise Unfit(f"the layout has more than {MAX_SLOTS} regions")
    slots = [Slot(index, v["name"], tuple(v["pages"]), *v["rect"], v["element"], v["ancestors"], v["style"])
             for index, v in sorted(by_index.items())]
    for a in slots:
        for b in slots:
            if a.index < b.index and _overlap(a, b):
                raise Unfit(f"regions {a.name!r} and {b.name!r} overlap")
    return slots, size


def _overlap(a: Slot, b: Slot) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def head_for_overlay(html: str) -> str:
    """The master's stylesheets (<link> and <style>) for the overlay's <head>."""
    head = html[:max(html.find("</head>"), 0)]
    return "\n".join(re.findall(r"<link\b[^>]*>|<style\b[^>]*>.*?</style>", head, re.S | re.I))


def slot_box(slot: Slot, page_height_px: float) -> tuple[float, float, float, float]:
    """A slot's form /BBox: the region's border box in the page, in pt from the bottom-left corner, grown by
    SLOT_BLEED."""
    height = page_height_px * PT_PER_PX
    return (slot.x * PT_PER_PX - SLOT_BLEED, height - (slot.y + slot.height) * PT_PER_PX - SLOT_BLEED,
            (slot.x + slot.width) * PT_PER_PX + SLOT_BLEED, height - slot.y * PT_PER_PX + SLOT_BLEED)


def _written(renderer: PdfRenderer, document, slots: Sequence[Slot], page_height_px: float) -> tuple[bytes, dict]:
    """The master's PDF and its facts (see _base_facts). WeasyPrint calls each slot where it would paint its
    marker (slots.py); if a page does not call the slots expected there, the master is written again as
    WeasyPrint writes it, then each marker's painting is found in the PDF and replaced (_with_slots), or
    Unfit."""
    expected = [sorted(s.index for s in slots if number in s.pages) for number in range(len(document.pages))]
    with painted_slots({slot.index: slot_box(slot, page_height_px) for slot in slots}) as painted:
        data = renderer.write(document)
    if painted.pdf is None:  # written without WeasyPrint's writer: an ordinary PDF
        pdf = _with_slots(data, slots, page_height_px)
        return pdf, _base_facts(pdf, slots)
    if [sorted(found) for found in painted.found] == expected:
        facts = painted.facts(data, [slot.index for slot in slots])
        return data, facts if facts is not None else _base_facts(data, slots)
    log.debug("a marker is not painted as an element of its own: its place is found in the PDF")
    with titled_markers():
        pdf = _with_slots(renderer.write(document), slots, page_height_px)
    return pdf, _base_facts(pdf, slots)


def _with_slots(data: bytes, slots: Sequence[Slot], page_height_px: float) -> bytes:
    """The master PDF with each marker's drawing replaced by a call to its slot's form XObject."""
    import pikepdf

    by_index = {slot.index: slot for slot in slots}
    with pikepdf.open(io.BytesIO(data)) as pdf:
        forms = {}
        for slot in slots:
            forms[slot.index] = pdf.make_stream(b"/Sheet Do", Type=pikepdf.Name.XObject,
                                                Subtype=pikepdf.Name.Form, BBox=list(slot_box(slot, page_height_px)),
                                                Resources=pikepdf.Dictionary(XObject=pikepdf.Dictionary()))
        for number, page in enumerate(pdf.pages):
            expected = {s.index for s in slots if number in s.pages}
            found = replace_markers(pdf, page, by_index)
            if sorted(found) != sorted(expected):
                raise Unfit("a region's place in the page could not be found in the PDF "
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
        return {"base": Base.read(data, pdf), "slot_objects": tuple(objects), "slot_tags": _slot_tags(pdf),
                "metadata_object": metadata.objgen[0] if metadata is not None else None,
                "producer": producer.unparse() if producer is not None else b""}


def _slot_tags(pdf) -> tuple[tuple[int, int, bytes], ...]:
    """The marker structure elements titled_markers titled, outermost first for each slot (see Master.slot_tags)."""
    import pikepdf

    root = pdf.Root.get("/StructTreeRoot")
    found: list[tuple[int, int, bytes]] = []
    pending = [root] if root is not None else []
    seen: set[int] = set()
    while pending:
        node = pending.pop(0)
        if not isinstance(node, pikepdf.Dictionary) or (node.is_indirect and node.objgen[0] in seen):
            continue
        if node.is_indirect:
            seen.add(node.objgen[0])
        title = node.get("/T")
        if title is not None and str(title).startswith(TITLE) and node.is_indirect:
            copy = pikepdf.Dictionary({key: value for key, value in node.items() if key != "/T"})
            found.append((int(str(title)[len(TITLE):]), node.objgen[0], copy.unparse()))
        kids = node.get("/K")
        pending.extend(kids if isinstance(kids, pikepdf.Array) else [kids] if kids is not None else [])
    return tuple(found)
