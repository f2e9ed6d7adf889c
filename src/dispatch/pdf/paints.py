"""The painting of pages that are the same in many letters, recorded once and replayed.

When tails.py gives a letter the later pages of an earlier letter (the "reference"), those pages are laid out
the same, box for box. Painting them again (turning each box into PDF drawing operations, then compressing
the page's content) costs as much for every letter as it did for the first. Here, the first time such a page
is painted in a process, its painting is recorded: the page's content operations, the marked-content tags
(structure) it made, and what it did to the document's shared state (fonts first used, each glyph's width
and text, transparency states). A later letter whose page matches replays it: the same operations, the same
tags on its own boxes, the same effects on its own fonts, the compressed content written once.

Replaying gives the bytes painting would: a recording is used only when
- the page is the same: every box of the page (margin boxes, running head and page numbers included) has
  the same kind, place, size and text, and the same style (the same computed style object, or one with the
  same values for every property), and every image is the very one recorded;
- the document's state before the page cannot change the painting: a glyph width that painting would take
  from an earlier page (it rounds widths at the size where a glyph is first drawn) is the one the recording
  took; a glyph or font the reference had already met before the page, and this letter has not, makes the
  recording unusable (its place in the fonts' order would be unknown);
- painting touched nothing else: no image, pattern, shading or group, no glyph missing from the fonts, no
  colour font.
Otherwise the page is painted (and that painting recorded too: up to KEPT per page).
"""

from __future__ import annotations

import copy
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

KEPT = 4  # recordings kept per page of a reference
_ALLOWED_NEW = ("ExtGState",)


class _Tracking(dict):
    """A font's widths or to_unicode while a page is recorded: what painting found there already, and what
    it added, in order."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.found: dict[int, Any] = {}
        self.added: list[tuple[int, Any]] = []
        self._mine: set[int] = set()

    def __contains__(self, key) -> bool:
        present = dict.__contains__(self, key)
        if present and key not in self._mine and key not in self.found:
            self.found[key] = dict.__getitem__(self, key)
        return present

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if key not in self._mine and key not in self.found:
            self.found[key] = value
        return value

    def __setitem__(self, key, value) -> None:
        if not dict.__contains__(self, key):
            self.added.append((key, value))
            self._mine.add(key)
        elif key not in self._mine:
            self.found.setdefault(key, dict.__getitem__(self, key))
            self.added.append((key, value))  # overwritten: not replayable (see _FontUse.replayable)
        dict.__setitem__(self, key, value)


@dataclass
class _FontUse:
    """What a recorded page did with one font."""

    new: Any  # the font as it was made, when the page made it (a pristine copy), else None
    widths_found: dict
    widths_added: list
    text_found: dict
    text_added: list

    def usable(self, font) -> bool:
        """Whether painting the page in a document where the font is `font` (None: not made yet) would do
        what the recording did."""
        if font is None:
            return self.new is not None
        widths, text = font.widths, font.to_unicode
        if any(widths.get(g, _NONE) != w for g, w in self.widths_found.items()):
            return False
        if any(g not in text for g in self.text_found):
            return False
        return all(widths.get(g, w) == w for g, w in self.widths_added)

    def apply(self, font) -> None:
        for g, w in self.widths_added:
            font.widths.setdefault(g, w)
        for g, t in self.text_added:
            font.to_unicode.setdefault(g, t)


_NONE = object()


@dataclass
class Recording:
    """One page's painting."""

    prefix: list  # the page's content before painting (the transformation generate_pdf starts it with)
    operations: list
    fonts: dict  # font key -> _FontUse, in the order the page first used them
    states_found: dict  # transparency states used that existed before the page
    states_added: list
    x_objects: tuple  # XObject names drawn (each must exist already)
    tags: list | None  # (box index, tag, mcid)
    shape: list  # the page's boxes: (kind, place and size, text)
    styles: list  # their computed styles
    replaced: list  # their images (replaced boxes), or None
    data: bytes | None = None  # the compressed content, once written
    digests: dict = field(default_factory=dict)


def _boxes(box, found: list) -> list:
    """The page's boxes in a fixed order (positioned boxes through their placeholders)."""
    todo = [box]
    while todo:
        box = todo.pop()
        inner = getattr(box, "_box", None)
        if inner is not None and type(box).__name__ == "AbsolutePlaceholder":
            box = inner
        found.append(box)
        children = getattr(box, "children", None)
        if children:
            todo.extend(reversed(children))
    return found


def _shape(boxes: list) -> list:
    return [(type(b).__name__, getattr(b, "position_x", None), getattr(b, "position_y", None),
             getattr(b, "width", None), getattr(b, "height", None), getattr(b, "text", None)) for b in boxes]


def _digest(style, memo: dict) -> tuple:
    key = id(style)
    if key not in memo:
        from weasyprint.css.properties import INITIAL_VALUES

        memo[key] = (style, tuple(_value(style, name) for name in INITIAL_VALUES))
    return memo[key][1]


def _value(style, name: str) -> str:
    try:
        return repr(style[name])
    except KeyError:  # a logical property (border-block-start...): computed into its physical one
        return ""


def _same_page(recording: Recording, boxes: list, memo: dict) -> bool:
    if len(boxes) != len(recording.shape) or _shape(boxes) != recording.shape:
        return False
    for box, style in zip(boxes, recording.styles):
        mine = box.style
        if mine is not style and _digest(mine, memo) != _digest(style, recording.digests):
            return False
    # An image is the same only as itself: an SVG drawn in the content (no XObject) that differs per letter
    # (a running head's) has the size of the one recorded.
    return all(getattr(box, "replacement", None) is image for box, image in zip(boxes, recording.replaced))


def _names(operations: list, operator: bytes) -> set[str]:
    """The resource names an operator uses in the operations (e.g. b"gs", b"Do")."""
    end = b" " + operator
    return {item[1:-len(end)].decode("latin-1") for item in operations
            if isinstance(item, bytes) and item.endswith(end) and item.startswith(b"/")}


def _usable(recording: Recording, stream, boxes: list, memo: dict) -> bool:
    if (stream._tags is None) != (recording.tags is None) or stream._tags or stream.extra:
        return False
    if stream.stream != recording.prefix:
        return False
    fonts, resources = stream._fonts, stream._resources
    if not all(use.usable(fonts.get(key)) for key, use in recording.fonts.items()):
        return False
    states = resources["ExtGState"]
    if any(states.get(name, _NONE) != value for name, value in recording.states_found.items()):
        return False
    if not all(name in resources["XObject"] for name in recording.x_objects):
        return False
    return _same_page(recording, boxes, memo)


def _replay(recording: Recording, stream, boxes: list) -> None:
    fonts = stream._fonts
    for key, use in recording.fonts.items():
        if key not in fonts:
            fonts[key] = _fresh(use.new)
        use.apply(fonts[key])
    states = stream._resources["ExtGState"]
    for name, value in recording.states_added:
        states.setdefault(name, copy.copy(value))
    stream.stream.extend(recording.operations)
    if recording.tags is not None:
        for index, tag, mcid in recording.tags:
            stream._tags[boxes[index]] = {"tag": tag, "mcid": mcid}
    stream.__class__ = _replayed_class(type(stream))
    stream.dispatch_recording = recording


def _fresh(font):
    """A font as the page made it, for a document that has not met it yet."""
    new = copy.copy(font)
    new.widths, new.to_unicode, new.missing = {}, {}, {}
    new.variations = dict(font.variations)
    new.used_in_forms = False
    return new


_classes: dict[type, type] = {}


def _replayed_class(base: type) -> type:
    """The stream class whose content is the recording's, compressed once for all the letters replaying it."""
    if base in _classes or getattr(base, "dispatch_replayed", False):
        return _classes.get(base, base)

    class Replayed(base):
        dispatch_replayed = True

        @property
        def data(self):
            recording = self.dispatch_recording
            if not self.compress or self.stream[:len(recording.prefix)] != recording.prefix or \
                    len(self.stream) != len(recording.prefix) + len(recording.operations):
                return super().data
            if recording.data is None:
                recording.data = super().data
            return recording.data

    _classes[base] = Replayed
    return Replayed


def _record(page, stream, scale: float, boxes_of) -> Recording | None:
    """Paint the page, recording what it did; None when the painting cannot be replayed (see the module)."""
    fonts, resources = stream._fonts, stream._resources
    prefix = list(stream.stream)
    before = {kind: list(resources[kind]) for kind in ("ExtGState", "XObject", "Pattern", "Shading")}
    missing = {key: len(font.missing) for key, font in fonts.items()}
    order: list = []
    made: dict = {}
    tracked: dict = {}

    def track(font) -> None:
        if id(font) not in tracked:
            tracked[id(font)] = font
            font.widths, font.to_unicode = _Tracking(font.widths), _Tracking(font.to_unicode)

    add_font = stream.add_font

    def recording_add_font(pango_font):
        from weasyprint.text.fonts import get_pango_font_key

        key = get_pango_font_key(pango_font)[0]
        if key not in fonts:
            font, size = add_font(pango_font)
            made[key] = _fresh(font)
        else:
            font, size = add_font(pango_font)
        if key not in order:
            order.append(key)
        track(font)
        return font, size

    stream.add_font = recording_add_font
    try:
        page.dispatch_paint(stream, scale)
    finally:
        del stream.add_font
        uses = {}
        for key in order:
            font = fonts[key]
            widths, text = font.widths, font.to_unicode
            font.widths, font.to_unicode = dict(widths), dict(text)
            uses[key] = _FontUse(made.get(key), widths.found, widths.added, text.found, text.added)
    if stream.stream[:len(prefix)] != prefix or stream.extra:
        return None
    if any(list(resources[kind]) != names for kind, names in before.items() if kind not in _ALLOWED_NEW):
        return None
    if any(len(font.missing) != missing.get(key, 0) for key, font in fonts.items()):
        return None
    if any(getattr(font, attribute, False) for key in order for font in [fonts[key]]
           for attribute in ("png", "svg", "colr", "bitmap", "used_in_forms")):
        return None
    if any(len(use.widths_added) != len({g for g, _ in use.widths_added}) or
           len(use.text_added) != len({g for g, _ in use.text_added}) for use in uses.values()):
        return None
    operations = stream.stream[len(prefix):]
    states = resources["ExtGState"]
    added = [name for name in states if name not in before["ExtGState"]]
    if any(not name.startswith("a") for name in added):
        return None
    used_states = _names(operations, b"gs")
    if any(name not in states for name in used_states):
        return None
    x_objects = _names(operations, b"Do")
    if any(name in stream._images for name in x_objects):  # an image: its resolution is set by every page it is on
        return None
    boxes = boxes_of()
    tags = None
    if stream._tags is not None:
        index = {id(box): i for i, box in enumerate(boxes)}
        if any(id(box) not in index for box in stream._tags):
            return None
        tags = [(index[id(box)], value["tag"], value["mcid"]) for box, value in stream._tags.items()]
    return Recording(prefix, list(operations), uses,
                     {name: states[name] for name in used_states if name in before["ExtGState"]},
                     [(name, copy.copy(states[name])) for name in added], tuple(sorted(x_objects)),
                     tags, _shape(boxes), [box.style for box in boxes],
                     [getattr(box, "replacement", None) for box in boxes])


@dataclass
class Painted:
    """Where a page's painting may be recorded and replayed: the recordings of one page of a reference."""

    recordings: list = field(default_factory=list)


statistics = {"replayed": 0, "recorded": 0, "painted": 0}


def _paint(self, stream, scale=1):
    """weasyprint.document.Page.paint, for pages shared by several letters (see the module)."""
    painted = getattr(self._page_box, "dispatch_painted", None)
    if painted is None or getattr(stream, "_tags", _NONE) is _NONE:
        return self.dispatch_paint(stream, scale)
    memo: dict = {}
    boxes = _boxes(self._page_box, [])
    for recording in painted.recordings:
        if _usable(recording, stream, boxes, memo):
            _replay(recording, stream, boxes)
            statistics["replayed"] += 1
            return None
    recording = _record(self, stream, scale, lambda: boxes)
    if recording is None:
        statistics["painted"] += 1
        return None
    statistics["recorded"] += 1
    painted.recordings.insert(0, recording)
    del painted.recordings[KEPT:]
    return None


@contextmanager
def replayed_pages():
    """While it lasts, WeasyPrint paints pages marked with a Painted (tails.py) through _paint. For a
    renderer's own process: one document at a time."""
    from weasyprint.document import Page

    original = Page.paint
    if original is _paint:  # already replaying (a document written while another is)
        yield
        return
    Page.dispatch_paint = original
    Page.paint = _paint
    try:
        yield
    finally:
        Page.paint = original
