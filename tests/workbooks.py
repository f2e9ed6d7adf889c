"""Workbooks for the tests, made by the programs that make them for real: openpyxl (.xlsx), odfpy (.ods),
msoffcrypto-tool (Excel's password protection), zipfile (the container itself, for the zip bomb).

Also the corpus generators for the spreadsheet cases: each reads the two-row campaign's recipients.csv,
writes it as a workbook with one thing wrong, and points dispatch.toml at the workbook.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

Grid = list[list[Any]]


def csv_grid(path: Path) -> Grid:
    """The rows of a CSV file, header first, every cell as text."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [row for row in csv.reader(handle)]


def write_xlsx(path: Path, sheets: dict[str, Grid], *, hidden: tuple[str, ...] = (),
               merges: dict[str, list[str]] | None = None) -> Path:
    """An .xlsx by openpyxl; a cell value starting with '=' is a formula (stored with no value: openpyxl
    does not calculate), one of Excel's error codes ('#REF!') an error cell."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, grid in sheets.items():
        sheet = book.create_sheet(name)
        for row in grid:
            sheet.append(list(row))
        for cells in (merges or {}).get(name, []):
            sheet.merge_cells(cells)
        if name in hidden:
            sheet.sheet_state = "hidden"
    book.save(path)
    return path


def write_ods(path: Path, sheets: dict[str, Grid], *, hidden: tuple[str, ...] = (),
              formulas: dict[tuple[str, str], tuple[str, Any]] | None = None) -> Path:
    """An .ods by odfpy. formulas: (sheet, cell) -> (formula, the value stored with it, or None for none)."""
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.style import Style, TableProperties
    from odf.table import Table, TableRow

    document = OpenDocumentSpreadsheet()
    hidden_style = Style(name="hidden", family="table")
    hidden_style.addElement(TableProperties(display="false"))
    document.automaticstyles.addElement(hidden_style)
    for name, grid in sheets.items():
        table = Table(name=name, stylename=hidden_style) if name in hidden else Table(name=name)
        for r, row in enumerate(grid, start=1):
            table_row = TableRow()
            for c, value in enumerate(row, start=1):
                formula, stored = (formulas or {}).get((name, _cell(r, c)), (None, value))
                table_row.addElement(_ods_cell(stored, formula))
            table.addElement(table_row)
        document.spreadsheet.addElement(table)
    document.save(str(path))
    return path


def _ods_cell(value: Any, formula: str | None):
    import datetime as dt

    from odf.table import TableCell
    from odf.text import P

    extra = {"formula": formula} if formula else {}
    if value is None or value == "":
        return TableCell(**extra)
    if isinstance(value, bool):
        cell = TableCell(valuetype="boolean", booleanvalue=str(value).lower(), **extra)
    elif isinstance(value, (int, float)):
        cell = TableCell(valuetype="float", value=str(value), **extra)
    elif isinstance(value, dt.date):
        cell = TableCell(valuetype="date", datevalue=value.isoformat(), **extra)
    else:
        cell = TableCell(valuetype="string", **extra)
    for line in str(value).split("\n"):
        cell.addElement(P(text=line))
    return cell


def _cell(row: int, column: int) -> str:
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{row}"


def encrypt_xlsx(path: Path, password: str = "secret") -> Path:
    """The workbook as Excel saves it with File > Info > Protect Workbook > Encrypt with Password."""
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = io.BytesIO(path.read_bytes())
    locked = io.BytesIO()
    OOXMLFile(plain).encrypt(password, locked)
    path.write_bytes(locked.getvalue())
    return path


def inflate_part(path: Path, part: str, extra_bytes: int) -> Path:
    """Rewrite the workbook with extra_bytes of blanks inside one XML part (valid XML, 1,000 times smaller packed)."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == part:
                data = data.replace(b"</worksheet>", b" " * extra_bytes + b"</worksheet>")
            target.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return path


def use_workbook(folder: Path, filename: str, sheet: str | None = None) -> None:
    """Point the campaign's dispatch.toml at the workbook (and name its sheet)."""
    settings = folder / "dispatch.toml"
    line = f'recipients = "{filename}"' + (f'\nsheet = "{sheet}"' if sheet else "")
    settings.write_text(re.sub(r'(?m)^recipients = .*$', line, settings.read_text(encoding="utf-8")),
                        encoding="utf-8")


# The corpus: each generator writes the campaign's recipients as a workbook with one thing wrong.

def _recipients(folder: Path) -> Grid:
    return csv_grid(folder / "recipients.csv")


def _column(grid: Grid, name: str) -> int:
    return grid[0].index(name)


def sheet_invalid_email(folder: Path) -> None:
    grid = _recipients(folder)
    grid[2][_column(grid, "email")] = "mission@"
    grid[2][_column(grid, "channel")] = "email"
    write_xlsx(folder / "missions.xlsx", {"Missions": grid})
    use_workbook(folder, "missions.xlsx")


def sheet_formula_without_value(folder: Path) -> None:
    grid = _recipients(folder)
    grid[2][_column(grid, "email")] = '=LOWER("PARIS@EXAMPLE.ORG")'
    write_xlsx(folder / "missions.xlsx", {"Missions": grid})
    use_workbook(folder, "missions.xlsx")


def sheet_formula_value_used(folder: Path) -> None:
    grid = _recipients(folder)
    column = _column(grid, "email")
    grid[2][_column(grid, "channel")] = "email"
    write_ods(folder / "missions.ods", {"Missions": grid},
              formulas={("Missions", _cell(3, column + 1)): ('of:=LOWER("MISSION@")', "mission@")})
    use_workbook(folder, "missions.ods")


def sheet_error_cell(folder: Path) -> None:
    grid = _recipients(folder)
    grid[1][_column(grid, "address")] = "#REF!"
    write_xlsx(folder / "missions.xlsx", {"Missions": grid})
    use_workbook(folder, "missions.xlsx")


def sheet_merged_header(folder: Path) -> None:
    grid = _recipients(folder)
    column = _column(grid, "title")
    grid[0][column + 1] = ""  # "title" spread over the ambassador's column, as for a two-line header
    write_xlsx(folder / "missions.xlsx", {"Missions": grid},
               merges={"Missions": [f"{_cell(1, column + 1)}:{_cell(1, column + 2)}"]})
    use_workbook(folder, "missions.xlsx")


def sheet_hidden(folder: Path) -> None:
    grid = _recipients(folder)
    write_xlsx(folder / "missions.xlsx", {"Notes": [["what", "when"], ["call Paris", "Monday"]], "Missions": grid},
               hidden=("Missions",))
    use_workbook(folder, "missions.xlsx", sheet="Missions")


def sheet_several_sheets(folder: Path) -> None:
    grid = _recipients(folder)
    write_xlsx(folder / "missions.xlsx", {"Missions": grid, "Last year": grid})
    use_workbook(folder, "missions.xlsx")


def sheet_cell_over_32767_characters(folder: Path) -> None:
    grid = _recipients(folder)
    grid[2][_column(grid, "salutation")] = "Excellency " * 4000  # 44,000 characters: more than Excel allows
    write_ods(folder / "missions.ods", {"Missions": grid})
    use_workbook(folder, "missions.ods")


def sheet_password_protected(folder: Path) -> None:
    encrypt_xlsx(write_xlsx(folder / "missions.xlsx", {"Missions": _recipients(folder)}))
    use_workbook(folder, "missions.xlsx")


def sheet_zip_bomb(folder: Path) -> None:
    path = write_xlsx(folder / "missions.xlsx", {"Missions": _recipients(folder)})
    inflate_part(path, "xl/worksheets/sheet1.xml", 64 * 1024 * 1024)
    use_workbook(folder, "missions.xlsx")


def sheet_stray_cell_far_away(folder: Path) -> None:
    grid = _recipients(folder)
    path = write_xlsx(folder / "missions.xlsx", {"Missions": grid})
    import openpyxl

    book = openpyxl.load_workbook(path)
    book["Missions"]["XFD1048576"] = "x"  # a 5 KB file that would take 500 GB to lay out as a grid
    book.save(path)
    use_workbook(folder, "missions.xlsx")


def sheet_xls_that_is_a_web_page(folder: Path) -> None:
    from html import escape

    rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>\n"
                   for row in _recipients(folder))
    (folder / "missions.xls").write_text(f"<html><head><meta charset=\"utf-8\"></head><body><table>\n{rows}"
                                         "</table></body></html>\n", encoding="utf-8")
    use_workbook(folder, "missions.xls")


GENERATORS = {name: function for name, function in globals().items() if name.startswith("sheet_")}
