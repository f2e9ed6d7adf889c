"""The coordinator's mailbox over IMAP: a copy of each sent message in Sent, and drafts instead of sending.

Folders are found by their special-use flag (RFC 6154: \\Sent, \\Drafts), never by their name, which differs
with the provider and the language ("Sent Items", "Gesendete Elemente", "[Gmail]/Sent Mail").

A copy in Sent comes after the message's `sent` is recorded: when the mailbox cannot take it, the send
goes on and the summary says which copies are missing. A draft is kept in the sent archive first
(`-draft.eml`), then appended to Drafts, then journaled as `drafted` with its Message-ID; nothing is sent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from dispatch.archive import keep
from dispatch.errors import SendError
from dispatch.journal import Journal
from dispatch.mail.imap import DRAFTS, SENT, ImapClient
from dispatch.mail.smtp import Outcome
from dispatch.stages.send.execute import Item, SendSummary

log = logging.getLogger(__name__)


class SentCopies:
    """Appends each sent message to the \\Sent folder over one IMAP connection, opened when first needed.

    A connection or sign-in that fails is not tried again in this run (each later copy is reported missing
    for the same reason); a message the server refuses is reported and the next one is tried."""

    def __init__(self, connect: Callable[[], ImapClient]) -> None:
        self._connect = connect
        self._client: ImapClient | None = None
        self._folder = ""
        self._broken: str | None = None
        self.saved = 0
        self.failed: list[tuple[str, str]] = []

    def save(self, recipient_id: str, message: bytes) -> None:
        if self._broken is not None:
            self.failed.append((recipient_id, self._broken))
            return
        try:
            if self._client is None:
                client = self._connect()
                client.open()
                self._client = client
                self._folder = client.folder(SENT)
        except SendError as exc:  # ImapError, or the sign-in (SignInExpired) while connecting
            self._drop()
            self._broken = _reason(exc)
            log.warning("%s: no copy in the Sent folder: %s", recipient_id, self._broken)
            self.failed.append((recipient_id, self._broken))
            return
        try:
            self._client.append(self._folder, message, ("\\Seen",))
        except SendError as exc:
            self._drop()  # opened again for the next message
            reason = _reason(exc)
            log.warning("%s: no copy in the Sent folder: %s", recipient_id, reason)
            self.failed.append((recipient_id, reason))
            return
        self.saved += 1

    def close(self, summary: SendSummary) -> None:
        self._drop()
        summary.copies_saved = self.saved
        summary.copies_failed = list(self.failed)
        summary.sent_folder = self._folder

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def save_drafts(items: list[Item], *, letter: str, journal: Journal, client: ImapClient, summary: SendSummary,
                archive: Path | None = None,
                on_progress: Callable[[Item, Outcome], None] | None = None) -> SendSummary:
    """Put each message in the \\Drafts folder, recording each as `drafted`; sends nothing.

    Stops at the first message the mailbox does not take (SendError when none was drafted, else the
    summary says where it stopped); the drafts made so far stay recorded."""
    with client:
        folder = client.folder(DRAFTS)
        summary.drafts_folder = folder
        for index, item in enumerate(items):
            out = item.outgoing
            message = out.as_bytes()
            kept: dict = {}
            if archive is not None:
                copies = keep(archive, item.recipient_id, "draft", {"pdf": item.pdf, "eml": message})
                kept = dict(archive_pdf=copies["pdf"].path, archive_eml=copies["eml"].path,
                            eml_sha256=copies["eml"].sha256)
            try:
                uid = client.append(folder, message, ("\\Draft", "\\Seen"))
            except SendError as exc:
                if not summary.drafted:
                    raise
                summary.stopped = f"{item.recipient_id}: {exc}"
                summary.hint = exc.hint
                summary.not_attempted = [i.recipient_id for i in items[index:]]
                break
            journal.record(letter, item.recipient_id, "drafted", message_id=out.message_id, to=out.to,
                           recipients=list(out.recipients), sha256=item.sha256, size=out.attachment_size,
                           attachment=out.attachment_name, folder=folder, reply=f"saved as a draft in {folder}",
                           **({"uid": uid} if uid is not None else {}), **kept)
            summary.drafted.append(item.recipient_id)
            if on_progress:
                on_progress(item, Outcome("drafted", f"saved as a draft in {folder}"))
    return summary


def _reason(exc: SendError) -> str:
    return str(exc) + (f" ({exc.hint})" if exc.hint else "")
