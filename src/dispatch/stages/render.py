"""Rendering: one PDF per recipient, only those new or changed, put in place as the journal records them.

A RenderRun is opened before the campaign is checked: each letter the check merged is remembered (its
content key, its regions), and when every letter will be rendered it starts at once. finish() then
renders what needs it and records each letter (see freshness.py for "needs it").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dispatch import __version__
from dispatch.archive import keep
from dispatch.errors import DispatchError, Problem
from dispatch.files import commit, confined, remove_stale_temporaries, sha256, write_atomic
from dispatch.freshness import REASONS, letter_key, reason_to_render, templates_digest
from dispatch.inputs import Campaign
from dispatch.journal import Journal
from dispatch.merge.letter import Merged
from dispatch.merge.versions import VersionMerger
from dispatch.models import Letter, Recipient, RenderedLetter
from dispatch.pdf.batch import Explanation, LetterStream, Order
from dispatch.pdf.engine import Done, PdfRenderer, check_pdf_variant, engine_version
from dispatch.pdf.master import supports
from dispatch.pdf.pool import workers_for
from dispatch.pdf.signing import Signer
from dispatch.regions import Parts, place_in_source
from dispatch.workspace import Workspace


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


def output_dir(ws: Workspace, letter: str | None) -> Path | None:
    """out/<letter>/, or None for a letter that does not exist (validation says so)."""
    try:
        return ws.output_dir(ws.letter_name(letter))
    except DispatchError:
        return None


class RenderRun:
    """One render of a campaign's letters: opened before the campaign is checked, finished after.

    PDFs are rendered by `jobs` worker processes (default: one per CPU), or in this process by the
    renderer given (which brings its own PDF variant). Letters that differ only inside their variable
    regions are rendered layered (one master per group, regions laid over it; see pdf/master.py) unless
    layers is False; explanation, if given, is filled with the groups and the letters rendered whole and
    why. With a signer, each PDF is signed once rendered (in this process, where the key is).
    keep_html: keep each merged letter, so that a letter rendered whole is not merged a second time.
    """

    def __init__(self, ws: Workspace, *, letter: str | None = None, only: list[str] | None = None,
                 jobs: int | None = None, force: bool = False, renderer: PdfRenderer | None = None,
                 pdf_variant: str | None = None, signer: Signer | None = None, layers: bool = True,
                 explanation: Explanation | None = None, keep_html: bool = False) -> None:
        self.ws, self.only, self.force, self.signer, self.layers = ws, only, force, signer, layers
        self.variant = renderer.pdf_variant if renderer is not None else resolve_pdf_variant(ws, pdf_variant)
        self.digest = render_digest(ws, self.variant, signed=signer is not None)
        self.keys: dict[str, str] = {}
        self.parts: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]] = {}  # id -> group, regions, head
        self.shared: dict[str, Parts] = {}  # group -> the parts of its first letter
        self.html: dict[str, str] | None = {} if keep_html else None
        self.merger: VersionMerger | None = None  # the campaign's, once it is checked
        self.notes: dict[str, str] = {}  # id -> what the letter replaced in out/ had been through
        self.out = output_dir(ws, letter)
        if self.out is not None and (self.out.exists() or self.out.is_symlink()):
            confined(self.out, ws.output)  # workers write there: never through a link out of out/
        self._stack = contextlib.ExitStack()
        if self.out is not None:  # last, once the workers have stopped: what they wrote and nobody put in place
            self._stack.callback(_tidy, self.out, [d for d in (ws.output, self.out) if not d.exists()])
        whole = not layers or supports(self.variant) is not None  # every letter whole, by new interpreters
        plan = workers_for(jobs, whole=whole, every_letter=force or _cold(self.out), here=renderer is not None)
        pool = self._stack.enter_context(plan.pool(ws.templates, pdf_variant=self.variant, renderer=renderer))
        self.stream = LetterStream(pool, self.shared, layered=layers, pdf_variant=self.variant,
                                   explanation=explanation, eager=only is None and self.out is not None)

    def __enter__(self) -> "RenderRun":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            self.stream.cancel()
        self._stack.close()

    def remember(self, recipient: Recipient, merged: Merged) -> None:
        """What rendering needs of a merged letter (check's on_merged)."""
        self.keys[recipient.id] = letter_key(self.digest, merged.html)
        if self.html is not None:
            self.html[recipient.id] = merged.html
        if self.layers:
            split = merged.parts()
            group = split.group if split.names else None
            if group is not None and group not in self.shared:
                self.shared[group] = split
            self.parts[recipient.id] = (group, split.contents, split.head)
        if self.stream.eager:  # every letter is rendered: it starts while the others are checked
            self.stream.add(Order(recipient.id, self.out / f"{recipient.id}.pdf",
                                  functools.partial(self._html, recipient), *self.parts.get(recipient.id, ())))

    def _html(self, recipient: Recipient) -> str:
        if self.html is not None and recipient.id in self.html:
            return self.html[recipient.id]
        return self.merger.html(recipient)  # set by finish, before any letter is rendered whole

    def finish(self, campaign: Campaign, warnings: list[Problem], journal: Journal, *,
               on_start: Callable[[int, int], None] | None = None,
               on_progress: Callable[[RenderedLetter], None] | None = None) -> RenderSummary:
        """Render the letters that need it, recording each in the journal.

        The first letter that cannot be rendered stops the run: it is in summary.failed, and the letters
        finished before it are kept and recorded. on_start is told how many letters will be rendered and
        how many are up to date; on_progress sees each rendered letter."""
        self.merger = VersionMerger(campaign)
        chosen = campaign.recipients.select(self.only)
        summary = RenderSummary(campaign.letter_name, campaign.output_dir, warnings=warnings)
        out = campaign.output_dir
        remove_stale_temporaries(out)
        previous = journal.latest(campaign.letter_name, ["rendered"])
        plan = {}
        for recipient in chosen:
            target = out / f"{recipient.id}.pdf"
            event = previous.get(recipient.id)
            reason = reason_to_render(self.keys[recipient.id], target, event.data if event else None,
                                      force=self.force)
            if reason is None and self.stream.eager:  # rendered already, while the campaign was checked (not
                reason = "forced"                     # expected: eager means nothing was rendered, or --force)
            if reason is None:
                summary.up_to_date += 1
            else:
                plan[recipient.id] = (recipient, target, reason)
        if on_start:
            on_start(len(plan), summary.up_to_date)
        if not plan:
            return summary
        self.notes = _keep_sent_copies(campaign, journal, plan)
        if not self.stream.eager:
            for rid, (recipient, target, _) in plan.items():
                self.stream.add(Order(rid, target, functools.partial(self._html, recipient),
                                      *self.parts.get(rid, (None, (), ()))))
        for finished in self.stream.finish():
            if self._record(campaign, finished, plan, journal, summary, on_progress):
                break
        _locate_difference(campaign, self.stream.explanation)
        return summary

    def _record(self, campaign: Campaign, finished: list[Done], plan: dict, journal: Journal,
                summary: RenderSummary, on_progress: Callable[[RenderedLetter], None] | None) -> bool:
        """Record the letters of one job in one transaction, then put them in place; True when one failed.

        Recorded first: a journal that cannot be written stops the run before any letter replaces the one
        in out/ (the staged files are removed when the run ends). A letter recorded but not put in place
        (the rename failed) is found missing or changed by the next run and rendered again."""
        records, results, staged, stop = [], [], [], False
        for done in finished:
            recipient, target, reason = plan[done.name]
            problem, signed = done.problem, {}
            if problem is None and self.signer is not None:
                try:
                    done = _sign(self.signer, campaign.version_for(recipient), done)
                    signed = {"signed_by": self.signer.name}
                except DispatchError as exc:
                    problem = exc.problem
            if problem is not None:  # what stops one letter (a full disk, a bad template) stops them all
                summary.failed.append(problem)
                stop = True
                break
            records.append((campaign.letter_name, recipient.id, "rendered", dict(
                sha256=done.sha256, size=done.size, pages=done.pages, reason=reason, key=self.keys[recipient.id],
                file=self.ws.relative(target), **signed)))
            results.append(RenderedLetter(recipient.id, target, reason, done.pages, done.size, done.sha256,
                                          note=self.notes.get(recipient.id, "")))
            staged.append(done)
        journal.record_many(records)
        for done, result in zip(staged, results):
            try:
                commit(done.staged, done.target)
            except DispatchError as exc:
                summary.failed.append(exc.problem)
                return True
            summary.rendered.append(result)
            if on_progress:
                on_progress(result)
        return stop


OUTGOING = {"sent": ("sent", "email"), "printed": ("printed", "print"), "delivered": ("delivered by hand", "hand")}


def _keep_sent_copies(campaign: Campaign, journal: Journal, plan: dict) -> dict[str, str]:
    """For each letter about to be replaced in out/ that went out before: make sure the copy that went out is in
    the sent archive (a letter sent before the archive existed is kept now, if out/ still holds it), and say so."""
    notes = {}
    latest = journal.latest(campaign.letter_name, list(OUTGOING))
    for rid, (_, target, _) in plan.items():
        event = latest.get(rid)
        if event is None:
            continue
        what, channel = OUTGOING[event.kind]
        when = event.at[:16].replace("T", " ") + " UTC"
        where = event.data.get("archive_pdf")
        if not where and target.is_file():
            data = target.read_bytes()
            if sha256(data) == event.data.get("sha256"):
                moment = dt.datetime.fromisoformat(event.at)
                where = keep(campaign.output_dir, rid, channel, {"pdf": data}, moment)["pdf"].path
        notes[rid] = (f"changed since it was {what} on {when}; the copy that went out is kept in {where}"
                      if where else f"changed since it was {what} on {when}; that copy was not kept (it was "
                                    "replaced before dispatch kept a sent archive)")
    return notes


def _tidy(out: Path, created: list[Path]) -> None:
    """Remove the PDFs that workers wrote and that were not put in place (an interrupted or refused run),
    and the folders this run created if they stayed empty."""
    remove_stale_temporaries(out)
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _cold(folder: Path | None) -> bool:
    """Whether no letter has been rendered yet (out/<letter>/ holds no PDF)."""
    return folder is not None and (not folder.is_dir() or next(folder.glob("*.pdf"), None) is None)


def _sign(signer: Signer, version: Letter, done: Done) -> Done:
    """Sign a rendered PDF where it waits to be put in place (a new signing time each time); the Done then
    describes the signed file."""
    data = signer.sign(done.staged.read_bytes(), reason=version.subject, location=version.place or None)
    write_atomic(done.staged, data)
    return dataclasses.replace(done, size=len(data), sha256=sha256(data))


def render_html(campaign: Campaign, warnings: list[Problem], *, only: list[str] | None,
                on_start: Callable[[int, int], None] | None,
                on_progress: Callable[[RenderedLetter], None] | None) -> RenderSummary:
    """Write the merged HTML of each letter, with a <base> so it opens (and renders) from out/."""
    from dispatch.pdf.engine import with_base

    chosen = campaign.recipients.select(only)
    summary = RenderSummary(campaign.letter_name, campaign.output_dir, warnings=warnings)
    merger = VersionMerger(campaign)
    if on_start:
        on_start(len(chosen), 0)
    for recipient in chosen:
        target = campaign.output_dir / f"{recipient.id}.html"
        reason = "changed" if target.exists() else "new"
        data = with_base(merger.html(recipient), campaign.workspace.templates).encode("utf-8")
        write_atomic(target, data)
        result = RenderedLetter(recipient.id, target, reason, 0, len(data), sha256(data))
        summary.rendered.append(result)
        if on_progress:
            on_progress(result)
    return summary


def _locate_difference(campaign: Campaign, explanation: Explanation) -> None:
    """Where, in the letter's source, the text that sets its groups apart is written (for --explain)."""
    difference = explanation.difference
    path = campaign.letter.path
    if difference is None or not difference.before:
        return
    try:
        place = place_in_source(path.read_text(encoding="utf-8"), difference.before)
    except (OSError, UnicodeDecodeError):
        return
    if place is not None:
        explanation.where = f"{campaign.workspace.relative(path)}:{place[0]}:{place[1]}"
