"""Whole letters that differ on their first page only: the pages after it laid out once, for every such letter.

A personalised letter ("We call on the Government of {{ state }}") cannot be layered: the value changes
its lines. But its variable text usually sits in the first paragraphs, and the rest (later paragraphs, the
signatories in balanced columns: most of a letter's layout) is the same for every recipient. WeasyPrint lays
out one page at a time, from the place the previous page stopped at and the state it left (counters, page
groups, the side). So when a letter's first page stops at the same place with the same state as an earlier
letter's (a "reference"), and nothing of the letter after that place differs from the reference, its later
pages are the reference's later pages: they are copied (each box, pointing at this letter's own elements)
instead of laid out again.

The letter is then written by WeasyPrint as a whole render writes it: its own first page, metadata, fonts
subset to the characters of its own pages, tags. Its bytes are those of its whole render (tests check it),
so they depend on its own row only, never on which letter was the reference.

Guards (otherwise the letter is laid out whole, and becomes a reference itself): the two documents have
the same elements with the same attributes and the same stylesheets, differing only in text (and not in
which texts are empty) outside their variable regions; every difference comes before the element the
second page starts in; no footnotes, no content carried over the page break out of the flow, no target
counters, no generated quotes (their depth where a page starts is not compared); the reference needed a
single layout pass and has no line cut by line-clamp (painting it changes its Pango layout, which copies
of the page share).
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dispatch.pdf.engine import Done, PdfRenderer
from dispatch.pdf.paints import Painted
from dispatch.pdf.pool import Job
from dispatch.regions import ATTRIBUTE

log = logging.getLogger(__name__)

KEPT = 4  # references kept in a process (letters' first pages may end in a few places)
_references: list[Reference] = []
statistics = {"shared": 0, "whole": 0}


class Tree:
    """A document's elements in order, its texts in order (an element's text, then after its children its
    tail), and for each element its start among the texts, its index in the list and its parent."""

    def __init__(self, root) -> None:
        self.elements: list[Any] = []
        self.texts: list[str | None] = []
        self.start: dict[int, int] = {}
        self.index: dict[int, int] = {}
        self.parent: dict[int, Any] = {}
        self._outline: tuple | None = None
        todo = [(root, None)]
        while todo:
            element, after = todo.pop()
            if element is None:  # the tail of `after`, once its children are done
                self.texts.append(after.tail)
                continue
            self.start[id(element)] = len(self.texts)
            self.index[id(element)] = len(self.elements)
            self.elements.append(element)
            self.texts.append(element.text)
            children = list(element)
            for child in reversed(children):
                self.parent[id(child)] = element
                todo.append((None, child))
                todo.append((child, None))

    @property
    def outline(self) -> tuple:
        """What, anywhere in the document, may reach the style of a later element (a sibling selector, :empty,
        :has, a <style>): each element's tag and attributes (a <meta>'s excepted), whether its text and tail
        are empty, and the stylesheets' text. Not what is inside a variable region: as for layered letters,
        a region's content does not style what is around it (see regions.py)."""
        if self._outline is None:
            tags, empty, sheets = [], [], []
            todo = [self.elements[0]] if self.elements else []
            while todo:
                element = todo.pop()
                tag = _tag(element)
                tags.append((tag, () if tag == "meta" else tuple(sorted(element.attrib.items()))))
                empty += [not element.text, not element.tail]
                if tag == "style":
                    sheets.append(element.text)
                if element.get(ATTRIBUTE) is None:
                    todo.extend(reversed(list(element)))
            self._outline = (tuple(tags), tuple(empty), tuple(sheets))
        return self._outline

    def chain(self, element) -> list[tuple]:
        """The element and its ancestors: tag, attributes, place among its parent's children."""
        found = []
        while element is not None:
            parent = self.parent.get(id(element))
            place = list(parent).index(element) if parent is not None else 0
            found.append((_tag(element), tuple(sorted(element.attrib.items())), place))
            element = parent
        return found

    def after(self, element) -> tuple[list, list]:
        """The elements (tag, attributes) from this one on, and the texts from its start on."""
        return ([(_tag(e), tuple(sorted(e.attrib.items()))) for e in self.elements[self.index[id(element)]:]],
                self.texts[self.start[id(element)]:])


def _tag(element) -> str:
    return element.tag if isinstance(element.tag, str) else repr(element.tag)


@dataclass
class Reference:
    """A letter laid out whole: the element its second page starts in, what follows it, where its first page
    stopped, and its later pages."""

    tree: Tree
    element: Any
    chain: list
    after: tuple
    first: tuple  # page_maker[1] without its remake state
    page_maker: list  # the entries after page_maker[1], as the layout left them
    pages: list  # its pages after the first, copied before margin boxes and backgrounds were added
    painted: list  # for each of those pages, its painting recorded (paints.py)

    def matches(self, tree: Tree, element, first: tuple) -> bool:
        return (self.first == first and len(tree.elements) - tree.index[id(element)] ==
                len(self.tree.elements) - self.tree.index[id(self.element)] and
                tree.chain(element) == self.chain and tree.after(element) == self.after and
                tree.outline == self.tree.outline)

    def mapping(self, tree: Tree, element) -> dict[int, Any]:
        """This reference's elements -> the other document's: the ones that follow and the ancestors."""
        mine, theirs = self.tree.index[id(self.element)], tree.index[id(element)]
        found = {id(r): l for r, l in zip(self.tree.elements[mine:], tree.elements[theirs:])}
        r, l = self.tree.parent.get(id(self.element)), tree.parent.get(id(element))
        while r is not None and l is not None:
            found[id(r)] = l
            r, l = self.tree.parent.get(id(r)), tree.parent.get(id(l))
        return found


def _resume_element(root_box, resume_at):
    """The element of the deepest box the next page starts in."""
    box, element = root_box, getattr(root_box, "element", None)
    while resume_at:
        (index, resume_at), = resume_at.items()
        children = getattr(box, "children", None)
        if children is None or index >= len(children):
            break
        box = children[index]
        if getattr(box, "element", None) is not None:
            element = box.element
    return element


def _clone(box, elements: dict[int, Any]):
    """A copy of a box tree whose boxes point at another document's elements."""
    new = box.copy()
    element = getattr(box, "element", None)
    if element is not None:
        new.element = elements.get(id(element), element)
    children = getattr(box, "children", None)
    if children:
        cloned = [_clone(child, elements) for child in children]
        new.children = tuple(cloned) if isinstance(children, tuple) else cloned
    fixed = getattr(box, "fixed_boxes", None)
    if fixed:
        new.fixed_boxes = [_clone(child, elements) for child in fixed]
    return new


def _entry(item) -> tuple:
    resume_at, next_page, right_page, page_state, _ = item
    return resume_at, next_page, right_page, page_state


def layout_document(html, root_box, context, max_loops: int = 8):
    """weasyprint.layout.layout_document, taking the later pages of a matching reference when it can."""
    from weasyprint.layout import initialize_page_maker
    from weasyprint.layout import layout_document as whole
    from weasyprint.layout.page import remake_page, set_page_type_computed_styles

    tree = Tree(html.etree_element)
    candidates = _references
    if context.footnotes or context.target_collector.counter_lookup_items or _quotes(context):
        candidates = []
    initialize_page_maker(context, root_box)
    context.rendered_notes = []
    state = context.page_maker[0][-1]
    state.update(content_changed=False, pages_wanted=False, anchors=[], content_lookups=[])
    first, resume_at = remake_page(0, context, root_box, html)
    chosen, element = None, None
    if resume_at is not None and not context.reported_footnotes and not context.broken_out_of_flow:
        entry = _entry(context.page_maker[1])
        element = _resume_element(root_box, resume_at)
        if element is not None and id(element) in tree.index:
            chosen = next((r for r in candidates if r.matches(tree, element, entry)), None)
    if chosen is None:
        statistics["whole"] += 1
        return _whole_after_first(html, root_box, context, first, tree, max_loops, whole)
    statistics["shared"] += 1
    context.page_maker[1][-1].update(content_changed=False, pages_wanted=False, anchors=[], content_lookups=[])
    context.page_maker[2:] = copy.deepcopy(chosen.page_maker)
    mapping = chosen.mapping(tree, element)
    pages = [first, *(_clone(page, mapping) for page in chosen.pages)]
    for page, painted in zip(pages[1:], chosen.painted):
        page.dispatch_painted = painted
    for page in pages[1:]:  # the styles of their page types (margin boxes), as laying them out would compute them
        set_page_type_computed_styles(page.page_type, html, context.style_for)
    return _finish(html, context, pages)


def _whole_after_first(html, root_box, context, first, tree: Tree, max_loops: int, whole):
    """The rest of the layout as WeasyPrint does it (first page already made); kept as a reference."""
    from weasyprint.layout.page import remake_page

    pages = [first]
    entry = copy.deepcopy(_entry(context.page_maker[1]))  # as the first page left it (the count of pages comes later)
    i, resume_at = 1, context.page_maker[1][0]
    reported = context.reported_footnotes
    while resume_at is not None or reported:
        state = context.page_maker[i][-1]
        state.update(content_changed=False, pages_wanted=False, anchors=[], content_lookups=[])
        page, resume_at = remake_page(i, context, root_box, html)
        reported = context.reported_footnotes
        pages.append(page)
        i += 1
    context.page_maker = context.page_maker[:i + 1]
    context.broken_out_of_flow.clear()
    context.reported_footnotes.clear()
    if _needs_another_pass(context, len(pages)):  # page-based counters: WeasyPrint's own loop, from the start
        return whole(html, root_box, context, max_loops)
    if len(pages) > 1 and not context.footnotes and not context.target_collector.counter_lookup_items \
            and _running_on_first_page_only(context) and not _quotes(context) and not _clamped(pages[1:]):
        element = _resume_element(root_box, context.page_maker[1][0])
        if element is not None and id(element) in tree.index:
            painted = [Painted() for _ in pages[1:]]
            _references.insert(0, Reference(tree, element, tree.chain(element), tree.after(element),
                                            entry, copy.deepcopy(context.page_maker[2:]),
                                            [_clone(page, {}) for page in pages[1:]], painted))
            del _references[KEPT:]
            for page, recordings in zip(pages[1:], painted):
                page.dispatch_painted = recordings
    return _finish(html, context, pages)


def _quotes(context) -> bool:
    """Whether generated content opens or closes quotes (a <q>, `content: open-quote`): the depth of quotes
    where a page starts is not part of what the first page's end is compared on."""
    for (_, pseudo), style in context.style_for._computed_styles.items():
        content = dict.get(style, "content") if pseudo else None
        if isinstance(content, (list, tuple)) and any(
                isinstance(item, tuple) and item and item[0] == "quote" for item in content):
            return True
    return False


def _clamped(pages) -> bool:
    """Whether a line on these pages is cut with an ellipsis by line-clamp: painting it changes the text of
    its Pango layout, which the copies of the page share."""
    todo = list(pages)
    while todo:
        box = todo.pop()
        style = getattr(box, "style", None)
        if style is not None and style["block_ellipsis"] != "none":
            return True
        todo.extend(getattr(box, "children", None) or ())
    return False


def _running_on_first_page_only(context) -> bool:
    """Running elements (a running head) met on the first page only: the later pages set none of their own."""
    return all(page <= 1 for pages in context.running_elements.values() for page, boxes in pages.items() if boxes)


def _needs_another_pass(context, total: int) -> bool:
    for _, _, _, page_state, remake_state in context.page_maker:
        page_state[1]["pages"] = [total]
        if remake_state["content_changed"] or remake_state["pages_wanted"]:
            return True
    return False


def _finish(html, context, pages) -> list:
    """WeasyPrint's end of layout_document (string sets, bookmarks, fixed and margin boxes, backgrounds), on
    these pages: its pagination pass replaced by them for the time of the call (one process, one thread)."""
    from weasyprint import layout

    made, initialise = layout.make_all_pages, layout.initialize_page_maker
    layout.make_all_pages = lambda *args: iter(pages)
    layout.initialize_page_maker = lambda *args: None
    try:
        return list(layout.layout_document(html, None, context, max_loops=1))
    finally:
        layout.make_all_pages, layout.initialize_page_maker = made, initialise


@contextmanager
def shared_pages():
    """While it lasts, WeasyPrint lays out documents with layout_document above (PdfRenderer.layout and
    render unchanged otherwise). For a renderer's own process: one document at a time."""
    import weasyprint.document as module

    original = module.layout_document
    module.layout_document = layout_document
    try:
        yield
    finally:
        module.layout_document = original


@dataclass(frozen=True)
class WholeJob(Job):
    """A letter rendered whole (pool.Job), its later pages shared with an earlier letter's where they match."""

    def run(self, renderer: PdfRenderer) -> Done:
        with shared_pages():
            return super().run(renderer)
