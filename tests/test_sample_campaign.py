"""The sample campaign end to end: the installed command renders 125 correct, personalised letters."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from pypdf import PdfReader

from dispatch.models import Recipient

from tests.conftest import SEED, flat, pdf_text, sample  # noqa: F401
from dispatch import i18n

DISPATCH = str(Path(sys.executable).parent / "dispatch")


def dispatch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([DISPATCH, *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def seed_signatories() -> list[str]:
    lines = SEED.read_text(encoding="utf-8").split("\n")
    end = lines.index("Thank you for your commitment and support for the Rome Statute system and the ICC.")
    return [l.strip() for l in lines[end + 1:] if l.strip()]


def test_installed_command_renders_every_state_party(sample):
    validated = dispatch("validate", cwd=sample)
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith("ok: 125 recipients, letter 'icc-states-parties-2020'")

    rendered = dispatch("render", cwd=sample)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.splitlines()[-1].startswith("rendered 125 (125 new), 0 up to date, 0 failed into ")
    assert "Traceback" not in rendered.stderr

    out = sample / "out" / "icc-states-parties-2020"
    rows = list(csv.DictReader(open(sample / "recipients.csv", encoding="utf-8")))
    assert sorted(p.stem for p in out.glob("*.pdf")) == sorted(r["id"] for r in rows)
    signatories = seed_signatories()
    seed_body = flat(SEED.read_text(encoding="utf-8").split("Your Excellency,")[1].split("Action Humaine")[0]
                     .replace("•", ""))
    for index, r in enumerate(rows):
        pdf = out / f"{r['id']}.pdf"
        text = flat(pdf_text(pdf))
        typeset = {k: i18n.typographic(v) for k, v in r.items()}
        assert " ".join(typeset["mission"].split()) in text, r["id"]
        assert ("Dear Secretary," if r["id"] == "CK" else "Your Excellency,") in text
        assert "New York, 28 April 2020" in text
        assert "Joint NGO Letter to International Criminal Court States Parties" in text
        reader = PdfReader(str(pdf))
        pages = len(reader.pages)
        assert 2 <= pages <= 4
        assert f"Page {pages} of {pages}" in text
        assert reader.metadata.title == f"Joint NGO Letter to International Criminal Court States Parties — {typeset['state']}"
        if index % 25 == 0:  # the full text check is slow; sample every 25th letter
            body = flat(pdf_text(pdf).replace("-\n", ""))  # words hyphenated at the end of a line, joined
            body = body.replace(" •", "").replace("• ", "")
            for number in range(1, pages + 1):  # running heads and footers interrupt the flow
                body = body.replace(f" Page {number} of {pages} ", " ")
            body = body.replace(f" Joint NGO Letter to International Criminal Court States Parties — {typeset['state']} ", " ")
            # Page 1's head (letterhead, address block, date) is positioned: its text comes first on the page
            # (letter.css paints it first); take it out wherever it lands.
            head = ["Joint NGO Letter to International Criminal Court States Parties",
                    *i18n.addressee_lines(typeset, "en"), typeset["mission"], typeset["address"], "New York, 28 April 2020"]
            body = body.replace(" " + flat(" ".join(head)) + " ", " ")
            assert seed_body in body, r["id"]
            positions = [text.index(name) for name in signatories]
            assert positions == sorted(positions), "signatories out of order"
    na = flat(pdf_text(out / "NA.pdf"))
    assert "The Permanent Representative of Namibia Permanent Mission of Namibia to the United Nations" in na
    ps = flat(pdf_text(out / "PS.pdf"))
    assert "The Permanent Observer of the State of Palestine" in ps


def test_installed_command_reports_a_bad_csv_without_traceback(sample):
    path = sample / "recipients.csv"
    lines = path.read_text(encoding="utf-8").split("\n")
    number = next(i for i, line in enumerate(lines) if line.startswith("NA,"))
    lines[number] = lines[number].replace(",print,", ",fax,")
    path.write_text("\n".join(lines), encoding="utf-8")
    result = dispatch("validate", cwd=sample)
    assert result.returncode == 1
    assert f"error: recipients.csv:{number + 1}: channel: unknown channel 'fax'" in result.stderr
    assert "Traceback" not in result.stderr
