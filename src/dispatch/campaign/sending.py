"""The pipeline of `dispatch send`: the run lock and the journal held from planning to the last message."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from dispatch.models import Recipient, RenderedLetter
from dispatch.workspace import Workspace

if TYPE_CHECKING:
    from dispatch.inputs import Campaign
    from dispatch.mail.settings import SmtpSettings
    from dispatch.mail.smtp import Outcome
    from dispatch.merge.letter import Merged
    from dispatch.pdf.engine import PdfRenderer
    from dispatch.stages.send import Item, SendPlan, SendSummary


class SendRun:
    """One dispatch send: holds the campaign's run lock and its journal from planning to the last message."""

    def __init__(self, ws: Workspace) -> None:
        from dispatch.campaign import open_journal
        from dispatch.runlock import RunLock

        self.ws = ws
        self.campaign: Campaign | None = None
        lock_file = ws.journal_file.with_name(ws.journal_file.name + ".lock")
        self.lock = RunLock(lock_file, shown=ws.relative(lock_file))
        self.lock.acquire()
        try:
            self.journal = open_journal(ws)
        except BaseException:
            self.lock.release()
            raise

    def close(self) -> None:
        self.journal.close()
        self.lock.release()

    def __enter__(self) -> "SendRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def prepare(self, *, letter: str | None = None, only: list[str] | None = None, limit: int | None = None,
                resend: list[str] | None = None, resend_uncertain: bool = False, dry_run: bool = False,
                renderer: PdfRenderer | None = None,
                on_render: Callable[[RenderedLetter], None] | None = None) -> SendPlan:
        """Check the campaign once, choose who gets a message, render the letters that are missing or out of
        date through the same checked campaign, and build every message."""
        from dispatch.stages import check as checking
        from dispatch.stages import render as rendering
        from dispatch.stages.render import render_digest
        from dispatch.stages.render import resolve_pdf_variant

        from dispatch.campaign import _raise_failures
        from dispatch.stages import send

        ws = self.ws
        merged: dict[str, Merged] = {}

        def keep(recipient: Recipient, letter_merged: Merged) -> None:
            if recipient.wants_email:
                merged[recipient.id] = letter_merged

        campaign, warnings = checking.check(ws, letter, on_merged=keep)
        self.campaign = campaign
        variant = resolve_pdf_variant(ws)
        digests = {signed: render_digest(ws, variant, signed=signed) for signed in (False, True)}
        plan = send.plan(campaign, warnings, merged, self.journal, digests=digests, only=only, limit=limit,
                         resend=resend, resend_uncertain=resend_uncertain, dry_run=dry_run)
        if plan.stale:
            ids = [r.id for r in plan.stale]
            with rendering.RenderRun(ws, letter=campaign.letter_name, only=ids, renderer=renderer,
                                     keep_html=True) as run:
                for recipient in plan.stale:
                    run.remember(recipient, merged[recipient.id])
                _raise_failures(run.finish(campaign, [], self.journal, on_progress=on_render))
            plan.rendered = len(ids)
        send.build(plan)
        return plan

    def write_outbox(self, plan: SendPlan) -> list[Path]:
        """--dry-run: each message as out/<letter>/outbox/<id>.eml; the outbox holds only this run's messages."""
        from dispatch.stages.send import write_outbox

        return write_outbox(plan)

    def send(self, plan: SendPlan, settings: SmtpSettings, password: str | None,
             on_progress: Callable[[Item, Outcome], None] | None = None) -> SendSummary:
        from dispatch.mail.smtp import Mailer
        from dispatch.stages.send import execute

        return execute(plan.items, letter=plan.letter_name, journal=self.journal, mailer=Mailer(settings, password),
                       settings=settings, summary=plan.summary(), archive=plan.campaign.output_dir,
                       on_progress=on_progress)


def smtp_settings(ws: Workspace) -> SmtpSettings:
    """The SMTP settings of the campaign with the environment's overrides; SendError if unusable."""
    from dispatch.mail.settings import smtp_settings as mail_settings

    return mail_settings(ws.settings.section("smtp"), ws.settings.get("sender", "email"))


def smtp_password(settings: SmtpSettings) -> str | None:
    from dispatch.mail.settings import stored_password

    return stored_password(settings)


