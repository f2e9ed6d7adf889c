"""Personalised letters (a recipient value in the body, so they cannot be layered): the pages after the first
are laid out once for the letters whose first page ends at the same place (pdf/tails.py). The letters are
the bytes a whole render gives, whichever letter was laid out first."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pikepdf
import pytest
from typer.testing import CliRunner

from dispatch import campaign
from dispatch.cli import app
from dispatch.pdf import tails
from dispatch.pdf.batch import Explanation
from dispatch.pdf.engine import PdfRenderer
from dispatch.regions import first_difference, place_in_source
from tests.conftest import ws
from tests.test_layers import assert_same_letter

LETTER = "letters/icc-states-parties-2020.md"
PERSONAL = ("call on your State", "call on {{ state }}")
SOME = ["NA", "DE", "FR", "KE", "AD", "BR"]


def personalise(folder: Path, ids: list[str] | None = None, *, last: bool = False) -> Path:
    """The sample with the State in its first paragraph (or, last=True, in its last lines too)."""
    letter = folder / LETTER
    text = letter.read_text(encoding="utf-8")
    assert PERSONAL[0] in text
    text = text.replace(*PERSONAL, 1)
    if last:
        text = text.rstrip() + "\n\nWith the support of {{ state }}.\n"
    letter.write_text(text, encoding="utf-8")
    if ids is not None:
        recipients = folder / "recipients.csv"
        with open(recipients, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header, rows = reader.fieldnames, [r for r in reader if r["id"] in ids]
        with open(recipients, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return folder


def merged(folder: Path) -> dict[str, str]:
    loaded, _ = campaign.check(ws(folder))
    merger = campaign.merger(loaded)
    return {r.id: merger.merged(r).html for r in loaded.recipients.rows}


def pdf_a(data: bytes) -> tuple[str, str]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        meta = pdf.open_metadata()
        return meta.get("pdfaid:part"), meta.get("pdfaid:conformance")


@pytest.fixture
def fresh():
    """No reference letters left from another test in this process."""
    tails._references.clear()
    yield
    tails._references.clear()


@pytest.mark.slow
def test_shared_later_pages_give_the_bytes_of_a_whole_render(sample, fresh):
    htmls = merged(personalise(sample, SOME))
    renderer = PdfRenderer(sample / "templates", pdf_variant="pdf/a-3u")
    whole = {rid: renderer.write(renderer.layout(html)) for rid, html in htmls.items()}
    before = dict(tails.statistics)
    with tails.shared_pages():
        shared = {rid: renderer.write(renderer.layout(html)) for rid, html in htmls.items()}
    assert tails.statistics["shared"] - before["shared"] >= len(SOME) - 2  # the first, and maybe one more, whole
    assert shared == whole
    assert pdf_a(shared["NA"]) == ("3", "U")
    # Whichever letter is the reference: the same bytes (they depend on the letter's own row only).
    tails._references.clear()
    with tails.shared_pages():
        for rid in reversed(SOME):
            assert renderer.write(renderer.layout(htmls[rid])) == whole[rid], rid


@pytest.mark.slow
def test_a_difference_after_the_first_page_is_laid_out_whole(sample, fresh):
    htmls = merged(personalise(sample, SOME[:3], last=True))
    renderer = PdfRenderer(sample / "templates")
    before = dict(tails.statistics)
    with tails.shared_pages():
        shared = {rid: renderer.write(renderer.layout(html)) for rid, html in htmls.items()}
    assert tails.statistics["shared"] == before["shared"]
    assert all(shared[rid] == renderer.write(renderer.layout(html)) for rid, html in htmls.items())


@pytest.mark.slow
def test_personalised_campaign_same_words_as_whole_and_alone(sample):
    folder = personalise(sample, SOME)
    out = folder / "out" / "icc-states-parties-2020"
    explanation = Explanation()
    assert not campaign.render(ws(folder), jobs=2, explanation=explanation).failed
    fast = folder / "fast"
    shutil.copytree(out, fast)
    campaign.render(ws(folder), jobs=2, force=True, layers=False)
    for rid in SOME:
        assert_same_letter(fast / f"{rid}.pdf", out / f"{rid}.pdf")
        assert pdf_a((fast / f"{rid}.pdf").read_bytes()) == ("3", "U")
    # A letter rendered alone is the letter rendered with the others.
    (out / "KE.pdf").unlink()
    campaign.render(ws(folder), jobs=1, only=["KE"], force=True)
    assert (out / "KE.pdf").read_bytes() == (fast / "KE.pdf").read_bytes()


@pytest.mark.slow
def test_letters_alone_in_their_groups_are_batched_and_start_early_with_the_same_bytes(sample):
    """36 personalised letters (each alone in its group: they go in SoloBatches, the first ones started while the
    campaign is checked), and one more with the same State as the third (a group of two, the first of them
    already sent alone): each PDF is the one the letter gets rendered alone, and --explain names each once."""
    with open(sample / "recipients.csv", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)[:36]
    twin = dict(rows[2], id=rows[2]["id"] + "2")
    rows.insert(34, twin)
    folder = personalise(sample)
    with open(folder / "recipients.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    ids = [row["id"] for row in rows]
    out = folder / "out" / "icc-states-parties-2020"
    explanation = Explanation()
    assert not campaign.render(ws(folder), jobs=2, explanation=explanation).failed
    named = [name for group in explanation.groups for name in group.members]
    assert sorted(named) == sorted(ids) and not explanation.whole
    assert any(set(group.members) == {rows[2]["id"], twin["id"]} for group in explanation.groups)
    together = {rid: (out / f"{rid}.pdf").read_bytes() for rid in ids}
    for rid in (ids[0], ids[33], rows[2]["id"], twin["id"]):
        (out / f"{rid}.pdf").unlink()
        campaign.render(ws(folder), jobs=1, only=[rid], force=True)
        assert (out / f"{rid}.pdf").read_bytes() == together[rid], rid


def test_first_difference_and_its_place_in_the_letter():
    a = "<p>We call on <b>Afghanistan</b> and all States Parties.</p><address>\ue000w#0\ue001</address>"
    b = "<p>We call on <b>the Plurinational State of Bolivia</b> and all States Parties.</p>"
    difference = first_difference(a, b, words=3)
    assert (difference.before, difference.first, difference.second) == (
        "We call on", "Afghanistan", "the Plurinational State")
    assert first_difference(a, a) is None
    source = "---\ntitle: x\n---\n\nWe call on\n{{ state }} and all States Parties.\n"
    assert place_in_source(source, difference.before) == (6, 1)
    assert place_in_source(source, "words that are not there") is None


@pytest.mark.slow
def test_explain_names_the_value_that_gives_each_letter_a_master_of_its_own(sample):
    folder = personalise(sample, SOME)
    result = CliRunner().invoke(app, ["-C", str(folder), "render", "--explain", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    source = (folder / LETTER).read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(source, start=1) if "call on {{ state }}" in text)
    column = source[line - 1].index("{{ state }}") + 1
    lines = result.stdout.splitlines()
    assert not any(text.startswith("group ") for text in lines)  # six letters alone: one line, not six groups
    assert any(text.startswith("6 letters alone in their groups (") and "regions address, running-head, salutation"
               in text for text in lines)
    assert f"organizations, call on” ({LETTER}:{line}:{column}): AD has “Andorra…”, BR “Brazil…”" in result.stdout
