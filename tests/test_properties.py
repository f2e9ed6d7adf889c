"""Property-based tests: whatever text a spreadsheet holds, dispatch reads it exactly or says why not,
and renders it into the PDF or fails with a DispatchError. Nothing else escapes."""

from __future__ import annotations

import csv
import io
import unicodedata
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings, strategies as st

from dispatch import campaign, i18n
from dispatch.errors import DispatchError
from dispatch.recipients import TRIMMED_COLUMNS, check_recipients, read_recipients
from tests.conftest import flat, pdf_text, row, ws

COLUMNS = ["id", "state", "mission", "channel", "note"]
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60)


def normalised(value: str, column: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value.strip() if column in TRIMMED_COLUMNS else value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.lists(st.tuples(ANY_TEXT, ANY_TEXT), min_size=1, max_size=4), quote_all=st.booleans())
def test_any_cell_reads_back_exactly_or_fails_clearly(tmp_path, cells, quote_all):
    buffer = io.StringIO()
    # Python's csv writer leaves a lone CR unquoted, which any reader takes for a line end: quote those.
    quote_all = quote_all or any("\r" in value for pair in cells for value in pair)
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    rows = [[f"R{i}", state, "Mission", "print", note] for i, (state, note) in enumerate(cells)]
    writer.writerows(rows)
    path = tmp_path / "recipients.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        table = read_recipients(path)
        problems = check_recipients(table)
    except DispatchError as exc:
        assert str(exc).startswith("recipients.csv")
        return
    assert all(str(p).startswith("recipients.csv:") for p in problems)
    read = {r.id: r for r in table.rows}
    for values in rows:
        if values[0] in read:
            recipient = read[values[0]]
            for column, value in zip(COLUMNS, values):
                assert recipient.get(column) == normalised(value, column)


def printable(char: str) -> bool:
    """Characters whose extracted text is the character itself: no marks, no right-to-left, no
    compatibility forms (which PDF text extraction decomposes)."""
    return (unicodedata.category(char)[0] in "LNPSZ" and unicodedata.bidirectional(char) not in ("R", "AL", "AN")
            and unicodedata.normalize("NFKC", char) == char and unicodedata.category(char) not in ("Zl", "Zp"))


PRINTABLE_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc", "Cf", "Co", "Cn", "M")).filter(printable),
                         min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(state=PRINTABLE_TEXT)
def test_any_name_is_in_the_pdf_or_refused_clearly(make_workspace, state):
    folder = make_workspace([{**row("NA", "Namibia"), "state": state}])
    try:
        summary = campaign.render(ws(folder))
    except DispatchError as exc:
        assert "recipients.csv:2" in str(exc) or "letters/letter.md" in str(exc), str(exc)
        event("refused")
        return
    event("rendered")
    text = flat(pdf_text(summary.rendered[0].path))
    assert flat(i18n.typographic(state)) in text  # as typeset: straight quotes print as typographic ones


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=ANY_TEXT, mission=ANY_TEXT, salutation=ANY_TEXT)
def test_any_cells_merge_or_fail_with_a_dispatch_error(make_workspace, state, mission, salutation):
    folder = make_workspace([{**row("NA", "Namibia"), "state": state, "mission": mission, "salutation": salutation}])
    try:
        problems = campaign.validate(ws(folder))
    except DispatchError:
        return
    for problem in problems:
        assert problem.file and problem.message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=ANY_TEXT, salutation=ANY_TEXT)
def test_any_cells_reach_the_email_as_written_or_fail_with_a_dispatch_error(tmp_path, state, salutation):
    from dispatch.merge.email import CoverNotes

    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "email.txt.j2").write_text("{% set subject = 'Letter to ' ~ state %}\n{{ salutation }}\n[{{ state }}]\n")
    (templates / "email.html.j2").write_text("<p>{{ salutation }}</p><p>[{{ state }}]</p>\n")
    notes = CoverNotes(templates, attachment="Letter {{ state }}")
    try:
        note = notes.render({"state": state, "salutation": salutation, "letter": {"subject": "S"}}, "X")
    except DispatchError as exc:
        assert "line break" in str(exc), str(exc)  # the only refusal: a line break in the subject
        event("refused")
        return
    event("sent")
    assert note.subject == ("Letter to " + state).strip()
    text = "".join(note.text.split())  # the email's text is wrapped: compare without white space
    assert f"[{''.join(state.split())}]" in text and "".join(salutation.split()) in text
    assert note.attachment_name.endswith(".pdf") and "/" not in note.attachment_name


WIDTH_EXPRESSIONS = {
    "ljust": '"x".ljust({n})', "center": '"x".center({n})', "zfill": '"7".zfill({n})',
    "percent": '"%{n}s" % "x"', "format": '"{{:{n}}}".format("x")', "center filter": '"x" | center({n})',
    "format filter": '"%{n}s" | format("x")', "repetition": '"x" * {n}',
}


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(WIDTH_EXPRESSIONS)), n=st.one_of(st.integers(0, 3_000_000),
                                                                   st.integers(0, 10**12)))
def test_a_width_gives_that_many_characters_or_is_refused_before_it_is_made(kind, n):
    from dispatch.merge import limits, sandbox

    env = sandbox.environment(limits.LETTER, templates=Path("/nonexistent"), autoescape=False)
    expression = WIDTH_EXPRESSIONS[kind].format(n=n)
    template = env.from_string("{{ " + expression + " }}")
    try:
        text = sandbox.generate(template, {})[0]
    except limits.LimitExceeded as exc:
        assert n > limits.LETTER.chars - 10, (expression, str(exc))
        assert "would make more text than a letter can hold" in str(exc)
        event("refused")
        return
    assert len(text) == (n if kind == "repetition" else max(n, 1))
    assert n <= limits.LETTER.chars
    event("made")
