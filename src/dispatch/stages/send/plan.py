"""Planning a send: who gets a message this run, which of their letters are current, and each message built.

The pipeline checks the campaign once and hands over what the check merged; letters that are missing or
out of date are rendered by the pipeline (through the same checked campaign) before the messages are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from dispatch import i18n
from dispatch.errors import Problem, SendError
from dispatch.files import confined, sha256, write_atomic
from dispatch.freshness import letter_key, reason_to_render
from dispatch.inputs import Campaign
from dispatch.journal import Journal
from dispatch.mail.message import Draft, addresses, build_message, check_address
from dispatch.mail.settings import sender_address
from dispatch.merge.email import CoverNotes
from dispatch.merge.letter import Merged
from dispatch.merge.versions import VersionMerger
from dispatch.models import Recipient
from dispatch.stages.send.execute import Choice, Item, SendSummary, choose, settle_interrupted

PLACEHOLDER_SENDER = "sender-not-set@example.org"


@dataclass
class SendPlan:
    """What one dispatch send will do: the messages, built, and the recipients left out, with why."""

    campaign: Campaign
    choice: Choice
    merged: Mapping[str, Merged]
    items: list[Item] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    stale: list[Recipient] = field(default_factory=list)  # letters to render first: missing or out of date
    rendered: int = 0
    from_address: str = ""

    @property
    def letter_name(self) -> str:
        return self.campaign.letter_name

    def summary(self) -> SendSummary:
        c = self.choice
        return SendSummary(self.letter_name, already_sent=list(c.already_sent), failed_earlier=list(c.failed_earlier),
                           uncertain_earlier=list(c.uncertain), later=list(c.later), drafted_earlier=list(c.drafted))


def plan(campaign: Campaign, warnings: list[Problem], merged: Mapping[str, Merged], journal: Journal, *,
         digests: Mapping[bool, str], only: list[str] | None = None, limit: int | None = None,
         resend: list[str] | None = None, resend_uncertain: bool = False, dry_run: bool = False,
         smtp: Mapping | None = None) -> SendPlan:
    """Choose who gets a message and find the letters to render first. digests: the render digest of an
    unsigned (False) and a signed (True) letter (see stages/render.render_digest). smtp: the [smtp] values
    the messages come from (dispatch.toml's, with the named account's filled in); dispatch.toml's when None."""
    ws = campaign.workspace
    warnings = [w for w in warnings if w.column != "address"]  # postal addresses do not matter here
    table = campaign.recipients
    chosen = table.select(only)
    resend = list(resend or [])
    named = (table.select(resend) if resend else []) + (chosen if only else [])
    for recipient in named:
        if not recipient.wants_email:
            raise SendError(f"recipient {recipient.id!r} has channel {recipient.channel!r}, so no email goes to it",
                            **table.place(recipient.line, "channel"),
                            hint="set the channel to 'email' or 'both' to send this letter by email")
    chosen += [r for r in named if r not in chosen]
    chosen = [r for r in chosen if r.wants_email]
    states = journal.email_states(campaign.letter_name)
    if not dry_run:
        states = settle_interrupted(journal, campaign.letter_name, states)
    choice = choose(chosen, states, resend=resend, resend_uncertain=resend_uncertain, limit=limit)
    settings = ws.settings
    smtp = smtp if smtp is not None else settings.section("smtp")
    from_address = sender_address(smtp, settings.get("sender", "email"))
    if not from_address:
        if not dry_run:
            raise SendError("no sender address", file="dispatch.toml",
                            hint="set sender under [smtp] (or email under [sender], or DISPATCH_SENDER)")
        from_address = PLACEHOLDER_SENDER
        warnings = warnings + [Problem(f"no sender address is set; the messages say From: {PLACEHOLDER_SENDER}",
                                       file="dispatch.toml", severity="warning",
                                       hint="set sender under [smtp] before sending")]
    result = SendPlan(campaign, choice, merged, warnings=warnings, from_address=from_address)
    rendered = journal.latest(campaign.letter_name, ["rendered"])
    for recipient, _ in choice.to_send:
        event = rendered.get(recipient.id)
        # A letter signed when rendered is as current as an unsigned one: sending does not sign.
        signed = bool(event and event.data.get("signed_by"))
        key = letter_key(digests[signed], merged[recipient.id].html)
        path = campaign.output_dir / f"{recipient.id}.pdf"
        if reason_to_render(key, path, event.data if event else None) is not None:
            result.stale.append(recipient)
    return result


def build(plan: SendPlan) -> None:
    """Build every message of the plan, each with the PDF on disk (current, since stale ones were rendered)."""
    campaign = plan.campaign
    settings = campaign.workspace.settings
    extra = {key: _settings_addresses(settings, section, key)
             for section, key in (("email", "cc"), ("email", "bcc"), ("sender", "reply_to"))}
    merger = VersionMerger(campaign)
    notes = CoverNotes(campaign.workspace.templates, attachment=settings.get("email", "attachment"),
                       subject=settings.get("email", "subject"), filters={"date": lambda value, language="en": i18n.format_letter_date(value, language)})
    for recipient, reason in plan.choice.to_send:
        note = notes.render(merger.variables(recipient), recipient.id)
        data = (campaign.output_dir / f"{recipient.id}.pdf").read_bytes()
        draft = Draft(recipient_id=recipient.id, from_name=settings.get("sender", "name"),
                      from_address=plan.from_address, to=recipient.get("email"), subject=note.subject,
                      text=note.text, html=note.html, attachment=data, attachment_name=note.attachment_name,
                      reply_to=extra["reply_to"], cc=extra["cc"] + addresses([recipient.get("cc")]),
                      bcc=extra["bcc"] + addresses([recipient.get("bcc")]))
        plan.items.append(Item(recipient.id, build_message(draft), sha256(data), reason, recipient.get("email"),
                               pdf=data))


def _settings_addresses(settings, section: str, key: str) -> tuple[str, ...]:
    found = addresses([settings.get(section, key)])
    for address in found:
        try:
            check_address(address, f"[{section}] {key}")
        except SendError as exc:
            raise SendError(exc.problem.message, file="dispatch.toml", column=f"[{section}] {key}",
                            hint="correct the address; separate several with ';'") from None
    return found


def write_outbox(plan: SendPlan) -> list[Path]:
    """--dry-run: each message as out/<letter>/outbox/<id>.eml; the outbox holds only this run's messages."""
    folder = confined(plan.campaign.output_dir / "outbox", plan.campaign.output_dir)
    keep = {f"{item.recipient_id}.eml" for item in plan.items}
    if folder.is_dir():
        for old in folder.glob("*.eml"):
            if old.name not in keep and old.is_file() and not old.is_symlink():
                old.unlink()
    written = []
    for item in plan.items:
        target = folder / f"{item.recipient_id}.eml"
        write_atomic(target, item.outgoing.as_file())
        written.append(target)
    return written
