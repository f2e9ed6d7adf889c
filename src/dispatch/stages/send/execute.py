"""Sending with a record: who gets a message this run, and the journal events around each delivery.

The order of events per message is the guarantee: `sending` is committed just before the message data
goes to the server, `sent`/`failed`/`uncertain` just after its reply. A run that stops anywhere leaves
either no `sending` (nothing went out), or a `sending` with an outcome, or a `sending` alone, which
the next run records as `uncertain` and never sends again by itself.

A copy of each message the server accepted goes to the mailbox's Sent folder when asked (`copies`), after
its `sent` is recorded: a copy that cannot be made is reported, and never undoes or repeats the send.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol

from dispatch.archive import keep
from dispatch.errors import SendError
from dispatch.journal import EmailState, Journal
from dispatch.mail.message import Outgoing, check_address
from dispatch.mail.settings import SmtpSettings
from dispatch.mail.smtp import Mailer, Outcome
from dispatch.models import Recipient

log = logging.getLogger(__name__)

MAX_RETRY_WAIT = 60.0


@dataclass(frozen=True)
class Choice:
    """Which of the chosen recipients get a message this run, and why the others do not."""

    to_send: list[tuple[Recipient, str]]  # (recipient, reason: new, retry, resend, resend-uncertain, new-address)
    already_sent: list[str] = field(default_factory=list)
    failed_earlier: list[tuple[str, str]] = field(default_factory=list)  # (id, server reply)
    uncertain: list[tuple[str, str]] = field(default_factory=list)       # (id, what is known)
    later: list[str] = field(default_factory=list)                       # left for a later run by --limit
    drafted: list[str] = field(default_factory=list)                     # a draft is in the mailbox (--drafts)


def settle_interrupted(journal: Journal, letter: str, states: Mapping[str, EmailState]) -> dict[str, EmailState]:
    """Record `uncertain` for every message whose run stopped between `sending` and the server's reply."""
    settled = dict(states)
    for rid, state in states.items():
        if state.status == "interrupted":
            event = journal.record(letter, rid, "uncertain", message_id=state.latest.data.get("message_id", ""),
                                   reason=f"the run stopped after the message was handed to the server at "
                                          f"{state.latest.at}, before its reply was recorded; it may have been delivered")
            settled[rid] = EmailState(rid, event, state.sent)
    return settled


def choose(recipients: Iterable[Recipient], states: Mapping[str, EmailState], *, resend: Iterable[str] = (),
           resend_uncertain: bool = False, limit: int | None = None) -> Choice:
    """Never a second message to a recipient who was sent one, or whose message may have arrived, unless asked."""
    resend = set(resend)
    choice = Choice(to_send=[])
    for recipient in recipients:
        rid = recipient.id
        state = states.get(rid) or EmailState(rid)
        status = state.status
        latest = state.latest.data if state.latest else {}
        if rid in resend:
            reason = "resend"
        elif status == "bounced":  # a DSN said it did not arrive: tried again once the address is corrected
            if _same_address(latest.get("email", ""), recipient.get("email")):
                choice.failed_earlier.append((rid, f"bounced: {latest.get('reply', '')}"))
                continue
            reason = "new-address"
        elif state.sent is not None:
            choice.already_sent.append(rid)
            continue
        elif status == "drafted":  # the coordinator sends it from the mailbox: never a second message by itself
            choice.drafted.append(rid)
            continue
        elif status in ("uncertain", "interrupted"):
            if not resend_uncertain:
                choice.uncertain.append((rid, latest.get("reason", "no reply was recorded")))
                continue
            reason = "resend-uncertain"
        elif status == "failed":
            if latest.get("email") == recipient.get("email"):
                choice.failed_earlier.append((rid, latest.get("reply", "")))
                continue
            reason = "new-address"  # the address was corrected since the failure
        else:
            reason = "retry" if status == "retry" else "new"
        if limit is not None and len(choice.to_send) >= limit:
            choice.later.append(rid)
        else:
            choice.to_send.append((recipient, reason))
    return choice


def _same_address(sent_to: str, written: str) -> bool:
    """Whether the address a message bounced from is still the one in recipients.csv (as mail addresses)."""
    if not sent_to:
        return True  # not known: never a second message by itself
    try:
        return check_address((written or "").strip(), "email").text.lower() == sent_to.lower()
    except SendError:
        return False


@dataclass(frozen=True)
class Item:
    """One message to send, with the hash of exactly the PDF bytes attached to it."""

    recipient_id: str
    outgoing: Outgoing
    sha256: str
    reason: str = "new"
    email: str = ""  # the address as written in recipients.csv
    pdf: bytes = b""  # the attached PDF, kept in the sent archive with the message


@dataclass
class SendSummary:
    letter: str
    sent: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    uncertain: list[tuple[str, str]] = field(default_factory=list)
    already_sent: list[str] = field(default_factory=list)
    failed_earlier: list[tuple[str, str]] = field(default_factory=list)
    uncertain_earlier: list[tuple[str, str]] = field(default_factory=list)
    later: list[str] = field(default_factory=list)
    not_attempted: list[str] = field(default_factory=list)
    stopped: str | None = None
    hint: str | None = None  # what to do about `stopped` (e.g. sign in again)
    connections: int = 0
    seconds: float = 0.0
    drafted: list[str] = field(default_factory=list)          # this run put a draft in the mailbox
    drafted_earlier: list[str] = field(default_factory=list)  # left out: a draft from an earlier run exists
    drafts_folder: str = ""
    copies_saved: int = 0                                     # copies put in the Sent folder
    copies_failed: list[tuple[str, str]] = field(default_factory=list)  # (id, why the copy is missing)
    sent_folder: str = ""

    @property
    def ok(self) -> bool:
        return not (self.failed or self.uncertain or self.failed_earlier or self.uncertain_earlier or self.stopped)


class Copies(Protocol):
    """Where a copy of each sent message goes (the mailbox's Sent folder); never raises."""

    def save(self, recipient_id: str, message: bytes) -> None: ...

    def close(self, summary: SendSummary) -> None: ...


def execute(items: list[Item], *, letter: str, journal: Journal, mailer: Mailer, settings: SmtpSettings,
            summary: SendSummary, archive: Path | None = None, copies: Copies | None = None,
            on_progress: Callable[[Item, Outcome], None] | None = None,
            sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> SendSummary:
    """Send each item once, with bounded retries for temporary failures, recording every step.

    archive (out/<letter>/): before a message's data first goes to the server, the exact message and its PDF
    are kept in the sent archive, and the journal's `sending` and `sent` events point at them.
    copies: given the exact bytes of each message the server accepted (those kept in the archive)."""
    started = clock()
    interval = 60.0 / settings.rate_limit if settings.rate_limit else 0.0
    next_at = started
    try:
        mailer.open()
        for index, item in enumerate(items):
            wait = next_at - clock()
            if wait > 0:
                sleep(wait)
            next_at = max(clock(), next_at) + interval
            outcome, message = _deliver(item, letter=letter, journal=journal, mailer=mailer, settings=settings,
                                        sleep=sleep, archive=archive)
            if outcome.kind == "sent":
                summary.sent.append(item.recipient_id)
                if copies is not None and message is not None:
                    copies.save(item.recipient_id, message)
            elif outcome.kind == "uncertain":
                summary.uncertain.append((item.recipient_id, outcome.reply))
            else:
                summary.failed.append((item.recipient_id, outcome.reply))
            if on_progress:
                on_progress(item, outcome)
            if outcome.connection_lost and outcome.kind == "transient":
                summary.stopped = f"{outcome.reply}; stopped after {settings.retries + 1} attempts"
                summary.not_attempted = [i.recipient_id for i in items[index + 1:]]
                break
    except SendError as exc:
        done = set(summary.sent) | {rid for rid, _ in summary.failed + summary.uncertain}
        summary.stopped = str(exc)
        summary.hint = exc.hint
        summary.not_attempted = [i.recipient_id for i in items if i.recipient_id not in done]
        if not summary.sent and not summary.failed and not summary.uncertain:
            raise  # nothing happened: report it as the error it is
    finally:
        summary.connections = mailer.connections
        mailer.close()
        if copies is not None:
            copies.close(summary)
        summary.seconds = clock() - started
    return summary


def _deliver(item: Item, *, letter: str, journal: Journal, mailer: Mailer, settings: SmtpSettings,
             sleep: Callable[[float], None], archive: Path | None = None) -> tuple[Outcome, bytes | None]:
    """The outcome, and for a sent message the exact bytes given to the server (as kept in the archive)."""
    out = item.outgoing
    rid = item.recipient_id
    attempt = 0
    kept: dict = {}
    message: list[bytes] = []
    while True:
        attempt += 1

        def before_data() -> None:
            if not message:  # the bytes of every attempt are the same: kept once
                message.append(out.as_bytes())
            if archive is not None and not kept:
                copies = keep(archive, rid, "email", {"pdf": item.pdf, "eml": message[0]})
                kept.update(archive_pdf=copies["pdf"].path, archive_eml=copies["eml"].path,
                            eml_sha256=copies["eml"].sha256)
            journal.record(letter, rid, "sending", message_id=out.message_id, to=out.to, recipients=list(out.recipients),
                           sha256=item.sha256, size=out.attachment_size, attachment=out.attachment_name,
                           attempt=attempt, reason=item.reason, **kept)

        outcome = mailer.deliver(out, before_data)
        if outcome.kind == "sent":
            extra = {"refused": dict(outcome.refused)} if outcome.refused else {}
            journal.record(letter, rid, "sent", message_id=out.message_id, reply=outcome.reply, sha256=item.sha256,
                           to=out.to, **kept, **extra)
            return outcome, (message[0] if message else None)
        if outcome.kind == "uncertain":
            journal.record(letter, rid, "uncertain", message_id=out.message_id, reason=outcome.reply,
                           sha256=item.sha256, **kept)
            return outcome, None
        final = outcome.permanent or attempt > settings.retries
        journal.record(letter, rid, "failed", message_id=out.message_id, code=outcome.code, reply=outcome.reply,
                       permanent=outcome.permanent, attempt=attempt, to=out.to, email=item.email, final=final)
        log.info("%s: attempt %d failed: %s", rid, attempt, outcome.reply)
        if final:
            return outcome, None
        quick = outcome.connection_lost and attempt == 1  # a dropped idle connection: reconnect at once
        sleep(0 if quick else min(settings.retry_wait * 2 ** (attempt - 1), MAX_RETRY_WAIT))
