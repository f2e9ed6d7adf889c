"""Reproducible bytes: a letter's PDF depends on its own row, the letter, templates/, the settings and the
versions only; never on the other rows, their order, the number of workers, or the time of day.

The letter of Switzerland (CH) of the sample campaign is rendered alone (a campaign of its one row) and
inside the whole sample (its 125 rows, also in the reverse order), by one process and by two workers,
layered and whole (--no-layers), all through the command line; its bytes must be the same every time
on each path.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
from pathlib import Path

import pikepdf
import pytest
from typer.testing import CliRunner

from dispatch.cli import app
from tests.conftest import REPO

LETTER = "icc-states-parties-2020"
CHOSEN = "CH"


def sample_rows() -> tuple[list[str], list[dict[str, str]]]:
    with open(REPO / "recipients.csv", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def campaign_of(folder: Path, rows: list[dict[str, str]], header: list[str]) -> Path:
    """A copy of the sample campaign with these recipients."""
    folder.mkdir(parents=True)
    shutil.copy(REPO / "dispatch.toml", folder / "dispatch.toml")
    for name in ("letters", "templates"):
        shutil.copytree(REPO / name, folder / name)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (folder / "recipients.csv").write_text(buffer.getvalue(), encoding="utf-8")
    return folder


def rendered(folder: Path, *options: str) -> bytes:
    """CH's PDF after `dispatch render --force <options>` in folder."""
    result = CliRunner().invoke(app, ["-C", str(folder), "-q", "render", "--force", *options])
    assert result.exit_code == 0, result.output
    return (folder / "out" / LETTER / f"{CHOSEN}.pdf").read_bytes()


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reproducible")
    header, rows = sample_rows()
    chosen = [row for row in rows if row["id"] == CHOSEN]
    assert len(chosen) == 1 and len(rows) > 100
    return {"alone": campaign_of(root / "alone", chosen, header),
            "sample": campaign_of(root / "sample", rows, header),
            "reversed": campaign_of(root / "reversed", rows[::-1], header)}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.mark.slow
def test_a_layered_letter_is_the_same_alone_or_with_the_others_and_for_any_number_of_workers(campaigns):
    runs = {f"{name}, --jobs {jobs}": rendered(campaigns[name], "--jobs", str(jobs))
            for name in ("alone", "sample") for jobs in (1, 2)}
    runs["reversed, --jobs 2"] = rendered(campaigns["reversed"], "--jobs", "2")
    assert {name: digest(data) for name, data in runs.items()} == dict.fromkeys(runs, digest(runs["alone, --jobs 1"]))
    with pikepdf.open(io.BytesIO(runs["alone, --jobs 1"])) as pdf:  # the layered path it claims to test
        forms = [name for page in pdf.pages for name in page.Resources.XObject.keys()]
        assert any(name.startswith("/DispatchSlot") for name in forms)


@pytest.mark.slow
def test_a_whole_letter_is_the_same_alone_or_with_the_others_and_for_any_number_of_workers(campaigns):
    runs = {f"alone, --jobs {jobs}": rendered(campaigns["alone"], "--no-layers", "--jobs", str(jobs)) for jobs in (1, 2)}
    runs["sample, --jobs 2"] = rendered(campaigns["sample"], "--no-layers", "--jobs", "2")
    assert {name: digest(data) for name, data in runs.items()} == dict.fromkeys(runs, digest(runs["alone, --jobs 1"]))
    with pikepdf.open(io.BytesIO(runs["alone, --jobs 1"])) as pdf:
        assert not any(name.startswith("/DispatchSlot") for page in pdf.pages
                       for name in (page.Resources.get("/XObject") or {}).keys())


@pytest.mark.slow
def test_a_letter_rendered_on_its_own_is_the_letter_rendered_with_the_others(campaigns):
    """--only (and dispatch preview) renders one letter of the campaign: the same bytes as among the others."""
    folder = campaigns["sample"]
    among = rendered(folder, "--jobs", "2")
    result = CliRunner().invoke(app, ["-C", str(folder), "-q", "render", "--force", "--only", CHOSEN, "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert (folder / "out" / LETTER / f"{CHOSEN}.pdf").read_bytes() == among


def test_pdf_x_dates_come_from_source_date_epoch_and_its_document_id_from_the_document(tmp_path, monkeypatch):
    """PDF/X files carry dates and an XMP document ID, which WeasyPrint takes from the clock and a random
    number: the dates are SOURCE_DATE_EPOCH (1970-01-01 without it), the ID a digest of the document."""
    from dispatch.pdf.engine import PdfRenderer

    page = '<html><head><title>T</title><link rel="stylesheet" href="letter.css"></head><body><p>{}</p></body></html>'
    renderer = PdfRenderer(REPO / "templates", pdf_variant="pdf/x-4")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = renderer.render(page.format("Hello")).data
    assert renderer.render(page.format("Hello")).data == first
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = renderer.render(page.format("Hello")).data
    other = renderer.render(page.format("Good morning")).data
    with pikepdf.open(io.BytesIO(first)) as a, pikepdf.open(io.BytesIO(dated)) as b, pikepdf.open(io.BytesIO(other)) as c:
        assert str(a.docinfo.CreationDate) == str(a.docinfo.ModDate) == "D:19700101000000+00'00"
        assert str(b.docinfo.CreationDate) == str(b.docinfo.ModDate) == "D:20231114221320+00'00"
        xmp = [dict(pdf.open_metadata()) for pdf in (a, b, c)]
    key = "{http://ns.adobe.com/xap/1.0/}CreateDate"
    assert (xmp[0][key], xmp[1][key]) == ("1970-01-01T00:00:00+00:00", "2023-11-14T22:13:20+00:00")
    ids = [m["{http://ns.adobe.com/xap/1.0/mm/}DocumentID"] for m in xmp]
    assert ids[0] == ids[1] != ids[2] and ids[0].startswith("xmp.did:")
