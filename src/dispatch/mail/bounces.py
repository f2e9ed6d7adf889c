"""What came back after sending: a bounce, a reply, an automatic reply, or nothing for the campaign.

`classify(message_bytes, campaign_message_ids=..., recipients=...)` reads one message taken from the
mailbox and says what it is. Bounces are read by a list of small detectors tried in turn (Mailman's
habit): the RFC 3464 delivery report first, then the notices of Exchange/Office 365, Gmail, Exim,
qmail, Postfix and Lotus Domino, then flufl.bounce for the rest, but only for a message that comes
from a mail server. A bounce is tied to the campaign by the Message-ID found in the returned headers;
one that names another Message-ID (another campaign's, or a forgery) is not the campaign's. Without a
Message-ID, the failed addresses are returned for the caller to match with the recipient and the time.
Replies are tied by In-Reply-To/References, or by the sender's address or domain.

It never raises for what a message contains: an oversized, broken or hostile message is "nothing"
with a warning saying why. It only raises when a lookup given by the caller raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from email.message import Message
from email.utils import getaddresses

from flufl.bounce import all_failures

from dispatch.mail.bounce_formats import NOTICES, REPORTS, Failure, Found, failure
from dispatch.mail.inbound import (
    MAX_MESSAGE_BYTES,
    MAX_TEXT_CHARS,
    Inbound,
    Unreadable,
    flat,
    header_text,
    message_id_lines,
    message_ids,
    read_inbound,
)
from dispatch.mail.replies import automatic, bulk, from_a_mailer

__all__ = ["AUTO_REPLY", "BOUNCE", "NOTHING", "REPLY", "Failure", "Result", "classify"]

log = logging.getLogger(__name__)


class _Quiet(logging.Filter):
    """flufl.bounce logs a traceback for a message one of its detectors trips on, then raises; classify
    turns that into a warning, so its log record goes down to a one-line debug record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.DEBUG, "DEBUG", None, None
        return True


logging.getLogger("flufl.bounce").addFilter(_Quiet())

BOUNCE, REPLY, AUTO_REPLY, NOTHING = "bounce", "reply", "auto_reply", "nothing"
Lookup = Mapping[str, str] | Callable[[str], "str | None"]
DomainLookup = Mapping[str, Sequence[str]] | Callable[[str], Sequence[str]]
_FLUFL_PART_CHARS = 64 * 1024
# Replies from these domains are never tied by domain: everyone writes from them.
_PUBLIC_DOMAINS = frozenset("""
    gmail.com googlemail.com outlook.com outlook.fr hotmail.com hotmail.fr hotmail.co.uk live.com live.fr msn.com
    yahoo.com yahoo.fr yahoo.es yahoo.co.uk ymail.com icloud.com me.com mac.com aol.com gmx.de gmx.net gmx.fr
    web.de t-online.de orange.fr wanadoo.fr free.fr laposte.net sfr.fr yandex.ru yandex.com mail.ru
    protonmail.com proton.me pm.me libero.it virgilio.it qq.com 163.com 126.com naver.com zoho.com
    mail.com fastmail.com tutanota.com uol.com.br bol.com.br terra.com.br
""".split())


@dataclass(frozen=True)
class Result:
    """What one message is for the campaign. `kind` is BOUNCE, REPLY, AUTO_REPLY or NOTHING."""

    kind: str
    failures: tuple[Failure, ...] = ()  # for a bounce: each failed recipient
    message_id: str | None = None  # the campaign's Message-ID it concerns, as the lookup knew it
    keys: tuple[str, ...] = ()  # what the lookups answered (one per message or recipient it concerns)
    matched_by: str | None = None  # "message-id", "address", "domain", or None when not tied
    named_message_ids: tuple[str, ...] = ()  # Message-IDs it names: returned headers, In-Reply-To, References
    sender: str | None = None  # the From address, lowercased
    date: str | None = None  # the Date header in UTC, ISO 8601
    subject: str = ""
    detector: str | None = None  # which detector read the bounce, or the sign of an automatic reply
    warning: str | None = None  # why the message was skipped or read only in part

    @property
    def key(self) -> str | None:
        """The one key it concerns, or None when it concerns none or several."""
        return self.keys[0] if len(self.keys) == 1 else None

    @property
    def permanent(self) -> bool | None:
        """For a bounce: some recipient failed for good (not a delay, not a 4.x.x status)."""
        return any(one.permanent for one in self.failures) if self.kind == BOUNCE else None

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(one.address for one in self.failures)

    @property
    def status(self) -> str | None:
        return next((one.status for one in self.failures if one.status), None)

    @property
    def diagnostic(self) -> str | None:
        return next((one.diagnostic for one in self.failures if one.diagnostic), None)


def classify(message: bytes, *, campaign_message_ids: Lookup | None = None, recipients: Lookup | None = None,
             recipient_domains: DomainLookup | None = None, max_bytes: int = MAX_MESSAGE_BYTES) -> Result:
    """Say what a raw message from the mailbox is for the campaign.

    campaign_message_ids maps the campaign's Message-IDs (with their angle brackets, as sent) to the
    caller's key (a dict, or a function answering None when unknown). recipients maps the recipients'
    lowercased addresses to a key; recipient_domains maps a domain to the keys of the recipients there
    (derived from a `recipients` dict when not given). Without any of them, messages are judged by
    their form only: a bounce by its format, a reply by answering some message.
    """
    try:
        return _classify(message, _Lookup(campaign_message_ids), _Lookup(recipients),
                         _domains(recipient_domains, recipients), max_bytes)
    except _CallerError as error:
        raise error.error from None
    except Unreadable as error:
        return Result(NOTHING, warning=str(error))
    except Exception as error:  # a format nobody foresaw: the message is skipped, the run goes on
        log.debug("message not classified", exc_info=True)
        return Result(NOTHING, warning=f"not recognised: {type(error).__name__} while reading it")


def _classify(data: bytes, ids: _Lookup, people: _Lookup, domains: _Domains, max_bytes: int) -> Result:
    inbound = read_inbound(data, max_bytes=max_bytes)
    about = {"sender": inbound.sender, "date": inbound.date(), "subject": inbound.header("Subject", 200)}
    found = _bounce(inbound)
    if found is not None:
        result = _tie_bounce(inbound, found, ids, people, about)
    elif from_a_mailer(inbound):
        result = Result(NOTHING, warning="a notice from a mail server, in no format known here", **about)
    else:
        result = _tie_answer(inbound, ids, people, domains, about)
    if inbound.warnings:
        warning = "; ".join(([result.warning] if result.warning else []) + inbound.warnings)
        result = replace(result, warning=warning[:1000])
    return result


def _bounce(inbound: Inbound) -> Found | None:
    """The first detector that knows the format; servers' own notices only in mail from a mail server."""
    mailer = from_a_mailer(inbound)
    for detector in REPORTS + (NOTICES if mailer else ()):
        try:
            found = detector(inbound)
        except Exception as error:
            log.debug("bounce detector %s failed", detector.__name__, exc_info=True)
            inbound.warn(f"the {detector.__name__} detector could not read it ({type(error).__name__})")
            continue
        if found is not None:
            return found
    return _flufl(inbound) if mailer else None


def _flufl(inbound: Inbound) -> Found | None:
    """Mailman's detectors as the last resort, on the message with each part cut to a bounded size."""
    text = inbound.notice
    for part in inbound.parts:
        try:
            _plain_headers(part.message, root=part.depth == 0)
            payload = part.message.get_payload()
            if isinstance(payload, str) and len(payload) > _FLUFL_PART_CHARS:
                part.message.set_payload(payload[:_FLUFL_PART_CHARS])
        except Exception:
            continue
    try:
        temporary, permanent = all_failures(inbound.message)
    except Exception as error:
        inbound.warn(f"flufl.bounce could not read it ({type(error).__name__})")
        return None
    failures: list[Failure] = []
    for raw, action in [(one, "failed") for one in sorted(permanent)] + [
            (one, "delayed") for one in sorted(set(temporary) - set(permanent))]:
        address = raw.decode("ascii", "replace").strip().strip("<>").lower()
        if "@" in address and len(failures) < 50:
            failures.append(failure(address, action, _lines_about(text, address)))
    return Found("flufl.bounce", tuple(failures)) if failures else None


def _plain_headers(message: Message, *, root: bool) -> None:
    """Headers as plain ASCII strings, and a From that parses: flufl.bounce's detectors expect both."""
    items = message.items()
    if any(not isinstance(value, str) or not value.isascii() for _, value in items):
        for name in dict.fromkeys(name for name, _ in items):
            del message[name]
        for name, value in items:
            message[name] = flat(str(value), 2000).encode("ascii", "replace").decode("ascii")
    if root and not getaddresses([str(message.get("From", ""))]):
        del message["From"]
        message["From"] = "<>"


def _lines_about(text: str, address: str) -> str:
    lines = text[:MAX_TEXT_CHARS].splitlines()
    for index, line in enumerate(lines):
        if address in line.lower():
            return " ".join(lines[index: index + 3])
    return ""


def _tie_bounce(inbound: Inbound, found: Found, ids: _Lookup, people: _Lookup, about: dict) -> Result:
    if not found.failures:
        return Result(NOTHING, detector=found.detector, **about)  # a report of delivery, not of failure
    named = _returned_ids(inbound)
    failures = found.failures
    if people.given:
        failures = tuple(replace(one, key=_first(people, one.addresses)) for one in failures)
    common = {"failures": failures, "named_message_ids": named, "detector": found.detector, **about}
    if ids.given:
        for message_id in named:
            key = ids.message(message_id)
            if key is not None:
                return Result(BOUNCE, message_id=message_id, keys=(key,), matched_by="message-id", **common)
        if named:
            return Result(NOTHING, warning=f"a bounce of {named[0][:120]}, which is not a message of this campaign;"
                                           " not recorded", **common)
    keys = tuple(dict.fromkeys(one.key for one in failures if one.key is not None))
    if people.given and not keys:
        shown = ", ".join(one.address for one in failures[:3])[:200]
        return Result(NOTHING, warning=f"a bounce for {shown}, not a recipient of this campaign; not recorded",
                      **common)
    return Result(BOUNCE, keys=keys, matched_by="address" if keys else None, **common)


def _returned_ids(inbound: Inbound) -> tuple[str, ...]:
    """The Message-IDs a bounce names: in the returned headers, quoted in its text, or in its In-Reply-To."""
    found: list[str] = []
    for headers in inbound.returned_headers():
        found += message_ids(header_text(headers, "Message-ID", 1000, clean=False))
    for text in inbound.texts():
        found += message_id_lines(text)
    found += message_ids(inbound.raw_header("In-Reply-To")) + message_ids(inbound.raw_header("References"))
    own = inbound.own_message_id
    return tuple(one for one in dict.fromkeys(found) if one != own)[:20]


def _tie_answer(inbound: Inbound, ids: _Lookup, people: _Lookup, domains: _Domains, about: dict) -> Result:
    sign = automatic(inbound)
    kind = AUTO_REPLY if sign else REPLY
    own = inbound.own_message_id
    answered = tuple(one for one in dict.fromkeys(message_ids(inbound.raw_header("In-Reply-To"))
                                                  + message_ids(inbound.raw_header("References"))) if one != own)
    common = {"named_message_ids": answered, "detector": sign, **about}
    if own and ids.message(own) is not None:
        return Result(NOTHING, **common)  # a copy of one of the campaign's own messages
    if ids.given and answered:
        for message_id in answered:
            key = ids.message(message_id)
            if key is not None:
                return Result(kind, message_id=message_id, keys=(key,), matched_by="message-id", **common)
        return Result(NOTHING, **common)  # it answers another conversation
    if not (ids.given or people.given):
        return Result(kind, **common) if sign or answered else Result(NOTHING, **common)
    sender = inbound.sender
    if not sender or (bulk(inbound) and not sign):
        return Result(NOTHING, **common)
    key = people.get(sender)
    if key is not None:
        return Result(kind, keys=(key,), matched_by="address", **common)
    domain = sender.rpartition("@")[2]
    if domain not in _PUBLIC_DOMAINS:
        keys = domains.get(domain)
        if keys:
            return Result(kind, keys=keys, matched_by="domain", **common)
    return Result(NOTHING, **common)


def _first(lookup: _Lookup, addresses: Sequence[str]) -> str | None:
    for address in addresses:
        key = lookup.get(address)
        if key is not None:
            return key
    return None


class _CallerError(Exception):
    """A lookup given by the caller raised: that is the caller's error, passed on unchanged."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Lookup:
    def __init__(self, source: Lookup | None) -> None:
        self.given = source is not None
        self._source = source

    def get(self, value: str) -> str | None:
        source = self._source
        if source is None:
            return None
        try:
            if isinstance(source, Mapping):
                return source.get(value)
            return source(value)
        except Exception as error:
            raise _CallerError(error) from error

    def message(self, message_id: str) -> str | None:
        """A Message-ID as found ("<id>"), then without brackets, then lowercased."""
        bare = message_id.strip("<>")
        for form in dict.fromkeys((message_id, bare, message_id.lower(), bare.lower())):
            key = self.get(form)
            if key is not None:
                return key
        return None


class _Domains:
    def __init__(self, source: DomainLookup | None) -> None:
        self._source = source

    def get(self, domain: str) -> tuple[str, ...]:
        source = self._source
        if source is None:
            return ()
        try:
            keys = source.get(domain, ()) if isinstance(source, Mapping) else source(domain)
        except Exception as error:
            raise _CallerError(error) from error
        return (keys,) if isinstance(keys, str) else tuple(keys or ())


def _domains(given: DomainLookup | None, recipients: Lookup | None) -> _Domains:
    if given is not None or not isinstance(recipients, Mapping):
        return _Domains(given)
    derived: dict[str, list[str]] = {}
    for address, key in recipients.items():
        derived.setdefault(str(address).rpartition("@")[2].lower(), []).append(key)
    return _Domains(derived)
