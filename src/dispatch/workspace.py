"""Find the campaign folder and its files; read dispatch.toml into Settings."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatch.errors import SettingsError, WorkspaceError
from dispatch.letters import language_version

SETTINGS_FILE = "dispatch.toml"
PAGE_SIZES = ("A4", "Letter")
SECURITY = ("starttls", "tls", "none")

# section -> key -> (type, default). One definition, used for reading, defaults and messages.
SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "campaign": {
        "letter": (str, ""),
        "recipients": (str, "recipients.csv"),  # or a workbook: missions.xlsx, .ods, .xls
        "sheet": (str, ""),  # the workbook's sheet holding the recipients (default: its only visible one)
        "output": (str, "out"),
        "page_size": (str, "A4"),
        "language": (str, "en"),
        "pdf_variant": (str, ""),
    },
    "sender": {
        "name": (str, ""),
        "address": (str, ""),
        "email": (str, ""),
        "reply_to": (str, ""),
    },
    # The print run (dispatch print). Label sizes in mm; 0 means "take it from the chosen label sheet".
    "print": {
        "duplex": (bool, False),
        "envelope": (str, "DL"),
        "order": (str, "state"),
        "window": (bool, False),
        "labels": (str, "3x7"),
        "label_columns": (int, 0),
        "label_rows": (int, 0),
        "label_width_mm": (float, 0.0),
        "label_height_mm": (float, 0.0),
        "label_top_mm": (float, -1.0),
        "label_left_mm": (float, -1.0),
        "label_column_gap_mm": (float, -1.0),
        "label_row_gap_mm": (float, -1.0),
        "label_padding_mm": (float, 4.0),
    },
    "email": {
        "cc": (str, ""),          # more addresses for every message, separated by ';'
        "bcc": (str, ""),
        "attachment": (str, "{{ letter.title }} {{ state }}"),  # the PDF's name in the email, before .pdf
        "subject": (str, ""),     # the email's subject (a template); "" for the one email.txt.j2 sets
    },
    "smtp": {
        "host": (str, ""),
        "port": (int, 587),
        "security": (str, "starttls"),
        "username": (str, ""),
        "sender": (str, ""),       # the address messages come from (default: [sender] email)
        "account": (str, ""),      # a named account in the user's accounts.toml (host, sign-in); DISPATCH_ACCOUNT
        "rate_limit": (float, 30.0),  # messages per minute; 0 for no limit
        "timeout": (float, 60.0),   # seconds to wait for the server
        "retries": (int, 4),       # more attempts after a temporary failure
        "retry_wait": (float, 2.0),  # seconds before the first retry; doubles each time
    },
    # dispatch track: the mailbox folders where bounces and replies arrive, read without changing them.
    "track": {
        "folders": (list, ["INBOX"]),
    },
}
# Settings that take one of a few words.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("campaign", "page_size"): PAGE_SIZES,
    ("print", "envelope"): ("DL", "C5", "C4"),
    ("print", "order"): ("state", "group", "csv"),
    ("print", "labels"): ("3x7", "3x8"),
    ("smtp", "security"): SECURITY,
}


@dataclass(frozen=True)
class Settings:
    """The values of dispatch.toml, with defaults filled in."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)  # (section, key) -> line in the file

    def get(self, section: str, key: str) -> Any:
        return self.values.get(section, {}).get(key, SCHEMA[section][key][1])

    @property
    def letter(self) -> str:
        return self.get("campaign", "letter")

    @property
    def page_size(self) -> str:
        return self.get("campaign", "page_size")

    @property
    def language(self) -> str:
        return self.get("campaign", "language")

    @property
    def pdf_variant(self) -> str:
        return self.get("campaign", "pdf_variant")

    @property
    def sheet(self) -> str | None:
        """The workbook's sheet named in [campaign] sheet, or None to read its only visible sheet."""
        return self.get("campaign", "sheet") or None

    def line(self, section: str, key: str) -> int | None:
        return self.lines.get((section, key))

    def section(self, name: str) -> dict[str, Any]:
        return {key: self.get(name, key) for key in SCHEMA[name]}


@dataclass(frozen=True)
class Workspace:
    """A campaign folder: recipients.csv, letters/, templates/, dispatch.toml, out/."""

    root: Path
    settings: Settings

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def letters(self) -> Path:
        return self.root / "letters"

    @property
    def recipients_file(self) -> Path:
        return self.root / self.settings.get("campaign", "recipients")

    @property
    def output(self) -> Path:
        return self.root / self.settings.get("campaign", "output")

    @property
    def journal_file(self) -> Path:
        """dispatch.db in the campaign folder, or the file DISPATCH_JOURNAL names."""
        override = os.environ.get("DISPATCH_JOURNAL")
        return Path(override).expanduser().resolve() if override else self.root / "dispatch.db"

    def letter_file(self, name: str | None = None) -> Path:
        return self.letters / f"{self.letter_name(name)}.md"

    def letter_name(self, name: str | None = None) -> str:
        chosen = name or self.settings.letter
        if chosen:
            chosen = chosen.removesuffix(".md")
            if version := language_version(chosen):
                raise WorkspaceError(
                    f"letters/{chosen}.md is the {version[1]!r} version of the letter '{version[0]}', not a letter",
                    file=SETTINGS_FILE if not name else None,
                    hint=f"choose the letter '{version[0]}': each recipient gets the version in their language")
            return chosen
        found = sorted(stem for p in self.letters.glob("*.md")
                       if language_version(stem := p.name.removesuffix(".md")) is None)
        if len(found) == 1:
            return found[0]
        raise WorkspaceError(
            "no letter chosen" if found else "no letter found in letters/",
            file=SETTINGS_FILE,
            hint=("set [campaign] letter in dispatch.toml or pass --letter NAME"
                  if found else "write one as letters/<name>.md (see `dispatch init`)"))

    def output_dir(self, letter: str) -> Path:
        return self.output / letter

    def relative(self, path: Path) -> str:
        """A path as the user knows it: relative to the workspace when inside it."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)


def open_workspace(root: Path | str = ".") -> Workspace:
    """Open the campaign folder at root and read its settings."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise WorkspaceError(f"no such folder: {folder}",
                             hint="pass the campaign folder with -C DIR, or create one with `dispatch init DIR`")
    folder = folder.resolve()
    settings_path = folder / SETTINGS_FILE
    if not settings_path.is_file():
        raise WorkspaceError(f"{folder} is not a dispatch campaign: it has no {SETTINGS_FILE}",
                             hint="run dispatch inside a campaign folder, pass -C DIR, or create one with `dispatch init DIR`")
    return Workspace(folder, read_settings(settings_path))


def read_settings(path: Path) -> Settings:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"not UTF-8 text (byte {exc.start})", file=name,
                            hint="save dispatch.toml as UTF-8") from None
    except OSError as exc:
        raise SettingsError(f"cannot read: {exc.strerror}", file=name) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        problem = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        line = int(where.group(1)) if where else text.count("\n") + 1
        column = f"column {where.group(2)}" if where else None
        raise SettingsError(f"{problem[:1].lower()}{problem[1:]}", file=name, line=line, column=column,
                            hint="check the TOML syntax: key = \"value\", one per line, under [section] headers") from None
    values: dict[str, dict[str, Any]] = {}
    lines: dict[tuple[str, str], int] = {}
    for section, table in data.items():
        if section not in SCHEMA:
            raise SettingsError(f"unknown section [{section}]", file=name, line=_line_of(text, None, section),
                                hint=_suggest(section, SCHEMA, "section") or f"known sections: {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise SettingsError(f"'{section}' must be a [section]", file=name, line=_line_of(text, None, section))
        values[section] = {}
        for key, value in table.items():
            spec = SCHEMA[section].get(key)
            if spec is None:
                raise SettingsError(f"unknown setting '{key}' in [{section}]", file=name,
                                    line=_line_of(text, section, key),
                                    hint=_suggest(key, SCHEMA[section], "setting")
                                    or f"known settings: {', '.join(SCHEMA[section])}")
            kind = spec[0]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # 70 means 70.0 mm
            if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
                raise SettingsError(f"'{key}' must be {_kind_name(kind)}, not {value!r}", file=name,
                                    line=_line_of(text, section, key),
                                    hint=f"for example: {key} = {_example(kind, SCHEMA[section][key][1])}")
            values[section][key] = value
            if (number := _line_of(text, section, key)) is not None:
                lines[(section, key)] = number
    for (section, key), allowed in CHOICES.items():
        value = values.get(section, {}).get(key, SCHEMA[section][key][1])
        if value not in allowed:
            raise SettingsError(f"{key} must be one of {', '.join(allowed)}, not {value!r}", file=name,
                                line=_line_of(text, section, key),
                                hint="write " + " or ".join(f'{key} = "{choice}"' for choice in allowed))
    smtp = values.get("smtp", {})
    for key, low, high in (("port", 1, 65535), ("rate_limit", 0, 100000), ("timeout", 1, 3600), ("retries", 0, 20),
                           ("retry_wait", 0, 600)):
        if key in smtp and not low <= smtp[key] <= high:
            raise SettingsError(f"{key} must be between {low} and {high}, not {smtp[key]!r}", file=name,
                                line=_line_of(text, "smtp", key))
    return Settings(values, lines)


def _example(kind: type, default: Any) -> str:
    if kind is str:
        return f'"{default or "text"}"'
    if kind is bool:
        return "true" if default else "false"
    return repr(default)


def _kind_name(kind: type) -> str:
    return {str: "text in quotes", int: "a whole number", bool: "true or false", float: "a number",
            list: "a list"}.get(kind, kind.__name__)


def _suggest(word: str, known, what: str) -> str | None:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"did you mean the {what} '{close[0]}'?" if close else None


def _line_of(text: str, section: str | None, key: str) -> int | None:
    """Line number of `key = ...` inside [section] (or of the [key] header when section is None)."""
    in_section = section is None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", stripped)
        if header:
            if section is None and header.group(1) == key:
                return number
            in_section = header.group(1) == section
            continue
        if in_section and section is not None and re.match(rf"^\"?{re.escape(key)}\"?\s*=", stripped):
            return number
    return None
