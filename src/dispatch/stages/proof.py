"""Proofreading aids: a contact sheet of every letter's first page, and a report of what differs.

Made from letters already rendered (the pipeline renders what is not current first).
"""

from __future__ import annotations

import base64
import html
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from dispatch.files import write_atomic
from dispatch.inputs import Campaign
from dispatch.merge.versions import VersionMerger
from dispatch.pdf.raster import thumbnail_png

PER_PAGE = 12  # 4 columns x 3 rows on A4
_BLOCK_END = re.compile(r"</(p|div|li|h[1-6]|address|title|td|tr|section|header|main)\s*>|<br\s*/?>", re.I)
_TAG = re.compile(r"<[^>]*>")
_HIDDEN = re.compile(r"<(style|script|head)\b.*?</\1>", re.S | re.I)


@dataclass(frozen=True)
class ProofItem:
    """One letter as the proof sheet and the report see it."""

    id: str
    state: str
    pdf: Path
    pages: int
    lines: tuple[str, ...]
    fields: tuple[tuple[str, str], ...]  # (field name, merged value) for the fields the templates use


def text_lines(document: str) -> tuple[str, ...]:
    """The visible lines of an HTML document, one per block, white space collapsed."""
    text = _BLOCK_END.sub("\n", _HIDDEN.sub(" ", document))
    text = html.unescape(_TAG.sub(" ", text))
    return tuple(" ".join(line.split()) for line in text.split("\n") if line.strip())


def sheet_html(title: str, items: Sequence[ProofItem], thumbnails: Iterable[bytes], page_size: str = "A4") -> str:
    """The contact sheet: page 1 of every letter, 12 to a page, captioned with id and state."""
    cells = []
    for item, png in zip(items, thumbnails):
        data = base64.b64encode(png).decode("ascii")
        cells.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="">'
            f"<figcaption><b>{html.escape(item.id)}</b> {html.escape(item.state)}"
            f" · {item.pages} p.</figcaption></figure>")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Proof sheet: {html.escape(title)}</title>
<style>
@page {{ size: {page_size}; margin: 10mm 10mm 12mm 10mm;
  @bottom-center {{ content: "Proof sheet · {html.escape(title)} · page " counter(page) " of " counter(pages);
                   font: 7pt sans-serif; color: #555; }} }}
body {{ margin: 0; font: 7.5pt sans-serif; }}
.sheet {{ display: block; orphans: 1; widows: 1; }}
figure {{ display: inline-block; vertical-align: top; width: 44mm; margin: 0 1.25mm 5mm 1.25mm;
  break-inside: avoid; }}
img {{ width: 44mm; border: 0.3pt solid #888; display: block; }}
figcaption {{ margin-top: 1mm; white-space: nowrap; overflow: hidden; }}
</style></head>
<body><div class="sheet">{"".join(cells)}</div></body></html>"""


def report_text(title: str, items: Sequence[ProofItem]) -> str:
    """Plain text: the fields merged into each letter and the lines that differ from letter to letter."""
    counts = Counter(line for item in items for line in set(item.lines))
    common = {line for line, n in counts.items() if n > len(items) / 2} if len(items) > 1 else set()
    out = [f"Proof report: {title}, {len(items)} letter(s)", ""]
    used = sorted({name for item in items for name, _ in item.fields})
    out.append("Fields the letter and the templates use: " + (", ".join(used) or "none"))
    out.append("Lines not listed below are the same in most letters.")
    warnings = []
    filled = Counter(name for item in items for name, value in item.fields if value.strip())
    for item in items:
        out += ["", f"[{item.id}] {item.state} ({item.pages} page{'s' if item.pages != 1 else ''})"]
        for name, value in item.fields:
            shown = value.replace("\n", " / ") if value else "(empty)"
            out.append(f"  {name}: {shown}")
            if not value.strip() and filled[name] > len(items) / 2:  # empty here, filled in most letters
                warnings.append(f"[{item.id}] {item.state}: '{name}' is empty")
        differing = [line for line in item.lines if line not in common]
        if differing:
            out.append("  differs:")
            out += [f"    {line}" for line in differing]
        for bad in ("None", "nan", "undefined"):
            if any(re.search(rf"\b{bad}\b", line) for line in differing):
                warnings.append(f"[{item.id}] {item.state}: the letter contains the word '{bad}'")
    out += ["", f"Check these ({len(warnings)}):" if warnings else "Nothing looks unfilled."]
    out += [f"  {w}" for w in warnings]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class ProofResult:
    sheet: Path
    report: Path
    letters: int
    sheet_pages: int


def write_proof(campaign: Campaign, renderer, *, on_progress: Callable[[str], None] | None = None) -> ProofResult:
    """Write out/<letter>/proof.pdf (page 1 of every letter, 12 to a page) and out/<letter>/proof.txt (the
    fields merged into each letter and the lines that differ), from letters already rendered."""
    merger = VersionMerger(campaign)
    fields = merger.used_fields()
    items, thumbnails = [], []
    for recipient in campaign.recipients.rows:
        pdf = campaign.output_dir / f"{recipient.id}.pdf"
        png, pages = thumbnail_png(pdf)
        thumbnails.append(png)
        items.append(ProofItem(recipient.id, recipient.state, pdf, pages, text_lines(merger.html(recipient)),
                               tuple((name, recipient.get(name)) for name in fields)))
        if on_progress:
            on_progress(recipient.id)
    sheet = renderer.render(sheet_html(campaign.letter_name, items, thumbnails,
                                       campaign.workspace.settings.page_size))
    sheet_path = campaign.output_dir / "proof.pdf"
    report_path = campaign.output_dir / "proof.txt"
    write_atomic(sheet_path, sheet.data)
    write_atomic(report_path, report_text(campaign.letter_name, items).encode("utf-8"))
    return ProofResult(sheet_path, report_path, len(items), sheet.pages)
