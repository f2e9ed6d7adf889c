"""Which characters the campaign's own fonts can draw, so that no letter goes out with empty boxes.

The fonts in templates/fonts/ are the ones every machine has (system fonts differ from one machine to
the next). A character none of them covers is reported before anything is rendered.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".woff", ".woff2")
_TAG = re.compile(r"<[^>]*>")
_STYLE = re.compile(r"<(style|script)\b.*?</\1>", re.S | re.I)


def _needs_glyph(char: str) -> bool:
    category = unicodedata.category(char)
    return not (char.isspace() or category in ("Cc", "Cf", "Zl", "Zp"))


@lru_cache(maxsize=64)
def _cmap(path: str, stamp: tuple) -> frozenset[int]:
    """The characters one font file (every font of a collection) covers; stamp is its mtime and size."""
    from fontTools.ttLib import TTCollection, TTFont  # a WeasyPrint dependency

    try:
        fonts = TTCollection(path).fonts if path.lower().endswith(".ttc") else [TTFont(path, lazy=True)]
        covered: set[int] = set()
        for font in fonts:
            covered.update(font.getBestCmap() or {})
    except Exception:  # a damaged font is WeasyPrint's to report; it simply covers nothing here
        return frozenset()
    return frozenset(covered)


class FontCoverage:
    """The characters covered by every font file under a folder.

    A font's character map is read only when a character is not covered by the fonts read so far,
    smallest file first: a letter in the Latin script never waits for a large CJK font to be read.
    """

    def __init__(self, folder: Path) -> None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES) if folder.is_dir() else []
        stamps = [(str(p), (p.stat().st_mtime_ns, p.stat().st_size)) for p in files]
        self._unread = sorted(stamps, key=lambda item: (item[1][1], item[0]))
        self._covered: set[int] = set()

    def missing(self, text: str) -> list[str]:
        """Characters of text that no font covers, in order of first appearance."""
        covered = self._covered
        chars = [c for c in dict.fromkeys(text) if ord(c) not in covered and _needs_glyph(c)]
        while chars and self._unread:
            covered.update(_cmap(*self._unread.pop(0)))
            chars = [c for c in chars if ord(c) not in covered]
        return chars


def html_text(document: str) -> str:
    """The text a reader sees in an HTML document (tags, styles and scripts removed)."""
    return html.unescape(_TAG.sub(" ", _STYLE.sub(" ", document)))


def describe(chars: list[str]) -> str:
    return ", ".join(f"'{c}' (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})" for c in chars[:3]) + (
        f" and {len(chars) - 3} more" if len(chars) > 3 else "")
