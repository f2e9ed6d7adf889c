"""Merging and rendering: values are data, undefined names stop the run, PDFs hold the right text."""

from __future__ import annotations

import pytest
from pypdf import PdfReader

from dispatch import campaign
from dispatch.errors import RenderError, TemplateError, ValidationFailed
from dispatch.models import Recipient
from dispatch.pdf.engine import PdfRenderer
from dispatch.merge.letter import markdown_escape
from tests.conftest import LETTER, flat, pdf_text, row, ws


def merged_html(folder, recipient_id="NA"):
    c = campaign.load(ws(folder))
    return campaign.merger(c).html(c.recipients.by_id()[recipient_id])


def test_cells_are_printed_literally_never_evaluated(make_workspace):
    hostile = row("NA", "{{ 7*7 }} <b>bold</b> *em* [link](http://example.org) &amp; `code`",
                  mission="<script>alert(1)</script>")
    folder = make_workspace([hostile])
    html = merged_html(folder)
    assert "{{ 7*7 }}" in html and "49" not in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<em>" not in html and 'href="http://example.org"' not in html
    assert "&amp;amp;" in html  # the literal text "&amp;" survives as text


def test_markdown_escape_keeps_text_and_line_breaks():
    assert markdown_escape("a*b_c") == "a\\*b\\_c"
    assert markdown_escape("line one\nline two") == "line one\\\nline two"


def test_undefined_name_in_body_names_letter_line_and_recipient(make_workspace):
    letter = LETTER.replace("We write to {{ state }}", "We write to {{ stat }}")
    folder = make_workspace([row("NA", "Namibia")], letter=letter)
    c = campaign.load(ws(folder))
    with pytest.raises(TemplateError) as caught:
        campaign.merger(c).html(c.recipients.rows[0])
    assert str(caught.value) == "letters/letter.md:10: 'stat' is undefined (recipient 'NA', recipients.csv line 2)"


def test_template_syntax_error_names_the_line(make_workspace):
    folder = make_workspace([row("NA", "Namibia")], letter=LETTER.replace("- one point;", "- one {% if %} point;"))
    problems = campaign.validate(ws(folder))
    assert [str(p) for p in problems if p.severity == 'error'] == [
        "letters/letter.md:12: template syntax error: Expected an expression, got 'end of statement block'"]


def test_validate_reports_a_column_some_rows_lack(make_workspace):
    letter = LETTER.replace("about the Court.", "about the Court{% if id == 'FR' %} and {{ capital }}{% endif %}.")
    folder = make_workspace([row("NA", "Namibia"), row("FR", "France")], letter=letter)
    problems = campaign.validate(ws(folder))
    assert [str(p) for p in problems if p.severity == 'error'] == [
        "letters/letter.md:10: 'capital' is undefined (recipient 'FR', recipients.csv line 3)"]
    with pytest.raises(ValidationFailed):
        campaign.render(ws(folder), fmt="html")
    assert not (folder / "out").exists()


def test_extra_columns_are_available_to_the_letter(make_workspace):
    rows = [dict(row("NA", "Namibia"), capital="Windhoek")]
    folder = make_workspace(rows, letter=LETTER.replace("about the Court.", "in {{ capital }}."))
    assert "in Windhoek." in merged_html(folder)


def test_addressee_lines():
    def r(**fields):
        return Recipient("X", 2, fields)
    assert r(state="Namibia", mission="Permanent Mission of Namibia to the United Nations").addressee_lines == (
        "The Permanent Representative of Namibia",)
    assert r(state="Niger", mission="Permanent Mission of the Niger to the United Nations").addressee_lines == (
        "The Permanent Representative of the Niger",)
    assert r(state="State of Palestine",
             mission="Permanent Observer Mission of the State of Palestine to the United Nations").addressee_lines == (
        "The Permanent Observer of the State of Palestine",)
    assert r(state="Namibia", mission="Permanent Mission of Namibia to the United Nations", title="H.E. Mr.",
             ambassador="A. Name").addressee_lines == ("H.E. Mr. A. Name", "Permanent Representative of Namibia")
    assert r(state="Cook Islands", mission="Ministry", addressee="The Secretary").addressee_lines == ("The Secretary",)


def test_pdf_text_metadata_and_salutation_override(make_workspace):
    rows = [row("NA", "Namibia", address="135 East 36th Street\nNew York, NY 10016"),
            row("FR", "France", salutation="Madame l’Ambassadrice,")]
    folder = make_workspace(rows)
    summary = campaign.render(ws(folder))
    assert [r.recipient_id for r in summary.rendered] == ["NA", "FR"]
    na = flat(pdf_text(folder / "out" / "letter" / "NA.pdf"))
    assert "The Permanent Representative of Namibia Permanent Mission of Namibia to the United Nations" in na
    assert "135 East 36th Street New York, NY 10016" in na
    assert "New York, 28 April 2020" in na
    assert "Your Excellency, We write to Namibia about the Court." in na
    assert "First Organisation" in na and "Page 1 of 1" in na
    fr = flat(pdf_text(folder / "out" / "letter" / "FR.pdf"))
    assert "Madame l’Ambassadrice," in fr and "Your Excellency" not in fr
    meta = PdfReader(str(folder / "out" / "letter" / "NA.pdf")).metadata
    assert meta.title == "Test Letter — Namibia"
    assert meta.subject == "A test letter"
    assert meta.author == "First Organisation, Second Organisation"
    assert "Permanent Mission of Namibia" in meta["/recipient"]


def test_each_render_is_recorded_in_the_journal(make_workspace):
    from dispatch.journal import Journal

    folder = make_workspace([row("NA", "Namibia"), row("FR", "France")])
    summary = campaign.render(ws(folder))
    events = Journal(folder / "dispatch.db").events("letter", kinds=["rendered"])
    assert [(e.recipient, e.data["sha256"], e.data["pages"]) for e in events] == [
        (r.recipient_id, r.sha256, r.pages) for r in summary.rendered]
    assert events[0].data["file"] == "out/letter/NA.pdf"


def test_same_input_gives_the_same_pdf_bytes(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    first = campaign.render(ws(folder)).rendered[0].sha256
    second = campaign.render(ws(folder), force=True).rendered[0].sha256
    assert first == second


def test_renderer_fetches_nothing_outside_templates(make_workspace, tmp_path):
    secret = tmp_path / "secret.css"
    secret.write_text("body { color: red }")
    folder = make_workspace([row("NA", "Namibia")])
    renderer = PdfRenderer(folder / "templates")
    for href in ("http://127.0.0.1:9/x.css", secret.as_uri(), "../../secret.css"):
        with pytest.raises(RenderError, match="templates folder|network") as caught:
            renderer.render(f'<html><head><link rel="stylesheet" href="{href}"></head><body>x</body></html>')
        assert "templates" in caught.value.hint
    ok = renderer.render('<html><head><link rel="stylesheet" href="letter.css"></head><body>x</body></html>')
    assert ok.pages == 1


def test_partial_output_is_never_left_behind(make_workspace):
    # The rename at the end fails (a folder stands where the PDF goes): no temporary file may remain.
    # The first letter that fails stops the run: FR is not rendered after it.
    from dispatch.journal import Journal

    folder = make_workspace([row("NA", "Namibia"), row("FR", "France")])
    with Journal(folder / "dispatch.db"):
        pass  # the campaign has its journal: the folder below is not taken for letters rendered without one
    out = folder / "out" / "letter"
    (out / "NA.pdf").mkdir(parents=True)
    summary = campaign.render(ws(folder), jobs=1)
    assert summary.rendered == []
    [problem] = summary.failed
    assert str(problem) == f"{out}: cannot write NA.pdf: Is a directory"
    assert problem.hint
    assert sorted(p.name for p in out.iterdir()) == ["NA.pdf"]
    assert (out / "NA.pdf").is_dir()
