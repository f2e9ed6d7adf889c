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


@lru_cache(maxsize=8)
def _cmap_union(folder: str, stamp: tuple) -> frozenset[int]:
    from fontTools.ttLib import TTCollection, TTFont  # a WeasyPrint dependency

    covered: set[int] = set()
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix.lower() not in FONT_SUFFIXES:
            continue
        try:
            fonts = TTCollection(str(path)).fonts if path.suffix.lower() == ".ttc" else [TTFont(str(path), lazy=True)]
        except Exception:  # a damaged font is WeasyPrint's to report; it simply covers nothing here
            continue
        for font in fonts:
            cmap = font.getBestCmap() or {}
            covered.update(cmap)
    return frozenset(covered)


class FontCoverage:
    """The characters covered by every font file under a folder."""

    def __init__(self, folder: Path) -> None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES) if folder.is_dir() else []
        stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        self.covered = _cmap_union(str(folder), stamp)

    def missing(self, text: str) -> list[str]:
        """Characters of text that no font covers, in order of first appearance."""
        seen: dict[str, None] = {}
        for char in text:
            if char not in seen and ord(char) not in self.covered and _needs_glyph(char):
                seen[char] = None
        return list(seen)


def html_text(document: str) -> str:
    """The text a reader sees in an HTML document (tags, styles and scripts removed)."""
    return html.unescape(_TAG.sub(" ", _STYLE.sub(" ", document)))


def describe(chars: list[str]) -> str:
    return ", ".join(f"'{c}' (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})" for c in chars[:3]) + (
        f" and {len(chars) - 3} more" if len(chars) > 3 else "")
