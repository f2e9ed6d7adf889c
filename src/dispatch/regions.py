"""Variable regions: the parts of a letter layout that differ from one recipient to the next.

A region is an element of the letter's layout (templates/letter.html.j2) with a `data-variable="name"`
attribute, for example the address block or the salutation. Its size is fixed in the stylesheet (a
`height`), so what is inside it cannot move anything else on the page. Everything outside the regions
is then the same for every recipient whose letter is otherwise the same (same language version, same
conditional paragraphs), and is laid out once for all of them (see layers.py).

Here, without any PDF engine: the template source gets a mark at the start and end of each region's
content, so that one merge gives both the whole letter and its parts. The marks carry a random word
chosen per run, so no value in the CSV can forge one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from html import unescape as htmlunescape
from html.parser import HTMLParser

from dispatch.errors import TemplateError

ATTRIBUTE = "data-variable"
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_NAME = re.compile(r"^[A-Za-z][\w-]*$")


@dataclass(frozen=True)
class Region:
    """Where one region's content starts and ends in the template source (character offsets)."""

    name: str
    start: int
    end: int
    line: int


class _Finder(HTMLParser):
    def __init__(self, source: str, shown: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source, self.shown = source, shown
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", source)]
        self.regions: list[Region] = []
        self.open: tuple[str, str, int, int, int] | None = None  # name, tag, depth, content start, line

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag, attrs):
        line = self.getpos()[0]
        name = dict(attrs).get(ATTRIBUTE)
        if self.open is not None:
            if tag == self.open[1]:
                self.open = (self.open[0], tag, self.open[2] + 1, self.open[3], self.open[4])
            if name is not None:
                raise TemplateError(f"region {name!r} is inside region {self.open[0]!r}", file=self.shown, line=line,
                                    hint="regions cannot be nested: mark only the outer element")
            return
        if name is None:
            return
        if not name or not _NAME.match(name):
            raise TemplateError(f"{ATTRIBUTE}={name!r} is not a region name", file=self.shown, line=line,
                                hint="use a name of letters, digits and hyphens, e.g. data-variable=\"address\"")
        if tag in _VOID:
            raise TemplateError(f"region {name!r} is a <{tag}>, which has no content", file=self.shown, line=line,
                                hint="mark an element that contains the text, e.g. a <div> or <p>")
        self.open = (name, tag, 0, self._offset() + len(self.get_starttag_text()), line)

    def handle_startendtag(self, tag, attrs):
        if self.open is None and dict(attrs).get(ATTRIBUTE) is not None:
            raise TemplateError(f"region {dict(attrs)[ATTRIBUTE]!r} is an empty element", file=self.shown,
                                line=self.getpos()[0], hint="mark an element that contains the text")

    def handle_endtag(self, tag):
        if self.open is None or tag != self.open[1]:
            return
        name, _, depth, start, line = self.open
        if depth:
            self.open = (name, tag, depth - 1, start, line)
            return
        self.regions.append(Region(name, start, self._offset(), line))
        self.open = None


def find_regions(source: str, shown: str) -> list[Region]:
    """The regions of a template source, in order (TemplateError when one is malformed)."""
    finder = _Finder(source, shown)
    finder.feed(source)
    finder.close()
    if finder.open is not None:
        raise TemplateError(f"region {finder.open[0]!r} is never closed", file=shown, line=finder.open[4],
                            hint=f"close the <{finder.open[1]}> that has {ATTRIBUTE}=\"{finder.open[0]}\"")
    return finder.regions


class Marks:
    """The marks of one run: put into template sources, found again in merged letters."""

    FUNCTION = "dispatch_region"

    def __init__(self) -> None:
        self.word = secrets.token_hex(8)
        self._any = re.compile("\ue000" + self.word + r"(/?)([\w-]+)\ue001")
        self._region = re.compile("\ue000" + self.word + r"([\w-]+)\ue001(.*?)\ue000" + self.word + r"/\1\ue001",
                                  re.S)
        self._tags: dict[str, str] = {}  # each distinct piece of a <head>, kept once (see split)

    def mark(self, name: str, end: bool) -> str:
        return f"\ue000{self.word}{'/' if end else ''}{name}\ue001"

    def mark_source(self, source: str, shown: str) -> str:
        """The template source with a call to FUNCTION at the start and end of each region's content."""
        parts, last = [], 0
        for region in find_regions(source, shown):
            parts += [source[last:region.start], f"{{{{ {self.FUNCTION}({region.name!r}, false) }}}}",
                      source[region.start:region.end], f"{{{{ {self.FUNCTION}({region.name!r}, true) }}}}"]
            last = region.end
        parts.append(source[last:])
        return "".join(parts)

    def whole(self, marked: str) -> str:
        """The letter as the reader sees it: the marks taken out."""
        return self._any.sub("", marked)

    def split(self, marked: str) -> "Parts":
        """The letter's shared part (regions emptied, each left with a numbered slot) and each region's content."""
        contents: list[str] = []
        names: list[str] = []

        def take(match: re.Match) -> str:
            names.append(match.group(1))
            contents.append(self._any.sub("", match.group(2)))
            return f"\ue000{self.word}#{len(contents) - 1}\ue001"

        shared = self._region.sub(take, marked)
        head_end = shared.find("</head>")
        head = self._any.sub("", marked[:marked.find("</head>")]) if head_end >= 0 else ""
        # Kept as its tags, each distinct one once for the run: most are the same in every letter (a joint
        # letter's author list runs to kilobytes), so 10,000 recipients' heads take a few megabytes.
        pieces = tuple(self._tags.setdefault(piece, piece) for piece in _TAG_STARTS.split(head))
        if head_end >= 0:  # <title> and <meta> are the PDF's metadata, set per recipient
            shared = _blank_metadata(shared[:head_end]) + shared[head_end:]
        shared = self._any.sub("", shared)
        return Parts(shared, tuple(names), tuple(contents), pieces, self.word)


_TAG_STARTS = re.compile(r"(?=<)")
_TITLE = re.compile(r"(<title\b[^>]*>).*?(</title>)", re.S | re.I)
_META_CONTENT = re.compile(r"""(<meta\b[^>]*?\bcontent=)("[^"]*"|'[^']*')""", re.I)


def _blank_metadata(head: str) -> str:
    return _META_CONTENT.sub(r'\1""', _TITLE.sub(r"\1\2", head))


@dataclass(frozen=True)
class Parts:
    """One recipient's letter in parts: what it shares with others, and what is its own."""

    shared: str  # the HTML with every region empty but for a slot mark, and blank <title>/<meta>
    names: tuple[str, ...]  # the region of each slot, in document order
    contents: tuple[str, ...]  # the HTML inside each region
    head: tuple[str, ...]  # the recipient's own <head> (title and metadata), in pieces: "".join(head)
    word: str  # the run's mark word (see Marks)

    @property
    def body(self) -> str:
        """The shared HTML from </head> on (the head is the recipient's own: see Master.whole_html)."""
        head_end = self.shared.find("</head>")
        return self.shared[head_end:] if head_end >= 0 else self.shared

    @property
    def group(self) -> str:
        """Letters with the same group key differ only inside their regions and metadata."""
        return hashlib.sha256(self.shared.encode("utf-8")).hexdigest()

    def fill_slots(self, filler) -> str:
        """The shared HTML with each slot replaced by filler(index)."""
        return re.sub("\ue000" + self.word + "#(\\d+)\ue001", lambda m: filler(int(m.group(1))), self.shared)


@dataclass(frozen=True)
class Difference:
    """Where two letters' text differs outside their regions: the words before, then each letter's words."""

    before: str
    first: str
    second: str


def first_difference(a: str, b: str, *, words: int = 6) -> Difference | None:
    """The first place where two letters' HTML differs in its text (tags and the regions' slot marks left
    out), with up to `words` words before it and the differing words (at most `words`) of each."""
    def text(html: str) -> list[str]:
        html = re.sub("\ue000[^\ue001]*\ue001", " ", html)
        return htmlunescape(re.sub(r"<[^>]*>", " ", html)).split()

    left, right = text(a), text(b)
    start = 0
    while start < min(len(left), len(right)) and left[start] == right[start]:
        start += 1
    if start == len(left) == len(right):
        return None
    end = 0
    while end < min(len(left), len(right)) - start and left[-1 - end] == right[-1 - end]:
        end += 1
    first, second = left[start:len(left) - end], right[start:len(right) - end]
    return Difference(" ".join(left[max(0, start - words):start]), " ".join(first[:words]),
                      " ".join(second[:words]))


def place_in_source(source: str, before: str) -> tuple[int, int] | None:
    """(line, column), 1-based, just after the last words of `before` in a letter's source (Markdown with
    Jinja2), when they are found there: where a value that makes letters differ is written."""
    tail = before.split()[-3:]
    if not tail:
        return None
    pattern = r"\s+".join(re.escape(word) for word in tail)
    found = None
    for found in re.finditer(pattern, source):
        pass  # the last one: the words nearest the value in a letter that repeats them
    if found is None:
        return None
    at = len(source) - len(source[found.end():].lstrip())  # the next thing written after those words
    return source.count("\n", 0, at) + 1, at - (source.rfind("\n", 0, at) + 1) + 1
