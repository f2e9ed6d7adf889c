"""The email templates (email.txt.j2, email.html.j2, the [email] attachment name) run in the letter's sandbox:
the same time budget and size limits, errors at their file and line, a version per language.

Each test breaks a copy of the sample campaign cut to its one email recipient (CH) and runs
`dispatch send --dry-run` as a user would: the first line of the error, a hint, exit code 1, no
traceback, and no message written to the outbox.
"""

from __future__ import annotations

import dataclasses
from email import policy
from email.parser import BytesParser

import pytest

from dispatch.merge import limits
from tests.merge_campaign import (OUTBOX, append_line, assert_clear_error, dispatch, line_of, replace_in,
                                  sample_campaign)

RUNAWAY = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def campaign(tmp_path):
    return sample_campaign(tmp_path, only=["CH"])


def messages(folder):
    outbox = folder / OUTBOX
    return sorted(p.name for p in outbox.iterdir()) if outbox.exists() else []


@pytest.mark.slow
def test_a_runaway_loop_in_the_email_text_stops_the_dry_run_at_its_line(campaign):
    line = append_line(campaign / "templates" / "email.txt.j2", RUNAWAY)
    result = dispatch(campaign, "send", "--dry-run")
    assert_clear_error(result, f"templates/email.txt.j2:{line}: the template ran for more than 10 s (recipient 'CH')")
    assert messages(campaign) == []


def test_a_runaway_loop_in_the_html_email_stops_at_its_line(campaign, monkeypatch):
    # The budget made shorter so the test is quick (the text's test above runs the real 10 s).
    monkeypatch.setattr(limits, "EMAIL", dataclasses.replace(limits.EMAIL, seconds=1.0))
    html = campaign / "templates" / "email.html.j2"
    html.write_text("<p>{{ salutation }}</p>\n<p>\n" + RUNAWAY + "\n</p>\n", encoding="utf-8")
    result = dispatch(campaign, "send", "--dry-run")
    assert_clear_error(result, "templates/email.html.j2:3: the template ran for more than 1 s (recipient 'CH')")
    assert messages(campaign) == []


def test_a_ten_megabyte_email_is_refused_before_it_is_written(campaign):
    line = append_line(campaign / "templates" / "email.txt.j2", "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")
    result = dispatch(campaign, "send", "--dry-run")
    assert_clear_error(result, f"templates/email.txt.j2:{line}: the email for recipient 'CH' grows past 1,000,000 characters")
    assert messages(campaign) == []


@pytest.mark.parametrize("expression, problem", [
    ("{{ 'x'.ljust(1500000000) }}", "ljust(1500000000) would make more text than an email can hold"),
    ("{{ '%1500000000s' % state }}", "the format '%1500000000s' would make more text than an email can hold"),
    ("{{ '{:1500000000}'.format(state) }}", "the format field '1500000000' would make more text than an email can hold"),
    ("{{ state | center(1500000000) }}", "center(1500000000) would make more text than an email can hold"),
    ("{{ [1] * 10**9 }}", "this repetition would make more text than an email can hold"),
])
def test_texts_too_large_are_refused_before_they_are_made(campaign, expression, problem):
    line = append_line(campaign / "templates" / "email.txt.j2", expression)
    result = dispatch(campaign, "send", "--dry-run")
    assert_clear_error(result, f"templates/email.txt.j2:{line}: not allowed in a template: {problem} (recipient 'CH')")
    assert messages(campaign) == []


@pytest.mark.parametrize("template", ["email.txt.j2", "email.html.j2"])
@pytest.mark.parametrize("mistake, problem", [
    ("{{ no_such_column }}", "'no_such_column' is undefined (recipient 'CH')"),
    ("{% if %}", "template syntax error: Expected an expression, got 'end of statement block'"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
     "the {kind} for recipient 'CH' grows past 1,000,000 characters"),
    ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero (recipient 'CH')"),
])
def test_mistakes_in_the_email_templates_name_their_file_and_line(campaign, template, mistake, problem):
    path = campaign / "templates" / template
    if not path.exists():
        path.write_text("<p>{{ salutation }}</p>\n<p>{{ state }}</p>\n", encoding="utf-8")
    line = append_line(path, mistake)
    result = dispatch(campaign, "send", "--dry-run")
    kind = "HTML email" if template.endswith("html.j2") else "email"
    assert_clear_error(result, f"templates/{template}:{line}: {problem.format(kind=kind)}")
    assert messages(campaign) == []


@pytest.mark.parametrize("attachment, problem", [
    ("Letter {{ no_such_column }}", "'no_such_column' is undefined (recipient 'CH')"),
    ("Letter {{ state", "template syntax error in the attachment name: "
                        "unexpected end of template, expected 'end of print statement'."),
    ("{{ 'x'.ljust(1500000000) }}",
     "not allowed in a template: ljust(1500000000) would make more text than an email can hold (recipient 'CH')"),
    ("{% for i in range(100000) %}x{% endfor %}", "the attachment name grows past 10,000 characters"),
])
def test_mistakes_in_the_attachment_name_name_the_setting(campaign, attachment, problem):
    replace_in(campaign / "dispatch.toml", 'attachment = "Joint NGO letter {{ state }}"', f'attachment = "{attachment}"')
    result = dispatch(campaign, "send", "--dry-run")
    assert_clear_error(result, f"dispatch.toml: [email] attachment: {problem}")
    assert messages(campaign) == []


def test_a_recipient_gets_the_email_text_of_its_language(campaign):
    replace_in(campaign / "recipients.csv", "nyc.vertretung-un@eda.admin.ch,en,email",
               "nyc.vertretung-un@eda.admin.ch,fr,email")
    (campaign / "templates" / "email.fr.txt.j2").write_text(
        "{% set subject = 'Lettre conjointe — ' ~ state %}\nMadame, Monsieur,\n\nVeuillez trouver ci-joint {{ attachment }}.\n",
        encoding="utf-8")
    (campaign / "templates" / "email.html.j2").write_text("<p>{{ salutation }}</p>\n<p>Please find attached…</p>\n",
                                                         encoding="utf-8")
    result = dispatch(campaign, "send", "--dry-run")
    assert result.exit_code == 0, result.output
    message = BytesParser(policy=policy.default).parsebytes((campaign / OUTBOX / "CH.eml").read_bytes())
    assert message["subject"] == "Lettre conjointe — Switzerland"
    text = message.get_body(("plain",)).get_content()
    assert text.startswith("Madame, Monsieur,") and "Joint-NGO-letter-Switzerland.pdf" in text
    assert message.get_body(("html",)) is None  # no English HTML beside a French text
    # A recipient in another language keeps the common text and its HTML version.
    replace_in(campaign / "recipients.csv", "nyc.vertretung-un@eda.admin.ch,fr,email",
               "nyc.vertretung-un@eda.admin.ch,en,email")
    assert dispatch(campaign, "send", "--dry-run").exit_code == 0
    message = BytesParser(policy=policy.default).parsebytes((campaign / OUTBOX / "CH.eml").read_bytes())
    assert "Please find attached a joint letter" in message.get_body(("plain",)).get_content()
    assert "Please find attached…" in message.get_body(("html",)).get_content()


def test_a_subject_longer_than_a_header_line_is_refused(campaign):
    replace_in(campaign / "templates" / "email.txt.j2", '{% set subject = letter.title ~ " — " ~ state %}',
               '{% set subject = (letter.title ~ " — " ~ state) * 20 %}')
    result = dispatch(campaign, "send", "--dry-run")
    assert_clear_error(result, "templates/email.txt.j2: the subject for recipient 'CH' is 1,540 characters long")
    assert line_of(campaign / "templates" / "email.txt.j2", "state) * 20")
    assert messages(campaign) == []
