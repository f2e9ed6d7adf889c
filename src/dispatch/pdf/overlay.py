"""Layered rendering, the overlays: each letter's regions drawn into its group's master (see master.py).

An OverlayJob lays out the regions of several letters of one group in one WeasyPrint document: tall
pages ("sheets"), each region at its master x and width, styled by the same stylesheets, inside copies
of the elements that contain it in the letter (so inherited styles and selectors apply). Every letter's
regions go to the same places (a slot's place depends on the master only), one over the other, and a
region's content shared by several letters (the same salutation) is laid out once. Each region's
background is the marker colour (markers.py): its painting cuts the page's content into one drawing
per region.

Each letter's PDF is then written from its own regions only: the sheets' boxes with the other letters'
regions left out, drawn by WeasyPrint (drawn.py), so its fonts are subset to the letter's own characters and its
drawings sit where they would if the letter were rendered alone. A letter's bytes depend on its own row,
never on the letters rendered with it (or on how many, or in which order). Those drawings fill the
master's slots in an incremental update (increment.py), with the letter's metadata (metadata.py).
"""

from __future__ import annotations

import html as htmllib
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from dispatch.errors import DispatchError
from dispatch.files import sha256, write_atomic
from dispatch.pdf.drawn import Drawn, draw
from dispatch.pdf.engine import Done, PdfRenderer
from dispatch.pdf.increment import flate_stream, scalar, stream_body, update
from dispatch.pdf.markers import cut_at_markers
from dispatch.pdf.master import (PT_PER_PX, STYLE_KEYS, TOLERANCE, FellBack, Master, MasterJob, Slot, head_for_overlay,
                                 region_style, variant_parts, walk, whole_html)
from dispatch.pdf.metadata import head_metadata, info_dictionary, xmp_packet
from dispatch.pdf.sheets import SHEET_HEIGHT, Instance, Sheets, overlay_css, overlay_html, plan_instances


@dataclass(frozen=True)
class LayeredLetter:
    """One recipient's part of an overlay job: where its PDF goes, its regions and its own <head>."""

    name: str
    target: Path
    contents: tuple[str, ...]  # each slot's content (HTML)
    head: tuple[str, ...]  # the recipient's own <head> in pieces (regions.Parts.head), for the PDF's metadata


@dataclass(frozen=True)
class OverlayJob:
    """Lay out the regions of several recipients of one group, and write each one's PDF."""

    master: Master
    letters: tuple[LayeredLetter, ...]
    stage: bool = False  # leave each PDF under a temporary name for the caller to rename (Done.staged)

    def run(self, renderer: PdfRenderer) -> list:
        return overlay(renderer, self.master, self.letters, self.stage)


@dataclass(frozen=True)
class Solo:
    """What a SoloJob did: its letter's Done and why it was rendered whole (as OverlayJob.run gives them),
    and its group's master without the PDF (for --explain), or why the group could not be layered."""

    group: str
    results: list
    master: Master | None
    reason: str | None = None


@dataclass(frozen=True)
class SoloJob:
    """A letter alone in its group: its master laid out, then its regions laid over it, in one job (no master
    to send back and forth, none to keep). The same PDF as the letter gets in a group of many."""

    master: MasterJob
    letter: LayeredLetter
    stage: bool = False

    def run(self, renderer: PdfRenderer) -> Solo:
        master = self.master.run(renderer)
        if isinstance(master, FellBack):
            return self.fell_back(renderer, master)
        return Solo(self.master.group, overlay(renderer, master, (self.letter,), self.stage),
                    replace(master, pdf=b"", base=None))

    def fell_back(self, renderer: PdfRenderer, master: FellBack) -> Solo:
        """The letter rendered whole, its group's master refused."""
        html = whole_html(self.master.body, self.master.word, self.letter)
        return Solo(self.master.group, [_whole(renderer, html, self.letter, master.reason, self.stage)], None,
                    master.reason)


@dataclass(frozen=True)
class SoloBatch:
    """Several letters alone in their groups, in one job: each one's master laid out, then the regions of
    those whose masters place them alike laid out in one overlay document (as a group's letters are).
    The same PDFs as one SoloJob each: a letter is drawn from its own regions, over its own master."""

    jobs: tuple[SoloJob, ...]

    def run(self, renderer: PdfRenderer) -> list[Solo]:
        masters = [job.master.run(renderer) for job in self.jobs]
        solos: list[Solo | None] = [None] * len(self.jobs)
        alike: dict[tuple, list[int]] = {}
        for n, (job, master) in enumerate(zip(self.jobs, masters)):
            if isinstance(master, FellBack):
                solos[n] = job.fell_back(renderer, master)
            else:
                alike.setdefault(_placed_alike(master), []).append(n)
        for numbers in alike.values():
            own = [masters[n] for n in numbers]
            results = overlay(renderer, own[0], tuple(self.jobs[n].letter for n in numbers),
                              self.jobs[numbers[0]].stage, own)
            for n, master, result in zip(numbers, own, results):
                solos[n] = Solo(self.jobs[n].master.group, [result], replace(master, pdf=b"", base=None))
        return [solo for solo in solos if solo is not None]


def _placed_alike(master: Master) -> tuple:
    """What an overlay document takes from a master: masters alike share one."""
    return master.html_element, master.head, master.page_width, master.page_height, master.slots


@dataclass(frozen=True)
class WarmUp:
    """Lay out and write a small document with the letter's stylesheets and one letter's regions, in a worker
    that would wait while a master is laid out: its first overlay then finds the fonts loaded."""

    html: str

    @classmethod
    def of(cls, master_html: str, contents: Sequence[str]) -> "WarmUp":
        regions = "".join(f"<div>{content}</div>" for content in contents)
        return cls(f'<!DOCTYPE html><html><head><meta charset="utf-8">{head_for_overlay(master_html)}</head>'
                   f"<body>{regions}</body></html>")

    def run(self, renderer: PdfRenderer) -> None:
        try:
            renderer.write(renderer.layout(self.html, plain=True), plain=True)
        except DispatchError:  # the overlay that follows meets the same problem and reports it
            pass


def _check_region(box, slot: Slot, offset: float) -> str | None:
    """None when a region of the overlay sits on its master box (moved by offset) and fits; else the problem."""
    rect = (box.border_box_x(), box.border_box_y() - offset, box.border_width(), box.border_height())
    if any(abs(a - b) > TOLERANCE for a, b in zip(rect, (slot.x, slot.y, slot.width, slot.height))):
        return f"region {slot.name!r} does not land where it is in the letter"
    style = region_style(box)
    if style != slot.style:
        changed = [k for k, a, b in zip(STYLE_KEYS, style, slot.style) if a != b]
        return (f"region {slot.name!r} looks different outside the letter ({', '.join(changed[:3])}): "
                "its style depends on its neighbours")
    overflow = _overflow(box)
    return f"the {slot.name} does not fit in its box ({overflow})" if overflow else None


def _overflow(region) -> str | None:
    left, top = region.content_box_x(), region.content_box_y()
    right, bottom = left + region.width, top + region.height
    tall = wide = 0.0
    for box in walk(region):
        if box is region or not hasattr(box, "border_box_x"):
            continue
        x, y = box.border_box_x(), box.border_box_y()
        w, h = box.border_width(), box.border_height()
        kind = type(box).__name__
        if kind not in ("TextBox", "InlineBox"):  # glyphs may pass their line's height
            tall = max(tall, y + h - bottom)
        if kind == "TextBox":
            wide = max(wide, left - x, x + w - right)
    if tall > 0.5:
        return f"{tall * PT_PER_PX:.1f} pt too tall"
    if wide > 0.5:
        return f"a line is {wide * PT_PER_PX:.1f} pt too wide"
    return None


def overlay(renderer: PdfRenderer, master: Master, letters: Sequence[LayeredLetter],
            stage: bool = False, masters: Sequence[Master] = ()) -> list[tuple[Done, str | None]]:
    """Each letter's Done, with the reason it was rendered whole (None when it was layered).

    masters: each letter's own master when they are not all `master` (masters that place their regions
    alike: see SoloBatch); `master` lays out the overlay."""
    import pikepdf

    masters = list(masters) or [master] * len(letters)

    instances, chosen = plan_instances(master, letters)
    try:
        document = renderer.layout(overlay_html(master, instances), plain=True,
                                   stylesheets=(renderer.stylesheet(overlay_css(master)),))
        sheets = Sheets(document, len(instances))
        problem = None if sheets.complete else "the regions could not be laid out on their own"
    except DispatchError as exc:
        problem = exc.problem.message
    if problem:
        if len(letters) > 1:  # each letter on its own: only those that meet the problem are rendered whole
            return [result for letter, own in zip(letters, masters) for result in overlay(renderer, own, (letter,), stage)]
        return [_whole(renderer, masters[0].whole_html(letters[0]), letters[0], problem, stage)]
    found = {number: _check_region(box, instances[number].slot, instances[number].offset)
             for number, box in sheets.boxes.items()}
    results: list = []  # (Done, reason), or the index in `written` of a letter being written
    scratch = pikepdf.new()  # where each drawing's content is parsed
    # Each file is written (and synced to the disk) by a thread while the next one is assembled: the
    # thread mostly waits for the disk, and lets go of the interpreter meanwhile.
    with ThreadPoolExecutor(1) as writer:
        written: list[tuple[LayeredLetter, bytes, Future, int]] = []
        for letter, mine, own in zip(letters, chosen, masters):
            problem = next((found[i] for i in mine if found[i]), None)
            pdf = None
            if problem is None:
                drawn = draw(sheets.letter(set(mine)), own.base.size)
                pdf = _assemble(own, drawn, [instances[i] for i in mine], letter, scratch)
                problem = None if pdf is not None else "the regions' drawings could not be told apart"
            if problem:
                results.append(_whole(renderer, own.whole_html(letter), letter, problem, stage))
                continue
            written.append((letter, pdf, writer.submit(write_atomic, letter.target, pdf, staged=stage), own.pages))
            results.append(len(written) - 1)
        for n, result in enumerate(results):
            if isinstance(result, int):
                letter, pdf, future, pages = written[result]
                results[n] = (_written(letter, pdf, future, pages, stage), None)
    return results


def _written(letter: LayeredLetter, pdf: bytes, future: Future, pages: int, stage: bool) -> Done:
    """The Done of a letter whose PDF a thread was writing (write_atomic), once it is written or failed."""
    try:
        written = future.result()
    except DispatchError as exc:
        return Done(letter.name, letter.target, problem=exc.problem)
    return Done(letter.name, letter.target, pages, len(pdf), sha256(pdf), staged=written if stage else None)


def _whole(renderer: PdfRenderer, html: str, letter: LayeredLetter, reason: str,
           stage: bool = False) -> tuple[Done, str]:
    """The letter rendered whole from its HTML (the way every letter is without layers), and why."""
    try:
        pdf = renderer.render(html)
        written = write_atomic(letter.target, pdf.data, staged=stage)
    except DispatchError as exc:
        return Done(letter.name, letter.target, problem=exc.problem), reason
    return Done(letter.name, letter.target, pdf.pages, len(pdf.data), sha256(pdf.data),
                staged=written if stage else None), reason


def _assemble(master: Master, drawn: Drawn, mine: Sequence[Instance], letter: LayeredLetter,
              scratch) -> bytes | None:
    """The letter's PDF: the master, then an update that fills its slots and sets its metadata.

    drawn: the letter's regions drawn (a page per sheet, its regions in slot order, objects numbered after
    the master's); mine: the letter's instance of each slot. None when the drawings cannot be told apart."""
    import pikepdf

    drawings = [drawing for content in drawn.contents for drawing in cut_at_markers(pikepdf.Stream(scratch, content))]
    if len(drawings) != len(mine):
        return None
    bodies = dict(drawn.bodies)
    number = drawn.next
    sheet_height = SHEET_HEIGHT * PT_PER_PX
    for (slot_object, bbox), drawing, instance in zip(master.slot_objects, drawings, mine):
        lift = master.page_height * PT_PER_PX - sheet_height + instance.offset * PT_PER_PX
        bodies[number] = flate_stream(b"/Type/XObject/Subtype/Form/BBox[-100000 -100000 100000 100000]"
                                      b"/Matrix[1 0 0 1 0 %s]/Resources" % scalar(round(lift, 6)) + drawn.resources,
                                      drawing)
        bodies[slot_object] = stream_body(
            b"<</Type/XObject/Subtype/Form/BBox" + bbox + b"/Resources<</XObject<</Sheet %d 0 R>>>>>>" % number,
            b"/Sheet Do")
        number += 1
    done: set[int] = set()
    for index, structure, dictionary in master.slot_tags:  # the region's text, for a screen reader
        text = region_text(letter.contents[index]) if index not in done and index < len(letter.contents) else ""
        done.add(index)
        bodies[structure] = (dictionary[:dictionary.rindex(b">>")] + b" /ActualText "
                             + pikepdf.String(text).unparse() + b" >>") if text else dictionary
    metadata = head_metadata("".join(letter.head))
    parts = variant_parts(master.pdf_variant)
    if parts and master.metadata_object is not None:
        bodies[master.metadata_object] = stream_body(b"<</Type/Metadata/Subtype/XML>>", xmp_packet(metadata, *parts))
    return update(master.base, bodies, number, info_dictionary(metadata, master.producer))


def region_text(content: str) -> str:
    """A region's HTML as the text a screen reader gives (its lines on lines of their own)."""
    text = re.sub(r"<br\s*/?>|</(?:p|div|li|h[1-6])>", "\n", content, flags=re.IGNORECASE)
    text = htmllib.unescape(re.sub(r"<[^>]*>", "", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)
