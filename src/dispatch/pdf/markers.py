"""Markers: small squares of a reserved colour, painted where a region is, found again in a PDF's content.

Layered rendering (master.py, overlay.py) marks each variable region with a marker colour: in the master,
an empty region holds a 1 px square of MARKER (+ the slot number on the blue channel), whose painting is
then replaced by a call to the slot's form XObject (replace_markers); in an overlay, each region's
background is MARKER, and its painting cuts the page's content into one drawing per region
(cut_at_markers). Both find the painting the same way: a fill of that colour, with the graphics-state
group (q ... Q) and clip that WeasyPrint wraps around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MARKER = (7, 11, 13)  # + slot number on the blue channel

# What a marker's painting is made of: a group (q ... Q), clipped to its box, filled with its colour.
_MARKER_OPS = frozenset(["q", "Q", "re", "W", "W*", "n", "BMC", "BDC", "EMC", "gs", "rg", "f", "f*"])


@dataclass(frozen=True)
class Marker:
    """A marker's painting in a content stream: operations start..end, the transformation before it."""

    start: int
    end: int
    index: int  # the blue channel's step above MARKER (the slot number in a master)
    ctm: Any


def find_markers(operations: list, names: list[str] | None = None) -> list[Marker]:
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
        found.append(Marker(start, end, index, ctms[start]))
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


def replace_markers(pdf, page, slots: dict) -> list[int]:
    """Replace each slot marker's painting in the page by a call to the slot's form (/DispatchSlot<k>);
    the slots found. slots: the slot numbers to look for (a mapping or set)."""
    import pikepdf

    operations = pikepdf.parse_content_stream(page)
    markers = [m for m in find_markers(operations) if m.index in slots]
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


def cut_at_markers(page) -> list[bytes]:
    """The content of a page (or of a content stream) cut into one drawing per marker: the operations between a marker's painting and
    the next one's, preceded by the transformation in force there, so that each drawing stands on its own."""
    import pikepdf

    operations = pikepdf.parse_content_stream(page)
    names = [str(operation.operator) for operation in operations]
    markers = find_markers(operations, names)
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


def _ctm_after(operations: list, names: list[str], marker: Marker):
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
