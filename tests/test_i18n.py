"""Letters in the recipient's language and script: translations, dates, salutations, right to left, fonts."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pikepdf
import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from dispatch import campaign, i18n
from dispatch.cli import app
from dispatch.errors import LetterError
from dispatch.letters import read_letter_versions
from dispatch.pdf.engine import PdfRenderer
from tests.conftest import REPO, WorkspaceFactory, flat, pdf_text, row, ws
from tests.pdf_glyphs import fonts_drawing, missing_glyphs, text_runs

TRANSLATIONS = REPO / "tests" / "data" / "translations"
CJK, DEVANAGARI, CYRILLIC = "习近平", "नरेन्द्र मोदी", "Владимир Зеленский"
ARABIC_NAME = "عبد الله"


def with_translations(folder: Path, *languages: str) -> Path:
    for language in languages:
        shutil.copy(TRANSLATIONS / f"letter.{language}.md", folder / "letters" / f"letter.{language}.md")
    return folder


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """One campaign, rendered once: English, French, Spanish, Arabic and a German recipient with no translation."""
    factory = WorkspaceFactory(tmp_path_factory.mktemp("i18n"))
    folder = factory([
        row("NA", "Namibia"),
        row("FR", "France", language="fr"),
        row("ES", "Spain", language="es"),
        row("JO", "Jordan", language="ar", title="", ambassador=ARABIC_NAME, address="عمان\nالأردن"),
        row("DE", "Germany", language="de"),
        row("CN", "China", ambassador=f"{CJK} {DEVANAGARI} {CYRILLIC}"),
        row("EG", "Egypt", language="ar", salutation="سعادة السفير،"),
    ])
    with_translations(folder, "fr", "es", "ar")
    campaign.render(ws(folder))
    return folder / "out" / "letter"


def text(out: Path, rid: str) -> str:
    return flat(pdf_text(out / f"{rid}.pdf"))


@pytest.mark.parametrize("rid, salutation, dateline, page_label, body", [
    ("NA", "Your Excellency,", "New York, 28 April 2020", "Page 1 of 1", "We write to Namibia about the Court."),
    ("FR", "Excellence,", "New York, 28 avril 2020", "Page 1 sur 1", "Nous écrivons à France au sujet de la Cour."),
    ("ES", "Excelencia:", "Nueva York, 28 de abril de 2020", "Página 1 de 1", "Escribimos a Spain acerca de la Corte."),
    ("DE", "Your Excellency,", "New York, 28 April 2020", "Page 1 of 1", "We write to Germany about the Court."),
])
def test_each_recipient_gets_its_language(rendered, rid, salutation, dateline, page_label, body):
    words = text(rendered, rid)
    for expected in (salutation, dateline, page_label, body):
        assert expected in words, (rid, expected, words)


def test_pdf_language_follows_the_version(rendered):
    langs = {}
    for rid in ("NA", "FR", "ES", "JO", "DE"):
        with pikepdf.open(rendered / f"{rid}.pdf") as pdf:
            langs[rid] = str(pdf.Root.Lang)
    assert langs == {"NA": "en", "FR": "fr", "ES": "es", "JO": "ar", "DE": "en"}


def test_arabic_letter_text_date_and_salutation(rendered):
    words = text(rendered, "JO")
    # pypdf gives each run of Arabic in logical order, but the runs of a line in visual order (right to left).
    assert "صاحب السعادة،" in words
    assert "نكتب إلى" in words and "بشأن المحكمة" in words and "Jordan" in words
    assert "أبريل" in words and "نيويورك،" in words  # the date in Arabic, after the Arabic comma
    assert "1 من 1 صفحة" in words or "1 من1 صفحة" in words
    egypt = text(rendered, "EG")
    assert "سعادة السفير،" in egypt and "صاحب السعادة" not in egypt  # a recipient's salutation wins


def test_arabic_letter_is_laid_out_right_to_left(rendered):
    reader = PdfReader(str(rendered / "JO.pdf"))
    page = reader.pages[0]
    width = float(page.mediabox.width)
    starts: dict[str, float] = {}

    def visit(chunk, cm, tm, font, size):
        if chunk.strip() and chunk.strip() not in starts:
            starts[chunk.strip()] = cm[0] * tm[4] + cm[4]

    page.extract_text(visitor_text=visit)
    salutation = starts["صاحب السعادة،"]
    english = PdfReader(str(rendered / "NA.pdf")).pages[0]
    english_starts: dict[str, float] = {}
    english.extract_text(visitor_text=lambda c, cm, tm, f, s: english_starts.setdefault(c.strip(), cm[0] * tm[4] + cm[4]))
    english_salutation = english_starts["Your Excellency,"]
    assert english_salutation < width * 0.2  # English starts at the left margin
    assert salutation > width * 0.6  # Arabic ends at the right margin, so it starts far from the left


def test_arabic_letter_uses_the_embedded_arabic_font(rendered):
    assert fonts_drawing(rendered / "JO.pdf", "صاحب السعادة، نكتب إلى") == {"Noto-Naskh-Arabic"}
    assert "Noto-Naskh-Arabic-Bold" in fonts_drawing(rendered / "JO.pdf", "رسالة اختبار")  # the letterhead
    assert fonts_drawing(rendered / "JO.pdf", ARABIC_NAME) == {"Noto-Naskh-Arabic"}
    assert missing_glyphs(rendered / "JO.pdf") == []
    used = {run.font for run in text_runs(rendered / "JO.pdf")}
    assert not any("DejaVu" in font for font in used), used


def test_names_in_other_scripts_render_with_the_shipped_fonts(rendered):
    pdf = rendered / "CN.pdf"
    words = text(rendered, "CN")
    assert f"{CJK} {DEVANAGARI} {CYRILLIC}" in words  # the characters round-trip
    assert fonts_drawing(pdf, CJK) == {"WenQuanYi-Micro-Hei"}
    assert fonts_drawing(pdf, DEVANAGARI) == {"Noto-Serif-Devanagari"}
    assert fonts_drawing(pdf, CYRILLIC) == {"Source-Serif"}
    assert missing_glyphs(pdf) == []


def render_unchecked(folder: Path, rid: str) -> Path:
    """Render without validation, which refuses characters no shipped font has (the negative controls need them)."""
    loaded = campaign.load(ws(folder))
    pdf = PdfRenderer(folder / "templates").render(campaign.merger(loaded).html(loaded.recipients.by_id()[rid]))
    target = folder / f"{rid}.pdf"
    target.write_bytes(pdf.data)
    return target


def test_missing_glyph_check_catches_an_empty_box(make_workspace):
    # Negative control: a character no font has (Private Use Area) is drawn as .notdef, and the check sees it
    # although the PDF's text still maps it back to the character.
    folder = make_workspace([row("NA", "Namibia", ambassador="Name \ue000")])
    pdf = render_unchecked(folder, "NA")
    missing = missing_glyphs(pdf)
    assert [run.text.strip() for run in missing] == ["Name \ue000"]
    assert [glyph == 0 for glyph in missing[0].glyphs] == [False] * (len(missing[0].glyphs) - 1) + [True]


def test_without_the_fallback_fonts_cjk_is_not_drawn_by_them(make_workspace):
    # Negative control for the font check: without the shipped CJK font, the name is drawn by something
    # else (a system font, if the machine has one) or as empty boxes, and the checks see it.
    folder = make_workspace([row("CN", "China", ambassador=CJK)])
    css = folder / "templates" / "letter.css"
    css.write_text("\n".join(line for line in css.read_text().splitlines() if "WenQuanYiMicroHei" not in line))
    (folder / "templates" / "fonts" / "WenQuanYiMicroHei.ttf").unlink()
    pdf = render_unchecked(folder, "CN")
    drawn_by = fonts_drawing(pdf, CJK)
    assert drawn_by and "WenQuanYi-Micro-Hei" not in drawn_by
    if not shutil.which("fc-list") or "CJK" not in " ".join(drawn_by):
        assert missing_glyphs(pdf), drawn_by  # this machine has no CJK font: empty boxes, and they are caught


def test_validate_warns_who_falls_back_to_the_letter(make_workspace):
    folder = with_translations(make_workspace([
        row("NA", "Namibia", address="x"), row("FR", "France", language="fr", address="x"),
        row("DE", "Germany", language="de", address="x"), row("AT", "Austria", language="de", address="x"),
        row("BR", "Brazil", language="pt", address="x")]), "fr")
    result = CliRunner().invoke(app, ["-C", str(folder), "validate"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: recipients.csv:4: language: 2 recipient(s) in German ('de') get the English letter: DE, AT",
        "  hint: add letters/letter.de.md to send them a translation",
        "warning: recipients.csv:6: language: 1 recipient(s) in Portuguese ('pt') get the English letter: BR",
        "  hint: add letters/letter.pt.md to send them a translation",
    ]
    assert result.stdout == "ok: 5 recipients, letter 'letter', 2 warning(s)\n"


def test_translation_inherits_what_it_does_not_translate(make_workspace):
    folder = with_translations(make_workspace([row("NA", "Namibia")]), "fr", "ar")
    versions = read_letter_versions(folder / "letters" / "letter.md", language="en")
    assert versions.languages == ("en", "ar", "fr")
    fr = versions.choose("fr")
    assert fr.title == "Lettre d’essai" and fr.place == "New York"
    assert fr.date == dt.date(2020, 4, 28)
    assert fr.signatories == ("First Organisation", "Second Organisation")  # not translated: inherited
    assert versions.choose("ar").signatories == ("المنظمة الأولى", "المنظمة الثانية")
    assert versions.choose("de") is versions.letter


@pytest.mark.parametrize("name, content, expected", [
    ("letter.en.md", "---\nsubject: x\n---\nbody\n",
     "letters/letter.en.md: a translation into 'en', the language the letter is written in"),
    ("letter.fr.md", "---\nlanguage: es\n---\nbody\n",
     "letters/letter.fr.md:2: the file name says the letter is in 'fr', its front matter says 'es'"),
    ("letter.de.md", "---\npage_label: \"Seite {page}\"\n---\nbody\n",
     "letters/letter.de.md:2: the page label must contain {page} and {pages} once each, not 'Seite {page}'"),
])
def test_translation_errors(make_workspace, name, content, expected):
    folder = make_workspace([row("NA", "Namibia")])
    (folder / "letters" / name).write_text(content, encoding="utf-8")
    with pytest.raises(LetterError) as caught:
        read_letter_versions(folder / "letters" / "letter.md", name="letters/letter.md", language="en")
    assert str(caught.value) == expected


def test_a_language_without_built_in_words_needs_them_in_the_translation(make_workspace):
    folder = make_workspace([row("DE", "Germany", language="de")])
    (folder / "letters" / "letter.de.md").write_text("---\nsubject: Ein Brief\n---\nWir schreiben.\n", encoding="utf-8")
    errors = [str(p) for p in campaign.validate(ws(folder)) if p.severity == "error"]
    assert errors == ["letters/letter.de.md:1: dispatch does not know how to say salutation and page_label "
                      "in German ('de')"]
    (folder / "letters" / "letter.de.md").write_text(
        '---\nsubject: Ein Brief\nsalutation: "Exzellenz,"\npage_label: "Seite {page} von {pages}"\n---\n'
        "Wir schreiben an {{ state }}.\n", encoding="utf-8")
    campaign.render(ws(folder))
    words = flat(pdf_text(folder / "out" / "letter" / "DE.pdf"))
    assert "Exzellenz," in words and "Seite 1 von 1" in words and "28. April 2020" in words
    assert "Wir schreiben an Germany." in words


def test_page_label_is_css_escaped():
    assert i18n.page_label_css("Page {page} of {pages}") == '"Page " counter(page) " of " counter(pages)'
    assert i18n.page_label_css("صفحة {page} من {pages}") == '"صفحة " counter(page) " من " counter(pages)'
    assert i18n.page_label_css('</style>"{page}\\{pages}') == (
        '"\\00003c/style\\00003e\\000022" counter(page) "\\00005c" counter(pages)')


@pytest.mark.parametrize("language, expected", [
    ("en", "28 April 2020"), ("fr", "28 avril 2020"), ("es", "28 de abril de 2020"), ("ar", "28 أبريل 2020"),
    ("de", "28. April 2020"), ("xx", "28 April 2020"),
])
def test_dates_follow_the_locale(language, expected):
    assert i18n.format_letter_date(dt.date(2020, 4, 28), language) == expected


def test_direction():
    assert [i18n.direction(code) for code in ("ar", "he", "fa", "en", "zh", "xx")] == [
        "rtl", "rtl", "rtl", "ltr", "ltr", "ltr"]


def test_columns_used_by_any_version_count(make_workspace):
    folder = make_workspace([dict(row("FR", "France", language="fr"), capital="Paris")])
    (folder / "letters" / "letter.fr.md").write_text("---\nsubject: x\n---\nÀ {{ capital }}.\n", encoding="utf-8")
    merger = campaign.merger(campaign.load(ws(folder)))
    assert "capital" in merger.used_fields() and "state" in merger.used_fields()
    assert "À Paris." in merger.html(campaign.load(ws(folder)).recipients.rows[0])
