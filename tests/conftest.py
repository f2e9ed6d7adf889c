"""Shared fixtures: a small real workspace in tmp_path, the sample campaign, PDF text extraction."""

from __future__ import annotations

import csv
import io
import shutil
import signal
from pathlib import Path

import pytest
from pypdf import PdfReader

from dispatch import campaign
from dispatch.workspace import open_workspace

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "tests" / "data" / "joint-ngo-letter-2020.txt"  # a copy of the original letter

HEADER = ["id", "state", "regional_group", "mission", "title", "ambassador", "address", "email",
          "language", "channel", "salutation"]


def row(id: str, state: str, **extra: str) -> dict[str, str]:
    base = {"id": id, "state": state, "regional_group": "African States",
            "mission": f"Permanent Mission of {state} to the United Nations", "title": "", "ambassador": "",
            "address": "", "email": "", "language": "en", "channel": "print", "salutation": ""}
    base.update(extra)
    return base


def csv_text(rows: list[dict[str, str]], header: list[str] | None = None, delimiter: str = ",") -> str:
    header = header or list(rows[0].keys()) if rows else (header or HEADER)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


LETTER = """---
title: "Test Letter"
subject: "A test letter"
place: New York
date: 2020-04-28
signatories:
  - "First Organisation"
  - "Second Organisation"
---
We write to {{ state }} about the Court.

- one point;
- another point.

Thank you.
"""


class WorkspaceFactory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def __call__(self, rows: list[dict[str, str]] | None = None, *, csv: str | bytes | None = None,
                 letter: str | None = None, settings: str | None = None, name: str | None = None) -> Path:
        self.count += 1
        folder = self.root / (name or f"campaign{self.count}")
        campaign.init(folder)
        (folder / "letters" / "letter.md").write_text(letter if letter is not None else LETTER, encoding="utf-8")
        if rows is not None:
            (folder / "recipients.csv").write_text(csv_text(rows), encoding="utf-8")
        if csv is not None:
            target = folder / "recipients.csv"
            target.write_bytes(csv) if isinstance(csv, bytes) else target.write_text(csv, encoding="utf-8")
        if settings is not None:
            (folder / "dispatch.toml").write_text(settings, encoding="utf-8")
        return folder


@pytest.fixture
def make_workspace(tmp_path: Path) -> WorkspaceFactory:
    return WorkspaceFactory(tmp_path)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A copy of the repository's sample campaign (the real letter and the 125 States Parties)."""
    target = tmp_path / "sample"
    target.mkdir()
    for name in ("dispatch.toml", "recipients.csv"):
        shutil.copy(REPO / name, target / name)
    for folder in ("letters", "templates"):
        shutil.copytree(REPO / folder, target / folder)
    return target


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)


def flat(text: str) -> str:
    """Text with every run of white space made one space (PDF extraction breaks lines)."""
    return " ".join(text.split())


def ws(path: Path):
    return open_workspace(path)


@pytest.fixture(scope="session")
def smtp_ca(tmp_path_factory):
    """A throw-away certificate authority (trustme) and a server certificate for localhost/127.0.0.1."""
    from tests.smtp_server import make_ca

    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def smtp_env(monkeypatch):
    """No SMTP setting or password leaks in from the machine's environment; the test password is set."""
    from tests.smtp_server import PASSWORD

    for name in ("DISPATCH_SMTP_HOST", "DISPATCH_SMTP_PORT", "DISPATCH_SMTP_SECURITY", "DISPATCH_SMTP_USERNAME",
                 "DISPATCH_SMTP_CAFILE", "DISPATCH_SENDER", "DISPATCH_JOURNAL", "DISPATCH_SMTP_AUTH",
                 "DISPATCH_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPATCH_SMTP_PASSWORD", PASSWORD)
    return monkeypatch


def email_row(id: str, state: str, email: str, *, channel: str = "email", cc: str = "", bcc: str = "",
              **extra: str) -> dict[str, str]:
    return row(id, state, email=email, channel=channel, cc=cc, bcc=bcc, **extra)


SENDER = """[sender]
name = "Coalition for the Court"
reply_to = "replies@example.org"
"""



def interruptible() -> None:
    """preexec_fn for a command a test stops with SIGINT: Ctrl-C's default action, even when the tests run
    where SIGINT is ignored (a shell's background job), so that Python in the child turns it into
    KeyboardInterrupt as it does at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
