"""Bounce formats: the RFC 3464 delivery report, then the notices of servers that write their own.

Each detector takes an Inbound message and answers None ("not my format") or Found: the failed
recipients with the action (failed: the server gave up; delayed: it is still trying), the RFC 3463
status code and the server's diagnostic on one bounded line. They are tried in order, the
`REPORTS` then the `NOTICES`, most exact first, like Mailman's flufl.bounce; each recognises a format by the fixed
sentences its server writes, never by guessing from any address it finds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message

from dispatch.mail.inbound import (
    ADDRESS_PATTERN,
    Inbound,
    Part,
    addresses_in,
    flat,
    one_line,
    status_in,
)

_REPORT_TYPES = ("message/delivery-status", "message/global-delivery-status")
_FLAGS = re.IGNORECASE | re.MULTILINE


@dataclass(frozen=True)
class Failure:
    """One recipient a server could not deliver to."""

    address: str  # the final recipient, lowercased
    action: str = "failed"  # "failed": the server gave up; "delayed": it is still trying
    status: str | None = None  # RFC 3463 code, e.g. "5.1.1"
    diagnostic: str | None = None  # the server's words, one line, bounded, without secrets
    original: str | None = None  # the address as the message was sent, when the report gives it
    key: str | None = None  # the caller's key for this address (filled in by classify)

    @property
    def permanent(self) -> bool:
        """The server gave up for a reason that will not pass (not a 4.x.x status)."""
        return self.action == "failed" and not (self.status or "").startswith("4")

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.original, self.address) if self.original and self.original != self.address else (self.address,)


@dataclass(frozen=True)
class Found:
    """A format recognised: which detector, and the failures it read (none for a success report)."""

    detector: str
    failures: tuple[Failure, ...]


def failure(address: str, action: str, reason: str, *, status: str | None = None) -> Failure:
    reason = one_line(reason)
    return Failure(address.lower(), action, status or status_in(reason), reason or None)


# --- RFC 3464 -------------------------------------------------------------------------------------

def delivery_status(inbound: Inbound) -> Found | None:
    """multipart/report; report-type=delivery-status: one block per recipient, read field by field."""
    reports = [part for part in inbound.parts if not part.enclosed and part.type in _REPORT_TYPES]
    failures: list[Failure] = []
    recipients = 0
    for part in reports:
        for fields in _status_blocks(inbound, part):
            final = _recipient(fields.get("final-recipient", ""))
            original = _recipient(fields.get("original-recipient", "")) or _recipient(
                fields.get("x-actual-recipient", ""))
            if not (final or original):
                continue
            recipients += 1
            words = fields.get("action", "").lower().split()
            action = words[0] if words else ""
            diagnostic = _without_type(fields.get("diagnostic-code", ""))
            status = status_in(fields.get("status", "")) or status_in(diagnostic)
            if action.startswith(("fail", "error")):  # OpenSMTPD writes "error"
                action = "failed"
            elif action.startswith("delay"):
                action = "delayed"
            elif not action and status:
                action = "failed" if status.startswith("5") else "delayed"
            else:
                continue  # delivered, relayed, expanded: not a failure
            address = final or original or ""
            if any(one.address == address and one.action == action for one in failures):
                continue  # the same recipient reported twice (once per attempt or per alias)
            failures.append(Failure(address, action, status, one_line(diagnostic) or None,
                                    original if original and original != address else None))
            if len(failures) >= 50:
                break
    if not recipients:
        return None  # no report, or one without recipients: let the other detectors read the text
    return Found("rfc3464", tuple(failures))


def _status_blocks(inbound: Inbound, part: Part) -> list[dict[str, str]]:
    try:
        payload = part.message.get_payload()
    except Exception:
        return []
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for block in payload[:100]:
            if isinstance(block, Message):
                try:
                    blocks.append({str(name).lower(): flat(str(value), 2000) for name, value in block.items()})
                except Exception:
                    continue
    if any("final-recipient" in block or "original-recipient" in block for block in blocks):
        return blocks
    return _blocks_of_text(inbound.text(part))


def _blocks_of_text(text: str) -> list[dict[str, str]]:
    """Blocks of "Name: value" fields separated by blank lines (continuation lines unfolded)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines()[:3000]:
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] = (current[last] + " " + line.strip())[:2000]
        else:
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if colon and name and " " not in name:
                current[name], last = value.strip(), name
    if current:
        blocks.append(current)
    return blocks[:100]


def _recipient(value: str) -> str | None:
    value = _without_type(value).strip().strip("<>").strip().lower()
    match = re.fullmatch(ADDRESS_PATTERN, value)
    return match.group(0) if match else None


def _without_type(value: str) -> str:
    """ "rfc822; a@b" -> "a@b", "smtp; 550 ..." -> "550 ..." (the type before the first ';')."""
    kind, semicolon, rest = value.partition(";")
    return rest.strip() if semicolon and re.fullmatch(r"\s*[\w.-]{1,20}\s*", kind) else value.strip()


def other_reports(inbound: Inbound) -> Found | None:
    """Reports that are not about delivery: read receipts (RFC 8098) and complaints (ARF, RFC 5965)."""
    for part in inbound.parts:
        if part.enclosed:
            continue
        if part.type in ("message/disposition-notification", "message/global-disposition-notification"):
            return Found("read receipt", ())
        if part.type == "message/feedback-report":
            return Found("complaint", ())
    return None


# --- Servers writing their own notices ------------------------------------------------------------

_LEADING = re.compile(r"^[ \t]*<?(" + ADDRESS_PATTERN + r")>?(.*)$")


def _address_blocks(section: str, rest: str) -> list[tuple[str, str]]:
    """Lines starting with an address (followed by what matches `rest`), each with the lines after it."""
    accept = re.compile(rest, re.IGNORECASE)
    blocks: list[tuple[str, list[str]]] = []
    for line in section.splitlines()[:400]:
        match = _LEADING.match(line)
        if match and accept.match(match.group(2)):
            blocks.append((match.group(1).lower(), [match.group(2).lstrip(" :>")]))
        elif blocks and line.strip():
            blocks[-1][1].append(line.strip())
        if len(blocks) >= 50:
            break
    return [(address, " ".join(lines)) for address, lines in blocks]


def _between(text: str, start: re.Match[str] | None, stop: str, limit: int = 6000) -> str:
    if start is None:
        return ""
    section = text[start.end(): start.end() + limit]
    end = re.search(stop, section, _FLAGS)
    return section[: end.start()] if end else section


def _from_blocks(detector: str, blocks: list[tuple[str, str]], action: str) -> Found | None:
    failures: dict[str, Failure] = {}
    for address, reason in blocks:
        failures.setdefault(address, failure(address, action, reason))
    return Found(detector, tuple(failures.values())) if failures else None


def _failed_recipients(inbound: Inbound, action: str, reason: str) -> tuple[Failure, ...]:
    """The X-Failed-Recipients header (Exim, Gmail), for when the text cannot be read."""
    return tuple(failure(address, action, reason) for address in inbound.addresses("X-Failed-Recipients"))


def exchange(inbound: Inbound) -> Found | None:
    """Microsoft Exchange and Office 365 non-delivery reports (2003 to today) written as text."""
    text = inbound.notice
    modern = re.search(r"^\s*Delivery (has failed|is delayed) to these recipients or (groups|distribution lists)"
                       r"\s*:", text, _FLAGS)
    if modern:
        action = "delayed" if modern.group(1).lower().startswith("is") else "failed"
        diagnostics = _between(text, re.search(r"^\s*Diagnostic information for administrators:", text, _FLAGS),
                               r"^\s*Original message headers:")
        blocks = _address_blocks(diagnostics, r"\s*$")
        if not blocks:  # only the part for users: "Name<mailto:address>" then a paragraph
            section = _between(text, modern, r"^\s*(Diagnostic information|Original message|_{5,})")
            blocks = [(address, section) for address in addresses_in(section)[:20]]
        return _from_blocks("exchange", blocks, action)
    older = re.search(r"(did not reach the following recipient\(s\)|The following recipient\(s\) could not be"
                      r" reached)\s*:", text, _FLAGS)
    if older:
        section = _between(text, older, r"^-{5,}|\n[ \t]*\n[ \t]*\n[ \t]*\n", 3000)
        x400 = re.findall(r"SMTP=(" + ADDRESS_PATTERN + r")", section, re.IGNORECASE)
        if x400:
            return _from_blocks("exchange", [(address, section) for address in x400[:20]], "failed")
        return _from_blocks("exchange", _address_blocks(section, r"(\s+on\s.*)?\s*$"), "failed")
    newest = re.search(r"Your message to <?(" + ADDRESS_PATTERN + r")>? couldn.t be delivered", text, _FLAGS)
    if newest:
        return _from_blocks("exchange", [(newest.group(1), text[newest.end(): newest.end() + 600])], "failed")
    return None


def gmail(inbound: Inbound) -> Found | None:
    """Gmail's text notices: "Delivery to the following recipient failed permanently / has been delayed"."""
    text = inbound.notice
    start = re.search(r"^\s*Delivery to the following recipients? (failed permanently|failed|has been delayed)"
                      r"\s*:", text, _FLAGS)
    if not start:
        return None
    action = "delayed" if "delayed" in start.group(1) else "failed"
    addresses = addresses_in(_between(text, start, r"^\s*(Technical details|Message will be retried|-{3,})", 3000))
    reason = _between(text, re.search(r"The error that the other server returned was:", text, re.IGNORECASE),
                      r"^\s*-{3,}|\n\s*\n", 1000)
    if not reason:
        reason = _between(text, re.search(r"^\s*Technical details of (permanent|temporary) failure:", text, _FLAGS),
                          r"^\s*-{3,}|\n\s*\n\s*\n", 1000)
    failures = tuple(failure(address, action, reason) for address in addresses[:20])
    failures = failures or _failed_recipients(inbound, action, reason)
    return Found("gmail", failures) if failures else None


def postfix(inbound: Inbound) -> Found | None:
    """Postfix's notice without a delivery report: "<address>: host ... said: 550 ..." paragraphs."""
    text = inbound.notice
    start = re.search(r"This is the (Postfix program|mail system) at host", text, re.IGNORECASE)
    if not start:
        return None
    warning = "THIS IS A WARNING ONLY" in text or "delayed mail" in inbound.header("Subject").lower()
    blocks = _address_blocks(text[start.end():], r"\s*(\(expanded from .{0,300}\))?\s*:")
    return _from_blocks("postfix", blocks, "delayed" if warning else "failed")


def exim(inbound: Inbound) -> Found | None:
    """Exim's "Mail delivery failed" and "Warning: message ... delayed" notices."""
    text = inbound.notice
    if not re.search(r"This message was created automatically by mail\s+delivery software", text, re.IGNORECASE):
        return None
    if re.search(r"could not be delivered to one or more of its\s+recipients", text, re.IGNORECASE):
        action = "failed"
    elif re.search(r"has not yet been delivered to one or more of its\s+recipients", text, re.IGNORECASE):
        action = "delayed"
    else:
        return None
    start = re.search(r"(address\(es\) failed|not yet been delivered (is|are))\s*:", text, re.IGNORECASE)
    section = _between(text, start, r"^-{3,}|^\s*No action is required|^\s*The following text was generated")
    found = _from_blocks("exim", _address_blocks(section, r"(\s+<.{0,300}>)?\s*:?\s*$"), action)
    if found:
        return found
    failures = _failed_recipients(inbound, action, section)
    return Found("exim", failures) if failures else None


def qmail(inbound: Inbound) -> Found | None:
    """qmail's "failure notice": "<address>:" then the reason, above "--- Below this line is a copy"."""
    text = inbound.notice
    intro = re.search(r"This is the qmail-send program at|^--- (Below this line is a copy|Enclosed is a copy)",
                      text, _FLAGS)
    if not intro:
        return None
    end = re.search(r"^--- (Below this line is a copy|Enclosed is a copy)", text, _FLAGS)
    section = text[: end.start()] if end else text[:6000]
    action = "delayed" if re.search(r"This is a temporary error|I'm still trying", section) else "failed"
    blocks = _address_blocks(section, r":.{0,500}$")
    found = _from_blocks("qmail", blocks, action)
    if found:  # qmail writes its status as "(#5.1.1)"
        return Found("qmail", tuple(_qmail_status(one) for one in found.failures))
    return None


def _qmail_status(one: Failure) -> Failure:
    match = re.search(r"\(#([245]\.\d{1,3}\.\d{1,3})\)", one.diagnostic or "")
    if not match:
        return one
    return Failure(one.address, one.action, match.group(1), one.diagnostic, one.original)


def domino(inbound: Inbound) -> Found | None:
    """Lotus Domino / Notes: "was not delivered to: ... because: ..." or "Failure Reasons" sections."""
    text = inbound.notice
    subject = inbound.header("Subject").upper()
    start = re.search(r"^\s*was not delivered to:\s*$", text, _FLAGS)
    if start and (subject.startswith(("DELIVERY FAILURE", "DELIVERY_FAILURE")) or "because:" in text):
        section = _between(text, start, r"^\s*because:\s*$", 3000)
        reason = _between(text, re.search(r"^\s*because:\s*$", text, _FLAGS), r"\n\s*\n\s*\n", 1000)
        return _from_blocks("domino", [(address, reason) for address in addresses_in(section)[:20]], "failed")
    reasons = re.search(r"^-{3,}\s*Failure Reasons\s*-{3,}\s*$", text, _FLAGS)
    if reasons:
        section = _between(text, reasons, r"^-{3,}\s*Returned Message", 3000)
        addresses = addresses_in(section)[:20]
        reason = " ".join(line for line in section.splitlines() if line.strip() and "@" not in line)
        return _from_blocks("domino", [(address, reason) for address in addresses], "failed")
    return None


Detector = Callable[[Inbound], "Found | None"]
REPORTS: tuple[Detector, ...] = (other_reports, delivery_status)  # machine-readable reports (RFC 3464, 8098, 5965)
NOTICES: tuple[Detector, ...] = (exchange, gmail, exim, qmail, postfix, domino)  # servers' own words
