"""Layered rendering: the master's slots painted while WeasyPrint writes it (see master.py).

A master's page holds a marker (an empty inline-block, master.master_html) where each region is. While the
master is written (painted_slots):

- before any page is painted, a form XObject per slot, /DispatchSlot<k>, is added to the resources the
  pages share: its box is the region's border box in the page (in pt), grown by the bleed, and its content
  a call to /Sheet, which each letter's update (overlay.py) points at its own drawing. Painting a page
  adds or changes no resource: it writes to the page's content stream (and fonts, tags) only;
- where WeasyPrint would paint a marker, it calls the marker's slot instead, in the page's own
  coordinates: q <inverse of the transformation in force> cm /DispatchSlot<k> Do Q;
- the file is written with a classic cross-reference table, no object streams (increment.py appends each
  letter's update to it); content streams stay compressed.

What each letter's update needs (increment.Base, the slots' object numbers and boxes, the XMP stream, the
producer, the marker's structure elements) is read from pydyf's objects, without parsing the file again.
Written.found tells which slots each page calls: a marker painted some other way (inside a transparent
element, or not as an inline-block of its own) is painted as WeasyPrint paints it, and is not among them.
"""

from __future__ import annotations

import re
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from dispatch.pdf.increment import Base

ATTRIBUTE = "data-dispatch-slot"  # on each marker (master.master_html)
TITLE = "dispatch-slot-"  # the /T of a marker's structure element while the master is written
_CALL = b"/DispatchSlot"
_REFERENCE = re.compile(rb"(\d+) 0 R")


@dataclass
class Written:
    """What WeasyPrint wrote for one master, as pydyf objects."""

    boxes: dict[int, tuple[float, float, float, float]]  # slot -> its form's /BBox (pt, page coordinates)
    pdf: Any = None  # the pydyf.PDF, once WeasyPrint made it
    identifier: Any = None  # the file identifier it was written with
    resources: Any = None  # the resources the pages share, once the slots' forms are in them
    forms: dict[int, Any] = field(default_factory=dict)  # slot -> its form (pydyf.Stream)

    @property
    def found(self) -> list[list[int]]:
        """Each page's slots, as its content calls them, in order."""
        objects = self.pdf.objects
        found = []
        for number in self.pdf.pages["Kids"][::3]:
            contents = objects[_number(objects[number]["Contents"])]
            found.append([int(item[len(_CALL):-3]) for item in contents.stream
                          if isinstance(item, bytes) and item.startswith(_CALL)])
        return found

    def facts(self, data: bytes, order: list[int]) -> dict | None:
        """Where the master keeps what each letter's update replaces (see master.Master), slots in this order;
        None if the file was written in a way this does not know."""
        import pydyf

        found = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data[-64:])
        pdf = self.pdf
        if (found is None or int(found.group(1)) != pdf.xref_position or not isinstance(self.identifier, bytes)
                or pdf.info.number is None or any(self.forms[k].number is None for k in order)):
            return None
        metadata = pdf.catalog.get("Metadata")
        producer = pdf.info.get("Producer")
        return {"base": Base(data, pdf.xref_position, len(pdf.objects), pdf.catalog.number, pdf.info.number,
                             self.identifier),
                "slot_objects": tuple((self.forms[k].number, pydyf.Array(self.boxes[k]).data) for k in order),
                "slot_tags": _slot_tags(pdf),
                "metadata_object": _number(metadata) if metadata is not None else None,
                "producer": producer.data if producer is not None else b""}


def _number(reference: bytes) -> int:
    return int(_REFERENCE.fullmatch(reference).group(1))


def _slot_tags(pdf) -> tuple[tuple[int, int, bytes], ...]:
    """The marker structure elements titled by titled_markers, outermost first for each slot (see
    master.Master.slot_tags): the structure tree walked breadth first from its root."""
    import pydyf

    found: list[tuple[int, int, bytes]] = []
    root = pdf.catalog.get("StructTreeRoot")
    pending = deque([root] if root is not None else [])
    seen: set[int] = set()
    while pending:
        node, number = pending.popleft(), None
        if isinstance(node, bytes) and _REFERENCE.fullmatch(node):
            number = _number(node)
            if number in seen:
                continue
            seen.add(number)
            node = pdf.objects[number]
        if not isinstance(node, pydyf.Dictionary):
            continue
        title = node.get("T")
        if number is not None and isinstance(title, pydyf.String) and str(title.string).startswith(TITLE):
            copy = pydyf.Dictionary({key: value for key, value in node.items() if key != "T"})
            found.append((int(str(title.string)[len(TITLE):]), number, copy.data))
        kids = node.get("K")
        pending.extend(kids if isinstance(kids, list) else [kids] if kids is not None else [])
    return tuple(found)


@contextmanager
def painted_slots(boxes: dict[int, tuple[float, float, float, float]]) -> Iterator[Written]:
    """While it lasts, WeasyPrint writes a document as a master whose slots are these (slot -> /BBox); what it
    wrote is in the Written given (its pdf stays None if WeasyPrint's writer was not reached). For a
    renderer's own process: one document at a time."""
    import pydyf
    import weasyprint.document as document_module
    import weasyprint.draw as draw_module
    import weasyprint.pdf as pdf_module

    painted = Written(boxes)
    generate, add_forms, draw = (document_module.generate_pdf, pdf_module.add_forms,
                                 draw_module.draw_stacking_context)

    def generate_pdf(*args, **kwargs):
        pdf = generate(*args, **kwargs)
        painted.pdf = pdf

        def write(output, version=b"1.7", identifier=False, compress=False):
            painted.identifier = identifier
            return type(pdf).write(pdf, output, version, identifier, False)  # a classic cross-reference table

        pdf.write = write
        return pdf

    def add_forms_first(forms, matrix, pdf, page, resources, *args, **kwargs):
        if painted.resources is None:  # the first page, before it is painted: the slots' forms
            painted.resources = resources
            for index, box in sorted(boxes.items()):
                form = pydyf.Stream([b"/Sheet Do"], pydyf.Dictionary({
                    "Type": "/XObject", "Subtype": "/Form", "BBox": pydyf.Array(box),
                    "Resources": pydyf.Dictionary({"XObject": pydyf.Dictionary()})}))
                painted.forms[index] = resources["XObject"][f"DispatchSlot{index}"] = form
        return add_forms(forms, matrix, pdf, page, resources, *args, **kwargs)

    def draw_stacking_context(stream, stacking_context):
        box = stacking_context.box
        element = getattr(box, "element", None)
        slot = element.get(ATTRIBUTE) if element is not None else None
        if (slot is None or not slot.isdigit() or int(slot) not in painted.forms or "::" in (box.element_tag or "")
                or getattr(box, "children", None) or getattr(stream, "_resources", None) is not painted.resources):
            return draw(stream, stacking_context)
        with stream.stacked():
            stream.transform(*stream.ctm.invert.values)
            stream.draw_x_object(f"DispatchSlot{int(slot)}")

    document_module.generate_pdf, pdf_module.add_forms = generate_pdf, add_forms_first
    draw_module.draw_stacking_context = draw_stacking_context
    try:
        with titled_markers():
            yield painted
    finally:
        document_module.generate_pdf, pdf_module.add_forms = generate, add_forms
        draw_module.draw_stacking_context = draw


@contextmanager
def titled_markers():
    """While a tagged master is written: the structure element of each slot's marker titled
    "dispatch-slot-<k>" (/T), so that the master's slot tags can be found. WeasyPrint tags the empty marker
    as an empty Span; each letter's update gives that Span the region's text as /ActualText (overlay.py),
    which is what a screen reader reads there, and drops the title."""
    import pydyf
    from weasyprint.pdf import tags

    original = tags._build_box_tree

    def build(box, *args):
        for element in original(box, *args):
            marker = box.element.get(ATTRIBUTE) if getattr(box, "element", None) is not None else None
            if marker is not None and "T" not in element:
                element["T"] = pydyf.String(f"{TITLE}{marker}")
            yield element

    tags._build_box_tree = build
    try:
        yield
    finally:
        tags._build_box_tree = original
