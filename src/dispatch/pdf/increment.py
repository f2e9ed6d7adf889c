"""Write many PDFs that differ from one base PDF by a few objects, as incremental updates.

A layered letter is its group's master plus a handful of objects: the drawings of its regions, the
fonts they use, its metadata. Rather than parse and rewrite the master for every recipient, each
letter is the master's bytes followed by an update section (ISO 32000-1, 7.5.6) that adds those
objects and replaces the few the master leaves to be filled (the slots, /Info, the XMP metadata).
PDF readers, PDF/A and signatures (which append updates of their own) all take such files.

The base must have a classic cross-reference table (pikepdf: object streams disabled).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable


@dataclass(frozen=True)
class Base:
    """What an update needs to know of its base file."""

    data: bytes
    startxref: int
    size: int  # the trailer's /Size: the first free object number
    root: int
    info: int
    first_id: bytes

    @classmethod
    def read(cls, data: bytes, pdf) -> "Base":
        """pdf: the same file opened with pikepdf."""
        found = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data[-64:])
        if found is None or not data[int(found.group(1)):].startswith(b"xref"):
            raise ValueError("the base PDF has no classic cross-reference table")
        return cls(data, int(found.group(1)), int(pdf.trailer.Size), pdf.Root.objgen[0],
                   pdf.trailer.Info.objgen[0], bytes(pdf.trailer.ID[0]))


class Objects:
    """Serialises pikepdf objects into new object numbers, following indirect references."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.numbers: dict[tuple[int, int], int] = {}
        self.bodies: dict[int, bytes] = {}
        self._todo: list[tuple[int, Any]] = []

    def add(self, obj) -> int:
        """The number of obj (an indirect pikepdf object) in the output, serialising it and what it uses."""
        number = self._number(obj)
        self._drain()
        return number

    def reserve(self) -> int:
        number, self.next = self.next, self.next + 1
        return number

    def _number(self, obj) -> int:
        key = obj.objgen
        if key not in self.numbers:
            self.numbers[key] = self.reserve()
            self._todo.append((self.numbers[key], obj))
        return self.numbers[key]

    def _drain(self) -> None:
        import pikepdf

        while self._todo:
            number, obj = self._todo.pop()
            if isinstance(obj, pikepdf.Stream):
                raw = obj.read_raw_bytes()
                entries = {k: v for k, v in obj.stream_dict.items() if k != "/Length"}
                self.bodies[number] = stream_body(self.dictionary(entries), raw)
            else:
                self.bodies[number] = self.value(obj, top=True)

    def dictionary(self, entries: dict) -> bytes:
        return b"<<" + b"".join(name_bytes(k) + b" " + self.value(v) for k, v in entries.items()) + b">>"

    def value(self, obj, top: bool = False) -> bytes:
        """obj written out (top: written whole even if indirect), every object it refers to added."""
        import pikepdf

        if isinstance(obj, pikepdf.Object) and obj.is_indirect and not top:
            written = b"%d 0 R" % self._number(obj)
        elif isinstance(obj, pikepdf.Dictionary):
            written = self.dictionary(dict(obj.items()))
        elif isinstance(obj, pikepdf.Array):
            written = b"[" + b" ".join(self.value(v) for v in obj) + b"]"
        else:
            written = scalar(obj)
        self._drain()
        return written


def name_bytes(name: str) -> bytes:
    import pikepdf

    return pikepdf.Name(name).unparse()


def scalar(value) -> bytes:
    import pikepdf

    if value is None:
        return b"null"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, (float, Decimal)):
        return format(Decimal(str(value)).normalize(), "f").encode()
    if isinstance(value, pikepdf.Object):
        return value.unparse()
    raise TypeError(f"cannot write {type(value).__name__} into a PDF")


def stream_body(dictionary: bytes, raw: bytes) -> bytes:
    """A stream object's body: its dictionary (without /Length), then the raw (encoded) bytes."""
    return dictionary[:-2] + b"/Length %d>>\nstream\n" % len(raw) + raw + b"\nendstream"


def flate_stream(entries: bytes, data: bytes) -> bytes:
    """A compressed stream object's body; entries are the dictionary's entries, already written."""
    raw = zlib.compress(data, 6)
    return b"<<" + entries + b"/Filter/FlateDecode/Length %d>>\nstream\n" % len(raw) + raw + b"\nendstream"


def update(base: Base, bodies: dict[int, bytes], size: int, info: bytes) -> bytes:
    """The base followed by an update section holding bodies (object number -> body) and a new /Info."""
    bodies = {**bodies, base.info: info}
    parts = [base.data if base.data.endswith(b"\n") else base.data + b"\n"]
    offset = len(parts[0])
    offsets = {}
    for number in sorted(bodies):
        chunk = b"%d 0 obj\n" % number + bodies[number] + b"\nendobj\n"
        offsets[number] = offset
        parts.append(chunk)
        offset += len(chunk)
    digest = hashlib.md5(b"".join(parts[1:])).hexdigest().encode()
    parts.append(b"xref\n" + b"".join(_subsections(offsets)))
    parts.append(b"trailer\n<</Size %d/Root %d 0 R/Info %d 0 R/ID[<%s><%s>]/Prev %d>>\nstartxref\n%d\n%%%%EOF\n" % (
        max(size, base.size), base.root, base.info, base.first_id.hex().encode(), digest, base.startxref, offset))
    return b"".join(parts)


def _subsections(offsets: dict[int, int]) -> Iterable[bytes]:
    numbers = sorted(offsets)
    start = 0
    while start < len(numbers):
        end = start
        while end + 1 < len(numbers) and numbers[end + 1] == numbers[end] + 1:
            end += 1
        yield b"%d %d\n" % (numbers[start], end - start + 1)
        for number in numbers[start:end + 1]:
            yield b"%010d 00000 n \n" % offsets[number]
        start = end + 1
