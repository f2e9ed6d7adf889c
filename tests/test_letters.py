"""The letter file: front matter and body; the sample carries the real letter verbatim."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatch.errors import LetterError
from dispatch.letters import language_version, read_letter, read_letter_versions
from tests.conftest import REPO, SEED

SAMPLE = REPO / "letters" / "icc-states-parties-2020.md"


def seed_parts():
    lines = SEED.read_text(encoding="utf-8").split("\n")
    end = lines.index("Thank you for your commitment and support for the Rome Statute system and the ICC.")
    paragraphs = [l.strip() for l in lines[6:end + 1] if l.strip() and not l.strip().startswith("•")]
    bullets = [l.strip()[1:].strip() for l in lines if l.strip().startswith("•")]
    signatories = [l.strip() for l in lines[end + 1:] if l.strip()]
    return lines[0].strip(), paragraphs, bullets, signatories


def test_sample_letter_is_the_seed_letter_verbatim():
    letter = read_letter(SAMPLE)
    title, paragraphs, bullets, signatories = seed_parts()
    assert letter.title == title == "Joint NGO Letter to International Criminal Court States Parties"
    assert letter.place == "New York" and letter.date == dt.date(2020, 4, 28)
    body_lines = [l for l in letter.body.split("\n") if l.strip()]
    assert [l for l in body_lines if not l.startswith("- ")] == paragraphs
    assert [l[2:] for l in body_lines if l.startswith("- ")] == bullets
    assert len(bullets) == 8
    assert list(letter.signatories) == signatories
    assert len(signatories) == 101


def write(tmp_path, text):
    path = tmp_path / "letter.md"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, expected", [
    ("no front matter\n", "letters/letter.md:1: the letter must start with front matter between two '---' lines"),
    ("---\nsubject: x\n", "letters/letter.md:1: the front matter is never closed"),
    ("---\nsubject: x\ndate: 2020-01-01\nsignatories: [a, b\n---\nbody\n",
     "letters/letter.md:4: column 19: front matter: expected ',' or ']', but got '<stream end>'"),
    ("---\nsubject: x\ndate: 2020-01-01\nsignatorys:\n  - a\n---\nbody\n",
     "letters/letter.md:4: unknown front matter field 'signatorys'"),
    ("---\ndate: 2020-01-01\n---\nbody\n", "letters/letter.md:1: front matter has no 'subject'"),
    ("---\nsubject: x\ndate: 2020-01-01\nsignatories:\n  - {a: 1}\n---\nbody\n",
     "letters/letter.md:4: 'signatories' must be a list of names, one per line starting with '- '"),
])
def test_letter_errors_name_the_line(tmp_path, text, expected):
    with pytest.raises(LetterError) as caught:
        read_letter(write(tmp_path, text))
    assert str(caught.value) == expected
    assert caught.value.hint


def test_body_line_is_counted_from_the_file(tmp_path):
    letter = read_letter(write(tmp_path, "---\nsubject: x\ndate: 2020-01-01\n---\nFirst line\n"))
    assert letter.body_line == 5
    assert letter.body.startswith("First line")


@pytest.mark.parametrize("text, expected", [
    ("---\nsubject: x\ndate: 2020-02-30\n---\nbody\n",
     "letters/letter.md:3: date: 2020-02-30 is not a valid date (day is out of range for month)"),
    ("---\nsubject: x\ndate: 2020-04-28 25:61:00\n---\nbody\n",
     "letters/letter.md:3: date: 2020-04-28 25:61:00 is not a valid date (hour must be in 0..23)"),
    ("---\nsubject: x\nplace: New York\ndate: 2020-13-01\n---\nbody\n",
     "letters/letter.md:4: date: 2020-13-01 is not a valid date (month must be in 1..12)"),
    ("---\nsubject: x\ndate: 2020-04-28\nplace: Geneva\nsubject: y\n---\nbody\n",
     "letters/letter.md:5: subject: 'subject' is given twice (first on line 2)"),
    ("---\nsubject: x\ndate: 2020-04-28\nsignatories:\n  - a\nsignatories:\n  - b\n---\nbody\n",
     "letters/letter.md:6: signatories: 'signatories' is given twice (first on line 4)"),
])
def test_impossible_dates_and_repeated_fields_name_the_line(tmp_path, text, expected):
    with pytest.raises(LetterError) as caught:
        read_letter(write(tmp_path, text))
    assert str(caught.value) == expected
    assert caught.value.hint


def test_a_quoted_date_is_printed_as_written(tmp_path):
    assert read_letter(write(tmp_path, '---\nsubject: x\ndate: "30 February"\n---\nbody\n')).date == "30 February"


@pytest.mark.parametrize("stem, expected", [
    ("appeal", None), ("appeal.fr", ("appeal", "fr")), ("appeal.ar", ("appeal", "ar")),
    ("appeal.zh", ("appeal", "zh")), ("appeal.pt-BR", ("appeal", "pt-BR")), ("appeal.v2", None),
    ("appeal.final", None), ("appeal.bak", None), ("appeal.draft", None), ("appeal.v2.fr", ("appeal.v2", "fr")),
    (".fr", None),
])
def test_a_language_version_is_named_with_a_language_babel_knows(stem, expected):
    assert language_version(stem) == expected


def test_a_letter_named_like_a_version_is_a_letter_of_its_own(tmp_path):
    letters = tmp_path / "letters"
    letters.mkdir()
    for name, subject in (("appeal", "First"), ("appeal.v2", "Second"), ("appeal.fr", "Premier"),
                          ("appeal.v2.fr", "Seconde")):
        (letters / f"{name}.md").write_text(f"---\nsubject: {subject}\ndate: 2020-04-28\n---\nbody\n",
                                            encoding="utf-8")
    first = read_letter_versions(letters / "appeal.md")
    second = read_letter_versions(letters / "appeal.v2.md")
    assert (first.letter.name, first.letter.subject, sorted(first.translations)) == ("appeal", "First", ["fr"])
    assert (second.letter.name, second.letter.subject) == ("appeal.v2", "Second")
    assert second.translations["fr"].subject == "Seconde" and second.translations["fr"].name == "appeal.v2"


def test_a_version_no_recipient_can_be_given_is_an_error(tmp_path):
    letters = tmp_path / "letters"
    letters.mkdir()
    for name in ("appeal", "appeal.pt-BR"):
        (letters / f"{name}.md").write_text("---\nsubject: x\ndate: 2020-04-28\n---\nbody\n", encoding="utf-8")
    with pytest.raises(LetterError) as caught:
        read_letter_versions(letters / "appeal.md")
    assert str(caught.value) == ("letters/appeal.pt-BR.md: 'pt-BR' cannot be chosen by any recipient: "
                                 "the language column holds two-letter codes")
    assert caught.value.hint == "rename it appeal.pt.md"
