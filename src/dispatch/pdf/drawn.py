"""What WeasyPrint draws for a laid-out document, taken as objects for an update section, not as a PDF file.

A layered letter's regions (overlay.py) are drawn by WeasyPrint into PDF objects (pydyf): each page's
content and the resources it uses (fonts subset to what the page draws, graphic states, images). Writing
them as a PDF file only to parse it again would cost more than the drawing; here they are written once,
straight into the numbering of the letter's update section (see increment.py): object `first` on.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_REFERENCE = re.compile(rb"(\d+) 0 R")


@dataclass(frozen=True)
class Drawn:
    """A document drawn: each page's content (uncompressed), the resources of its pages (one dictionary,
    written), and the objects they refer to, numbered from `first` (bodies), up to `next`."""

    contents: tuple[bytes, ...]
    resources: bytes
    bodies: dict[int, bytes]
    next: int


def draw(document, first: int) -> Drawn:
    """Draw a laid-out WeasyPrint document (plain: no PDF variant, no tags) as objects numbered from first."""
    from weasyprint import DEFAULT_OPTIONS
    from weasyprint.pdf import generate_pdf

    options = dict(DEFAULT_OPTIONS, custom_metadata=True, pdf_identifier=b"dispatch")
    pdf = generate_pdf(document, None, 1, **options)
    writer = _Writer(pdf.objects, first)
    pages = [pdf.objects[number] for number in pdf.pages["Kids"][0::3]]  # pydyf: number, 0, "R" for each page
    resources = {_number(page["Resources"]) for page in pages}
    if len(resources) != 1:
        raise ValueError("the pages of an overlay do not share their resources")
    written = writer.value(pdf.objects[resources.pop()])
    contents = tuple(_content(pdf.objects[_number(page["Contents"])]) for page in pages)
    return Drawn(contents, written, writer.bodies, writer.next)


def _number(reference: bytes) -> int:
    return int(_REFERENCE.fullmatch(reference).group(1))


def _scalar(item) -> bytes:
    """A value as pydyf writes it (pydyf._to_bytes)."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, float):
        return str(int(item)).encode("ascii") if item.is_integer() else f"{item:f}".rstrip("0").encode("ascii")
    data = getattr(item, "data", None)  # a pydyf String
    if isinstance(data, bytes):
        return data
    return str(item).encode("ascii")


def _content(stream) -> bytes:
    return b"\n".join(_scalar(item) for item in stream.stream)


class _Writer:
    """Writes pydyf objects with their references renumbered, each object the first time it is referred to."""

    def __init__(self, objects: list, first: int) -> None:
        self.objects = objects
        self.next = first
        self.numbers: dict[int, int] = {}
        self.bodies: dict[int, bytes] = {}

    def value(self, value) -> bytes:
        """A value written out (a dictionary, array or stream whole), each object it refers to added."""
        if isinstance(value, bytes):
            found = _REFERENCE.fullmatch(value)
            return b"%d 0 R" % self._number(int(found.group(1))) if found else value
        if isinstance(value, dict):
            return b"<<" + b"".join(b"/" + _scalar(key) + b" " + self.value(item) for key, item in value.items()) + b">>"
        if isinstance(value, (list, tuple)):  # numbers (a font's widths) written at once
            return b"[" + b" ".join(_scalar(item) if type(item) in (int, float) else self.value(item)
                                    for item in value) + b"]"
        if hasattr(value, "stream") and hasattr(value, "extra"):  # a pydyf Stream
            return self._stream(value)
        return _scalar(value)

    def _number(self, old: int) -> int:
        if old not in self.numbers:
            self.numbers[old] = number = self.next
            self.next += 1
            self.bodies[number] = self.value(self.objects[old])
        return self.numbers[old]

    def _stream(self, stream) -> bytes:
        data = _content(stream)
        extra = dict(stream.extra)
        if stream.compress:
            data = zlib.compress(data, 6)
            extra["Filter"] = "/FlateDecode"
        extra["Length"] = len(data)
        return self.value(extra) + b"\nstream\n" + data + b"\nendstream"
