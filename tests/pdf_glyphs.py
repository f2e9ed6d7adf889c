"""What a PDF really draws: each run of text with its embedded font and the glyph ids it uses.

Text extraction alone cannot tell an empty box from a letter: a missing glyph still maps back to its
character. So this reads the content streams (pikepdf), turns each string's codes into glyph ids
through the font's encoding (Identity-H or an embedded CMap) and CIDToGIDMap, and reports the text
(through ToUnicode) drawn with each font. Glyph 0 is .notdef: the empty box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pikepdf

SHOW_TEXT = {"Tj", "TJ", "'", '"'}


@dataclass(frozen=True)
class Run:
    font: str  # the font's PostScript name without the subset prefix, e.g. "Noto-Naskh-Arabic"
    text: str
    glyphs: tuple[int, ...]

    @property
    def has_notdef(self) -> bool:
        return 0 in self.glyphs


def _hex(token: str) -> int:
    return int(token, 16)


_CODE = r"<([0-9a-fA-F]+)>\s*"
_DEST = r"(\d+|<[0-9a-fA-F]+>|\[[^\]]*\])"


def _cmap_entries(data: str, block: str) -> list[tuple[str, ...]]:
    """(code, destination) of a ...char block, (low, high, destination) of a ...range block."""
    pattern = _CODE * (2 if block.endswith("range") else 1) + _DEST
    entries = []
    for body in re.findall(rf"begin{block}(.*?)end{block}", data, re.S):
        entries.extend(re.findall(pattern, body))
    return entries


class _Font:
    def __init__(self, font: pikepdf.Dictionary) -> None:
        if font.Subtype != "/Type0":
            raise AssertionError(f"unexpected font type {font.Subtype} ({font.get('/BaseFont')})")
        self.name = str(font.BaseFont)[1:].split("+", 1)[-1]
        self.to_cid = None  # None: Identity-H
        encoding = font.Encoding
        if isinstance(encoding, pikepdf.Stream):
            self.to_cid = {}
            data = encoding.read_bytes().decode("latin-1")
            for code, cid in _cmap_entries(data, "cidchar"):
                self.to_cid[_hex(code)] = int(cid)
            for low, high, cid in _cmap_entries(data, "cidrange"):
                for offset in range(_hex(high) - _hex(low) + 1):
                    self.to_cid[_hex(low) + offset] = int(cid) + offset
        elif encoding != "/Identity-H":
            raise AssertionError(f"unexpected encoding {encoding} in {self.name}")
        descendant = font.DescendantFonts[0]
        cid_to_gid = descendant.get("/CIDToGIDMap", pikepdf.Name.Identity)
        self.gid_map = None
        if isinstance(cid_to_gid, pikepdf.Stream):
            raw = cid_to_gid.read_bytes()
            self.gid_map = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
        self.unicode: dict[int, str] = {}
        if "/ToUnicode" in font:
            data = font.ToUnicode.read_bytes().decode("latin-1")
            for code, dest in _cmap_entries(data, "bfchar"):
                self.unicode[_hex(code)] = bytes.fromhex(dest.strip("<>")).decode("utf-16-be")
            for low, high, dest in _cmap_entries(data, "bfrange"):
                if dest.startswith("<"):
                    start = bytes.fromhex(dest.strip("<>")).decode("utf-16-be")
                    for offset in range(_hex(high) - _hex(low) + 1):
                        self.unicode[_hex(low) + offset] = start[:-1] + chr(ord(start[-1]) + offset)

    def decode(self, data: bytes) -> tuple[str, tuple[int, ...]]:
        codes = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
        glyphs = []
        for code in codes:
            cid = code if self.to_cid is None else self.to_cid.get(code, 0)
            glyphs.append(cid if self.gid_map is None else (self.gid_map[cid] if cid < len(self.gid_map) else 0))
        return "".join(self.unicode.get(code, "\ufffd") for code in codes), tuple(glyphs)


def _strings(operator: str, operands) -> list[bytes]:
    if operator == "TJ":
        return [bytes(item) for item in operands[0] if isinstance(item, pikepdf.String)]
    return [bytes(operands[-1])]


def _runs_in(content, resources: pikepdf.Dictionary, fonts_seen: dict) -> list[Run]:
    runs: list[Run] = []
    fonts = resources.get("/Font", {})
    current = None
    for operands, operator in pikepdf.parse_content_stream(content):
        op = str(operator)
        if op == "Tf":
            key = str(operands[0])
            font = fonts[key]
            current = fonts_seen.setdefault(font.objgen, _Font(font))
        elif op in SHOW_TEXT:
            text, glyphs = current.decode(b"".join(_strings(op, operands)))
            runs.append(Run(current.name, text, glyphs))
        elif op == "Do":
            xobject = resources.XObject[str(operands[0])]
            if xobject.Subtype == "/Form":
                runs.extend(_runs_in(xobject, xobject.get("/Resources", resources), fonts_seen))
    return runs


def text_runs(path: Path) -> list[Run]:
    """Every run of text the PDF draws, page by page, in content-stream order."""
    with pikepdf.open(path) as pdf:
        fonts_seen: dict = {}
        runs = []
        for page in pdf.pages:
            runs.extend(_runs_in(page, page.Resources, fonts_seen))
        return runs


def fonts_drawing(path: Path, text: str) -> set[str]:
    """The fonts of the runs that draw this text (each word of it, when a line is split into runs).

    Right-to-left text is stored in visual order, so a word matches reversed as well.
    """
    words = text.split()
    return {run.font for run in text_runs(path) if any(w in run.text or w[::-1] in run.text for w in words)}


def missing_glyphs(path: Path) -> list[Run]:
    """Runs that draw .notdef (an empty box) for at least one character."""
    return [run for run in text_runs(path) if run.has_notdef]
