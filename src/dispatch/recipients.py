"""Read the recipient list into Recipient records (every cell as text) and check its values.

The list is recipients.csv (read once, by the csv module, each record with the line it starts on) or
a workbook (.xlsx, .xls, .ods: see spreadsheet.py), whose problems are placed by sheet and cell.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import difflib
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from dispatch.errors import CellProblem, Problem, RecipientsError
from dispatch.models import CHANNELS, Recipient
from dispatch.spreadsheet import WORKBOOK_SUFFIXES, read_sheet

REQUIRED_COLUMNS = ("id", "state", "mission", "channel")
KNOWN_COLUMNS = ("id", "state", "state_in_sentence", "regional_group", "mission", "form", "addressee", "title",
                 "ambassador", "address", "email", "cc", "bcc", "language", "channel", "salutation", "note")
# Columns whose cells are codes or addresses: surrounding spaces from a spreadsheet are dropped.
TRIMMED_COLUMNS = ("id", "channel", "language", "email", "cc", "bcc", "form")
# Columns that must stay on one line (they go into headers, file names and address lines).
SINGLE_LINE_COLUMNS = ("id", "state", "state_in_sentence", "mission", "form", "addressee", "title", "ambassador",
                       "email", "cc", "bcc", "language", "channel", "salutation")
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_CELL_CHARS = 2000
CONTROL = re.compile(r"[\x01-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# Characters that change how text is shown without being seen ("Trojan Source"): refused in every cell.
BIDI_CONTROL = re.compile(r"[\u202a-\u202e\u2066-\u2069]")  # embeddings, overrides, isolates
INVISIBLE = re.compile(r"[\u200b\u2060-\u2064\u206a-\u206f\ufeff\u180e]")  # zero-width space, word joiner, BOM...
# Legitimate inside names written in Arabic, Persian, Hebrew or Indic scripts (joiners, direction marks),
# but never in a code or an address, where they make two values that look the same differ.
INVISIBLE_MARK = re.compile(r"[\u200c-\u200f\u061c]")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
SAVE_AS_UTF8 = "in Excel use File > Save As > 'CSV UTF-8 (Comma delimited)'; in LibreOffice choose the UTF-8 character set"


@dataclass(frozen=True)
class RecipientTable:
    """The recipients of a campaign, in file order, with the header as written."""

    file: str
    columns: tuple[str, ...]
    rows: tuple[Recipient, ...]
    header_line: int = 1
    sheet: str | None = None  # for a workbook: the sheet read (rows are then numbered as the sheet numbers them)
    letters: tuple[str, ...] = ()  # for a workbook: each column's letter

    def place(self, line: int | None = None, column: str | None = None) -> dict:
        """Where a problem is, as the keywords of Problem and RecipientsError: file and line for a CSV;
        for a workbook the sheet and the cell as well (the row alone when no column is named)."""
        line = line or self.header_line
        if self.sheet is None:
            return {"file": self.file, "line": line, "column": column}
        cell = f"{self.letters[self.columns.index(column)]}{line}" if column in self.columns else None
        return {"file": self.file, "line": line, "column": column, "sheet": self.sheet, "cell": cell}

    def problem(self, message: str, *, row: Recipient | None = None, column: str | None = None,
                hint: str | None = None, severity: str = "error") -> Problem:
        """A problem placed at a row's cell (or at the header when row is None)."""
        kind = Problem if self.sheet is None else CellProblem
        return kind(message, hint=hint, severity=severity, **self.place(row.line if row else None, column))

    def where(self, row: Recipient, column: str = "id") -> str:
        """'on line 3' in a CSV, 'in cell A3' in a workbook: for messages that point at another row."""
        return f"on line {row.line}" if self.sheet is None else f"in cell {self.place(row.line, column)['cell']}"

    def by_id(self) -> dict[str, Recipient]:
        return {r.id: r for r in self.rows}

    def select(self, only: list[str] | None) -> list[Recipient]:
        if not only:
            return list(self.rows)
        index = self.by_id()
        unknown = [i for i in only if i not in index]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(index), n=1)
            raise RecipientsError(f"no recipient with id {unknown[0]!r}", file=self.file,
                                  hint=f"did you mean {close[0]!r}?" if close else
                                  "ids are in the first column of the CSV" if self.sheet is None else
                                  "ids are in the 'id' column of the sheet")
        return [index[i] for i in only]


def read_recipients(path: Path, *, name: str | None = None, sheet: str | None = None) -> RecipientTable:
    """Read the recipient list at path: a CSV file, or a workbook's sheet (sheet: its name, from dispatch.toml).

    Raises RecipientsError when the file cannot be read as a table.
    """
    name = name or path.name
    if path.suffix.lower() in WORKBOOK_SUFFIXES:
        found = read_sheet(path, name=name, sheet=sheet)
        return _table(name, found.header, found.records, header_line=found.header_row, sheet=found.sheet,
                      letters=found.letters)
    if sheet:
        raise RecipientsError(f"dispatch.toml names a sheet ({sheet!r}), but this is a CSV file, which has none",
                              file=name, hint="remove the 'sheet' line, or set recipients to the workbook's file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RecipientsError(f"file is {size // (1024 * 1024)} MB, more than the {MAX_FILE_BYTES // (1024 * 1024)} MB a recipient list may have",
                                  file=name, hint="is this the right file? split very large lists into several campaigns")
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecipientsError("file not found", file=name,
                              hint="create it with one row per recipient (see README: 'The recipients file')") from None
    except OSError as exc:
        raise RecipientsError(f"cannot read: {exc.strerror}", file=name) from None
    text = _decode(data, name)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise RecipientsError("file is empty", file=name, line=1,
                              hint="the first line must be the header: id,state,mission,channel,...")
    delimiter = _delimiter(text.split("\n", 1)[0])
    records = _records(text, delimiter, name)
    width = len(records[0][1])
    for start, cells in records[1:]:
        if cells and len(cells) != width:
            raise RecipientsError(f"row has {len(cells)} cells but the header has {width}", file=name, line=start,
                                  hint=f"check for a missing or extra '{delimiter}' in this row, or put the cell in double quotes")
    return _table(name, records[0][1], records[1:])


def _table(name: str, header, records, *, header_line: int = 1, sheet: str | None = None,
           letters: tuple[str, ...] = ()) -> RecipientTable:
    """The table of (line, cells) records under header; blank rows (no cell filled in) are left out."""
    columns = tuple(str(h).strip() for h in header)
    table = RecipientTable(file=name, columns=columns, rows=(), header_line=header_line, sheet=sheet,
                           letters=tuple(letters))
    _check_header(table)
    rows: list[Recipient] = []
    for start, values in records:
        if not any(v.strip() for v in values):
            continue  # blank line or a row of empty cells
        fields = {column: (value.strip() if column in TRIMMED_COLUMNS else value)
                  for column, value in zip(columns, values)}
        rows.append(Recipient(id=fields.get("id", ""), line=start, fields=fields))
    return dataclasses.replace(table, rows=tuple(rows))


def check_recipients(table: RecipientTable, *, default_language: str = "en",
                     known_languages: frozenset[str] | None = None) -> list[Problem]:
    """Every problem with the values of the table, in file order."""
    problems: list[Problem] = []

    def add(row: Recipient | None, column: str | None, message: str, hint: str | None = None,
            severity: str = "error") -> None:
        problems.append(table.problem(message, row=row, column=column, hint=hint, severity=severity))

    columns = set(table.columns)
    for column in REQUIRED_COLUMNS:
        if column not in columns:
            close = difflib.get_close_matches(column, [c for c in table.columns if c not in KNOWN_COLUMNS], n=1)
            add(None, None, f"missing column '{column}'",
                f"rename the column '{close[0]}' to '{column}'" if close else f"add a column named '{column}'")
    for column in table.columns:
        if column not in KNOWN_COLUMNS:
            close = difflib.get_close_matches(column, [c for c in KNOWN_COLUMNS if c not in columns], n=1, cutoff=0.75)
            if close:
                add(None, column, f"unknown column '{column}'", f"did you mean '{close[0]}'?")
    if not table.rows:
        add(None, None, "no recipients: the file has a header but no rows" if table.sheet is None else
            "no recipients: the sheet has a header but no rows", "add one row per recipient below the header")
    seen: dict[str, Recipient] = {}
    folded: dict[str, Recipient] = {}  # ids in lower case: on macOS and Windows NA.pdf and na.pdf are one file
    any_email = "email" in columns
    for row in table.rows:
        before = len(problems)
        for column, value in row.fields.items():
            if "\x00" in value:
                add(row, column, "cell contains a NUL character", "remove the invisible character, or re-export the file")
            elif CONTROL.search(value):
                char = CONTROL.search(value).group()
                add(row, column, f"cell contains an invisible control character (U+{ord(char):04X})",
                    "delete it: it is often pasted in from another program")
            elif invisible := _invisible(value, code=column in TRIMMED_COLUMNS):
                add(row, column, f"cell contains {invisible[0]}", invisible[1])
            elif len(value) > MAX_CELL_CHARS:
                add(row, column, f"cell has {len(value)} characters, more than {MAX_CELL_CHARS}",
                    "is a column shifted? check this row")
            elif column in SINGLE_LINE_COLUMNS and "\n" in value:
                add(row, column, "cell has a line break", "this column must stay on one line; only 'address' may have several")
        flagged = {p.column for p in problems[before:]}  # cells already reported are not checked again
        ident = row.id
        if "id" in flagged:
            pass
        elif not ident:
            add(row, "id", "empty id", "give every recipient a unique id, e.g. the ISO country code")
        elif not SAFE_ID.match(ident) or ident.upper() in WINDOWS_RESERVED:
            add(row, "id", f"{ident!r} cannot be used as a file name",
                "use letters, digits, '-' and '_' only (e.g. an ISO country code), not a reserved name like CON or NUL")
        elif ident in seen:
            first = seen[ident]
            add(row, "id", f"duplicate id {ident!r} (first used {table.where(first)})", "ids must be unique")
        elif ident.lower() in folded:
            first = folded[ident.lower()]
            add(row, "id", f"duplicate id {ident!r} ({first.id!r} {table.where(first)} differs only in case)",
                f"on macOS and Windows {ident}.pdf and {first.id}.pdf are the same file: "
                "make the ids differ by more than upper and lower case")
        else:
            seen[ident] = row
            folded[ident.lower()] = row
        if "state" in columns and not row.get("state").strip():
            add(row, "state", "empty state name")
        if "mission" in columns and not row.get("mission").strip():
            add(row, "mission", "empty mission name")
        channel = row.channel
        if "channel" in columns:
            if channel not in CHANNELS:
                close = difflib.get_close_matches(channel.lower(), CHANNELS, n=1)
                add(row, "channel", f"unknown channel {channel!r}" if channel else "empty channel",
                    f"did you mean '{close[0]}'?" if close and channel else "use email, print or both")
            elif channel in ("email", "both") and not row.get("email"):
                add(row, "email", f"channel is '{channel}' but there is no email address",
                    "add the address, or set the channel to 'print'")
        if any_email and row.get("email") and "email" not in flagged:
            _check_address(add, row, "email", row.get("email"))
        for column in ("cc", "bcc"):
            for address in split_addresses(row.get(column)) if column not in flagged else ():
                _check_address(add, row, column, address)
        language = row.get("language") or default_language
        if not re.fullmatch(r"[a-z]{2}", language) or (known_languages is not None and language not in known_languages):
            add(row, "language", f"unknown language {language!r}",
                "use a two-letter ISO 639-1 code in lower case, e.g. en, fr, es, ar")
    return problems


def split_addresses(cell: str) -> list[str]:
    """A cell that may hold several addresses separated by ';' or ','."""
    return [part.strip() for part in re.split(r"[;,]", cell or "") if part.strip()]


def _invisible(value: str, *, code: bool) -> tuple[str, str] | None:
    """(what, hint) for a character that changes how the cell is shown or compared without being seen."""
    if found := BIDI_CONTROL.search(value):
        return (f"an invisible bidirectional control character ({_describe(found.group())})",
                "delete it: it makes text display in another order than it is stored, here and in every "
                "program that shows it; names in right-to-left scripts need no such character")
    if found := INVISIBLE.search(value):
        return (f"an invisible character ({_describe(found.group())})",
                "delete it: the value looks the same without it but is not (it is often pasted in from a web page)")
    if code and (found := INVISIBLE_MARK.search(value)):
        return (f"an invisible character ({_describe(found.group())})",
                "delete it: ids, addresses, channels and language codes must be plain text")
    return None


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()


def _check_address(add, row: Recipient, column: str, address: str) -> None:
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        add(row, column, f"{address!r} is not a valid address ({exc})", "correct the address or leave the cell empty")


def _decode(data: bytes, name: str) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise RecipientsError("file starts like UTF-16 text but cannot be decoded", file=name, line=1,
                                  hint=SAVE_AS_UTF8) from None
    head = data[:8192]
    if b"\x00" in head and sum(1 for b in head if b < 9 or 13 < b < 32 or b == 127) > len(head) // 20:
        raise RecipientsError("this is a binary file, not a CSV text file", file=name, line=1,
                              hint="export the spreadsheet as CSV (" + SAVE_AS_UTF8 + ")")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        guess = ""
        try:
            data.decode("cp1252")
            guess = " (it looks like Windows-1252, Excel's plain 'CSV' format)"
        except UnicodeDecodeError:
            pass
        raise RecipientsError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column}{guess}",
                              file=name, line=line, hint="save the file as UTF-8: " + SAVE_AS_UTF8) from None


def _delimiter(header_line: str) -> str:
    """Comma, or the semicolon/tab that a localised spreadsheet writes, judged from the header."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _records(text: str, delimiter: str, name: str) -> list[tuple[int, list[str]]]:
    """(first line, cells) of every record, header included: the one parse of the file.

    Catches an unclosed quote, which would swallow the rest of the file into the last record.
    """
    # A long cell is reported by check_recipients with its line ("cell has ... characters"), not
    # refused here by the csv module's own limit of 131,072 characters.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FILE_BYTES))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    records: list[tuple[int, list[str]]] = []
    previous_end = 0
    for record in reader:
        records.append((previous_end + 1, record))
        previous_end = reader.line_num
    if records:
        start = records[-1][0]
        chunk = "\n".join(text.split("\n")[start - 1:previous_end])
        if _unbalanced(chunk, delimiter):
            raise RecipientsError("a quoted cell is opened here but never closed", file=name, line=start,
                                  hint='close the cell with a double quote ("), and write a quote inside a cell as ""')
    return records


def _unbalanced(chunk: str, delimiter: str) -> bool:
    in_quotes = False
    at_cell_start = True
    i = 0
    while i < len(chunk):
        ch = chunk[i]
        if in_quotes:
            if ch == '"':
                if chunk[i + 1:i + 2] == '"':
                    i += 1
                else:
                    in_quotes = False
        elif ch == '"' and at_cell_start:
            in_quotes = True
        at_cell_start = ch in (delimiter, "\n") and not in_quotes
        i += 1
    return in_quotes


def _check_header(table: RecipientTable) -> None:
    seen: dict[str, int] = {}
    for position, column in enumerate(table.columns):
        label = str(position + 1) if table.sheet is None else table.letters[position]
        place = table.place() if table.sheet is None else {**table.place(), "cell": f"{label}{table.header_line}"}
        if not column:
            raise RecipientsError(f"column {label} has no name", **place,
                                  hint="give every column a name in the first line, or delete the empty column"
                                  if table.sheet is None else
                                  f"give every column a name in row {table.header_line}, or delete the empty column")
        if column in seen:
            first = seen[column]
            first_label = str(first + 1) if table.sheet is None else table.letters[first]
            raise RecipientsError(f"column '{column}' appears twice (columns {first_label} and {label})",
                                  **{**place, "column": column}, hint="rename or delete one of them")
        if invisible := _invisible(column, code=True):
            raise RecipientsError(f"the column name {column!r} contains {invisible[0]}", **place, hint=invisible[1])
        seen[column] = position
