"""Small frozen records passed from one stage to the next."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

CHANNELS = ("email", "print", "both")
_MISSION = re.compile(r"^Permanent (Observer )?Mission of (.+?) to the United Nations\b")


@dataclass(frozen=True)
class Recipient:
    """One row of recipients.csv: every cell as the text that was written."""

    id: str
    line: int  # line of the file where the row starts
    fields: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def get(self, column: str, default: str = "") -> str:
        return self.fields.get(column, default) or default

    @property
    def state(self) -> str:
        return self.get("state")

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def addressee_lines(self) -> tuple[str, ...]:
        """Who the letter is addressed to, above the mission's name.

        An `addressee` cell wins. Otherwise the head of mission: "H.E. Ms. X" then her function when the
        name is known, or "The Permanent Representative of <state>" when it is not, with the state
        written as in the mission's name ("of the Niger") and "Observer" for observer missions.
        """
        if self.get("addressee").strip():
            return tuple(line.strip() for line in self.get("addressee").splitlines() if line.strip())
        match = _MISSION.match(self.get("mission").strip())
        role = "Permanent Observer" if match and match.group(1) else "Permanent Representative"
        of_state = match.group(2) if match else self.state.strip()
        function = f"{role} of {of_state}"
        name = " ".join(part for part in (self.get("title").strip(), self.get("ambassador").strip()) if part)
        if self.get("ambassador").strip():
            return (name, function)
        return (f"The {function}",)

    @property
    def wants_email(self) -> bool:
        return self.channel in ("email", "both")

    @property
    def wants_print(self) -> bool:
        return self.channel in ("print", "both")


@dataclass(frozen=True)
class Letter:
    """A letter: its front matter and its Markdown body (which may use Jinja2 expressions)."""

    name: str
    path: Path
    title: str
    subject: str
    place: str
    date: dt.date | str
    template: str
    senders: tuple[str, ...]
    signatories: tuple[str, ...]
    body: str
    body_line: int  # line of the file where the body starts
    extra: Mapping[str, object] = field(default_factory=dict)
    language: str = ""  # ISO 639-1 code of the language the letter is written in
    salutation: str = ""  # replaces the language's usual salutation
    page_label: str = ""  # replaces the language's "Page {page} of {pages}"

    @property
    def author(self) -> str:
        return ", ".join(self.senders or self.signatories)


@dataclass(frozen=True)
class RenderedLetter:
    """What one render produced for one recipient."""

    recipient_id: str
    path: Path
    reason: str  # "new", "changed", "forced"
    pages: int
    size: int
    sha256: str
    note: str = ""  # e.g. that the letter replaced in out/ had been sent, and where the sent copy is kept
