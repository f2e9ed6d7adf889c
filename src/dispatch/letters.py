"""Read a letter: YAML front matter between '---' lines, then a Markdown body (may use Jinja2)."""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path

import yaml

from .errors import LetterError
from .models import Letter

FIELDS = ("title", "subject", "place", "date", "template", "senders", "signatories", "language")
REQUIRED = ("subject", "date")
DEFAULT_TEMPLATE = "letter.html.j2"


def read_letter(path: Path, *, name: str | None = None) -> Letter:
    """Read letters/<name>.md. Raises LetterError with the file and line of the problem."""
    shown = name or f"letters/{path.name}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LetterError("letter not found", file=shown,
                          hint="check the name (letters/<name>.md) or [campaign] letter in dispatch.toml") from None
    except UnicodeDecodeError as exc:
        raise LetterError(f"not UTF-8 text (byte {exc.start})", file=shown, hint="save the letter as UTF-8") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise LetterError("the letter must start with front matter between two '---' lines", file=shown, line=1,
                          hint="begin with ---, then subject:, date:, ..., then --- and the body")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise LetterError("the front matter is never closed", file=shown, line=1,
                          hint="add a line with --- between the front matter and the body") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark else 2
        column = f"column {mark.column + 1}" if mark else None
        raise LetterError(f"front matter: {exc.problem or exc.context}", file=shown, line=line, column=column,
                          hint="front matter is YAML: 'key: value' per line; quote values that contain ':' or '#'") from None
    except yaml.YAMLError as exc:
        raise LetterError(f"front matter: {exc}", file=shown, line=2) from None
    if not isinstance(meta, dict):
        raise LetterError("front matter must be 'key: value' lines", file=shown, line=2)

    def line_of(key: str) -> int:
        for number in range(1, end):
            if lines[number].split(":", 1)[0].strip() == key:
                return number + 1
        return 2

    for key in meta:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            raise LetterError(f"unknown front matter field '{key}'", file=shown, line=line_of(str(key)),
                              hint=f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(FIELDS)}")
    for key in REQUIRED:
        if not meta.get(key):
            raise LetterError(f"front matter has no '{key}'", file=shown, line=1,
                              hint=f"add a line '{key}: ...' between the --- lines")

    def text_field(key: str, default: str = "") -> str:
        value = meta.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str | int | float):
            raise LetterError(f"'{key}' must be text", file=shown, line=line_of(key),
                              hint="put the value in double quotes on the same line")
        return str(value)

    def list_field(key: str) -> tuple[str, ...]:
        value = meta.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LetterError(f"'{key}' must be a list of names, one per line starting with '- '",
                              file=shown, line=line_of(key),
                              hint=f"write '{key}:' on its own line, then '  - \"Name\"' lines below it")
        return tuple(v.strip() for v in value if v.strip())

    for key in ("title", "subject", "place"):
        if any(ch in text_field(key) for ch in "\r\n\x00\u2028\u2029"):
            raise LetterError(f"'{key}' must be on one line", file=shown, line=line_of(key),
                              hint="it becomes an email subject and a PDF title: remove the line break")
    date = meta.get("date")
    if isinstance(date, dt.datetime):
        date = date.date()
    if not isinstance(date, dt.date):
        date = text_field("date")
    body = "\n".join(lines[end + 1:])
    subject = text_field("subject")
    return Letter(
        name=path.stem,
        path=path,
        title=text_field("title", subject),
        subject=subject,
        place=text_field("place"),
        date=date,
        template=text_field("template", DEFAULT_TEMPLATE),
        senders=list_field("senders"),
        signatories=list_field("signatories"),
        body=body,
        body_line=end + 2,
        extra={"language": text_field("language", "")},
    )
