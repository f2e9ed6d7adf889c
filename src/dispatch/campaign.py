"""The pipeline: the one place that knows the order of the stages (read, validate, merge, render, write).

Collaborators (the PDF renderer, a progress callback) are passed in, so tests can give real-but-local ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import datetime as dt
import hashlib
import logging
import re
import shutil
from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import __version__, i18n
from .errors import (DispatchError, PrintError, Problem, SendError, TemplateError, ValidationFailed,
                     WorkspaceError)
from .freshness import REASONS, letter_key, reason_to_render, templates_digest
from .glyphs import FontCoverage, describe, html_text
from .journal import DELIVERY_KINDS, Event, Journal
from .letters import LetterVersions, read_letter_versions
from .models import Letter, Recipient, RenderedLetter
from .recipients import RecipientTable, check_recipients, read_recipients
from .pdf import (PdfRenderer, check_pdf_variant, commit, engine_version, is_pdf_variant, pdf_variants,
                  remove_stale_temporaries, sha256, with_base, write_atomic)
from .render import Layouts, Merged, MergeContext, Merger
from .runlock import RunLock
from .status import StatusRow, delivery_text
from .workers import Done, PdfPool, RendererProcess, stop_server
from .regions import Parts
from .layers import supports
from .rendering import Explanation, LetterStream, Order
from .signing import Signer
from .workspace import Workspace, open_workspace

if TYPE_CHECKING:
    from . import printing
    from .mailer import Outcome, SmtpSettings
    from .sending import Choice, Item, SendSummary

# Sending (smtplib, ssl, email) and the print run are imported by the functions that use them, so that
# render and preview do not wait for them.

log = logging.getLogger(__name__)

FORMATS = ("pdf", "html")


@dataclass(frozen=True)
class Campaign:
    """Everything read from a workspace for one letter."""

    workspace: Workspace
    versions: LetterVersions
    recipients: RecipientTable

    @property
    def letter(self) -> Letter:
        return self.versions.letter

    @property
    def letter_name(self) -> str:
        return self.letter.name

    @property
    def output_dir(self) -> Path:
        return self.workspace.output_dir(self.letter.name)

    def language_of(self, recipient: Recipient) -> str:
        return recipient.get("language") or self.workspace.settings.language

    def version_for(self, recipient: Recipient) -> Letter:
        """The letter in the recipient's language, or the letter itself when it has no such translation."""
        return self.versions.choose(self.language_of(recipient))

    def merger(self) -> "VersionMerger":
        return VersionMerger(self)


class VersionMerger:
    """Merges each recipient with the version of the letter in its language (one Merger per version)."""

    def __init__(self, campaign: Campaign) -> None:
        ws = campaign.workspace
        self.campaign = campaign
        self.mergers: dict[str, Merger] = {}
        for version in campaign.versions.all():
            context = MergeContext(letter=version, sender=ws.settings.section("sender"),
                                   page_size=ws.settings.page_size, default_language=ws.settings.language,
                                   columns=campaign.recipients.columns)
            self.mergers[version.language] = Merger(ws.templates, context,
                                                    letter_file=f"letters/{version.path.name}")

    def for_recipient(self, recipient: Recipient) -> Merger:
        return self.mergers[self.campaign.version_for(recipient).language]

    def html(self, recipient: Recipient) -> str:
        return self.for_recipient(recipient).html(recipient)

    def merged(self, recipient: Recipient) -> Merged:
        return self.for_recipient(recipient).merged(recipient)

    def variables(self, recipient: Recipient) -> dict:
        return self.for_recipient(recipient).variables(recipient)

    def used_fields(self) -> tuple[str, ...]:
        """The CSV columns any version of the letter or its layout refers to, in the order of the CSV."""
        used = {name for merger in self.mergers.values() for name in merger.used_fields()}
        return tuple(c for c in self.campaign.recipients.columns if c in used)


@dataclass
class RenderSummary:
    letter: str
    output_dir: Path
    rendered: list[RenderedLetter] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    up_to_date: int = 0
    failed: list[Problem] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return sum(r.pages for r in self.rendered)

    def reasons(self) -> dict[str, int]:
        """How many letters were rendered for each reason, in the order of REASONS (zeros left out)."""
        counts = {reason: sum(1 for r in self.rendered if r.reason == reason) for reason in REASONS}
        return {reason: count for reason, count in counts.items() if count}


def load(ws: Workspace, letter: str | None = None) -> Campaign:
    """Read the letter and the recipients. Raises the first error that stops reading."""
    versions = _read_versions(ws, letter)
    table = read_recipients(ws.recipients_file, name=ws.relative(ws.recipients_file))
    return Campaign(ws, versions, table)


def _read_versions(ws: Workspace, letter: str | None) -> LetterVersions:
    name = ws.letter_name(letter)
    return read_letter_versions(ws.letter_file(name), name=f"letters/{name}.md", language=ws.settings.language)


def validate(ws: Workspace, letter: str | None = None) -> list[Problem]:
    """Every problem with the recipients, the letter and the templates, without writing anything."""
    return _validate(ws, letter)[0]


def _validate(ws: Workspace, letter: str | None = None,
              on_html: Callable[[Recipient, Merged], None] | None = None) -> tuple[list[Problem], Campaign | None]:
    """The problems, and the campaign when it could be read. on_html sees each merged letter."""
    problems: list[Problem] = []
    versions = table = None
    try:
        versions = _read_versions(ws, letter)
    except DispatchError as exc:
        problems.extend(exc.problems)
    else:
        problems.extend(_wording_problems(versions))
    try:
        table = read_recipients(ws.recipients_file, name=ws.relative(ws.recipients_file))
    except DispatchError as exc:
        problems.extend(exc.problems)
    if table is not None:
        problems.extend(check_recipients(table, default_language=ws.settings.language))
        problems.extend(_address_warnings(table))
    if versions is None or table is None:
        return _settings_problems(ws) + problems, None
    found = Campaign(ws, versions, table)
    problems.extend(_fallback_warnings(found))
    if any(p.severity == "error" for p in problems):
        on_html = None  # the campaign will not be rendered: its letters are merged only to find more problems
    problems.extend(_merge_problems(found, on_html))
    # Checked last, reported first: the PDF variants come from WeasyPrint, which preview's renderer
    # process imports meanwhile.
    return _settings_problems(ws) + problems, found


# Where the PDF variants WeasyPrint can write come from: pdf.pdf_variants imports WeasyPrint here;
# preview asks its renderer process instead (workers.RendererProcess).
_pdf_variants: ContextVar[Callable[[], tuple[str, ...]]] = ContextVar("pdf_variants", default=pdf_variants)


def _settings_problems(ws: Workspace) -> list[Problem]:
    variant = ws.settings.pdf_variant
    if variant and not is_pdf_variant(variant, variants := _pdf_variants.get()):
        return [Problem(f"unknown PDF variant {variant!r}", file="dispatch.toml",
                        line=ws.settings.line("campaign", "pdf_variant"), column="pdf_variant",
                        hint=f"use one of {', '.join(variants())}, or \"\" for a plain PDF")]
    return []


def _wording_problems(versions: LetterVersions) -> list[Problem]:
    """A version in a language dispatch has no words for must bring its own salutation and page label."""
    problems = []
    for version in versions.all():
        missing = [key for key in ("salutation", "page_label") if not getattr(version, key)]
        if i18n.has_wording(version.language) or not missing:
            continue
        problems.append(Problem(
            f"dispatch does not know how to say {' and '.join(missing)} in "
            f"{i18n.language_name(version.language)} ({version.language!r})",
            file=f"letters/{version.path.name}", line=1,
            hint="add them to the front matter, e.g. salutation: \"Exzellenz,\" and "
                 "page_label: \"Seite {page} von {pages}\""))
    return problems


def _fallback_warnings(campaign: Campaign) -> list[Problem]:
    """Recipients whose language has no version of the letter: they get the letter as written."""
    missing: dict[str, list[Recipient]] = defaultdict(list)
    for recipient in campaign.recipients.rows:
        language = campaign.language_of(recipient)
        if not campaign.versions.has(language):
            missing[language].append(recipient)
    letter = campaign.letter
    problems = []
    for language, rows in sorted(missing.items()):
        ids = ", ".join(r.id for r in rows[:12]) + (", ..." if len(rows) > 12 else "")
        problems.append(Problem(
            f"{len(rows)} recipient(s) in {i18n.language_name(language)} ({language!r}) get the "
            f"{i18n.language_name(letter.language)} letter: {ids}",
            file=campaign.recipients.file, line=rows[0].line, column="language", severity="warning",
            hint=f"add letters/{letter.name}.{language}.md to send them a translation"))
    return problems


def _address_warnings(table: RecipientTable) -> list[Problem]:
    missing = [r for r in table.rows if r.wants_print and not r.get("address").strip()]
    if not missing:
        return []
    ids = ", ".join(r.id for r in missing[:12]) + (", ..." if len(missing) > 12 else "")
    return [Problem(f"{len(missing)} recipient(s) to be printed have no postal address: {ids}",
                    file=table.file, line=missing[0].line, column="address", severity="warning",
                    hint="letters are still rendered; envelopes and labels need an address")]


# The recipients whose letters validation merges and checks for glyphs, when not all of them: preview
# sets it to the one recipient it shows (merging every other letter tells nothing about that one).
_merged_only: ContextVar[frozenset[str] | None] = ContextVar("merged_only", default=None)


def _merge_problems(campaign: Campaign, on_html: Callable[[Recipient, Merged], None] | None = None) -> list[Problem]:
    """Merge every row (HTML only) so a name a row does not define is found before rendering."""
    try:
        merger = campaign.merger()
    except DispatchError as exc:
        return list(exc.problems)
    seen: dict[tuple, list[Recipient]] = defaultdict(list)
    first: dict[tuple, TemplateError] = {}
    coverage = FontCoverage(campaign.workspace.templates / "fonts")
    clean: set[str] = set()  # groups whose shared part every font check passed
    problems = []
    only = _merged_only.get()
    for recipient in campaign.recipients.rows:
        if only is not None and recipient.id not in only:
            continue
        try:
            merged = merger.merged(recipient)
        except TemplateError as exc:
            key = (exc.problem.file, exc.problem.line, exc.problem.message.split(" (recipient")[0])
            seen[key].append(recipient)
            first.setdefault(key, exc)
            continue
        parts = merged.parts()
        if parts.names and parts.group in clean:  # the shared part was checked: check what is the recipient's
            missing = coverage.missing(html_text("".join(parts.head + parts.contents)))
        else:
            missing = coverage.missing(html_text(merged.html))
            if not missing:
                clean.add(parts.group)
        if missing:
            problems.append(_glyph_problem(campaign, recipient, missing))
        elif on_html is not None:
            on_html(recipient, merged)
    for key, rows in seen.items():
        exc = first[key]
        message = key[2]
        if len(rows) > 1:
            message += f" (for {len(rows)} recipients, first {rows[0].id!r} on line {rows[0].line} of recipients.csv)"
        else:
            message = exc.problem.message
        problems.append(Problem(message, file=exc.problem.file, line=exc.problem.line, hint=exc.problem.hint))
    return problems


def _glyph_problem(campaign: Campaign, recipient: Recipient, missing: list[str]) -> Problem:
    hint = "add a font that has it to templates/fonts/ (and to letter.css), or write the text without it"
    for column, value in recipient.fields.items():
        found = [c for c in missing if c in value]
        if found:
            return Problem(f"no font in templates/fonts/ can draw {describe(found)}", file=campaign.recipients.file,
                           line=recipient.line, column=column, hint=hint)
    return Problem(f"no font in templates/fonts/ can draw {describe(missing)} (recipient {recipient.id!r})",
                   file=f"letters/{campaign.letter.path.name}", hint=hint)


def check(ws: Workspace, letter: str | None = None,
          on_html: Callable[[Recipient, Merged], None] | None = None) -> tuple[Campaign, list[Problem]]:
    """Validate, refuse on any error, and return the campaign with the remaining warnings."""
    problems, found = _validate(ws, letter, on_html)
    if found is None or any(p.severity == "error" for p in problems):
        raise ValidationFailed(problems)
    return found, problems


def resolve_pdf_variant(ws: Workspace, pdf_variant: str | None = None) -> str | None:
    """The PDF variant to write: the one asked for, else [campaign] pdf_variant; None for a plain PDF."""
    if pdf_variant is None:  # an unknown one in dispatch.toml is reported by validation
        return ws.settings.pdf_variant or None
    return None if pdf_variant in ("", "none") else check_pdf_variant(pdf_variant)


def render_digest(ws: Workspace, pdf_variant: str | None, *, signed: bool = False) -> str:
    """What every letter's content key shares (see freshness.letter_key): templates/, the engine and dispatch
    versions, and the kind of PDF written (its variant, signed or not). render and send both key letters
    with it. A signed PDF differs at each signing; its key does not, so it stays up to date."""
    return templates_digest(ws.templates, engine_version(), f"dispatch {__version__}",
                            f"pdf_variant {pdf_variant or 'plain'}", f"signed {signed}")


def open_journal(ws: Workspace) -> Journal:
    return Journal(ws.journal_file, shown=ws.relative(ws.journal_file))


def render(ws: Workspace, *, letter: str | None = None, only: list[str] | None = None, fmt: str = "pdf",
           jobs: int | None = None, force: bool = False, renderer: PdfRenderer | None = None,
           journal: Journal | None = None, pdf_variant: str | None = None, signer: Signer | None = None,
           layers: bool = True, explanation: Explanation | None = None,
           on_start: Callable[[int, int], None] | None = None,
           on_progress: Callable[[RenderedLetter], None] | None = None) -> RenderSummary:
    """Validate, then write out/<letter>/<id>.pdf (or .html) for each chosen recipient, atomically.

    PDFs are rendered only when new or changed since they were last rendered (see freshness.py), or
    all of them with force; by `jobs` worker processes (default: one per CPU), or in this process by
    the renderer given. Letters that differ only inside their variable regions are rendered layered
    (one master per group, regions laid over it; see layers.py) unless layers is False; explanation,
    if given, is filled with the groups and the letters rendered whole and why. on_start is told how
    many letters will be rendered and how many are up to date; on_progress sees each rendered letter.
    The first letter that cannot be rendered stops the run: it is in summary.failed, and the letters
    finished before it are kept and recorded.

    pdf_variant (default: [campaign] pdf_variant) makes archival PDFs, e.g. "pdf/a-3u"; "none" makes plain
    ones. A renderer given brings its own variant. With a signer, each PDF is signed once rendered (in
    this process, where the key is), and the journal keeps the signed file's hash.
    """
    if fmt not in FORMATS:
        raise DispatchError(f"unknown format {fmt!r}", hint="use --format pdf or --format html")
    if fmt == "html":
        stop_server()  # one started early for this command is not needed
        return _render_html(ws, letter, only, on_start, on_progress)
    variant = renderer.pdf_variant if renderer is not None else resolve_pdf_variant(ws, pdf_variant)
    digest = render_digest(ws, variant, signed=signer is not None)
    keys: dict[str, str] = {}
    parts: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]] = {}  # id -> group, region contents, head
    shared: dict[str, Parts] = {}  # group -> the parts of its first letter
    out = _output_dir(ws, letter)
    mergers: list[VersionMerger] = []  # the campaign's, once it is checked (whole letters are merged again)

    def remember(recipient: Recipient, merged: Merged) -> None:
        keys[recipient.id] = letter_key(digest, merged.html)
        if layers:
            split = merged.parts()
            group = split.group if split.names else None
            if group is not None and group not in shared:
                shared[group] = split
            parts[recipient.id] = (group, split.contents, split.head)
        if stream.eager:  # every letter is rendered: it starts while the others are checked
            stream.add(Order(recipient.id, out / f"{recipient.id}.pdf",
                             functools.partial(_merged_again, mergers, recipient), *parts.get(recipient.id, ())))

    with contextlib.ExitStack() as stack:
        if out is not None:  # last, once the workers have stopped: what they wrote and nobody put in place
            stack.callback(_tidy, out, [d for d in (ws.output, out) if not d.exists()])
        whole = not layers or supports(variant) is not None  # every letter rendered whole, by new interpreters
        pool = stack.enter_context(PdfPool(ws.templates, 1 if renderer else jobs, renderer=renderer,
                                           pdf_variant=variant, fork_server=not whole))
        if pool.jobs > 1 and (force or _cold(ws, letter)):
            pool.start()  # every letter will be rendered: the workers import WeasyPrint while letters are checked
        if whole or not pool.started:
            stop_server()  # one started early for this command (cli.run) is not needed, or not yet
        stream = LetterStream(pool, shared, layered=layers, pdf_variant=variant, explanation=explanation,
                              eager=only is None and out is not None)
        try:
            campaign, warnings = check(ws, letter, remember)
        except BaseException:
            stream.cancel()
            raise
        mergers.append(campaign.merger())
        if journal is None:
            journal = stack.enter_context(open_journal(ws))
        return _render_planned(ws, campaign, warnings, stream, journal, keys, parts, mergers[0], only=only,
                               force=force, signer=signer, on_start=on_start, on_progress=on_progress)


def _output_dir(ws: Workspace, letter: str | None) -> Path | None:
    """out/<letter>/, or None for a letter that does not exist (validation says so)."""
    try:
        return ws.output_dir(ws.letter_name(letter))
    except DispatchError:
        return None


def _merged_again(mergers: list[VersionMerger], recipient: Recipient) -> str:
    return mergers[0].html(recipient)


def _tidy(out: Path, created: list[Path]) -> None:
    """Remove the PDFs that workers wrote and that were not put in place (an interrupted or refused run),
    and the folders this run created if they stayed empty."""
    remove_stale_temporaries(out)
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _cold(ws: Workspace, letter: str | None) -> bool:
    """Whether no letter has been rendered yet (out/<letter>/ holds no PDF)."""
    folder = _output_dir(ws, letter)
    return folder is not None and (not folder.is_dir() or next(folder.glob("*.pdf"), None) is None)


def _render_planned(ws: Workspace, campaign: Campaign, warnings: list[Problem], stream: LetterStream,
                    journal: Journal, keys: dict[str, str], parts: dict, merger: VersionMerger, *,
                    only: list[str] | None, force: bool, signer: Signer | None,
                    on_start: Callable[[int, int], None] | None,
                    on_progress: Callable[[RenderedLetter], None] | None) -> RenderSummary:
    """Render the letters that need it (see render), recording each in the journal.

    The stream may have started already (eager: every letter is rendered); else the letters that need
    it are added to it now."""
    chosen = campaign.recipients.select(only)
    summary = RenderSummary(campaign.letter_name, campaign.output_dir, warnings=warnings)
    out = campaign.output_dir
    remove_stale_temporaries(out)
    previous = journal.latest(campaign.letter_name, ["rendered"])
    plan = {}
    for recipient in chosen:
        target = out / f"{recipient.id}.pdf"
        event = previous.get(recipient.id)
        reason = reason_to_render(keys[recipient.id], target, event.data if event else None, force=force)
        if reason is None and stream.eager:  # rendered already, while the campaign was checked (not expected:
            reason = "forced"                # eager means no letter was rendered before, or --force)
        if reason is None:
            summary.up_to_date += 1
        else:
            plan[recipient.id] = (recipient, target, reason)
    if on_start:
        on_start(len(plan), summary.up_to_date)
    if not plan:
        return summary
    if not stream.eager:
        for rid, (recipient, target, _) in plan.items():
            stream.add(Order(rid, target, functools.partial(merger.html, recipient), *parts.get(rid, (None, (), ()))))
    for finished in stream.finish():
        records, results, stop = [], [], False
        for done in finished:  # the letters of one job: put in place, then recorded in one transaction
            recipient, target, reason = plan[done.name]
            problem, signed = done.problem, {}
            if problem is None:
                try:
                    commit(done.staged, done.target)
                    if signer is not None:
                        done = _sign(signer, campaign.version_for(recipient), done)
                        signed = {"signed_by": signer.name}
                except DispatchError as exc:
                    problem = exc.problem
            if problem is not None:  # what stops one letter (a full disk, a bad template) stops them all
                summary.failed.append(problem)
                stop = True
                break
            records.append((campaign.letter_name, recipient.id, "rendered", dict(
                sha256=done.sha256, size=done.size, pages=done.pages, reason=reason, key=keys[recipient.id],
                file=ws.relative(target), **signed)))
            results.append(RenderedLetter(recipient.id, target, reason, done.pages, done.size, done.sha256))
        journal.record_many(records)
        for result in results:
            summary.rendered.append(result)
            if on_progress:
                on_progress(result)
        if stop:
            break
    return summary


def _sign(signer: Signer, version: Letter, done: Done) -> Done:
    """Sign a rendered PDF in place (a new signing time each time); the Done then describes the signed file."""
    data = signer.sign(done.target.read_bytes(), reason=version.subject, location=version.place or None)
    write_atomic(done.target, data)
    return dataclasses.replace(done, size=len(data), sha256=sha256(data))


def _render_html(ws: Workspace, letter: str | None, only: list[str] | None,
                 on_start: Callable[[int, int], None] | None,
                 on_progress: Callable[[RenderedLetter], None] | None) -> RenderSummary:
    """Write the merged HTML of each letter, with a <base> so it opens (and renders) from out/."""
    campaign, warnings = check(ws, letter)
    chosen = campaign.recipients.select(only)
    summary = RenderSummary(campaign.letter_name, campaign.output_dir, warnings=warnings)
    merger = campaign.merger()
    if on_start:
        on_start(len(chosen), 0)
    for recipient in chosen:
        target = campaign.output_dir / f"{recipient.id}.html"
        reason = "changed" if target.exists() else "new"
        data = with_base(merger.html(recipient), ws.templates).encode("utf-8")
        write_atomic(target, data)
        result = RenderedLetter(recipient.id, target, reason, 0, len(data), hashlib.sha256(data).hexdigest())
        summary.rendered.append(result)
        if on_progress:
            on_progress(result)
    return summary


def _raise_failures(summary: RenderSummary) -> None:
    """For commands that need every letter: stop on the letters that could not be rendered."""
    if summary.failed:
        raise ValidationFailed(summary.failed)


@dataclass(frozen=True)
class Preview:
    pdf: Path
    pages: list[Path]


def preview(ws: Workspace, recipient_id: str, *, letter: str | None = None,
            renderer: PdfRenderer | None = None, dpi: int = 110) -> Preview:
    """Render one recipient's letter and a PNG of each of its pages.

    Refuses what render refuses, except that only this recipient's letter is merged and checked for
    characters the fonts lack (the other letters are merged when they are rendered). A RendererProcess
    as renderer (started by the caller before it imported this module) renders it, and tells the PDF
    variants the settings are checked against, so that WeasyPrint is not imported in this process.
    """
    variants = pdf_variants
    if isinstance(renderer, RendererProcess):
        if renderer.pdf_variant == resolve_pdf_variant(ws):
            variants = renderer.pdf_variants
        else:  # started for other settings: render here, the PDF that render would write
            renderer = None
    scope = _merged_only.set(frozenset([recipient_id]))
    source = _pdf_variants.set(variants)
    try:
        summary = render(ws, letter=letter, only=[recipient_id], renderer=renderer, jobs=1)
    finally:
        _pdf_variants.reset(source)
        _merged_only.reset(scope)
    _raise_failures(summary)
    import pypdfium2  # after the PDF is written: the images come second

    result = summary.output_dir / f"{recipient_id}.pdf"
    folder = summary.output_dir / "preview"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    document = pypdfium2.PdfDocument(str(result))
    try:
        for number, page in enumerate(document, start=1):
            image = page.render(scale=dpi / 72).to_pil()
            target = folder / f"{recipient_id}-page{number}.png"
            tmp = target.with_name(f".{target.name}.tmp")
            image.save(tmp, format="PNG")
            tmp.replace(target)
            images.append(target)
    finally:
        document.close()
    return Preview(result, images)


@dataclass(frozen=True)
class WatchEvent:
    """One round of `preview --watch`: what changed, and the new preview or the error it caused."""

    changed: tuple[str, ...]
    seconds: float
    preview: Preview | None = None
    error: DispatchError | None = None


def watch_preview(root: Path, recipient_id: str, *, letter: str | None = None,
                  on_event: Callable[[WatchEvent], None], stop_event=None) -> None:
    """Preview one letter, then again each time the letter, a template, the settings or the CSV changes.

    Runs until stop_event is set (or Ctrl-C). An error in an edited file is reported and watching goes on.
    """
    import time

    import watchfiles

    def once(changed: tuple[str, ...]) -> None:
        started = time.monotonic()
        try:
            ws = open_workspace(root)
            result = preview(ws, recipient_id, letter=letter)
            on_event(WatchEvent(changed, time.monotonic() - started, preview=result))
        except DispatchError as exc:
            on_event(WatchEvent(changed, time.monotonic() - started, error=exc))

    once(())
    ws = open_workspace(root)
    watched = [p for p in (ws.letters, ws.templates, ws.root / "dispatch.toml", ws.recipients_file) if p.exists()]
    for changes in watchfiles.watch(*watched, stop_event=stop_event, debounce=150, step=50,
                                    raise_interrupt=False):
        names = tuple(sorted({ws.relative(Path(path)) for _, path in changes if not Path(path).name.startswith(".")}))
        if names:
            once(names)


def init(destination: Path) -> list[Path]:
    """Create a new, working campaign folder from the skeleton shipped with dispatch."""
    destination = destination.expanduser()
    if destination.exists() and any(destination.iterdir()):
        raise WorkspaceError(f"{destination} already exists and is not empty",
                             hint="choose a new folder name; dispatch init never overwrites files")
    skeleton = resources.files("dispatch") / "skeleton"
    created: list[Path] = []
    with resources.as_file(skeleton) as source:
        staging = destination.with_name(f".{destination.name}.init-tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if destination.exists():
            destination.rmdir()
        staging.rename(destination)
    for path in sorted(destination.rglob("*")):
        if path.is_file():
            created.append(path)
    return created


# --- the print run -----------------------------------------------------------------------------------------

@dataclass
class PrintSummary:
    letter: str
    folder: Path
    options: printing.PrintOptions
    bundle: printing.PrintBundle
    files: list[Path] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def print_run(ws: Workspace, *, letter: str | None = None, only: list[str] | None = None,
              order: str | None = None, duplex: bool | None = None, envelope: str | None = None,
              allow_missing_address: bool = False, renderer: PdfRenderer | None = None,
              journal: Journal | None = None, on_start: Callable[[int], None] | None = None,
              on_progress: Callable[[RenderedLetter], None] | None = None) -> PrintSummary:
    """Render the letters to be printed, then write out/<letter>/print/: letters, envelopes, labels, manifest.

    Everything is checked first (settings, recipients, addresses, the window when [print] window = true) and
    the files are made in memory, so a refused run writes nothing into print/.
    """
    from . import printing

    options = printing.print_options(ws.settings.section("print"), envelope=envelope, order=order, duplex=duplex)
    loaded, warnings = check(ws, letter)
    chosen = _print_recipients(loaded.recipients, only)
    missing = printing.missing_addresses(chosen, loaded.recipients.file)
    if missing and not allow_missing_address:
        missing[-1] = Problem(missing[-1].message, file=missing[-1].file, line=missing[-1].line, column="address",
                              hint=f"{len(missing)} recipient(s) to be printed have no postal address: add them to "
                                   f"{loaded.recipients.file}, or run dispatch print --allow-missing-address to print "
                                   "their letters without envelopes or labels")
        raise ValidationFailed(missing)
    ordered = printing.order_recipients(chosen, options.order)
    renderer = renderer or PdfRenderer(ws.templates)
    rendered = render(ws, letter=letter, only=[r.id for r in ordered], renderer=renderer, journal=journal,
                      on_start=on_start, on_progress=on_progress)
    _raise_failures(rendered)
    items = [printing.PrintItem(number, r, rendered.output_dir / f"{r.id}.pdf") for number, r in enumerate(ordered, start=1)]
    if options.window:
        _check_windows(items, options.envelope, loaded.recipients.file)
    bundle = printing.build(items, options, layouts=Layouts(ws.templates), renderer=renderer,
                            sender=ws.settings.section("sender"), title=loaded.letter.title or loaded.letter_name,
                            today=dt.date.today().isoformat())
    folder = loaded.output_dir / "print"
    summary = PrintSummary(loaded.letter_name, folder, options, bundle, warnings=warnings)
    for stale in ("envelopes.pdf", "labels.pdf"):
        if stale not in bundle.files:
            (folder / stale).unlink(missing_ok=True)  # no one has an address: an old file would mislead
    for name, data in bundle.files.items():
        write_atomic(folder / name, data)
        summary.files.append(folder / name)
    return summary


def _print_recipients(table: RecipientTable, only: list[str] | None) -> list[Recipient]:
    chosen = table.select(only)
    if only:
        for r in chosen:
            if not r.wants_print:
                raise PrintError(f"{r.state} ({r.id}) is not to be printed: its channel is {r.channel!r}",
                                 file=table.file, line=r.line, column="channel",
                                 hint="set the channel to 'print' or 'both' to print this letter")
        return chosen
    chosen = [r for r in chosen if r.wants_print]
    if not chosen:
        raise PrintError("no recipient is to be printed", file=table.file, column="channel",
                         hint="set the channel of the recipients to print to 'print' or 'both'")
    return chosen


def _check_windows(items: list[printing.PrintItem], envelope: printing.Envelope, file: str) -> None:
    from . import printing

    problems = []
    for item in items:
        reason = printing.window_problem(printing.address_boxes(item.letter_pdf, item.lines), envelope)
        if reason:
            problems.append(Problem(f"{item.recipient.state} ({item.recipient.id}): {reason}", file=file,
                                    line=item.recipient.line, column="address",
                                    hint="shorten the address, choose another envelope (--envelope), or set "
                                         "[print] window = false and use the printed envelopes"))
    if problems:
        raise ValidationFailed(problems)


# --- hand delivery -----------------------------------------------------------------------------------------

_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?$")


def parse_delivery_time(text: str | None, *, now: dt.datetime | None = None) -> dt.datetime:
    """ISO 8601 date and time ('2026-11-28T14:30' or '2026-11-28 14:30'), local unless it has an offset."""
    now = now or dt.datetime.now().astimezone()
    if text is None:
        return now.replace(microsecond=0)
    hint = "write the date and time as 2026-11-28T14:30 or \"2026-11-28 14:30\" (local time)"
    if not _LOCAL_TIME.match(text.strip()):
        raise DispatchError(f"--at: {text!r} is not a date and time", hint=hint)
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise DispatchError(f"--at: {text!r} is not a valid date and time ({exc})", hint=hint) from None
    moment = moment.astimezone() if moment.tzinfo is None else moment
    if moment > now + dt.timedelta(minutes=5):
        raise DispatchError(f"--at: {text!r} is in the future", hint="give the time the letter was handed over")
    return moment


@dataclass(frozen=True)
class Delivery:
    recipient: Recipient
    event: Event


def deliveries(journal: Journal, letter: str) -> dict[str, Event]:
    """The standing 'delivered' event of each recipient (a withdrawn mark does not stand)."""
    latest = journal.latest(letter, DELIVERY_KINDS)
    return {rid: event for rid, event in latest.items() if event.kind == "delivered"}


def mark_delivered(ws: Workspace, ids: list[str], *, letter: str | None = None, by: str | None = None,
                   at: str | None = None, note: str | None = None, undo: bool = False,
                   journal: Journal | None = None) -> list[Delivery]:
    """Record (or, with undo, withdraw) the hand delivery of each recipient; all of them or none."""
    loaded = load(ws, letter)
    chosen = loaded.recipients.select(ids)
    moment = None if undo else parse_delivery_time(at)
    own = journal is None
    journal = journal or open_journal(ws)
    try:
        standing = deliveries(journal, loaded.letter_name)
        for r in chosen:
            if undo and r.id not in standing:
                raise DispatchError(f"{r.state} ({r.id}) is not marked delivered", file=ws.relative(journal.path),
                                    hint="nothing to withdraw; see dispatch status")
            if not undo and r.id in standing:
                when = standing[r.id].data.get("delivered_at", standing[r.id].at)
                raise DispatchError(f"{r.state} ({r.id}) is already marked delivered ({when})",
                                    file=ws.relative(journal.path),
                                    hint=f"to correct it, withdraw the mark first: dispatch mark {r.id} --delivered --undo")
        data: dict = {}
        if undo:
            kind = "delivery-withdrawn"
        else:
            kind = "delivered"
            data["delivered_at"] = moment.isoformat(timespec="minutes")
            if by:
                data["by"] = by
        if note:
            data["note"] = note
        journal.record_many([(loaded.letter_name, r.id, kind, data) for r in chosen])
        recorded = journal.latest(loaded.letter_name, DELIVERY_KINDS)
        return [Delivery(r, recorded[r.id]) for r in chosen]
    finally:
        if own:
            journal.close()


@dataclass(frozen=True)
class ProofResult:
    sheet: Path
    report: Path
    letters: int
    sheet_pages: int


def proof(ws: Workspace, *, letter: str | None = None, renderer: PdfRenderer | None = None,
          on_progress: Callable[[str], None] | None = None) -> ProofResult:
    """Render what is not current, then write out/<letter>/proof.pdf (page 1 of every letter, 12 to a
    page) and out/<letter>/proof.txt (the fields merged into each letter and the lines that differ)."""
    from .proof import ProofItem, report_text, sheet_html, text_lines, thumbnail_png

    renderer = renderer or PdfRenderer(ws.templates)
    _raise_failures(render(ws, letter=letter, renderer=renderer))
    current = load(ws, letter)
    merger = current.merger()
    fields = merger.used_fields()
    items, thumbnails = [], []
    for recipient in current.recipients.rows:
        pdf = current.output_dir / f"{recipient.id}.pdf"
        png, pages = thumbnail_png(pdf)
        thumbnails.append(png)
        items.append(ProofItem(recipient.id, recipient.state, pdf, pages, text_lines(merger.html(recipient)),
                               tuple((name, recipient.get(name)) for name in fields)))
        if on_progress:
            on_progress(recipient.id)
    sheet = renderer.render(sheet_html(current.letter_name, items, thumbnails, ws.settings.page_size))
    sheet_path = current.output_dir / "proof.pdf"
    report_path = current.output_dir / "proof.txt"
    write_atomic(sheet_path, sheet.data)
    write_atomic(report_path, report_text(current.letter_name, items).encode("utf-8"))
    return ProofResult(sheet_path, report_path, len(items), sheet.pages)


# --- sending ------------------------------------------------------------------------------------

@dataclass
class SendPlan:
    """What one dispatch send will do: the messages, built, and the recipients left out, with why."""

    campaign: Campaign
    choice: Choice
    items: list[Item]
    warnings: list[Problem] = field(default_factory=list)
    rendered: int = 0  # letters rendered first because they were missing or out of date

    @property
    def letter_name(self) -> str:
        return self.campaign.letter_name

    def summary(self) -> SendSummary:
        from .sending import SendSummary

        c = self.choice
        return SendSummary(self.letter_name, already_sent=list(c.already_sent), failed_earlier=list(c.failed_earlier),
                           uncertain_earlier=list(c.uncertain), later=list(c.later))


class SendRun:
    """One dispatch send: holds the campaign's run lock and its journal from planning to the last message."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
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
        """Validate, choose who gets a message, render missing or out-of-date letters, build every message."""
        from .compose import CoverNotes
        from .mailer import Draft, addresses, build_message, sender_address
        from .sending import Item, choose, settle_interrupted

        ws = self.ws
        campaign, warnings = check(ws, letter)
        warnings = [w for w in warnings if w.column != "address"]  # postal addresses do not matter here
        table = campaign.recipients
        chosen = table.select(only)
        resend = list(resend or [])
        named = (table.select(resend) if resend else []) + (chosen if only else [])
        for recipient in named:
            if not recipient.wants_email:
                raise SendError(f"recipient {recipient.id!r} has channel {recipient.channel!r}, so no email goes to it",
                                file=table.file, line=recipient.line, column="channel",
                                hint="set the channel to 'email' or 'both' to send this letter by email")
        chosen += [r for r in named if r not in chosen]
        chosen = [r for r in chosen if r.wants_email]
        states = self.journal.email_states(campaign.letter_name)
        if not dry_run:
            states = settle_interrupted(self.journal, campaign.letter_name, states)
        choice = choose(chosen, states, resend=resend, resend_uncertain=resend_uncertain, limit=limit)
        settings = ws.settings
        from_address = sender_address(settings.section("smtp"), settings.get("sender", "email"))
        if not from_address:
            if not dry_run:
                raise SendError("no sender address", file="dispatch.toml",
                                hint="set sender under [smtp] (or email under [sender], or DISPATCH_SENDER)")
            from_address = PLACEHOLDER_SENDER
            warnings = warnings + [Problem(f"no sender address is set; the messages say From: {PLACEHOLDER_SENDER}",
                                           file="dispatch.toml", severity="warning",
                                           hint="set sender under [smtp] before sending")]
        extra = {key: _settings_addresses(settings, section, key)
                 for section, key in (("email", "cc"), ("email", "bcc"), ("sender", "reply_to"))}
        merger = campaign.merger()
        recipients = [r for r, _ in choice.to_send]
        pdfs, stale = self._current_pdfs(campaign, merger, recipients)
        if stale:
            render(ws, letter=campaign.letter_name, only=[r.id for r in stale], renderer=renderer,
                   journal=self.journal, on_progress=on_render)
            for recipient in stale:
                pdfs[recipient.id] = (campaign.output_dir / f"{recipient.id}.pdf").read_bytes()
        notes = CoverNotes(ws.templates, attachment=settings.get("email", "attachment"),
                           filters={"date": lambda value, language="en": i18n.format_letter_date(value, language)})
        items = []
        for recipient, reason in choice.to_send:
            note = notes.render(merger.variables(recipient), recipient.id)
            data = pdfs[recipient.id]
            draft = Draft(recipient_id=recipient.id, from_name=settings.get("sender", "name"), from_address=from_address,
                          to=recipient.get("email"), subject=note.subject, text=note.text, html=note.html,
                          attachment=data, attachment_name=note.attachment_name, reply_to=extra["reply_to"],
                          cc=extra["cc"] + addresses([recipient.get("cc")]),
                          bcc=extra["bcc"] + addresses([recipient.get("bcc")]))
            items.append(Item(recipient.id, build_message(draft), sha256(data), reason, recipient.get("email")))
        return SendPlan(campaign, choice, items, warnings, rendered=len(stale))

    def _current_pdfs(self, campaign: Campaign, merger: VersionMerger,
                      recipients: list[Recipient]) -> tuple[dict[str, bytes], list[Recipient]]:
        """The PDFs on disk that are up to date (same content key as their latest render, same bytes),
        and the recipients whose letter must be rendered first."""
        ws = campaign.workspace
        variant = resolve_pdf_variant(ws)
        digests = {signed: render_digest(ws, variant, signed=signed) for signed in (False, True)}
        rendered = self.journal.latest(campaign.letter_name, ["rendered"])
        pdfs: dict[str, bytes] = {}
        stale: list[Recipient] = []
        for recipient in recipients:
            path = campaign.output_dir / f"{recipient.id}.pdf"
            event = rendered.get(recipient.id)
            # A letter signed when rendered is as current as an unsigned one: sending does not sign.
            signed = bool(event and event.data.get("signed_by"))
            key = letter_key(digests[signed], merger.html(recipient))
            if reason_to_render(key, path, event.data if event else None) is not None:
                stale.append(recipient)
            else:
                pdfs[recipient.id] = path.read_bytes()
        return pdfs, stale

    def write_outbox(self, plan: SendPlan) -> list[Path]:
        """--dry-run: each message as out/<letter>/outbox/<id>.eml; the outbox holds only this run's messages."""
        folder = plan.campaign.output_dir / "outbox"
        keep = {f"{item.recipient_id}.eml" for item in plan.items}
        if folder.is_dir():
            for old in folder.glob("*.eml"):
                if old.name not in keep:
                    old.unlink()
        written = []
        for item in plan.items:
            target = folder / f"{item.recipient_id}.eml"
            write_atomic(target, item.outgoing.as_file())
            written.append(target)
        return written

    def send(self, plan: SendPlan, settings: SmtpSettings, password: str | None,
             on_progress: Callable[[Item, Outcome], None] | None = None) -> SendSummary:
        from .mailer import Mailer
        from .sending import execute

        return execute(plan.items, letter=plan.letter_name, journal=self.journal, mailer=Mailer(settings, password),
                       settings=settings, summary=plan.summary(), on_progress=on_progress)


PLACEHOLDER_SENDER = "sender-not-set@example.org"


def _settings_addresses(settings, section: str, key: str) -> tuple[str, ...]:
    from .mailer import addresses, check_address

    found = addresses([settings.get(section, key)])
    for address in found:
        try:
            check_address(address, f"[{section}] {key}")
        except SendError as exc:
            raise SendError(exc.problem.message, file="dispatch.toml", column=f"[{section}] {key}",
                            hint="correct the address; separate several with ';'") from None
    return found


def smtp_settings(ws: Workspace) -> SmtpSettings:
    """The SMTP settings of the campaign with the environment's overrides; SendError if unusable."""
    from .mailer import smtp_settings as mailer_settings

    return mailer_settings(ws.settings.section("smtp"), ws.settings.get("sender", "email"))


def smtp_password(settings: SmtpSettings) -> str | None:
    from .mailer import stored_password

    return stored_password(settings)


def status(ws: Workspace, *, letter: str | None = None, only: list[str] | None = None,
           journal: Journal | None = None) -> tuple[str, list[StatusRow]]:
    """One row per recipient, in file order: its PDF, its email and its hand delivery, from the journal."""
    loaded = load(ws, letter)
    name = loaded.letter_name
    chosen = loaded.recipients.select(only)
    own = journal is None
    journal = journal or open_journal(ws)
    try:
        states = journal.email_states(name)
        standing = deliveries(journal, name)
    finally:
        if own:
            journal.close()
    rows = []
    for recipient in chosen:
        path = loaded.output_dir / f"{recipient.id}.pdf"
        current = sha256(path.read_bytes()) if path.is_file() else ""
        state = states.get(recipient.id)
        latest = state.latest if state else None
        data = latest.data if latest else {}
        flag = ""
        if state and state.sent is not None and current != state.sent.data.get("sha256"):
            flag = "PDF changed after it was sent" if current else "PDF deleted after it was sent"
        handed = standing.get(recipient.id)
        rows.append(StatusRow(
            id=recipient.id, state=recipient.state, channel=recipient.channel,
            pdf=current[:12] if current else "missing",
            email=(state.status if state else "pending") if recipient.wants_email else "",
            time=latest.at if latest else "", message_id=data.get("message_id", ""),
            reply=data.get("reply") or data.get("reason", ""),
            delivery=(f"delivered {delivery_text(handed.data, handed.at)}" if handed
                      else "not yet" if recipient.wants_print else ""),
            flag=flag))
    return name, rows


def write_report(ws: Workspace, *, letter: str | None = None, journal: Journal | None = None) -> Path:
    """Write out/<letter>/report.html (and page-1 thumbnails beside it) from the journal and the PDFs."""
    import datetime as _dt

    from .proof import thumbnail_png
    from .report import report_html

    name, rows = status(ws, letter=letter, journal=journal)
    folder = ws.output_dir(name)
    thumbs_dir = folder / "report-files"
    thumbnails: dict[str, str] = {}
    rendered: dict[str, str] = {}
    for row in rows:
        pdf = folder / f"{row.id}.pdf"
        if not pdf.is_file():
            rendered[row.id] = "missing"
            continue
        rendered[row.id] = f"{row.pdf}"
        thumb = thumbs_dir / f"{row.id}-{row.pdf}.png"
        if not thumb.is_file():
            for old in thumbs_dir.glob(f"{row.id}-*.png"):
                old.unlink()
            write_atomic(thumb, thumbnail_png(pdf, width_px=180)[0])
        thumbnails[row.id] = f"report-files/{thumb.name}"
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    target = folder / "report.html"
    write_atomic(target, report_html(name, generated, rows, thumbnails, rendered).encode("utf-8"))
    return target
