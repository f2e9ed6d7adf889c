"""Read recipients.csv into Recipient records (every cell as text) and check its values."""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from .errors import Problem, RecipientsError
from .models import CHANNELS, Recipient

REQUIRED_COLUMNS = ("id", "state", "mission", "channel")
KNOWN_COLUMNS = ("id", "state", "regional_group", "mission", "addressee", "title", "ambassador",
                 "address", "email", "cc", "bcc", "language", "channel", "salutation", "note")
# Columns whose cells are codes or addresses: surrounding spaces from a spreadsheet are dropped.
TRIMMED_COLUMNS = ("id", "channel", "language", "email", "cc", "bcc")
# Columns that must stay on one line (they go into headers, file names and address lines).
SINGLE_LINE_COLUMNS = ("id", "state", "mission", "addressee", "title", "ambassador", "email", "cc",
                       "bcc", "language", "channel", "salutation")
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_CELL_CHARS = 2000
CONTROL = re.compile(r"[\x01-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
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
                                  hint=f"did you mean {close[0]!r}?" if close else "ids are in the first column of the CSV")
        return [index[i] for i in only]


def read_recipients(path: Path, *, name: str | None = None) -> RecipientTable:
    """Read the CSV at path. Raises RecipientsError when the file cannot be read as a table."""
    name = name or path.name
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
    records = _record_lines(text, delimiter, name)
    width = records[0][1]
    for start, count in records[1:]:
        if count and count != width:
            raise RecipientsError(f"row has {count} cells but the header has {width}", file=name, line=start,
                                  hint=f"check for a missing or extra '{delimiter}' in this row, or put the cell in double quotes")
    import pandas as pd  # here, not at the top: render starts its workers before this import (0.3 to 0.5 s)

    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, header=None, dtype=str, keep_default_na=False,
                            na_filter=False, skip_blank_lines=False, quotechar='"', doublequote=True,
                            engine="c")
    except pd.errors.ParserError as exc:  # records were checked above, so this is rare
        raise RecipientsError(f"not a valid CSV table ({exc})", file=name) from None
    header = [str(h).strip() for h in frame.iloc[0].tolist()]
    _check_header(header, name)
    rows: list[Recipient] = []
    for index in range(1, len(frame)):
        start = records[index][0]
        values = frame.iloc[index].tolist()
        if not any(v.strip() for v in values):
            continue  # blank line or a row of empty cells
        fields = {column: (value.strip() if column in TRIMMED_COLUMNS else value)
                  for column, value in zip(header, values)}
        rows.append(Recipient(id=fields.get("id", ""), line=start, fields=fields))
    return RecipientTable(file=name, columns=tuple(header), rows=tuple(rows))


def check_recipients(table: RecipientTable, *, default_language: str = "en",
                     known_languages: frozenset[str] | None = None) -> list[Problem]:
    """Every problem with the values of the table, in file order."""
    problems: list[Problem] = []
    file = table.file

    def add(row: Recipient | None, column: str | None, message: str, hint: str | None = None,
            severity: str = "error") -> None:
        problems.append(Problem(message, file=file, line=row.line if row else table.header_line,
                                column=column, hint=hint, severity=severity))

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
        add(None, None, "no recipients: the file has a header but no rows", "add one row per recipient below the header")
    seen: dict[str, Recipient] = {}
    any_email = "email" in columns
    for row in table.rows:
        for column, value in row.fields.items():
            if "\x00" in value:
                add(row, column, "cell contains a NUL character", "remove the invisible character, or re-export the file")
            elif CONTROL.search(value):
                char = CONTROL.search(value).group()
                add(row, column, f"cell contains an invisible control character (U+{ord(char):04X})",
                    "delete it: it is often pasted in from another program")
            elif len(value) > MAX_CELL_CHARS:
                add(row, column, f"cell has {len(value)} characters, more than {MAX_CELL_CHARS}",
                    "is a column shifted? check this row")
            elif column in SINGLE_LINE_COLUMNS and "\n" in value:
                add(row, column, "cell has a line break", "this column must stay on one line; only 'address' may have several")
        ident = row.id
        if not ident:
            add(row, "id", "empty id", "give every recipient a unique id, e.g. the ISO country code")
        elif not SAFE_ID.match(ident) or ident.upper() in WINDOWS_RESERVED:
            add(row, "id", f"{ident!r} cannot be used as a file name",
                "use letters, digits, '-' and '_' only (e.g. an ISO country code), not a reserved name like CON or NUL")
        elif ident in seen:
            add(row, "id", f"duplicate id {ident!r} (first used on line {seen[ident].line})", "ids must be unique")
        else:
            seen[ident] = row
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
        if any_email and row.get("email"):
            _check_address(add, row, "email", row.get("email"))
        for column in ("cc", "bcc"):
            for address in split_addresses(row.get(column)):
                _check_address(add, row, column, address)
        language = row.get("language") or default_language
        if not re.fullmatch(r"[a-z]{2}", language) or (known_languages is not None and language not in known_languages):
            add(row, "language", f"unknown language {language!r}",
                "use a two-letter ISO 639-1 code in lower case, e.g. en, fr, es, ar")
    return problems


def split_addresses(cell: str) -> list[str]:
    """A cell that may hold several addresses separated by ';' or ','."""
    return [part.strip() for part in re.split(r"[;,]", cell or "") if part.strip()]


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


def _record_lines(text: str, delimiter: str, name: str) -> list[tuple[int, int]]:
    """(first line, number of cells) of every record, header included; catches unclosed quotes."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    records: list[tuple[int, int]] = []
    previous_end = 0
    for record in reader:
        records.append((previous_end + 1, len(record)))
        previous_end = reader.line_num
    # An unclosed quote swallows the rest of the file into the last record: find where it opened.
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


def _check_header(header: list[str], name: str) -> None:
    seen: dict[str, int] = {}
    for position, column in enumerate(header, start=1):
        if not column:
            raise RecipientsError(f"column {position} has no name", file=name, line=1,
                                  hint="give every column a name in the first line, or delete the empty column")
        if column in seen:
            raise RecipientsError(f"column '{column}' appears twice (columns {seen[column]} and {position})",
                                  file=name, line=1, column=column, hint="rename or delete one of them")
        seen[column] = position
