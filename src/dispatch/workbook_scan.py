"""A look inside a workbook before it is opened: what a spreadsheet library would trust blindly.

An .xlsx or .ods file is a zip of XML parts. Before python-calamine unpacks one, this module reads
the zip's central directory (the declared sizes of every part) and refuses a file that would unpack
to far more than a recipient list needs (a "zip bomb"), then streams each part once through zipfile,
which stops at the declared size and checks the CRC, so a part that lies about its size is caught too.
It then walks the chosen sheet's XML, streaming, for what calamine would pass on silently or could
not survive:

- the extent of the cells that hold something: calamine allocates the whole rectangle from A1 to the
  last such cell, so one stray cell at XFD1048576 in a 5 KB file would ask for 500 GB and abort
  the process;
- formulas with no stored value (written by a program that does not calculate): calamine reads them
  as empty cells;
- cells showing an error (#REF!, #DIV/0!): calamine reads them as empty cells too;
- merged cells of an OpenDocument sheet (calamine reports merges for Excel files only).
"""

from __future__ import annotations

import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree

from dispatch.errors import RecipientsError

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_PART_RATIO = 250  # a sheet's XML packs 5 to 30 times smaller; a bomb's part 1,000 times
RATIO_FROM_BYTES = 4 * 1024 * 1024  # small parts may pack tighter than that without harm
MAX_PARTS = 10_000
MAX_CELLS = 4_000_000  # rows x columns of the rectangle calamine will allocate
NOT_ORDINARY = ("this is not an ordinary spreadsheet (it may be built to exhaust memory): open it in Excel "
                "or LibreOffice and save a copy, or export the list as CSV UTF-8")
SAVE_AGAIN = "open it in Excel or LibreOffice and save it again, or export the list as CSV UTF-8"

_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_CALCEXT = "urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"
_REF = re.compile(r"^\$?([A-Za-z]{1,3})\$?(\d{1,7})$")


@dataclass
class SheetScan:
    """What the sheet's XML holds, with cells as (row, column) counted from 1."""

    rows: int = 0  # the last row with something in it
    columns: int = 0  # the last column with something in it
    uncalculated: list[str] = field(default_factory=list)  # formulas with no stored value, e.g. ["E14"]
    errors: dict[str, str] = field(default_factory=dict)  # cell -> the error it shows, e.g. {"E14": "#REF!"}
    merges: list[tuple[int, int, int, int]] | None = None  # (first row, first column, last row, last column)


def cell_name(row: int, column: int) -> str:
    """E14 for row 14, column 5."""
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{row}"


def open_zip(path: Path | BinaryIO, name: str) -> zipfile.ZipFile:
    """The workbook's zip, once its declared sizes and its parts have been found sound."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise RecipientsError(f"the workbook is damaged: {exc}", file=name, hint=SAVE_AGAIN) from None
    try:
        parts = archive.infolist()
        if len(parts) > MAX_PARTS:
            raise RecipientsError(f"the workbook holds {len(parts):,} parts, more than {MAX_PARTS:,}",
                                  file=name, hint=NOT_ORDINARY)
        total = sum(part.file_size for part in parts)
        if total > MAX_UNPACKED_BYTES:
            raise RecipientsError(f"the workbook would unpack to {total // (1024 * 1024):,} MB, more than the "
                                  f"{MAX_UNPACKED_BYTES // (1024 * 1024)} MB a recipient list may take",
                                  file=name, hint=NOT_ORDINARY)
        for part in parts:
            if part.file_size > RATIO_FROM_BYTES and part.file_size > MAX_PART_RATIO * max(part.compress_size, 1):
                raise RecipientsError(f"the part {part.filename} would unpack to {part.file_size // (1024 * 1024):,} "
                                      f"MB, more than {MAX_PART_RATIO} times its packed size", file=name,
                                      hint=NOT_ORDINARY)
            if part.flag_bits & 0x1:
                raise RecipientsError("the workbook's parts are encrypted", file=name, hint=PASSWORD_HINT)
        for part in parts:
            _verify(archive, part, name)
    except BaseException:
        archive.close()
        raise
    return archive


PASSWORD_HINT = ("remove the password: in Excel File > Info > Protect Workbook > Encrypt with Password, clear "
                 "it and save; in LibreOffice File > Save As with 'Save with password' unticked")


def _verify(archive: zipfile.ZipFile, part: zipfile.ZipInfo, name: str) -> None:
    """Read the part through (zipfile stops at the declared size and checks the CRC), keeping nothing."""
    try:
        with archive.open(part) as stream:
            while stream.read(1024 * 1024):
                pass
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, ValueError) as exc:
        raise RecipientsError(f"the workbook is damaged: part {part.filename}: {exc}", file=name,
                              hint=SAVE_AGAIN) from None


def scan_xlsx(archive: zipfile.ZipFile, sheet: str, name: str) -> SheetScan:
    """Walk the worksheet named sheet in an .xlsx; an empty scan when its part cannot be found."""
    part = _xlsx_part(archive, sheet)
    scan = SheetScan()
    if part is None:
        return scan
    row = column = 0
    holder = None
    try:
        with archive.open(part) as stream:
            for event, element in ElementTree.iterparse(stream, events=("start", "end")):
                tag = element.tag.rsplit("}", 1)[-1]
                if event == "start":
                    if tag == "sheetData":
                        holder = element
                    elif tag == "row":
                        number = element.get("r")
                        row = int(number) if number and number.isdigit() else row + 1
                        column = 0
                    continue
                if tag == "c":
                    place = _parse_ref(element.get("r"))
                    row, column = place if place else (row, column + 1)
                    _xlsx_cell(scan, element, row, column)
                elif tag == "row" and holder is not None:
                    holder.clear()  # keep memory flat: the rows read so far are done with
    except ElementTree.ParseError as exc:
        raise RecipientsError(f"the workbook is damaged: sheet {sheet}: {exc}", file=name, hint=SAVE_AGAIN) from None
    return scan


def _xlsx_cell(scan: SheetScan, element: ElementTree.Element, row: int, column: int) -> None:
    formula = value = inline = None
    for child in element:
        kind = child.tag.rsplit("}", 1)[-1]
        if kind == "f":
            formula = child
        elif kind == "v":
            value = child
        elif kind == "is":
            inline = child
    has_value = inline is not None or (value is not None and bool(value.text))
    if formula is not None and not has_value:
        scan.uncalculated.append(cell_name(row, column))
    if element.get("t") == "e" and value is not None:
        scan.errors[cell_name(row, column)] = value.text or "#ERROR"
    if has_value or formula is not None:
        scan.rows = max(scan.rows, row)
        scan.columns = max(scan.columns, column)


def _xlsx_part(archive: zipfile.ZipFile, sheet: str) -> str | None:
    """xl/worksheets/sheet1.xml for the sheet named sheet, found through the workbook and its relations."""
    try:
        book = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        relations = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return None
    ident = None
    for element in book.iter():
        if element.tag.rsplit("}", 1)[-1] == "sheet" and element.get("name") == sheet:
            ident = next((v for k, v in element.attrib.items() if k.endswith("}id")), None)
    for element in relations.iter():
        if element.get("Id") == ident and element.get("Target"):
            target = element.get("Target")
            path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
            return path if path in archive.namelist() else None
    return None


def _parse_ref(ref: str | None) -> tuple[int, int] | None:
    match = _REF.match(ref or "")
    if not match:
        return None
    column = 0
    for letter in match.group(1).upper():
        column = column * 26 + ord(letter) - ord("A") + 1
    return int(match.group(2)), column


def scan_ods(archive: zipfile.ZipFile, name: str) -> dict[str, SheetScan]:
    """Walk every table of an .ods's content.xml (calamine reads them all when it opens the file)."""
    scans: dict[str, SheetScan] = {}
    if "content.xml" not in archive.namelist():
        return scans
    scan = None
    depth = 0  # tables inside a cell of the current table are not rows of it
    row = column = 0  # rows before the current one; columns before the current cell
    row_repeat = 1
    row_has = False
    parents: list[ElementTree.Element] = []
    try:
        with archive.open("content.xml") as stream:
            for event, element in ElementTree.iterparse(stream, events=("start", "end")):
                tag = element.tag
                if event == "start":
                    parents.append(element)
                else:
                    parents.pop()
                if tag == f"{{{_TABLE}}}table":
                    if event == "start" and scan is not None:
                        depth += 1
                    elif event == "start":
                        scan = scans.setdefault(element.get(f"{{{_TABLE}}}name", ""), SheetScan(merges=[]))
                        row = 0
                    elif depth:
                        depth -= 1
                    else:
                        scan = None
                        _drop(element, parents)
                    continue
                if scan is None or depth:
                    continue
                if tag == f"{{{_TABLE}}}table-row":
                    if event == "start":
                        row_repeat = _count(element, "number-rows-repeated")
                        column = 0
                        row_has = False
                    else:
                        if row_has:
                            scan.rows = max(scan.rows, row + row_repeat)
                        row += row_repeat
                        _drop(element, parents)
                elif event == "end" and tag in (f"{{{_TABLE}}}table-cell", f"{{{_TABLE}}}covered-table-cell"):
                    row_has |= _ods_cell(scan, element, row, column, covered=tag.endswith("covered-table-cell"))
                    column += _count(element, "number-columns-repeated")
    except ElementTree.ParseError as exc:
        raise RecipientsError(f"the workbook is damaged: content.xml: {exc}", file=name, hint=SAVE_AGAIN) from None
    return scans


def _drop(element: ElementTree.Element, parents: list[ElementTree.Element]) -> None:
    """Forget an element read through, so that memory stays flat however long the file."""
    element.clear()
    if parents:
        parents[-1].remove(element)


def _ods_cell(scan: SheetScan, element: ElementTree.Element, row: int, column: int, *, covered: bool) -> bool:
    """Note what the cell at (row, column), counted from 0, holds; whether it holds anything."""
    repeat = _count(element, "number-columns-repeated")
    text = "".join(element.itertext())
    kind = element.get(f"{{{_OFFICE}}}value-type")
    formula = element.get(f"{{{_TABLE}}}formula")
    here = cell_name(row + 1, column + 1)
    if formula is not None and kind is None and not text:
        scan.uncalculated.append(here)
    if element.get(f"{{{_CALCEXT}}}value-type") == "error":
        scan.errors[here] = text or "#ERROR"
    across = _count(element, "number-columns-spanned")
    down = _count(element, "number-rows-spanned")
    if not covered and (across > 1 or down > 1):
        scan.merges.append((row + 1, column + 1, row + down, column + across))
    if kind is None and not text and formula is None:
        return False
    scan.columns = max(scan.columns, column + repeat)
    return True


def _count(element: ElementTree.Element, attribute: str) -> int:
    value = element.get(f"{{{_TABLE}}}{attribute}") or "1"
    return int(value) if value.isdigit() and int(value) > 0 else 1
