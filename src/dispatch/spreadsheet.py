"""Read one sheet of a workbook (.xlsx, .xls, .ods) as the coordinator sees it: every cell as text.

python-calamine reads the cells (formulas as the values last calculated and stored in the file).
What the reader decides, so that the list read is the list the coordinator looks at:

- The sheet: the one named by `sheet` in dispatch.toml; without it, the workbook's only visible
  worksheet. A workbook with several visible worksheets and no `sheet` is refused (which one holds
  the recipients is not ours to guess), and so is a named sheet that is hidden: a hidden sheet is not
  the list the coordinator checks before sending. Hidden sheets are otherwise ignored.
- The header: the first row with two or more cells filled in. Rows above it holding one cell (a title,
  perhaps merged across the columns) are left out. A merged cell in the header row is refused.
- Merged cells below the header: merged down one column, every row shows the value (as on screen);
  merged across columns, refused (which column would hold the value?).
- Columns with no name and nothing below are left out; trailing empty rows too.
- A cell as text: text as typed ("007" stays 007, "NA" stays NA); a whole number without ".0"; a date
  as 2026-06-02 (with the time when it has one), whatever its display format; TRUE/FALSE.
  A number shown with leading zeros by its format (7 shown as 007) is the number 7: type such ids as
  text (or format the column as Text) in the spreadsheet.
- A formula with no stored value, or a cell showing an error (#REF!), is refused: calamine would read
  both as empty.

Every problem is placed as a spreadsheet user reads it: `missions.xlsx: sheet Missions, cell E14`.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

from dispatch.errors import RecipientsError
from dispatch.workbook_scan import (MAX_CELLS, NOT_ORDINARY, PASSWORD_HINT, SAVE_AGAIN, SheetScan, cell_name,
                                    open_zip, scan_ods, scan_xlsx)

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
MAX_FILE_BYTES = 20 * 1024 * 1024
_CFB = bytes.fromhex("d0cf11e0a1b11ae1")  # an OLE compound file: .xls, or a password-protected .xlsx
_ZIP = b"PK\x03\x04"
_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")
UNHIDE = ("unhide it (Excel: right-click a sheet tab > Unhide; LibreOffice: Sheet > Show Sheet) so that the list "
          "you check is the list that is sent")


@dataclass(frozen=True)
class SheetRows:
    """The table found on a sheet: its header and its rows, numbered as the spreadsheet numbers them."""

    sheet: str
    header_row: int
    header: tuple[str, ...]
    letters: tuple[str, ...]  # the column letter of each header cell
    records: tuple[tuple[int, tuple[str, ...]], ...]  # (row number, cells), blank rows left out


def read_sheet(path: Path, *, name: str, sheet: str | None = None) -> SheetRows:
    """Read the recipients' sheet of the workbook at path. Raises RecipientsError naming the sheet and cell."""
    data = _read(path, name)
    scans: dict[str, SheetScan] = {}
    archive = None
    if data.startswith(_CFB):
        if _ENCRYPTED in data:
            raise RecipientsError("the workbook is protected by a password", file=name, hint=PASSWORD_HINT)
    elif data.startswith(_ZIP):
        archive = open_zip(io.BytesIO(data), name)
        if "content.xml" in archive.namelist() and "xl/workbook.xml" not in archive.namelist():
            scans = scan_ods(archive, name)  # calamine reads every table of an .ods when it opens it
            for table, scan in scans.items():
                _check_extent(scan, table, name)
    else:
        raise RecipientsError(f"this is not a workbook: {_what(data)}", file=name,
                              hint="open it in Excel or LibreOffice and save it as .xlsx or .ods, or export "
                                   "the list as CSV UTF-8 and set recipients = \"recipients.csv\"")
    import python_calamine as calamine  # here: a CSV list never needs it

    try:
        book = calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        chosen = _choose(book, sheet, name, calamine)
        if archive is not None and chosen not in scans and "xl/workbook.xml" in archive.namelist():
            scans[chosen] = scan_xlsx(archive, chosen, name)
            _check_extent(scans[chosen], chosen, name)
        found = book.get_sheet_by_name(chosen)
        if found.height * found.width > MAX_CELLS:  # an .xls, which was not scanned (at most 65,536 x 256)
            _check_extent(SheetScan(rows=found.height, columns=found.width), chosen, name)
        grid = [[_text(value) for value in row] for row in found.to_python(skip_empty_area=False)]
        merges = [(r0 + 1, c0 + 1, r1 + 1, c1 + 1) for (r0, c0), (r1, c1) in found.merged_cell_ranges or []]
    except calamine.PasswordError:
        raise RecipientsError("the workbook is protected by a password", file=name, hint=PASSWORD_HINT) from None
    except calamine.CalamineError as exc:
        if "password" in str(exc).lower() or "encrypt" in str(exc).lower():
            raise RecipientsError("the workbook is protected by a password", file=name, hint=PASSWORD_HINT) from None
        raise RecipientsError(f"the workbook cannot be read: {exc}", file=name, hint=SAVE_AGAIN) from None
    except BaseException as exc:  # a panic inside calamine on a malformed file arrives as pyo3's PanicException
        if type(exc).__name__ != "PanicException":
            raise
        raise RecipientsError("the workbook cannot be read: its content is malformed", file=name,
                              hint=SAVE_AGAIN) from None
    finally:
        if archive is not None:
            archive.close()
    scan = scans.get(chosen, SheetScan())
    return _table(grid, merges + (scan.merges or []), scan, chosen, name)


def _read(path: Path, name: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RecipientsError(f"file is {size // (1024 * 1024)} MB, more than the {MAX_FILE_BYTES // (1024 * 1024)} "
                                  "MB a recipient list may have", file=name,
                                  hint="is this the right file? split very large lists into several campaigns")
        return path.read_bytes()
    except FileNotFoundError:
        raise RecipientsError("file not found", file=name,
                              hint="check [campaign] recipients in dispatch.toml (see README: 'The recipients file')") from None
    except OSError as exc:
        raise RecipientsError(f"cannot read: {exc.strerror}", file=name) from None


def _what(data: bytes) -> str:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<table", b"<meta")) or b"<html" in head[:512]:
        return "it is a web page (HTML) saved under a spreadsheet's name, as some web applications export 'Excel' files"
    if head.startswith(b"<?xml"):
        return "it is an XML file (perhaps 'XML Spreadsheet 2003'), not an .xlsx, .xls or .ods workbook"
    if data and not any(b < 9 or 13 < b < 32 for b in data[:2048]):
        return "it is a text file (perhaps CSV) saved under a spreadsheet's name"
    return "its content is neither an Excel nor an OpenDocument workbook"


def _choose(book, wanted: str | None, name: str, calamine) -> str:
    sheets = [m for m in book.sheets_metadata if m.typ == calamine.SheetTypeEnum.WorkSheet]
    visible = [m for m in sheets if m.visible == calamine.SheetVisibleEnum.Visible]
    listed = ", ".join(m.name for m in visible) or "none visible"
    if wanted:
        match = next((m for m in sheets if m.name == wanted), None) or next(
            (m for m in sheets if m.name.strip().casefold() == wanted.strip().casefold()), None)
        if match is None:
            raise RecipientsError(f"the workbook has no sheet named {wanted!r} (its sheets: {listed})", file=name,
                                  hint="correct sheet = \"...\" under [campaign] in dispatch.toml")
        if match.visible != calamine.SheetVisibleEnum.Visible:
            raise RecipientsError("the sheet is hidden in the workbook", file=name, sheet=match.name, hint=UNHIDE)
        return match.name
    if not visible:
        raise RecipientsError("the workbook has no visible sheet", file=name,
                              hint="unhide the recipients' sheet, or name it in dispatch.toml: sheet = \"...\" under [campaign]")
    if len(visible) > 1:
        raise RecipientsError(f"the workbook has {len(visible)} sheets ({listed}): which one holds the recipients?",
                              file=name, hint=f"name it in dispatch.toml, under [campaign]: sheet = \"{visible[0].name}\"")
    return visible[0].name


def _check_extent(scan: SheetScan, sheet: str, name: str) -> None:
    if scan.rows * scan.columns > MAX_CELLS:
        raise RecipientsError(f"the sheet's cells reach this far: {scan.rows:,} rows by {scan.columns:,} columns, "
                              "more than a recipient list needs", file=name, sheet=sheet,
                              cell=cell_name(scan.rows, scan.columns),
                              hint="delete what lies far below or to the right of the list (Ctrl+End goes to the "
                                   "last cell); if you did not make this file, " + NOT_ORDINARY.split(": ", 1)[1])


def _text(value: object) -> str:
    """A cell's value as the text the coordinator typed or sees."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.15g}"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds" if value.second else "minutes")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds" if value.second else "minutes")
    return "" if value is None else str(value)


def _table(grid: list[list[str]], merges: list[tuple[int, int, int, int]], scan: SheetScan, sheet: str,
           name: str) -> SheetRows:
    filled = [sum(1 for cell in row if cell.strip()) for row in grid]
    top = next((i for i, count in enumerate(filled) if count >= 2), None)
    if top is None:
        top = next((i for i, count in enumerate(filled) if count), None)
    if top is None:
        raise RecipientsError("the sheet is empty", file=name, sheet=sheet,
                              hint="the first row must be the header: id, state, mission, channel, ...")
    header_row = top + 1
    for first_row, first_column, last_row, last_column in sorted(merges):
        span = f"{cell_name(first_row, first_column)}:{cell_name(last_row, last_column)}"
        if last_row < header_row:
            continue  # a title above the table
        if first_row <= header_row:
            raise RecipientsError(f"cells {span} are merged in the header", file=name, line=header_row, sheet=sheet,
                                  cell=cell_name(first_row, first_column),
                                  hint="unmerge them (Excel: Home > Merge & Center; LibreOffice: Format > Merge and "
                                       f"Unmerge Cells) and give each column its own name in row {header_row}")
        if last_column > first_column:
            raise RecipientsError(f"cells {span} are merged across columns", file=name, line=first_row, sheet=sheet,
                                  cell=cell_name(first_row, first_column),
                                  hint="unmerge them: each column needs its own value in every row")
        for row in range(first_row, min(last_row, len(grid))):  # merged down: every row shows the value
            if first_column <= len(grid[row]):
                grid[row][first_column - 1] = grid[first_row - 1][first_column - 1]
    width = max(len(row) for row in grid)
    rows = [row + [""] * (width - len(row)) for row in grid]
    header = [cell.strip() for cell in rows[top]]
    body = rows[top + 1:]
    keep = [i for i in range(width) if header[i] or any(row[i].strip() for row in body)]
    letters = {i: cell_name(1, i + 1)[:-1] for i in keep}
    columns = {letters[i]: header[i] for i in keep}
    for cells, message, hint in ((scan.uncalculated, "the formula's value was never calculated",
                                  "open the workbook in Excel or LibreOffice and save it (that stores each formula's "
                                  "value), or paste the values over the formulas (Paste Special > Values)"),
                                 (list(scan.errors), "", "correct the formula in the spreadsheet, or clear the cell")):
        if cells:
            cell = cells[0]
            shown = message or f"the cell shows the error {scan.errors[cell]}"
            more = f" (and {len(cells) - 1} more cell{'s' if len(cells) > 2 else ''})" if len(cells) > 1 else ""
            raise RecipientsError(shown + more, file=name, line=int(cell.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")),
                                  sheet=sheet, cell=cell, column=columns.get(cell.rstrip("0123456789")) or None,
                                  hint=hint)
    records = tuple((top + 2 + n, tuple(row[i] for i in keep)) for n, row in enumerate(body)
                    if any(row[i].strip() for i in keep))
    return SheetRows(sheet=sheet, header_row=header_row, header=tuple(header[i] for i in keep),
                     letters=tuple(letters[i] for i in keep), records=records)
