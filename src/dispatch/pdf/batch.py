"""Render a campaign's letters: layered where the layout has regions (master.py, overlay.py), whole otherwise.

The letters to render come in as Orders (a recipient's HTML, or its parts), one at a time. Letters whose
shared part is the same form a group, rendered layered: its master first, then overlay batches, all in
the worker pool. A letter alone in its group is layered too (its master and its overlay in one job), so
that its PDF is the same whether it is rendered alone or with the others. A group whose master cannot be layered, or a
letter whose region does not fit its box, is rendered whole, and the Explanation says why. Each PDF is left under a temporary name (Done.staged) for the caller to rename into place once
it is recorded, so that letters can be rendered while later ones are still being checked: when that
check fails, nothing has been put in place. Results come out as lists of Done, one list per job (the
letters it wrote), in the order of the letters' groups and then of the letters rendered whole.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from dispatch.pdf.engine import Done
from dispatch.pdf.master import PT_PER_PX, FellBack, Master, MasterJob, master_html, supports
from dispatch.pdf.overlay import LayeredLetter, OverlayJob, Solo, SoloBatch, SoloJob, WarmUp
from dispatch.pdf.pool import PdfPool
from dispatch.pdf.tails import WholeJob
from dispatch.regions import Difference, Parts, first_difference

MM_PER_PX = PT_PER_PX * 25.4 / 72
# Letters per overlay job: WeasyPrint's work on a document is shared by its letters, and the workers share
# a group's letters. A letter's PDF does not depend on the letters that share its job (see overlay.py).
BATCH = 64
# Letters alone in their groups per job (SoloBatch): their overlays share one document. At most this many,
# fewer when there are few such letters, so that every worker gets some.
SOLOS = 8


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
    # Why the first two groups are apart: where their text differs (outside the regions), and where that is
    # in the letter's source ("letters/x.md:12:5", when found: see stages/render.py).
    difference: Difference | None = None
    where: str | None = None
    apart: tuple[str, str] = ("", "")  # the first letter of each of those two groups


class LetterStream:
    """The letters of one render: add() each, then finish() renders what is left and yields the results.

        stream = LetterStream(pool, shared, layered=True, pdf_variant=None, eager=True)
        for order in orders: stream.add(order)       # eager: masters and full batches start meanwhile
        for done_list in stream.finish(): ...

    shared maps a group key to the parts of one of its letters (for the master's HTML). eager (with the
    pool's workers started) renders while letters are still being added: a group's master as soon as it
    has two letters, each batch of BATCH letters as soon as the master is back. Letters alone in their
    groups go to SoloBatches (no master kept for them), SOLOS at a time; eager, once most letters so far
    are alone in their groups (a personalised letter), those start while the others are still added.
    """

    def __init__(self, pool: PdfPool, shared: dict[str, Parts], *, layered: bool, pdf_variant: str | None,
                 explanation: Explanation | None = None, eager: bool = False) -> None:
        self.pool, self.shared = pool, shared
        self.explanation = explanation if explanation is not None else Explanation()
        self.eager = eager and pool.started
        self._refusal = (None if layered else "--no-layers") or supports(pdf_variant)
        self._whole: list[Order] = []
        self._groups: dict[str, list[Order]] = defaultdict(list)
        self._masters: dict[str, Future] = {}  # eager: each group's master, once it has two letters
        self._batches: dict[str, list[Future]] = defaultdict(list)  # eager: each group's overlay jobs, sent
        self._added = 0
        self._alone: list[str] = []  # eager: groups of one letter not sent yet, in order
        self._solos: list[Future] = []  # eager: SoloBatches sent
        self._sent_alone: set[str] = set()  # eager: groups whose first letter went in a SoloBatch

    def add(self, order: Order) -> None:
        if self._refusal or order.group is None:
            self._whole.append(order)
            self.explanation.whole[order.name] = self._refusal or "the layout has no regions"
            return
        members = self._groups[order.group]
        members.append(order)
        self._added += 1
        if not self.eager:
            return
        if len(members) == 1:
            self._alone.append(order.group)
        if len(members) == 2:
            self._start_master(order.group)
        self._send_alone()
        future = self._masters.get(order.group)
        if future is not None and future.done():
            self._send(order.group, self.pool.result(future), final=False)

    def finish(self) -> Iterator[list[Done]]:
        """Render every letter not rendered yet; yield the Done of each letter, a job's letters at a time."""
        solo = [key for key, members in self._groups.items()
                if len(members) == 1 and key not in self._masters and key not in self._sent_alone]
        layered = [key for key in self._groups if key not in solo and len(self._groups[key]) > 1]
        masters = self._master_results(layered)
        keys = list(self._groups)
        if len(keys) > 1 and keys[0] in self.shared and keys[1] in self.shared:
            self.explanation.difference = first_difference(self.shared[keys[0]].body, self.shared[keys[1]].body)
            self.explanation.apart = (self._groups[keys[0]][0].name, self._groups[keys[1]][0].name)
        later: list[OverlayJob] = []  # not eager: run below, in order
        for key, master in zip(layered, masters):
            members = self._groups[key]
            names = tuple(m.name for m in members)
            if isinstance(master, FellBack):
                self.explanation.groups.append(Group(key, names, reason=master.reason))
                self._whole.extend(members[1 if key in self._sent_alone else 0:])  # the first: in its SoloBatch
                self.explanation.whole.update({m.name: master.reason for m in members})
                continue
            self.explanation.groups.append(_describe(key, names, master))
            if self.eager:
                self._send(key, master, final=True)
            else:
                later += [OverlayJob(master, _letters(members[start:start + BATCH]), stage=True)
                          for start in range(0, len(members), BATCH)]
        for key in layered:
            for future in self._batches.get(key, ()):
                yield self._results(self.pool.result(future))
        for future in self._solos:
            yield [done for one in self.pool.result(future) for done in self._solo(one)]

        size = max(1, min(SOLOS, -(-len(solo) // (4 * self.pool.jobs))))
        batches = [solo[start:start + size] for start in range(0, len(solo), size)]

        def tasks():
            yield from later
            for keys in batches:  # masters' HTML made as needed, not held for every letter
                yield SoloBatch(tuple(SoloJob(self._master_job(key), _letters(self._groups[key])[0], stage=True)
                                      for key in keys))
            for order in self._whole:
                yield WholeJob(order.name, order.html(), order.target, stage=True)

        for result in self.pool.render(tasks(), count=len(later) + len(batches) + len(self._whole)):
            if isinstance(result, Done):
                yield [result]
            elif result and isinstance(result[0], Solo):
                yield [done for one in result for done in self._solo(one)]
            else:
                yield self._results(result)

    def cancel(self) -> None:
        """Drop the jobs not started (the caller removes what the others leave: Done.staged files)."""
        for future in [*self._masters.values(), *(f for futures in self._batches.values() for f in futures)]:
            future.cancel()

    def _master_job(self, key: str) -> MasterJob:
        parts = self.shared[key]
        return MasterJob(key, master_html(parts), len(self._groups[key]), parts.body, parts.word)

    def _start_master(self, key: str) -> None:
        job = self._master_job(key)
        self._masters[key] = self.pool.submit(job)
        if len(self._masters) == 1:  # the other workers would wait for it: they warm up for the overlays
            for _ in range(self.pool.jobs - 1):
                self.pool.submit(WarmUp.of(job.html, self._groups[key][0].contents))  # nothing to read back

    def _master_results(self, keys: list[str]) -> list:
        """Each group's master (or why it cannot be layered), in order."""
        if not self.pool.started:  # a master alone renders in this process (PdfPool.render)
            return list(self.pool.render([self._master_job(key) for key in keys], count=len(keys)))
        for key in keys:
            if key not in self._masters:
                self._start_master(key)
        return [self.pool.result(self._masters[key]) for key in keys]

    def _send_alone(self) -> None:
        """Eager, once two batches per worker have come in, mostly alone in their groups (a personalised letter):
        send those alone, SOLOS at a time, while fewer than two batches per worker wait (each holds its masters'
        HTML). A smaller campaign waits for finish(), which shares its letters between the workers."""
        if self._added < 2 * SOLOS * self.pool.jobs or 2 * len(self._groups) <= self._added:
            return
        while len(self._alone) >= SOLOS and sum(not f.done() for f in self._solos) < 2 * self.pool.jobs:
            keys, self._alone = self._alone[:SOLOS], self._alone[SOLOS:]
            keys = [key for key in keys if len(self._groups[key]) == 1]
            if not keys:
                continue
            self._sent_alone.update(keys)
            self._solos.append(self.pool.submit(SoloBatch(tuple(
                SoloJob(self._master_job(key), _letters(self._groups[key])[0], stage=True) for key in keys))))

    def _send(self, key: str, master, *, final: bool) -> None:
        """Send the group's letters not sent yet to the workers, a batch at a time (final: the last, short one too)."""
        if isinstance(master, FellBack):
            return
        members, batches = self._groups[key][1 if key in self._sent_alone else 0:], self._batches[key]
        sent = len(batches) * BATCH
        while len(members) - sent >= BATCH or (final and sent < len(members)):
            batch = members[sent:sent + BATCH]
            batches.append(self.pool.submit(OverlayJob(master, _letters(batch), stage=True)))
            sent += len(batch)

    def _solo(self, solo: Solo) -> list[Done]:
        names = tuple(done.name for done, _ in solo.results)
        if len(self._groups.get(solo.group, ())) <= 1:  # else the group is described with all its letters
            self.explanation.groups.append(Group(solo.group, names, reason=solo.reason) if solo.master is None
                                           else _describe(solo.group, names, solo.master))
        return self._results(solo.results)

    def _results(self, result: list) -> list[Done]:
        for done, reason in result:  # an overlay job renders whole, itself, the letters it cannot layer
            if reason:
                self.explanation.whole[done.name] = reason
        return [done for done, _ in result]


def _letters(members: Sequence[Order]) -> tuple[LayeredLetter, ...]:
    return tuple(LayeredLetter(m.name, m.target, m.contents, m.head) for m in members)


def _describe(key: str, names: tuple[str, ...], master: Master) -> Group:
    return Group(key, names, master.pages, tuple(
        (slot.name, slot.width * MM_PER_PX, slot.height * MM_PER_PX, tuple(p + 1 for p in slot.pages))
        for slot in master.slots))
