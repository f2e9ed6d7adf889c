"""Check a letter someone holds: its signature, and that it is the very file the journal recorded.

A file is the one that was sent when its SHA-256 is that of the latest `sent` event for its recipient;
a letter not sent yet must be the latest one rendered for its recipient.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import SignError
from .journal import Event, Journal
from .signing import SignatureCheck, check_signature


@dataclass(frozen=True)
class Verification:
    path: Path
    sha256: str
    signature: SignatureCheck
    event: Event | None  # the journal's record of this very file, when it is the current one
    journal_problem: str = ""

    @property
    def ok(self) -> bool:
        return self.signature.ok and self.event is not None and not self.journal_problem

    @property
    def journal_note(self) -> str:
        if self.journal_problem:
            return self.journal_problem
        event = self.event
        when = event.at[:16].replace("T", " ")
        if event.kind == "sent":
            return f"the letter '{event.letter}' sent to {event.recipient} on {when} UTC"
        return f"the letter '{event.letter}' rendered for {event.recipient} on {when} UTC (not sent yet)"


def read_trust(paths: Iterable[Path]) -> list[bytes]:
    blobs = []
    for path in paths:
        try:
            blobs.append(path.read_bytes())
        except OSError as exc:
            raise SignError(f"cannot read the certificate: {exc.strerror}", file=str(path),
                            hint="pass the PEM or DER file of the certificate you trust") from None
    return blobs


def verify_files(paths: Iterable[Path], journal: Journal, *, trust: Iterable[bytes] = ()) -> list[Verification]:
    trust = list(trust)
    results = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SignError(f"cannot read: {exc.strerror}", file=str(path), hint="check the file name") from None
        digest = hashlib.sha256(data).hexdigest()
        signature = check_signature(data, trust=trust)
        event, problem = match_journal(journal, digest)
        results.append(Verification(path, digest, signature, event, problem))
    return results


def match_journal(journal: Journal, digest: str) -> tuple[Event | None, str]:
    """The journal event this file is the current record of, or why there is none."""
    matches = journal.find_by_sha256(digest)
    if not matches:
        return None, "not in the journal: no letter with these bytes was rendered or sent"
    found = matches[-1]
    letter, recipient = found.letter, found.recipient
    sent = journal.latest(letter, ["sent"]).get(recipient)
    if sent is not None:
        if _sha256_of(sent) == digest:
            return sent, ""
        return None, (f"differs from the letter '{letter}' sent to {recipient} on {sent.at[:10]}: "
                      "this is another rendering")
    rendered = journal.latest(letter, ["rendered"]).get(recipient)
    if rendered is not None and _sha256_of(rendered) == digest:
        return rendered, ""
    return None, (f"an older rendering of the letter '{letter}' for {recipient}: "
                  "it was rendered again since, and not sent")


def _sha256_of(event: Event) -> str | None:
    return event.data.get("sha256") or event.data.get("attachment_sha256")
