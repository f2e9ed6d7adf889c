"""Render a campaign's letters: layered where letters share their layout (layers.py), whole otherwise.

The letters to render come in as Orders (a recipient's HTML, or its parts). Letters whose shared part
is the same form a group; a group of two or more is rendered layered: its master first, then overlay
batches, all in the worker pool. A letter that is alone in its group, a group whose master cannot be
layered, or a letter whose region does not fit its box is rendered whole, and the Explanation says why.
Results come out as lists of Done, one list per job (the letters it wrote), in no promised order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .layers import PT_PER_PX, FellBack, Letter, Master, MasterJob, OverlayJob, WarmUp, master_html, supports
from .regions import Parts
from .pdf import Done
from .workers import Job, PdfPool

MM_PER_PX = PT_PER_PX * 25.4 / 72
# Letters per overlay document. Fixed, so that a letter's PDF does not depend on the number of workers
# (the fonts of an overlay document are subset to the characters of all its letters).
BATCH = 64


@dataclass(frozen=True)
class Order:
    """One letter to render: whole (html) and, for the layered path, its group and regions."""

    name: str
    target: Path
    html: Callable[[], str]  # the whole letter's HTML, made when needed
    group: str | None = None
    contents: tuple[str, ...] = ()
    head: tuple[str, ...] = ()  # its <head>, in pieces (regions.Parts.head)


@dataclass(frozen=True)
class Group:
    """One group as --explain shows it."""

    key: str
    members: tuple[str, ...]
    master_pages: int = 0
    regions: tuple[tuple[str, float, float, tuple[int, ...]], ...] = ()  # name, width mm, height mm, pages
    reason: str | None = None  # why the whole group was rendered whole


@dataclass
class Explanation:
    """How the letters were rendered: the groups, and who was rendered whole and why."""

    groups: list[Group] = field(default_factory=list)
    whole: dict[str, str] = field(default_factory=dict)  # recipient -> reason


def render_letters(pool: PdfPool, orders: Sequence[Order], shared: dict[str, Parts], *, layered: bool,
                   pdf_variant: str | None, explanation: Explanation | None = None) -> Iterator[list[Done]]:
    """Render every order; yield the Done of each letter (its PDF written, or the problem that stopped it),
    a list at a time: the letters of one job.

    shared maps a group key to the parts of one of its letters (for the master's HTML).
    """
    explanation = explanation if explanation is not None else Explanation()
    whole: list[Order] = []
    groups: dict[str, list[Order]] = defaultdict(list)
    refusal = None if layered else "--no-layers"
    refusal = refusal or supports(pdf_variant)
    for order in orders:
        if refusal or order.group is None:
            whole.append(order)
            explanation.whole[order.name] = refusal or "the layout has no regions"
        else:
            groups[order.group].append(order)
    masters: list[MasterJob] = []
    for key, members in groups.items():
        if len(members) < 2:
            whole.extend(members)
            explanation.whole[members[0].name] = ("its letter differs from every other one outside the regions "
                                                  "(a recipient's value outside a data-variable region?)")
        else:
            parts = shared[key]
            masters.append(MasterJob(key, master_html(parts), len(members), parts.body, parts.word))

    overlays: list[OverlayJob] = []
    for job, result in zip(masters, _run_masters(pool, masters, groups)):
        members = groups[job.group]
        names = tuple(m.name for m in members)
        if isinstance(result, FellBack):
            explanation.groups.append(Group(job.group, names, reason=result.reason))
            whole.extend(members)
            explanation.whole.update({m.name: result.reason for m in members})
            continue
        explanation.groups.append(_describe(job.group, names, result))
        for start in range(0, len(members), BATCH):
            overlays.append(OverlayJob(result, tuple(Letter(m.name, m.target, m.contents, m.head)
                                                     for m in members[start:start + BATCH])))

    def tasks():
        yield from overlays
        for order in whole:
            yield Job(order.name, order.html(), order.target)  # HTML made as needed, not held for every letter

    for result in pool.render(tasks(), count=len(overlays) + len(whole)):
        if isinstance(result, Done):
            yield [result]
            continue
        for done, reason in result:  # an overlay job renders whole, itself, the letters it cannot layer
            if reason:
                explanation.whole[done.name] = reason
        yield [done for done, _ in result]


def _run_masters(pool: PdfPool, masters: Sequence[MasterJob], groups: dict[str, list[Order]]) -> Iterator:
    """Each master's result, in order. The workers that no master keeps busy warm up for the overlays meanwhile."""
    if not masters or not pool.started or len(masters) >= pool.jobs:
        return pool.render(masters, count=len(masters))
    futures = [pool.submit(job) for job in masters]
    for _ in range(pool.jobs - len(masters)):
        pool.submit(WarmUp.of(masters[0].html, groups[masters[0].group][0].contents))  # its result is not needed
    return (pool.result(future) for future in futures)


def _describe(key: str, names: tuple[str, ...], master: Master) -> Group:
    return Group(key, names, master.pages, tuple(
        (slot.name, slot.width * MM_PER_PX, slot.height * MM_PER_PX, tuple(p + 1 for p in slot.pages))
        for slot in master.slots))
