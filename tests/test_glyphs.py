"""The font check reads only the fonts a text needs, and finds what none of them can draw."""

from __future__ import annotations

from dispatch.glyphs import FontCoverage
from tests.conftest import row


def test_coverage_reads_the_large_cjk_font_only_for_text_that_needs_it(make_workspace):
    fonts = make_workspace([row("NA", "Namibia")]) / "templates" / "fonts"
    coverage = FontCoverage(fonts)
    assert coverage.missing("Namibia, 28 April 2020: \u201cthe Court\u201d \u2014 Excellency,") == []
    assert any("WenQuanYi" in path for path, _ in coverage._unread)
    assert coverage.missing("\U0001F600 \u4e2d\u56fd \u1680\u16a0 \U0001F600 Namibia") == ["\U0001F600", "\u16a0"]
    assert coverage._unread == []


def test_coverage_without_fonts_misses_every_drawn_character(tmp_path):
    assert FontCoverage(tmp_path / "fonts").missing("a b\u200ba") == ["a", "b"]
