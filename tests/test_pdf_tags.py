"""The tagged PDF (PDF/A-3u) of a layered letter: its regions (the address, the salutation) are in the
structure tree as text a screen reader reads (/ActualText on the region's structure element), each
letter with its own, although every letter of a group shares one master. Through the CLI, on a copy of
the repository's sample campaign."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pikepdf
import pytest
from typer.testing import CliRunner

from dispatch.cli import app

pytestmark = pytest.mark.slow  # renders letters of the sample through the CLI

XMP_PDFAID = "{http://www.aiim.org/pdfa/ns/id/}"


def structure(path: Path) -> list[tuple[str, str | None, str | None]]:
    """Every structure element of the PDF, depth first: (role, /ActualText, /T)."""
    found: list[tuple[str, str | None, str | None]] = []
    with pikepdf.open(path) as pdf:
        seen: set[tuple[int, int]] = set()

        def walk(node) -> None:
            if not isinstance(node, pikepdf.Dictionary):
                return
            if node.is_indirect:
                if node.objgen in seen:
                    return
                seen.add(node.objgen)
            if "/S" in node:
                found.append((str(node.S), str(node.ActualText) if "/ActualText" in node else None,
                              str(node.T) if "/T" in node else None))
            kids = node.get("/K")
            for kid in kids if isinstance(kids, pikepdf.Array) else [kids] if kids is not None else []:
                walk(kid)

        walk(pdf.Root.StructTreeRoot)
    return found


def mission(campaign: Path, rid: str) -> str:
    with (campaign / "recipients.csv").open(encoding="utf-8-sig", newline="") as rows:
        return next(row["mission"] for row in csv.DictReader(rows) if row["id"] == rid)


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    from tests.conftest import REPO

    campaign = tmp_path_factory.mktemp("tags") / "sample"
    campaign.mkdir()
    for name in ("dispatch.toml", "recipients.csv"):
        shutil.copy(REPO / name, campaign / name)
    for folder in ("letters", "templates"):
        shutil.copytree(REPO / folder, campaign / folder)
    result = CliRunner().invoke(app, ["-C", str(campaign), "render", "--only", "NA", "--only", "FR", "--explain"])
    assert result.exit_code == 0, result.output
    assert "layered: 2 letter(s); rendered whole: 0" in result.output, result.output
    return campaign


@pytest.mark.parametrize("rid", ["NA", "FR"])
def test_the_address_and_the_salutation_are_text_in_the_structure_tree(layered, rid):
    pdf = layered / "out" / "icc-states-parties-2020" / f"{rid}.pdf"
    elements = structure(pdf)
    texts = [text for _, text, _ in elements if text]
    assert any(text.startswith("Your Excellency") for text in texts), texts
    assert any(mission(layered, rid) in text.replace("\n", " ") for text in texts), texts
    assert not [title for _, _, title in elements if title]  # no trace of how the regions were found
    with pikepdf.open(pdf) as document:  # still the PDF/A-3u it was
        assert document.check_pdf_syntax() == [] if hasattr(document, "check_pdf_syntax") else document.check() == []
        meta = document.open_metadata()
        assert (meta[f"{XMP_PDFAID}part"], meta[f"{XMP_PDFAID}conformance"]) == ("3", "U")
        assert bool(document.Root.MarkInfo.Marked)


def test_each_letter_of_a_group_has_its_own_region_text(layered):
    out = layered / "out" / "icc-states-parties-2020"
    na = {text for _, text, _ in structure(out / "NA.pdf") if text}
    fr = {text for _, text, _ in structure(out / "FR.pdf") if text}
    assert any("Namibia" in text for text in na) and not any("Namibia" in text for text in fr)
    assert any("France" in text for text in fr) and not any("France" in text for text in na)
