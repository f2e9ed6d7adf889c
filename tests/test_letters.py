"""The letter file: front matter and body; the sample carries the real letter verbatim."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatch.errors import LetterError
from dispatch.letters import read_letter
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
