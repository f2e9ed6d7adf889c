"""Letters whose later pages are shared (pdf/tails.py) and whose painting is replayed (pdf/paints.py), in many
shapes: each letter's PDF must be the bytes of its own whole render, plain and PDF/A-3u.

Every case renders a sequence of letters twice in one process: whole (no sharing, no replay), then inside
tails.shared_pages(); the first letter is the reference, the later ones share its later pages and replay (or
refuse to replay) their painting."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from dispatch.pdf import paints, tails
from dispatch.pdf.engine import PdfRenderer

REPO = Path(__file__).resolve().parent.parent
VARIANTS = [None, "pdf/a-3u"]

STYLE = """
@font-face { font-family: S; src: url(fonts/SourceSerifPro-Regular.ttf); }
@font-face { font-family: S; font-weight: 700; src: url(fonts/SourceSerifPro-Bold.ttf); }
@font-face { font-family: S; font-style: italic; src: url(fonts/SourceSerifPro-It.ttf); }
@font-face { font-family: Ar; src: url(fonts/NotoNaskhArabic-Regular.ttf); }
@font-face { font-family: He; src: url(fonts/NotoSerifHebrew-Regular.ttf); }
@page { size: A6; margin: 15mm 12mm;
        @bottom-center { content: "Page " counter(page) " of " counter(pages); font-size: 7pt; }
        @top-right { content: element(running); } }
@page :first { @top-right { content: none; } }
html { font-family: S, Ar, He; font-size: 10pt; }
.big { font-size: 21pt; }
.running { position: running(running); font-size: 7pt; }
.rest { break-before: page; }
"""

# The first page draws Z, z, q at 21 pt in some letters, where the later pages draw them at 10 pt.
FIRSTS = ["Zanzibar quiz", "Albania", "Andorra", "Albania", "Zanzibar quiz"]


def paragraphs(count: int, extra: str = "") -> str:
    return "".join(f"<p>Paragraph {n}: the quick brown fox jumps over the <b>lazy</b> <i>dog</i>, {extra} "
                   f"again and again.</p>" for n in range(count))


def letter(first: str, rest: str, style: str = "", running: str = "The same running head", big: str = "") -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>{STYLE}{style}</style></head>'
            f'<body><div class="running">{running}</div><p class="big{big}">{first}</p>'
            f'<p>To whom it may concern.</p><div class="rest">{rest}</div></body></html>')


def svg(body: str, width: int = 40, height: int = 20) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{body}</svg>'


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    shutil.copytree(REPO / "templates" / "fonts", folder / "fonts")
    Image.new("RGB", (40, 20), (200, 30, 30)).save(folder / "red.png")
    (folder / "green.svg").write_text(svg('<rect width="40" height="20" fill="#1a6"/>'))
    (folder / "square.svg").write_text(svg('<rect width="40" height="20" fill="#c00"/>'))
    (folder / "disc.svg").write_text(svg('<circle cx="20" cy="10" r="9" fill="#00c"/>'))
    return folder


@pytest.fixture(autouse=True)
def fresh():
    tails._references.clear()
    yield
    tails._references.clear()


def same_bytes(renderer: PdfRenderer, htmls: list[str], *, plain: list[bool] | None = None,
               shared: bool = True) -> dict[str, int]:
    """Render the letters whole, then sharing pages; assert each letter's bytes; return what was shared.
    shared: some letter must share its later pages (else none may)."""
    plain = plain or [False] * len(htmls)
    whole = [renderer.write(renderer.layout(html, plain=p), plain=p) for html, p in zip(htmls, plain)]
    tails._references.clear()
    before = {**tails.statistics, **paints.statistics}
    with tails.shared_pages():
        sharing = [renderer.write(renderer.layout(html, plain=p), plain=p) for html, p in zip(htmls, plain)]
    differ = [n for n, (a, b) in enumerate(zip(sharing, whole)) if a != b]
    assert differ == [], f"letters {differ} differ from their whole render"
    counts = {key: value - before[key] for key, value in {**tails.statistics, **paints.statistics}.items()}
    if shared:
        assert counts["shared"] >= 1, "no letter shared its later pages: the case tests nothing"
    else:
        assert counts["shared"] == 0, "a letter shared later pages it must not share"
    return counts


def check(templates: Path, variant: str | None, htmls: list[str], *, shared: bool = True) -> dict[str, int]:
    return same_bytes(PdfRenderer(templates, pdf_variant=variant), htmls, shared=shared)


# Cases that hold.

@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_links_and_anchors_on_later_pages(templates, variant):
    rest = (paragraphs(6) + '<p id="later">A <a href="https://example.org/x">link out</a> and '
            '<a href="#top">back to the top</a>.</p>' + paragraphs(6))
    counts = check(templates, variant, [letter(f'<span id="top">{f}</span> <a href="#later">see later</a>', rest)
                                        for f in FIRSTS])
    assert counts["replayed"] >= 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_link_in_the_running_head_that_differs_per_letter(templates, variant):
    targets = ["mailto:a@example.org", "mailto:b@example.org", "#top", "mailto:b@example.org", "#top"]
    check(templates, variant, [letter(f'<span id="top">{f}</span>', paragraphs(10),
                                      running=f'<a href="{t}">Contact</a>') for f, t in zip(FIRSTS, targets)])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_images_on_the_second_page_only(templates, variant):
    rest = paragraphs(5) + '<p><img src="red.png" style="width: 30mm"> and <img src="green.svg"></p>' + paragraphs(5)
    check(templates, variant, [letter(f, rest) for f in FIRSTS])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_an_image_on_both_pages_at_different_sizes(templates, variant):
    rest = paragraphs(5) + '<p><img src="red.png" style="width: 30mm"></p>' + paragraphs(5)
    firsts = [f + (f' <img src="red.png" style="width: {5 + 3 * n}mm">' if n % 2 else "") for n, f in enumerate(FIRSTS)]
    check(templates, variant, [letter(f, rest) for f in firsts])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", ["21pt", "10pt"])
def test_a_font_first_met_on_a_later_page_or_on_the_first_in_some_letters(templates, variant, size):
    """Hebrew is drawn on page 2 of every letter, and on page 1 of some, at another size or the same one."""
    rest = (paragraphs(3) + "<p>Shalom: שָׁלוֹם עֲלֵיכֶם, <b>bold</b> and <i>italic words</i>.</p>"
            + paragraphs(4))
    some = f'<span style="font-size: {size}">Albania שלום <i>quiz</i></span>'
    firsts = ["Zanzibar", some, "Andorra", some, "Zanzibar", "Chad <i>quiz</i>", "Chad עליכם"]
    counts = check(templates, variant, [letter(f, rest) for f in firsts])
    assert counts["replayed"] >= 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_right_to_left_arabic_on_later_pages(templates, variant):
    rest = (paragraphs(4) + '<p dir="rtl" lang="ar">'
            "السلام عليكم ورحمة الله وبركاته، مرحبا بكم في الرسالة.</p>" + paragraphs(4))
    firsts = ["Zanzibar", "Albania السلام", "Andorra", "Albania السلام", "Zanzibar", "Chad مرحبا"]
    check(templates, variant, [letter(f, rest) for f in firsts])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_justified_and_hyphenated_text(templates, variant):
    rest = ('<div style="text-align: justify; hyphens: auto">'
            + paragraphs(12, "notwithstanding extraordinarily incomprehensible internationalisation") + "</div>")
    counts = check(templates, variant, [letter(f, rest) for f in FIRSTS])
    assert counts["replayed"] >= 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_letter_and_word_spacing(templates, variant):
    rest = ('<div style="letter-spacing: 0.7pt; word-spacing: 3pt">' + paragraphs(8) + "</div>"
            '<p style="letter-spacing: -0.3pt">Tight kerning: AVAW To Ty.</p>')
    check(templates, variant, [letter(f, rest) for f in FIRSTS])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_colours_with_alpha(templates, variant):
    """Transparency states (a0.5...) met on a later page, and on the first page of some letters only."""
    rest = (paragraphs(3) + '<p style="color: rgba(200, 0, 0, 0.5)">Half red.</p>'
            '<p style="background: rgba(0, 0, 255, 0.25)">Tinted.</p>' + paragraphs(5)
            + '<p style="color: rgba(0, 0, 0, 0.7)">Grey.</p>')
    firsts = ["Zanzibar", '<span style="color: rgba(200, 0, 0, 0.5)">Albania</span>', "Andorra",
              '<span style="color: rgba(0, 0, 0, 0.7)">Albania</span>', "Zanzibar",
              '<span style="color: rgba(200, 0, 0, 0.5)">Albania</span>']
    counts = check(templates, variant, [letter(f, rest) for f in firsts])
    assert counts["replayed"] >= 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_opacity_groups_and_stroke_alpha(templates, variant):
    """A page with an opacity group (an XObject) and a border with alpha is painted; the page after it replayed."""
    rest = ('<p style="opacity: 0.6">Faded.</p><p style="border: 2px solid rgba(0, 0, 0, 0.3)">Bordered.</p>'
            + paragraphs(5) + '<p style="break-before: page; color: rgba(0, 0, 0, 0.7)">Grey.</p>' + paragraphs(3))
    firsts = ["Zanzibar", '<span style="opacity: 0.5">Albania</span>', "Andorra",
              '<span style="opacity: 0.5">Albania</span>', "Zanzibar"]
    check(templates, variant, [letter(f, rest) for f in firsts])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_counters_and_running_strings_in_margin_boxes(templates, variant):
    style = ("body { counter-reset: sec; }"
             " h2 { counter-increment: sec; font-size: 12pt; string-set: chapter content(); }"
             " h2::before { content: counter(sec, upper-roman) '. '; }"
             " @page { @top-left { content: string(chapter); font-size: 7pt; } }")
    rest = "".join(f"<h2>Section {n}</h2>" + paragraphs(3) for n in range(5))
    counts = check(templates, variant, [letter(f, rest, style) for f in FIRSTS])
    assert counts["replayed"] >= 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_string_set_on_the_first_page_shown_on_later_ones(templates, variant):
    style = "@page { @top-left { content: string(who); font-size: 7pt; } } .who { string-set: who content(); }"
    firsts = ['<span class="who">Zanzibar</span>', '<span class="who">Albania</span>',
              '<span class="who">Albania</span>', "Andorra", "Chad"]
    check(templates, variant, [letter(f, paragraphs(14), style) for f in firsts])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_running_head_that_differs_per_letter(templates, variant):
    heads = ["Head A", "Head B", "Head A", "Head B", "Head A"]
    check(templates, variant, [letter(f, paragraphs(12), running=h) for f, h in zip(FIRSTS, heads)])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_bookmarks_on_later_pages(templates, variant):
    rest = ("<h1>Part one</h1>" + paragraphs(4) + "<h2>Details</h2>" + paragraphs(4)
            + "<h1>Part two</h1>" + paragraphs(4))
    check(templates, variant, [letter(f, rest, "h1, h2 { font-size: 12pt; }") for f in FIRSTS])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_glyph_missing_from_every_font_on_the_first_page(templates, variant):
    firsts = ["Zanzibar", "Albania \ue000", "Andorra", "Albania \ue000", "Zanzibar \ue000 x", "Chad"]
    counts = check(templates, variant, [letter(f, paragraphs(12)) for f in firsts])
    assert counts["replayed"] >= 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_table_on_the_second_page(templates, variant):
    cells = "".join(f'<tr><td style="border: 1px solid #999">Row {n}</td>'
                    f'<td style="border: 1px solid #999; text-align: right">{n * 37}</td></tr>' for n in range(8))
    rest = (paragraphs(2) + '<table style="border-collapse: collapse"><tr><th style="border: 1px solid #333">State</th>'
            f'<th style="border: 1px solid #333">Votes</th></tr>{cells}</table>' + paragraphs(4))
    check(templates, variant, [letter(f, rest) for f in FIRSTS])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_lists_with_markers(templates, variant):
    rest = (paragraphs(2) + "<ol>" + "".join(f"<li>Item {n} of the list</li>" for n in range(6)) + "</ol>"
            '<ul style="list-style-type: square">' + "".join(f"<li>Point {n}</li>" for n in range(4)) + "</ul>"
            "<ul style=\"list-style-type: '→ '\">" + "".join(f"<li>Arrow {n}</li>" for n in range(3)) + "</ul>"
            + paragraphs(3))
    counts = check(templates, variant, [letter(f, rest) for f in FIRSTS])
    assert counts["replayed"] >= 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_letters_with_different_numbers_of_pages(templates, variant):
    """No forced break: first pages end in several places (several references), "Page n of N" differs."""
    def long_first(words: int, who: str) -> str:
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>{STYLE}</style></head><body>'
                f'<div class="running">Head</div><p>{who}: {"A long first paragraph. " * words}</p>'
                f"{paragraphs(14)}</body></html>")

    spec = [(5, "Zanzibar"), (30, "Albania"), (5, "Andorra"), (50, "Chad"), (30, "Zanzibar"), (70, "Peru"),
            (5, "Albania"), (50, "Zanzibar"), (30, "Chad"), (6, "Fiji")]
    check(templates, variant, [long_first(words, who) for words, who in spec])


# Painting a line cut by line-clamp sets its Pango layout's text to the text and an ellipsis; a copied page's
# text boxes share their layouts with the reference's: such a page is never shared (tails._clamped).


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cut", [
    "line-clamp: 2",
    "white-space: nowrap; overflow: hidden; text-overflow: ellipsis"])
def test_an_ellipsis_on_a_shared_page_painted_again(templates, variant, cut):
    """Painting an ellipsis can change the text box's Pango layout, which a shared page's copy shares with the
    reference: letters whose running head (or glyph widths) differ paint the page again."""
    rest = paragraphs(3) + f'<p style="{cut}">' + "A paragraph cut with an ellipsis, " * 8 + "</p>" + paragraphs(6)
    heads = ["Same head", "Same head", "Other head", "Same head", "Third head", "Same head"]
    check(templates, variant, [letter(f, rest, running=h) for f, h in zip([*FIRSTS, "Chad"], heads)],
          shared="line-clamp" not in cut)


@pytest.mark.slow
def test_plain_layouts_and_pdf_a_layouts_in_one_process(templates):
    renderer = PdfRenderer(templates, pdf_variant="pdf/a-3u")
    same_bytes(renderer, [letter(f, paragraphs(10)) for f in FIRSTS], plain=[n % 2 == 1 for n in range(len(FIRSTS))])


@pytest.mark.slow
def test_two_renderers_in_one_process(templates):
    tagged, plain = PdfRenderer(templates, pdf_variant="pdf/a-3u"), PdfRenderer(templates)
    renderers = [tagged, plain, tagged, plain, tagged]
    htmls = [letter(f, paragraphs(10)) for f in FIRSTS]
    whole = [r.write(r.layout(html)) for r, html in zip(renderers, htmls)]
    with tails.shared_pages():
        shared = [r.write(r.layout(html)) for r, html in zip(renderers, htmls)]
    assert [n for n, (a, b) in enumerate(zip(shared, whole)) if a != b] == []


# Images: WeasyPrint draws an SVG in the page's content (no XObject); a running head or fixed box showing
# another SVG of the same size must not replay the recorded drawing (paints._same_page compares images).


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_an_svg_image_in_the_running_head_that_differs_per_letter(templates, variant):
    images = ["square.svg", "disc.svg", "square.svg", "disc.svg", "square.svg"]
    check(templates, variant, [letter(f, paragraphs(10), running=f'Head <img src="{i}">')
                               for f, i in zip(FIRSTS, images)])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_an_inline_svg_in_the_running_head_that_differs_per_letter(templates, variant):
    colours = ["#c00", "#00c", "#c00", "#00c", "#c00"]
    heads = ["Head " + svg(f'<rect width="20" height="10" fill="{c}"/>') for c in colours]
    check(templates, variant, [letter(f, paragraphs(10), running=h) for f, h in zip(FIRSTS, heads)])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_fixed_svg_with_text_that_differs_per_letter(templates, variant):
    """A reference number drawn as SVG text in a fixed box (repeated on every page): same size, other glyphs."""
    def fixed(text: str) -> str:
        return ('<span style="position: fixed; bottom: 0; right: 0">'
                + svg(f'<text x="0" y="11" font-family="S" font-size="10">{text}</text>', 60, 14) + "</span>")

    refs = ["Ref A1", "Ref B2", "Ref A1", "Ref B2", "Ref A1"]
    check(templates, variant, [letter(fixed(r) + f, paragraphs(10)) for f, r in zip(FIRSTS, refs)])


# What comes before the second page and reaches the later pages' styles or content: a <style> that differs,
# an @page size, a class or an empty paragraph matched by a sibling selector, quotes opened on page 1. Such
# letters do not share their later pages (tails.Tree.outline, tails._quotes).


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_style_in_the_head_that_differs_per_letter(templates, variant):
    colours = ["#000", "#c00", "#000", "#c00", "#000"]
    check(templates, variant, [letter(f, paragraphs(10), f".rest {{ color: {c} }}") for f, c in zip(FIRSTS, colours)])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_later_pages_the_same_but_at_another_page_size(templates, variant):
    sizes = ["A6", "105mm 160mm", "A6", "105mm 160mm", "A6"]
    check(templates, variant, [letter(f, paragraphs(10), f"@page {{ size: {s} }}") for f, s in zip(FIRSTS, sizes)])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_class_on_the_first_page_that_styles_later_ones(templates, variant):
    marks = ["", " vip", "", " vip", ""]
    check(templates, variant, [letter(f, paragraphs(10), ".vip ~ .rest { color: #c00 }", big=m)
                               for f, m in zip(FIRSTS, marks)])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_an_empty_first_paragraph_that_styles_later_pages(templates, variant):
    firsts = ["Zanzibar quiz", "", "Andorra", "", "Zanzibar quiz"]
    check(templates, variant, [letter(f, paragraphs(10), ".big:empty ~ .rest { color: #c00 }") for f in firsts])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_an_open_quote_on_the_first_page_of_some_letters(templates, variant):
    style = ".open::after { content: open-quote; } q { quotes: '«' '»' '‹' '›'; }"
    rest = paragraphs(3) + "<p><q>Quoted</q></p>" + paragraphs(6)
    marks = ["", " open", "", " open", ""]
    check(templates, variant, [letter(f, rest, style, big=m) for f, m in zip(FIRSTS, marks)], shared=False)
