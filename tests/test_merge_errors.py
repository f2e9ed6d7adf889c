"""Mistakes in the letter's body, its layout and the print layouts: `file:line: problem` and a hint, exit code
1 (never 70, never a traceback), nothing written. (The email templates: tests/test_merge_email.py.)"""

from __future__ import annotations

import dataclasses

import pytest

from dispatch.errors import TemplateError
from dispatch.merge import limits
from dispatch.merge.letter import Layouts
from dispatch.recipients import read_recipients
from tests.merge_campaign import (LETTER, add_to_layout, append_line, assert_clear_error, dispatch, line_of,
                                  sample_campaign)

MISTAKES = {
    "undefined": ("{{ no_such_column }}", "'no_such_column' is undefined (recipient 'AF', recipients.csv line 2)"),
    "syntax": ("{% if %}", "template syntax error: Expected an expression, got 'end of statement block'"),
    "runaway": ("{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
                "the letter for recipient 'AF' grows past 2,000,000 characters"),
    "python": ("{{ (1, 2)[5] }}", "tuple object has no element 5 (recipient 'AF', recipients.csv line 2)"),
}
RUNS_FOR_EVER = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def campaign(tmp_path):
    return sample_campaign(tmp_path, only=["AF"])


def put(campaign, where: str, text: str) -> tuple[str, int]:
    """Add text to the letter's body or to its layout; the file as shown in messages and the line."""
    if where == "body":
        return LETTER, append_line(campaign / LETTER, text)
    return "templates/letter.html.j2", add_to_layout(campaign, text)


@pytest.mark.parametrize("where", ["body", "layout"])
@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_in_the_letter_is_reported_at_its_file_and_line(campaign, where, mistake):
    text, problem = MISTAKES[mistake]
    file, line = put(campaign, where, text)
    result = dispatch(campaign, "render")
    assert_clear_error(result, f"{file}:{line}: {problem}")
    assert not (campaign / "out").exists()


@pytest.mark.parametrize("where", ["body", "layout"])
def test_a_letter_nested_too_deeply_to_compile_is_a_clear_error(campaign, where):
    file, _ = put(campaign, where, "{{ " + "(" * 400 + "1" + ")" * 400 + " }}")
    result = dispatch(campaign, "render")
    assert_clear_error(result, f"{file}: the template could not be compiled (RecursionError)")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["body", "layout"])
def test_a_letter_that_runs_for_ever_is_stopped_at_its_line(campaign, where):
    file, line = put(campaign, where, RUNS_FOR_EVER)
    result = dispatch(campaign, "render")
    assert_clear_error(result, f"{file}:{line}: the template ran for more than 10 s (recipient 'AF')")
    assert not (campaign / "out").exists()


@pytest.mark.slow
def test_the_time_budget_is_spent_once_not_once_per_recipient(tmp_path):
    # 125 recipients: the first one's merge runs out of time, the others are not merged again (which would
    # take 125 x 10 s); validate names the line once, and says the others were not merged.
    campaign = sample_campaign(tmp_path)
    line = append_line(campaign / LETTER, RUNS_FOR_EVER)
    result = dispatch(campaign, "validate")
    errors = [text for text in result.stderr.splitlines() if text.startswith("error: ")]
    assert result.exit_code == 1 and "Traceback" not in result.output
    second = read_recipients(campaign / "recipients.csv").rows[1]
    assert errors == [
        f"error: {LETTER}:{line}: the template ran for more than 10 s (recipient 'AF')",
        f"error: {LETTER}:{line}: not merged: the template ran for more than 10 s for an earlier recipient "
        f"(for 124 recipients, first 'AL' on line {second.line} of recipients.csv)",
    ]


LAYOUT_VARIABLES = {"title": "T", "today": "1 May 2020", "letters": 1, "pages": 1, "duplex": False, "groups": []}


@pytest.mark.parametrize("mistake, problem", [
    ("{{ no_such_name }}", "'no_such_name' is undefined"),
    ("{% if %}", "template syntax error: Expected an expression, got 'end of statement block'"),
    ("{{ 'x'.ljust(1500000000) }}", "not allowed in a template: ljust(1500000000) would make more text than a "
                                    "print layout can hold"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
     "the template ran for more than 1 s"),
])
def test_a_mistake_in_a_print_layout_is_reported_at_its_line(tmp_path, monkeypatch, mistake, problem):
    monkeypatch.setattr(limits, "PRINT_LAYOUT", dataclasses.replace(limits.PRINT_LAYOUT, seconds=1.0))
    campaign = sample_campaign(tmp_path, only=["AF"])
    manifest = campaign / "templates" / "manifest.html.j2"
    line = append_line(manifest, mistake)
    with pytest.raises(TemplateError) as caught:
        Layouts(campaign / "templates").html("manifest.html.j2", LAYOUT_VARIABLES)
    assert str(caught.value) == f"templates/manifest.html.j2:{line}: {problem}"
    assert caught.value.hint
    assert line_of(manifest, mistake) == line


def test_a_print_layout_grows_past_its_limit_at_its_line(tmp_path):
    campaign = sample_campaign(tmp_path, only=["AF"])
    manifest = campaign / "templates" / "manifest.html.j2"
    line = append_line(manifest, "{% for a in range(100000) %}{% for b in range(1000) %}xxxxxxxxxx{% endfor %}{% endfor %}")
    with pytest.raises(TemplateError) as caught:
        Layouts(campaign / "templates").html("manifest.html.j2", LAYOUT_VARIABLES)
    assert str(caught.value) == f"templates/manifest.html.j2:{line}: templates/manifest.html.j2 grows past 40,000,000 characters"
