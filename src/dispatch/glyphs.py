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
    """The characters one font file (all fonts of a collection) covers."""
    from fontTools.ttLib import TTCollection, TTFont  # a WeasyPrint dependency

    try:
        fonts = TTCollection(path).fonts if path.lower().endswith(".ttc") else [TTFont(path, lazy=True)]
    except Exception:  # a damaged font is WeasyPrint's to report; it simply covers nothing here
        return frozenset()
    covered: set[int] = set()
    for font in fonts:
        covered.update(font.getBestCmap() or {})
    return frozenset(covered)


class FontCoverage:
    """The characters covered by the font files under a folder.

    Fonts are read only as needed, smallest file first: a letter in one script usually needs one font.
    """

    def __init__(self, folder: Path) -> None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES) if folder.is_dir() else []
        self._unread = sorted(((p.stat().st_size, str(p), p.stat().st_mtime_ns) for p in files), reverse=True)
        self._covered: set[int] = set()
        self._checked: set[str] = set()  # characters known to be covered or not to need a glyph

    def _covers(self, code: int) -> bool:
        while code not in self._covered and self._unread:
            size, path, mtime = self._unread.pop()
            self._covered |= _cmap(path, (size, mtime))
        return code in self._covered

    def missing(self, text: str) -> list[str]:
        """Characters of text that no font covers, in order of first appearance."""
        new = set(text) - self._checked
        bad = {c for c in new if _needs_glyph(c) and not self._covers(ord(c))}
        self._checked |= new - bad
        if not bad:
            return []
        return sorted(bad, key=text.index)


def html_text(document: str) -> str:
    """The text a reader sees in an HTML document (tags, styles and scripts removed)."""
    return html.unescape(_TAG.sub(" ", _STYLE.sub(" ", document)))


def describe(chars: list[str]) -> str:
    return ", ".join(f"'{c}' (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})" for c in chars[:3]) + (
        f" and {len(chars) - 3} more" if len(chars) > 3 else "")
