"""Check a letter someone holds: its signature, and that it is the very file the journal recorded.

A file is one that went out when its SHA-256 is that of a `sent`, `printed` or `delivered` event (the sent
archive keeps each of them); a letter that has not gone out must be the latest one rendered for its recipient.
An unsigned letter has no signature to check: that is said plainly, and fails only when a signature is required.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from dispatch.errors import SignError
from dispatch.journal import Event, Journal
from dispatch.pdf.signing import SignatureCheck, check_signature

NOT_SIGNED = "the file is not signed"  # what check_signature says of a readable PDF without a signature
GONE_OUT = {"sent": ("sent to", " by email"), "printed": ("printed for", ""), "delivered": ("delivered by hand to", "")}


@dataclass(frozen=True)
class Verification:
    path: Path
    sha256: str
    signature: SignatureCheck
    event: Event | None  # the journal's record of this very file, when it is the current one
    journal_problem: str = ""
    require_signature: bool = False

    @property
    def unsigned(self) -> bool:
        """A readable PDF that carries no signature (nothing to check, which is not a failed check)."""
        return not self.signature.signed and self.signature.problem == NOT_SIGNED

    @property
    def signature_ok(self) -> bool:
        return self.signature.ok or (self.unsigned and not self.require_signature)

    @property
    def ok(self) -> bool:
        return self.signature_ok and self.event is not None and not self.journal_problem

    @property
    def journal_note(self) -> str:
        if self.journal_problem:
            return self.journal_problem
        event = self.event
        when = event.at[:16].replace("T", " ")
        if event.kind in GONE_OUT:
            where = f", kept in {event.data['archive_pdf']}" if event.data.get("archive_pdf") else ""
            verb, channel = GONE_OUT[event.kind]
            return f"the letter '{event.letter}' {verb} {event.recipient} on {when} UTC{channel}{where}"
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


def verify_files(paths: Iterable[Path], journal: Journal, *, trust: Iterable[bytes] = (),
                 require_signature: bool = False) -> list[Verification]:
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
        results.append(Verification(path, digest, signature, event, problem, require_signature))
    return results


def match_journal(journal: Journal, digest: str) -> tuple[Event | None, str]:
    """The journal event this file is the record of, or why there is none."""
    matches = journal.find_by_sha256(digest, kinds=("rendered", "sent", *GONE_OUT))
    if not matches:
        return None, "not in the journal: no letter with these bytes was rendered or sent"
    gone = [event for event in matches if event.kind in GONE_OUT]
    if gone:
        return gone[0], ""  # the first time these very bytes went out
    found = matches[-1]
    letter, recipient = found.letter, found.recipient
    sent = journal.latest(letter, ["sent"]).get(recipient)
    if sent is not None:
        return None, (f"differs from the letter '{letter}' sent to {recipient} on {sent.at[:10]}: "
                      "this is another rendering")
    rendered = journal.latest(letter, ["rendered"]).get(recipient)
    if rendered is not None and _sha256_of(rendered) == digest:
        return rendered, ""
    return None, (f"an older rendering of the letter '{letter}' for {recipient}: "
                  "it was rendered again since, and not sent")


def _sha256_of(event: Event) -> str | None:
    return event.data.get("sha256") or event.data.get("attachment_sha256")
