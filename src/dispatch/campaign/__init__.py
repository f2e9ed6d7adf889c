"""The pipeline: one short function per command, the stages in order, collaborators passed in.

Each command reads the campaign once (stages.check), hands the checked campaign to the stages it needs
(render, send, print, deliver, track, proof, verify) and opens the journal once. The stages never call
each other: the order is said here. Tests pass real-but-local collaborators (a PDF renderer, a journal).
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from dispatch.errors import DispatchError, Problem, ValidationFailed
from dispatch.models import Recipient, RenderedLetter
from dispatch.workspace import Workspace, open_workspace

if TYPE_CHECKING:
    from dispatch.inputs import Campaign
    from dispatch.journal import Journal
    from dispatch.merge.letter import Merged
    from dispatch.merge.versions import VersionMerger
    from dispatch.pdf.batch import Explanation
    from dispatch.pdf.engine import PdfRenderer
    from dispatch.pdf.signing import Signer
    from dispatch.stages.deliver import Delivery
    from dispatch.stages.preview import Preview, WatchEvent
    from dispatch.stages.print_run import PrintSummary
    from dispatch.stages.proof import ProofResult
    from dispatch.stages.render import RenderRun, RenderSummary
    from dispatch.status import StatusRow

# The stages are imported by the commands that use them (a module's import is a tenth of a second or more:
# Jinja2, Markdown, email), so that `dispatch --help` answers at once and preview's renderer process imports
# WeasyPrint while this process reads the campaign. Names the command line uses are found here on first use.
_LAZY = {
    "Campaign": "dispatch.inputs", "load": "dispatch.inputs",
    "Explanation": "dispatch.pdf.batch",
    "Delivery": "dispatch.stages.deliver", "parse_delivery_time": "dispatch.stages.deliver",
    "Preview": "dispatch.stages.preview", "WatchEvent": "dispatch.stages.preview",
    "ProofResult": "dispatch.stages.proof",
    "RenderSummary": "dispatch.stages.render", "render_digest": "dispatch.stages.render",
    "resolve_pdf_variant": "dispatch.stages.render",
    "init": "dispatch.skeleton",
    "delivery_text": "dispatch.status",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FORMATS = ("pdf", "html")

from dispatch.campaign.sending import SendRun as SendRun, smtp_password as smtp_password, smtp_settings as smtp_settings  # noqa: E402,E501
from dispatch.campaign.accounts import account_name as account_name, login as login, logout as logout  # noqa: E402
from dispatch.campaign.tracking import imap_password as imap_password, imap_settings as imap_settings, track as track  # noqa: E402,E501


def open_journal(ws: Workspace) -> Journal:
    """The campaign's journal. A new one is made only for a campaign that shows no letter yet: when out/ has
    letters, a missing journal stops the command (see stages/recover.py for the way out)."""
    from dispatch.journal import Journal
    from dispatch.stages.recover import has_letters

    path = ws.journal_file
    return Journal(path, shown=ws.relative(path), may_create=path.exists() or not has_letters(ws))


def journal_check(ws: Workspace):
    """What the journal's file is: sound (with its events and letters), or why it cannot be used."""
    from dispatch.stages.recover import check

    return check(ws)


def journal_repair(ws: Workspace):
    """Move a damaged, empty or lost journal aside and start a new one from out/ and the sent archive."""
    from dispatch.stages.recover import repair

    return repair(ws)


@contextlib.contextmanager
def _journal(ws: Workspace, journal: Journal | None) -> Iterator[Journal]:
    """The journal given, or one opened (and closed) for this command."""
    if journal is not None:
        yield journal
        return
    with open_journal(ws) as opened:
        yield opened


def merger(campaign: Campaign) -> VersionMerger:
    """What merges each recipient with the version of the letter in its language."""
    from dispatch.merge.versions import VersionMerger

    return VersionMerger(campaign)


def validate(ws: Workspace, letter: str | None = None) -> list[Problem]:
    """Every problem with the recipients, the letter and the templates, without writing anything."""
    from dispatch.stages import check as checking

    return checking.validate(ws, letter)[0]


def check(ws: Workspace, letter: str | None = None,
          on_html: Callable[[Recipient, Merged], None] | None = None) -> tuple[Campaign, list[Problem]]:
    """Validate, refuse on any error, and return the campaign with the remaining warnings."""
    from dispatch.stages import check as checking

    return checking.check(ws, letter, on_merged=on_html)


def _raise_failures(summary: RenderSummary) -> None:
    """For commands that need every letter: stop on the letters that could not be rendered."""
    if summary.failed:
        raise ValidationFailed(summary.failed)


def _checked_render(ws: Workspace, run: RenderRun, letter: str | None, journal: Journal | None, *,
                    only: list[str] | None = None, variants: Callable[[], tuple[str, ...]] | None = None,
                    on_start: Callable[[int, int], None] | None = None,
                    on_progress: Callable[[RenderedLetter], None] | None = None) -> tuple[Campaign, RenderSummary]:
    """Check the campaign (each letter merged once, handed to the run as it is merged), then render."""
    from dispatch.pdf.engine import pdf_variants
    from dispatch.stages import check as checking

    campaign, warnings = checking.check(ws, letter, on_merged=run.remember, only=only,
                                        variants=variants or pdf_variants)
    with _journal(ws, journal) as opened:
        return campaign, run.finish(campaign, warnings, opened, on_start=on_start, on_progress=on_progress)


def render(ws: Workspace, *, letter: str | None = None, only: list[str] | None = None, fmt: str = "pdf",
           jobs: int | None = None, force: bool = False, renderer: PdfRenderer | None = None,
           journal: Journal | None = None, pdf_variant: str | None = None, signer: Signer | None = None,
           layers: bool = True, explanation: Explanation | None = None,
           on_start: Callable[[int, int], None] | None = None,
           on_progress: Callable[[RenderedLetter], None] | None = None) -> RenderSummary:
    """Check the campaign, then write out/<letter>/<id>.pdf (or .html) for each chosen recipient that is new
    or changed (all of them with force), atomically, each recorded in the journal (see stages/render.py).

    pdf_variant (default: [campaign] pdf_variant) makes archival PDFs, e.g. "pdf/a-3u"; "none" makes plain
    ones. With a signer, each PDF is signed once rendered and the journal keeps the signed file's hash."""
    from dispatch.stages import check as checking
    from dispatch.stages import render as rendering

    if fmt not in FORMATS:
        raise DispatchError(f"unknown format {fmt!r}", hint="use --format pdf or --format html")
    if fmt == "html":
        from dispatch.pdf.pool import workers_for

        workers_for(here=True)  # one started early for this command is not needed
        campaign, warnings = checking.check(ws, letter)
        return rendering.render_html(campaign, warnings, only=only, on_start=on_start, on_progress=on_progress)
    with rendering.RenderRun(ws, letter=letter, only=only, jobs=jobs, force=force, renderer=renderer,
                             pdf_variant=pdf_variant, signer=signer, layers=layers, explanation=explanation) as run:
        return _checked_render(ws, run, letter, journal, on_start=on_start, on_progress=on_progress)[1]


def preview(ws: Workspace, recipient_id: str, *, letter: str | None = None,
            renderer: PdfRenderer | None = None, dpi: int = 110) -> Preview:
    """Render one recipient's letter and a PNG of each of its pages.

    Refuses what render refuses, except that only this recipient's letter is merged and checked for
    characters the fonts lack (the other letters are merged when they are rendered). A RendererProcess
    as renderer (started by the caller before it imported this module) renders it, and tells the PDF
    variants the settings are checked against, so that WeasyPrint is not imported in this process."""
    from dispatch.pdf.engine import pdf_variants
    from dispatch.pdf.process import RendererProcess
    from dispatch.stages import render as rendering
    from dispatch.stages.preview import Preview
    from dispatch.stages.render import resolve_pdf_variant

    from dispatch.files import confined
    from dispatch.pdf.raster import page_pngs

    variants = pdf_variants
    if isinstance(renderer, RendererProcess):
        if renderer.pdf_variant == resolve_pdf_variant(ws):
            variants = renderer.pdf_variants
        else:  # started for other settings: render here, the PDF that render would write
            renderer = None
    with rendering.RenderRun(ws, letter=letter, only=[recipient_id], renderer=renderer, jobs=1) as run:
        summary = _checked_render(ws, run, letter, None, only=[recipient_id], variants=variants)[1]
    _raise_failures(summary)
    result = summary.output_dir / f"{recipient_id}.pdf"
    folder = confined(summary.output_dir / "preview", summary.output_dir)
    return Preview(result, page_pngs(result, folder, recipient_id, dpi))


def watch_preview(root: Path, recipient_id: str, *, letter: str | None = None,
                  on_event: Callable[[WatchEvent], None], stop_event=None) -> None:
    """Preview one letter, then again each time the letter, a template, the settings or the CSV changes."""
    from dispatch.stages.preview import watch

    watch(open_workspace(root), lambda: preview(open_workspace(root), recipient_id, letter=letter),
          on_event, stop_event)


def proof(ws: Workspace, *, letter: str | None = None, renderer: PdfRenderer | None = None,
          on_progress: Callable[[str], None] | None = None) -> ProofResult:
    """Render what is not current, then write the proof sheet and the report of what differs."""
    from dispatch.pdf.engine import PdfRenderer
    from dispatch.stages import render as rendering

    from dispatch.stages.proof import write_proof

    with rendering.RenderRun(ws, letter=letter, renderer=renderer) as run:
        campaign, summary = _checked_render(ws, run, letter, None)
    _raise_failures(summary)
    return write_proof(campaign, renderer or PdfRenderer(ws.templates), on_progress=on_progress)


def print_run(ws: Workspace, *, letter: str | None = None, only: list[str] | None = None,
              order: str | None = None, duplex: bool | None = None, envelope: str | None = None,
              allow_missing_address: bool = False, renderer: PdfRenderer | None = None,
              journal: Journal | None = None, on_start: Callable[[int], None] | None = None,
              on_progress: Callable[[RenderedLetter], None] | None = None) -> PrintSummary:
    """Render the letters to be printed, then write out/<letter>/print/: letters, envelopes, labels, manifest.

    Everything is checked first (settings, recipients, addresses, the window when [print] window = true) and
    the files are made in memory, so a refused run writes nothing into print/."""
    from dispatch.pdf.engine import PdfRenderer
    from dispatch.stages import check as checking
    from dispatch.stages import render as rendering

    from dispatch.stages import print_run as printing

    with rendering.RenderRun(ws, letter=letter, only=only or [], renderer=renderer, keep_html=True) as run:
        merged: dict[str, Merged] = {}
        campaign, warnings = checking.check(ws, letter, on_merged=lambda r, m: merged.__setitem__(r.id, m))
        opts = printing.options(campaign, order=order, duplex=duplex, envelope=envelope)
        ordered = printing.plan(campaign, opts, only=only, allow_missing_address=allow_missing_address)
        run.only = [r.id for r in ordered]
        for recipient in ordered:
            run.remember(recipient, merged[recipient.id])
        with _journal(ws, journal) as opened:
            _raise_failures(run.finish(campaign, warnings, opened, on_start=on_start, on_progress=on_progress))
            return printing.write(campaign, opts, ordered, renderer=renderer or PdfRenderer(ws.templates),
                                  journal=opened, warnings=warnings)


def mark_delivered(ws: Workspace, ids: list[str], *, letter: str | None = None, by: str | None = None,
                   at: str | None = None, note: str | None = None, undo: bool = False,
                   journal: Journal | None = None) -> list[Delivery]:
    """Record (or, with undo, withdraw) the hand delivery of each recipient; all of them or none."""
    from dispatch.inputs import load

    from dispatch.stages.deliver import mark

    campaign = load(ws, letter)
    with _journal(ws, journal) as opened:
        return mark(campaign, opened, ids, by=by, at=at, note=note, undo=undo)


def status(ws: Workspace, *, letter: str | None = None, only: list[str] | None = None,
           journal: Journal | None = None, campaign: Campaign | None = None) -> tuple[str, list[StatusRow]]:
    """One row per recipient, in file order: its PDF, its email and its hand delivery, from the journal."""
    from dispatch.inputs import load

    from dispatch.stages.track import status_rows

    campaign = campaign or load(ws, letter)
    with _journal(ws, journal) as opened:
        return campaign.letter_name, status_rows(campaign, opened, only)


def write_report(ws: Workspace, *, letter: str | None = None, journal: Journal | None = None,
                 campaign: Campaign | None = None) -> Path:
    """Write out/<letter>/report.html (and page-1 thumbnails beside it) from the journal and the PDFs."""
    from dispatch.inputs import load

    from dispatch.stages.track import write_report as write

    campaign = campaign or load(ws, letter)
    with _journal(ws, journal) as opened:
        return write(campaign, opened)


# --- what the command line needs besides the commands --------------------------------------------------

SIGN_PASSWORD_VARIABLE = "DISPATCH_SIGN_PASSWORD"
SIGN_KEYRING_SERVICE = "dispatch-signing-key"


def renderer_process(ws: Workspace):
    """A renderer in a process of its own (a context manager), for one letter: WeasyPrint is imported there
    while this process reads and checks the campaign."""
    from dispatch.pdf.process import RendererProcess

    return RendererProcess(ws.templates, pdf_variant=ws.settings.pdf_variant or None)


def signer(key_file: Path, ask: Callable[[str], str | None]) -> Signer:
    """The signer of a PKCS#12 key file. Its password comes from $DISPATCH_SIGN_PASSWORD, the system keyring,
    or ask(prompt); a wrong file name is reported before the password is asked for."""
    from dispatch.mail.credentials import stored_secret
    from dispatch.pdf.signing import open_signer, read_key_file

    data = read_key_file(key_file)
    password = stored_secret(SIGN_PASSWORD_VARIABLE, SIGN_KEYRING_SERVICE, str(key_file.resolve()))
    if password is None:
        password = ask(f"Password of {key_file.name}")
    return open_signer(key_file, password, data=data)


def format_status(rows: list[StatusRow], fmt: str, *, wide: bool = False) -> str | bytes:
    """Status rows as a table (the columns a coordinator reads first, in 100 columns; wide: every column,
    nothing cut), CSV (safe for spreadsheets) or JSON."""
    from dispatch import status as formats

    if fmt == "csv":
        return formats.to_csv(rows)
    if fmt == "json":
        return formats.to_json(rows)
    return formats.to_table(rows, wide=wide)


def verify(ws: Workspace, files: list[Path], trust: list[Path], *, require_signature: bool = False) -> list:
    """Each file's signature, and whether it is a file the journal recorded (rendered or sent)."""
    from dispatch.stages.verify import read_trust, verify_files

    with open_journal(ws) as journal:
        return verify_files(files, journal, trust=read_trust(trust), require_signature=require_signature)
