"""Archival PDFs: PDF/A identification, output intent, embedded fonts, tags, language and metadata.

No independent PDF/A validator (veraPDF) can be installed from the registries this project uses, so
these tests check with pikepdf (qpdf) what a validator would look at first.
"""

from __future__ import annotations

import pikepdf
import pytest
from typer.testing import CliRunner

from dispatch import campaign
from dispatch.cli import app
from dispatch.errors import RenderError
from dispatch.pdf.engine import KNOWN_PDF_VARIANTS, PdfRenderer
from tests.conftest import row, ws

XMP_PDFAID = "{http://www.aiim.org/pdfa/ns/id/}"
DC = "{http://purl.org/dc/elements/1.1/}"


@pytest.fixture(scope="module")
def archival(tmp_path_factory):
    from tests.conftest import WorkspaceFactory

    folder = WorkspaceFactory(tmp_path_factory.mktemp("pdfa"))([row("NA", "Namibia", title="H.E. Mr.", ambassador="Neville Gertze")])
    campaign.render(ws(folder))  # the skeleton's dispatch.toml asks for pdf/a-3u
    return folder / "out" / "letter" / "NA.pdf"


def test_xmp_identifies_pdf_a_3u_with_the_letter_metadata(archival):
    with pikepdf.open(archival) as pdf:
        meta = pdf.open_metadata()
        assert meta[f"{XMP_PDFAID}part"] == "3"
        assert meta[f"{XMP_PDFAID}conformance"] == "U"
        assert meta[f"{DC}title"] == "Test Letter — Namibia"
        assert meta[f"{DC}creator"] == ["First Organisation, Second Organisation"]  # the sender organisations
        assert meta[f"{DC}description"] == "A test letter"
        info = pdf.docinfo
        assert str(info["/Title"]) == "Test Letter — Namibia"
        assert str(info["/Author"]) == "First Organisation, Second Organisation"
        assert str(info["/Subject"]) == "A test letter"
        assert str(info["/recipient"]) == ("H.E. Mr. Neville Gertze, Permanent Representative of Namibia, "
                                           "Permanent Mission of Namibia to the United Nations")
        assert str(info["/recipientid"]) == "NA"  # WeasyPrint keeps letters and digits of the name


def test_structure_a_validator_checks(archival):
    with pikepdf.open(archival) as pdf:
        assert pdf.check_pdf_syntax() == []  # qpdf: no structural problem
        root = pdf.Root
        assert str(root.Lang) == "en"
        assert bool(root.MarkInfo.Marked) is True  # tagged for accessibility
        assert root.StructTreeRoot.Type == "/StructTreeRoot"
        kinds = set()

        def walk(node, depth=0):
            if isinstance(node, pikepdf.Dictionary) and "/S" in node and depth < 40:
                kinds.add(str(node.S))
            children = node.get("/K") if isinstance(node, pikepdf.Dictionary) else None
            for child in (children if isinstance(children, pikepdf.Array) else [children] if children is not None else []):
                walk(child, depth + 1)

        walk(root.StructTreeRoot)
        assert {"/P", "/L", "/LI"} <= kinds, kinds  # paragraphs and the bulleted list are tagged
        intent = root.OutputIntents[0]
        assert intent.S == "/GTS_PDFA1" and "/DestOutputProfile" in intent
        assert pdf.trailer.ID  # a file identifier, required by PDF/A
        for page in pdf.pages:
            for font in page.Resources.Font.values():
                descriptor = font.DescendantFonts[0].FontDescriptor
                assert "/FontFile2" in descriptor or "/FontFile3" in descriptor, font.BaseFont  # embedded


def test_plain_pdf_when_asked(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    result = CliRunner().invoke(app, ["-C", str(folder), "render", "--pdf-variant", "none"])
    assert result.exit_code == 0, result.output
    with pikepdf.open(folder / "out" / "letter" / "NA.pdf") as pdf:
        assert f"{XMP_PDFAID}part" not in pdf.open_metadata()
        assert "/StructTreeRoot" not in pdf.Root and "/OutputIntents" not in pdf.Root


def test_unknown_variant_is_refused(make_workspace, tmp_path):
    folder = make_workspace([row("NA", "Namibia")])
    toml = folder / "dispatch.toml"
    toml.write_text(toml.read_text().replace('pdf_variant = "pdf/a-3u"', 'pdf_variant = "pdf/a-9"'))
    result = CliRunner().invoke(app, ["-C", str(folder), "validate"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: dispatch.toml:9: pdf_variant: unknown PDF variant 'pdf/a-9'"
    preview = CliRunner().invoke(app, ["-C", str(folder), "preview", "NA"])  # the variants come from its process
    assert preview.exit_code == 1
    assert preview.stderr.splitlines()[0] == "error: dispatch.toml:9: pdf_variant: unknown PDF variant 'pdf/a-9'"
    assert not (folder / "out" / "letter" / "NA.pdf").exists()
    with pytest.raises(RenderError) as caught:
        PdfRenderer(tmp_path, pdf_variant="pdf/a")
    assert str(caught.value) == "unknown PDF variant 'pdf/a'"
    assert "pdf/a-3u" in caught.value.hint


def test_worker_processes_write_the_same_archival_pdfs_and_the_variant_is_in_the_key(make_workspace):
    folder = make_workspace([row("NA", "Namibia"), row("FR", "France"), row("DE", "Germany")])
    out = folder / "out" / "letter"
    summary = campaign.render(ws(folder), jobs=2)  # worker processes: pdf/a-3u from dispatch.toml
    assert [r.reason for r in summary.rendered] == ["new"] * 3
    in_workers = {path.name: path.read_bytes() for path in sorted(out.glob("*.pdf"))}
    with pikepdf.open(out / "NA.pdf") as pdf:
        assert pdf.open_metadata()[f"{XMP_PDFAID}part"] == "3" and "/StructTreeRoot" in pdf.Root
    assert campaign.render(ws(folder), jobs=2).up_to_date == 3
    plain = campaign.render(ws(folder), jobs=2, pdf_variant="none")
    assert [r.reason for r in plain.rendered] == ["changed"] * 3  # another kind of PDF: rendered again
    with pikepdf.open(out / "NA.pdf") as pdf:
        assert "/StructTreeRoot" not in pdf.Root
    here = campaign.render(ws(folder), jobs=1)  # back to pdf/a-3u, in this process
    assert [r.reason for r in here.rendered] == ["changed"] * 3
    assert {path.name: path.read_bytes() for path in sorted(out.glob("*.pdf"))} == in_workers


def test_an_unknown_variant_on_the_command_line_is_refused_before_rendering(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    result = CliRunner().invoke(app, ["-C", str(folder), "render", "--pdf-variant", "pdf/a-9", "--jobs", "2"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: unknown PDF variant 'pdf/a-9'"
    assert not (folder / "out" / "letter" / "NA.pdf").exists()


def test_the_variants_taken_without_weasyprint_are_weasyprints_own():
    """Settings are checked against KNOWN_PDF_VARIANTS without importing WeasyPrint: each must be one
    that the installed WeasyPrint writes."""
    from weasyprint.pdf import VARIANTS

    assert set(KNOWN_PDF_VARIANTS) <= set(VARIANTS)
    assert "pdf/a-3u" in KNOWN_PDF_VARIANTS
