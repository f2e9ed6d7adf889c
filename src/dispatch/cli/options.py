"""Options shared by several commands, each defined once."""

from __future__ import annotations

import enum
from typing import Annotated, Optional

import typer

LetterOption = Annotated[Optional[str], typer.Option("--letter", "-l", metavar="NAME", help="Letter name in letters/ (default: [campaign] letter in dispatch.toml).")]
OnlyOption = Annotated[Optional[list[str]], typer.Option("--only", metavar="ID", help="Only this recipient id (repeatable).")]
StatusFormat = enum.Enum("StatusFormat", {name: name for name in ("table", "csv", "json")}, type=str)
