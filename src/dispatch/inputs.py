"""The campaign read once: its settings (the workspace), the versions of its letter and its recipients.

Every command reads these through load(); the stages are handed the result and never read the files again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dispatch.letters import LetterVersions, read_letter_versions
from dispatch.models import Letter, Recipient
from dispatch.recipients import RecipientTable, read_recipients
from dispatch.workspace import Workspace


@dataclass(frozen=True)
class Campaign:
    """Everything read from a workspace for one letter."""

    workspace: Workspace
    versions: LetterVersions
    recipients: RecipientTable

    @property
    def letter(self) -> Letter:
        return self.versions.letter

    @property
    def letter_name(self) -> str:
        return self.letter.name

    @property
    def output_dir(self) -> Path:
        return self.workspace.output_dir(self.letter.name)

    def language_of(self, recipient: Recipient) -> str:
        return recipient.get("language") or self.workspace.settings.language

    def version_for(self, recipient: Recipient) -> Letter:
        """The letter in the recipient's language, or the letter itself when it has no such translation."""
        return self.versions.choose(self.language_of(recipient))


def read_versions(ws: Workspace, letter: str | None) -> LetterVersions:
    """The letter named (default: [campaign] letter) and its translations."""
    name = ws.letter_name(letter)
    return read_letter_versions(ws.letter_file(name), name=f"letters/{name}.md", language=ws.settings.language)


def read_table(ws: Workspace) -> RecipientTable:
    """The recipients file, parsed once."""
    return read_recipients(ws.recipients_file, name=ws.relative(ws.recipients_file), sheet=ws.settings.sheet)


def load(ws: Workspace, letter: str | None = None) -> Campaign:
    """Read the letter and the recipients. Raises the first error that stops reading."""
    return Campaign(ws, read_versions(ws, letter), read_table(ws))
