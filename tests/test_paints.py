"""Pages shared by several letters are painted once and replayed (pdf/paints.py): each letter's PDF is still the
bytes its own whole render gives, when the replay is used and when it must not be (a glyph first drawn at
another size on an earlier page, a running head that differs, a glyph the earlier letter had met before)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dispatch.pdf import paints, tails
from dispatch.pdf.engine import PdfRenderer

REPO = Path(__file__).resolve().parent.parent

STYLE = """
@font-face { font-family: S; src: url(fonts/SourceSerifPro-Regular.ttf); }
@font-face { font-family: S; font-weight: 700; src: url(fonts/SourceSerifPro-Bold.ttf); }
@font-face { font-family: S; font-style: italic; src: url(fonts/SourceSerifPro-It.ttf); }
@page { size: A5; margin: 20mm; @bottom-center { content: "Page " counter(page) " of " counter(pages); font-size: 8pt; }
        @top-right { content: element(running); } }
@page :first { @top-right { content: none; } }
html { font-family: S; font-size: 11pt; }
.big { font-size: 23pt; }
.running { position: running(running); font-size: 8pt; color: #555; }
.rest { break-before: page; }
.faint { opacity: 0.99; color: rgba(0, 0, 0, 0.5); }
"""

REST = "".join(
    f"<p>Paragraph {n}: Zanzibar, Quebec, Xanthe and Yvonne quizzed <b>jovial</b> <i>wizards</i> about "
    f"{'the' if n % 2 else 'a'} quick brown fox that jumps over the lazy dog, {n} times over.</p>"
    for n in range(60)) + '<p class="faint">Half-tone ink, painted through a transparency state.</p>'


def letter(first: str, running: str = "The same running head") -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>{STYLE}</style></head><body>'
            f'<div class="running">{running}</div><p class="big">{first}</p><p>To whom it may concern.</p>'
            f'<div class="rest">{REST}</div></body></html>')


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    shutil.copytree(REPO / "templates" / "fonts", folder / "fonts")
    return folder


@pytest.fixture
def fresh():
    tails._references.clear()
    yield
    tails._references.clear()


# The first letter is the reference. "Zanzibar" on its first page draws Z, z, b at 23 pt, where the later
# pages draw them at 11 pt (widths are rounded at the size a glyph is first met); "Albania" does not.
FIRSTS = [("Zanzibar quiz", "The same running head"), ("Albania", "The same running head"),
          ("Andorra", "The same running head"), ("Albania", "A running head of its own"),
          ("Albania", "The same running head"), ("Zanzibar quiz", "The same running head"),
          ("Bolivia", "The same running head")]


@pytest.mark.slow
@pytest.mark.parametrize("variant", [None, "pdf/a-3u"])
def test_replayed_pages_give_the_bytes_of_a_whole_render(templates, fresh, variant):
    renderer = PdfRenderer(templates, pdf_variant=variant)
    htmls = [letter(first, running) for first, running in FIRSTS]
    whole = [renderer.write(renderer.layout(html)) for html in htmls]
    assert len(renderer.layout(htmls[0]).pages) >= 3
    before = dict(paints.statistics)
    with tails.shared_pages():
        shared = [renderer.write(renderer.layout(html)) for html in htmls]
    for n, (a, b) in enumerate(zip(shared, whole)):
        assert a == b, f"letter {n} ({FIRSTS[n]}) differs from its whole render"
    replayed = paints.statistics["replayed"] - before["replayed"]
    recorded = paints.statistics["recorded"] - before["recorded"]
    # The second "Albania" and "Zanzibar" letters find a recording made for a letter like them.
    assert replayed >= 2 * 2
    # The letter with a running head of its own cannot replay another's pages: it records its own.
    assert recorded >= 2 * 2


@pytest.mark.slow
def test_a_recording_is_not_used_where_an_earlier_page_set_a_glyph_width(templates, fresh):
    """Zanzibar's second page was painted with widths its first page set at 23 pt: Albania's must not take
    it (its first page does not draw Z); a second Albania takes Albania's own."""
    renderer = PdfRenderer(templates)
    zanzibar, albania = letter("Zanzibar quiz"), letter("Albania")
    expected = renderer.write(renderer.layout(albania))
    with tails.shared_pages():
        renderer.write(renderer.layout(zanzibar))
        before = dict(paints.statistics)
        first = renderer.write(renderer.layout(albania))
        after_first = dict(paints.statistics)
        second = renderer.write(renderer.layout(albania))
    assert first == expected and second == expected
    # Zanzibar's second page was refused to the first Albania (its later pages, painted with the widths
    # their own second page set, could be replayed); the second Albania replays that page too.
    first_replays = after_first["replayed"] - before["replayed"]
    assert paints.statistics["replayed"] - after_first["replayed"] == first_replays + 1


def test_pages_laid_out_whole_are_painted_as_usual(templates, fresh):
    renderer = PdfRenderer(templates)
    before = dict(paints.statistics)
    data = renderer.write(renderer.layout(letter("Albania")))  # no shared layout: no page is marked
    assert data.startswith(b"%PDF") and paints.statistics == before
