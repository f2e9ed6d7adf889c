"""The pipeline of `dispatch send`: the run lock and the journal held from planning to the last message.

The collaborators are made here: the mailer with its sign-in (a password, or the named account's OAuth
tokens, renewed as they expire), the copies in the mailbox's Sent folder, and the IMAP connection that
puts drafts in its Drafts folder (`dispatch send --drafts`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from dispatch.errors import Problem, SendError
from dispatch.models import Recipient, RenderedLetter
from dispatch.workspace import Workspace

if TYPE_CHECKING:
    from dispatch.inputs import Campaign
    from dispatch.mail.accounts import Account
    from dispatch.mail.imap import ImapSettings
    from dispatch.mail.settings import SmtpSettings
    from dispatch.mail.smtp import Outcome
    from dispatch.merge.letter import Merged
    from dispatch.pdf.engine import PdfRenderer
    from dispatch.stages.send import Item, SendPlan, SendSummary


@dataclass
class Credentials:
    """How dispatch signs in to a server: the account's OAuth tokens, or a password (None when none is
    stored: the command line asks for it)."""

    what: str  # "SMTP" or "IMAP"
    user: str
    host: str
    password: str | None = field(default=None, repr=False)
    token: Any = field(default=None, repr=False)  # a TokenSource: the current access token, renewed

    @property
    def needs_password(self) -> bool:
        return self.token is None and bool(self.user) and self.password is None

    @property
    def prompt(self) -> str:
        return f"{self.what} password for {self.user} on {self.host}"


class SendRun:
    """One dispatch send: holds the campaign's run lock and its journal from planning to the last message."""

    def __init__(self, ws: Workspace) -> None:
        from dispatch.campaign import open_journal
        from dispatch.runlock import RunLock

        self.ws = ws
        self.environ: Mapping[str, str] = os.environ
        self.campaign: Campaign | None = None
        self._account: tuple[Account | None] | None = None
        self._token_source: Any = None
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

        smtp = self._smtp_values(dry_run)
        campaign, warnings = checking.check(ws, letter, on_merged=keep)
        self.campaign = campaign
        variant = resolve_pdf_variant(ws)
        digests = {signed: render_digest(ws, variant, signed=signed) for signed in (False, True)}
        plan = send.plan(campaign, warnings + smtp[1], merged, self.journal, digests=digests, only=only, limit=limit,
                         resend=resend, resend_uncertain=resend_uncertain, dry_run=dry_run, smtp=smtp[0])
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

    # --- who sends: the account and its sign-in -------------------------------------------------------------

    def account(self) -> Account | None:
        """The named account (DISPATCH_ACCOUNT, else [smtp] account), read once; None when none is named."""
        if self._account is None:
            from dispatch.campaign.accounts import campaign_account

            self._account = (campaign_account(self.ws, self.environ),)
        return self._account[0]

    def _smtp_values(self, dry_run: bool) -> tuple[dict, list[Problem]]:
        from dispatch.campaign.accounts import smtp_values

        try:
            return smtp_values(self.ws, self.account()), []
        except SendError as exc:
            if not dry_run:
                raise
            warning = Problem(f"{exc.problem.message}; the dry run uses dispatch.toml's [smtp] alone",
                              file=exc.problem.file, severity="warning", hint=exc.hint)
            return self.ws.settings.section("smtp"), [warning]

    def _tokens(self) -> Any:
        """The account's TokenSource, shared by SMTP and IMAP; SendError "sign in first" when not signed in."""
        if self._token_source is None:
            from dispatch.mail.oauth import token_source

            account = self.account()
            if account is None:
                raise SendError('auth = "oauth2" needs a named account to sign in with', file="dispatch.toml",
                                column="[smtp] account", hint='add the account to accounts.toml and name it: [smtp] '
                                                              'account = "NAME" (or DISPATCH_ACCOUNT)')
            self._token_source = token_source(account, self.environ)
        return self._token_source

    def credentials(self, settings: SmtpSettings) -> Credentials:
        """The sign-in for sending, found before anything is rendered: the account's tokens (SendError when it
        is not signed in), or the password from the environment or the keyring (None: to be asked)."""
        if settings.auth == "oauth2":
            return Credentials("SMTP", settings.username, settings.host, token=self._tokens())
        password = smtp_password(settings) if settings.username else None
        return Credentials("SMTP", settings.username, settings.host, password=password)

    def mailbox(self) -> tuple[ImapSettings, Credentials]:
        """The IMAP mailbox for drafts (the account's, DISPATCH_IMAP_* on top) and its sign-in."""
        from dispatch.mail.imap import imap_password, imap_settings

        imap = imap_settings(self.account(), self.environ)
        if imap.auth == "oauth2":
            return imap, Credentials("IMAP", imap.username, imap.host, token=self._tokens())
        return imap, Credentials("IMAP", imap.username, imap.host, password=imap_password(imap, self.environ))

    # --- sending ----------------------------------------------------------------------------------------

    def send(self, plan: SendPlan, settings: SmtpSettings, password: str | Credentials | None = None,
             on_progress: Callable[[Item, Outcome], None] | None = None) -> SendSummary:
        """Send every message of the plan (see stages/send/execute.py); with the account's save_sent, a copy
        of each in the mailbox's Sent folder."""
        from dispatch.mail.smtp import Mailer
        from dispatch.stages.send import execute

        credentials = password if isinstance(password, Credentials) else \
            Credentials("SMTP", settings.username, settings.host, password=password)
        if settings.auth == "oauth2" and credentials.token is None:
            credentials.token = self._tokens()
        mailer = Mailer(settings, credentials.password, token=credentials.token if settings.auth == "oauth2" else None)
        return execute(plan.items, letter=plan.letter_name, journal=self.journal, mailer=mailer, settings=settings,
                       summary=plan.summary(), archive=plan.campaign.output_dir,
                       copies=self._sent_copies(settings, credentials), on_progress=on_progress)

    def _sent_copies(self, settings: SmtpSettings, credentials: Credentials):
        """SentCopies when the account asks for them (see wants_sent_copies)."""
        account = self.account()
        if account is None or not wants_sent_copies(account, settings.host):
            return None
        from dispatch.mail.imap import ImapClient, imap_password, imap_settings
        from dispatch.stages.send.mailbox import SentCopies

        def connect() -> ImapClient:
            imap = imap_settings(account, self.environ)
            if imap.auth == "oauth2":
                return ImapClient(imap, token=self._tokens())
            password = imap_password(imap, self.environ)
            if password is None and imap.username == credentials.user:
                password = credentials.password  # the same login as for sending
            return ImapClient(imap, password=password)

        return SentCopies(connect)

    def drafts(self, plan: SendPlan, credentials: Credentials | None = None,
               on_progress: Callable[[Item, Outcome], None] | None = None) -> SendSummary:
        """--drafts: each message in the mailbox's Drafts folder, journaled as `drafted`; nothing is sent."""
        import time

        from dispatch.mail.imap import ImapClient
        from dispatch.stages.send.mailbox import save_drafts

        imap, found = self.mailbox()
        credentials = credentials or found
        client = ImapClient(imap, password=credentials.password, token=credentials.token)
        started = time.monotonic()
        summary = save_drafts(plan.items, letter=plan.letter_name, journal=self.journal, client=client,
                              summary=plan.summary(), archive=plan.campaign.output_dir, on_progress=on_progress)
        summary.seconds = time.monotonic() - started
        return summary


def wants_sent_copies(account: Account, smtp_host: str) -> bool:
    """The account's save_sent: "true" or "false" for every server; "auto" (the default) for a server that does
    not file what it is given in Sent itself (Exchange Online and Gmail do). smtp_host: the server in use
    (DISPATCH_SMTP_HOST may name another than the account)."""
    from dispatch.mail.accounts import files_sent_itself

    if account.save_sent == "auto":
        return not files_sent_itself(smtp_host)
    return account.save_sent == "true"


def smtp_settings(ws: Workspace, environ: Mapping[str, str] = os.environ) -> SmtpSettings:
    """The SMTP settings of the campaign: dispatch.toml's [smtp], the named account's server and sign-in
    (DISPATCH_ACCOUNT, else [smtp] account), then the environment's overrides; SendError if unusable."""
    from dispatch.campaign.accounts import campaign_account, smtp_values
    from dispatch.mail.settings import smtp_settings as mail_settings

    account = campaign_account(ws, environ)
    settings = mail_settings(smtp_values(ws, account), ws.settings.get("sender", "email"), environ)
    if settings.auth == "oauth2" and account is None:
        raise SendError('auth = "oauth2" needs a named account to sign in with', file="dispatch.toml",
                        column="[smtp] account", hint='add the account to accounts.toml and name it: [smtp] account = '
                                                      '"NAME" (or DISPATCH_ACCOUNT); see "Sending from Microsoft 365 / '
                                                      'Gmail" in the README')
    return settings


def smtp_password(settings: SmtpSettings) -> str | None:
    from dispatch.mail.settings import stored_password

    return stored_password(settings)


