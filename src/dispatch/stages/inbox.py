"""dispatch track: what came back to the mailbox after sending, recorded in the journal.

The folders where answers arrive (INBOX by default) are read from where the last run stopped (the
journal keeps each folder's UIDVALIDITY and last UID; a changed UIDVALIDITY means the server renumbered
the folder, which is then read from the start). Each new message is classified once (dispatch.mail.bounces)
and tied to the campaign's messages by the Message-ID it names, else by the recipient's address or domain
and a date after sending. Found: a bounce (`bounced`; a delay, 4.x.x, is `delayed` and kept apart), a reply
(`replied`) or an automatic reply (`auto-replied`). Then each uncertain or interrupted message is looked
for in the \\Sent folder by its Message-ID: found, it is recorded `sent`, with where it was found.

The mailbox is never changed: folders are opened read-only (EXAMINE), messages fetched with BODY.PEEK, a
message larger than 10 MB is not fetched, nothing is followed or loaded from what is read. A message read
again (a renumbered folder, --reread) records nothing twice: each answer names the SHA-256 of the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from dispatch.journal import ANSWER_KINDS, Event, Journal
from dispatch.mail.bounces import AUTO_REPLY, BOUNCE, NOTHING, Result, classify
from dispatch.mail.imap import SENT, Fetched
from dispatch.mail.inbound import MAX_MESSAGE_BYTES
from dispatch.mail.reading import MailboxReader, TooLarge

log = logging.getLogger(__name__)

DEFAULT_FOLDERS = ("INBOX",)
SENT_WINDOW = dt.timedelta(minutes=15)  # a server files its Sent copy within this time, or not at all
CLOCK_SKEW = dt.timedelta(minutes=5)  # an answer by address may be dated this much before the sending
CHECKPOINT = 200  # messages read between two records of how far the folder was read


@dataclass(frozen=True)
class Recorded:
    """One thing recorded in the journal: bounced, delayed, replied, auto-replied or resolved (found in Sent)."""

    letter: str
    recipient: str
    kind: str
    detail: str  # the DSN status and diagnostic, who answered, or where the Sent copy was found
    where: str  # "INBOX UID 12"


@dataclass(frozen=True)
class FolderRead:
    name: str
    uidvalidity: int
    read: int  # messages read this run
    last_uid: int
    note: str = ""  # e.g. read from the start because the server renumbered the folder


@dataclass
class TrackSummary:
    mailbox: str
    recorded: list[Recorded] = field(default_factory=list)
    folders: list[FolderRead] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    uncertain: list[tuple[str, str, str]] = field(default_factory=list)  # (letter, id, why it stays uncertain)
    unrelated: int = 0  # messages read that concern none of the campaign's messages
    repeated: int = 0  # answers read again that the journal already had

    @property
    def read(self) -> int:
        return sum(folder.read for folder in self.folders)

    def count(self, kind: str) -> int:
        return sum(1 for one in self.recorded if one.kind == kind)


@dataclass(frozen=True)
class _Message:
    """One message of the campaign, as the journal knows it."""

    letter: str
    recipient: str
    message_id: str  # as sent, with its angle brackets
    to: str  # the To address, lowercased
    copies: frozenset[str]  # the other envelope addresses (cc, bcc)
    at: dt.datetime  # when it was first handed to the server


class _Campaign:
    """The campaign's messages from the journal (every letter), and the lookups classify() is given."""

    def __init__(self, journal: Journal) -> None:
        self.messages: dict[str, _Message] = {}  # "<message-id>" lowercased -> message
        self.latest: dict[tuple[str, str], str] = {}  # (letter, recipient) -> its latest message
        outcome: dict[str, str] = {}
        for event in journal.events(kinds=("sending", "sent", "failed", "uncertain")):
            message_id = str(event.data.get("message_id") or "")
            if not message_id:
                continue
            key = _key(message_id)
            if key not in self.messages:
                to = str(event.data.get("to") or "").strip().lower()
                everyone = {str(a).strip().lower() for a in event.data.get("recipients") or ()}
                self.messages[key] = _Message(event.letter, event.recipient, message_id, to,
                                              frozenset(everyone - {to}), _moment(event.at))
            self.latest[(event.letter, event.recipient)] = key
            outcome[key] = event.kind
        self.by_address: dict[str, str] = {}  # To address -> the latest message that may have reached it
        for key, message in self.messages.items():
            if message.to and outcome.get(key) != "failed":
                self.by_address[message.to] = key
        self.letters = sorted({message.letter for message in self.messages.values()})

    def message_key(self, message_id: str) -> str | None:
        key = _key(message_id)
        return key if key in self.messages else None


def track(journal: Journal, reader: MailboxReader, *, mailbox: str, folders: Iterable[str] = DEFAULT_FOLDERS,
          reread: bool = False, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
          ) -> TrackSummary:
    """Read the folders' new messages and record what they say of the campaign's messages, then look for the
    uncertain ones in Sent. `reader` is an open connection; `mailbox` names it in the journal (user and host)."""
    campaign = _Campaign(journal)
    summary = TrackSummary(mailbox)
    seen = {(e.letter, e.recipient, e.kind, e.data.get("inbound")) for e in journal.events(kinds=ANSWER_KINDS)}
    for folder in dict.fromkeys(folders):
        _read_folder(journal, reader, campaign, summary, seen, folder, reread)
    _resolve_uncertain(journal, reader, campaign, summary, now())
    return summary


def _read_folder(journal: Journal, reader: MailboxReader, campaign: _Campaign, summary: TrackSummary,
                 seen: set, folder: str, reread: bool) -> None:
    position = journal.read_position(summary.mailbox, folder)
    opened = reader.examine(folder)
    note, last = "", 0
    if position is not None and position[0] == opened.uidvalidity and not reread:
        last = position[1]
    elif position is not None and position[0] != opened.uidvalidity:
        note = "read from the start: the server renumbered the folder (its UIDVALIDITY changed)"
    elif reread:
        note = "read from the start (--reread)"
    opened, sizes = reader.sizes_after(folder, last)
    read, highest, recorded_up_to = 0, last, None if position != (opened.uidvalidity, last) else last
    for item in reader.new_messages(folder, sizes, MAX_MESSAGE_BYTES):
        where = f"{folder} UID {item.uid}"
        read += 1
        highest = max(highest, item.uid)
        events: list[tuple[str, str, str, dict[str, Any]]] = []
        if isinstance(item, TooLarge):
            summary.skipped.append((where, f"{item.size / 1048576:.1f} MB, larger than the "
                                           f"{MAX_MESSAGE_BYTES // 1048576} MB read: not fetched"))
        else:
            found = {"folder": folder, "uid": item.uid, "uidvalidity": opened.uidvalidity}
            events = _answers(item, where, found, campaign, summary, seen)
        if events or read % CHECKPOINT == 0:
            journal.record_read(summary.mailbox, folder, opened.uidvalidity, highest, events)
            recorded_up_to = highest
    highest = max([highest, *sizes])  # a message removed while the folder was read is passed over
    if recorded_up_to != highest:
        journal.record_read(summary.mailbox, folder, opened.uidvalidity, highest)
    summary.folders.append(FolderRead(folder, opened.uidvalidity, read, highest, note))


def _answers(fetched: Fetched, where: str, found: dict[str, Any], campaign: _Campaign, summary: TrackSummary,
             seen: set) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The events one message gives (none for a message that concerns no message of the campaign)."""
    if fetched.cut:
        summary.skipped.append((where, "larger than the server said: not read"))
        return []
    result = classify(fetched.data, campaign_message_ids=campaign.message_key, recipients=campaign.by_address)
    if result.kind == NOTHING:
        if result.warning:
            summary.skipped.append((_from(where, result), result.warning))
        else:
            summary.unrelated += 1
        return []
    inbound = hashlib.sha256(fetched.data).hexdigest()
    skipped = len(summary.skipped)
    ties = _bounce_ties(result, where, campaign, summary) if result.kind == BOUNCE else \
        _answer_ties(result, campaign)
    if not ties:
        summary.unrelated += len(summary.skipped) == skipped  # unless it was skipped, with the reason
        return []
    events = []
    for message, kind, data in ties:
        if (message.letter, message.recipient, kind, inbound) in seen:
            summary.repeated += 1
            continue
        seen.add((message.letter, message.recipient, kind, inbound))
        data = {"message_id": message.message_id, "from": result.sender or "", "date": result.date or "",
                "matched_by": result.matched_by or "", "found": found, "inbound": inbound, **data}
        events.append((message.letter, message.recipient, kind, data))
        detail = f"{message.to}: {data['reply']}" if "reply" in data else \
            f"from {result.sender or 'an unknown sender'}" + (f", {result.date}" if result.date else "")
        summary.recorded.append(Recorded(message.letter, message.recipient, kind, detail, where))
        if result.warning:
            log.info("%s: read in part: %s", where, result.warning)
    return events


def _bounce_ties(result: Result, where: str, campaign: _Campaign,
                 summary: TrackSummary) -> list[tuple[_Message, str, dict[str, Any]]]:
    """(message, bounced or delayed, data) for each campaign message the bounce reports a failure of."""
    failed: dict[str, list] = {}
    if result.matched_by == "message-id":
        message = campaign.messages[result.keys[0]]
        mine = [one for one in result.failures if message.to in one.addresses]
        if not mine:
            copies = [one for one in result.failures if set(one.addresses) & message.copies]
            mine = [one for one in result.failures if one not in copies]
            if not mine:
                shown = ", ".join(one.address for one in copies[:3])
                summary.skipped.append((_from(where, result), f"a bounce for {shown}, a copy (cc/bcc) of the message "
                                                              f"to {message.recipient}, whose own address it does not "
                                                              "name; not recorded"))
                return []
        failed[result.keys[0]] = mine
    elif result.matched_by == "address":
        for one in result.failures:
            if one.key is not None and _after(result, campaign.messages[one.key]):
                failed.setdefault(one.key, []).append(one)
    ties = []
    for key, failures in failed.items():
        message = campaign.messages[key]
        if campaign.latest.get((message.letter, message.recipient)) != key:
            summary.skipped.append((_from(where, result), f"a bounce of an earlier message to {message.recipient}, "
                                                          "which was sent again since; not recorded"))
            continue
        permanent = any(one.permanent for one in failures)
        chosen = next((one for one in failures if one.permanent == permanent), failures[0])
        reply = " ".join(part for part in (chosen.status, chosen.diagnostic) if part) or chosen.action
        ties.append((message, "bounced" if permanent else "delayed",
                     {"email": message.to, "status": chosen.status or "", "diagnostic": chosen.diagnostic or "",
                      "reply": reply[:500], "detector": result.detector or ""}))
    return ties


def _answer_ties(result: Result, campaign: _Campaign) -> list[tuple[_Message, str, dict[str, Any]]]:
    """A reply or an automatic reply: tied by the Message-ID it answers; by the sender's address or domain
    only when it names one recipient and is dated after that recipient's message was sent."""
    key = result.key
    if key is None:
        return []  # several recipients at the sender's domain: which one answered is not known
    message = campaign.messages[key]
    if result.matched_by != "message-id" and not _after(result, message):
        return []  # an older conversation with the recipient
    kind = "auto-replied" if result.kind == AUTO_REPLY else "replied"
    data = {"subject": result.subject[:200]}
    if kind == "auto-replied":
        data["sign"] = result.detector or ""
    return [(message, kind, data)]


def _resolve_uncertain(journal: Journal, reader: MailboxReader, campaign: _Campaign, summary: TrackSummary,
                       now: dt.datetime) -> None:
    pending = [(letter, state) for letter in campaign.letters
               for state in journal.email_states(letter).values() if state.status in ("uncertain", "interrupted")]
    if not pending:
        return
    folder = reader.special_folders().get(SENT)
    if folder is None:
        for letter, state in pending:
            summary.uncertain.append((letter, state.recipient, "the server marks no folder as Sent (RFC 6154), so "
                                                               "it could not be looked for"))
        return
    uidvalidity = reader.examine(folder).uidvalidity
    for letter, state in pending:
        rid = state.recipient
        message_id = str(state.latest.data.get("message_id") or "")
        if not message_id:
            summary.uncertain.append((letter, rid, "no Message-ID was recorded for it, so it cannot be looked for"))
            continue
        uids = reader.find_message_id(folder, message_id)
        if not uids:
            summary.uncertain.append((letter, rid, _not_found(folder, rid, state.latest, now)))
            continue
        sending = [e for e in journal.events(letter, rid, kinds=("sending",)) if e.data.get("message_id") == message_id]
        kept = {k: v for k, v in (sending[-1].data if sending else state.latest.data).items()
                if k in ("sha256", "to", "archive_pdf", "archive_eml", "eml_sha256")}
        where = f"{folder} UID {uids[0]}"
        journal.record(letter, rid, "sent", message_id=message_id, reply=f"found in {where} by dispatch track",
                       found={"folder": folder, "uid": uids[0], "uidvalidity": uidvalidity}, **kept)
        summary.recorded.append(Recorded(letter, rid, "resolved", f"found in {where}: recorded as sent", where))


def _not_found(folder: str, rid: str, latest: Event, now: dt.datetime) -> str:
    age = now - _moment(latest.at)
    if age < SENT_WINDOW:
        return (f"not in {folder} yet (handed to the server {int(age.total_seconds() // 60)} min ago; a server may "
                "take a few minutes to file its copy): run dispatch track again later")
    return (f"not found in {folder}: it stays uncertain; ask the recipient, or if it did not arrive: "
            f"dispatch send --resend-uncertain --only {rid}")


def _after(result: Result, message: _Message) -> bool:
    """The answer is dated after the message was sent (within the clocks' disagreement); undated ones are not."""
    if not result.date:
        return False
    try:
        return _moment(result.date) >= message.at - CLOCK_SKEW
    except ValueError:
        return False


def _from(where: str, result: Result) -> str:
    return f"{where} from {result.sender}" if result.sender else where


def _key(message_id: str) -> str:
    return "<" + message_id.strip().strip("<>").lower() + ">"


def _moment(iso: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
