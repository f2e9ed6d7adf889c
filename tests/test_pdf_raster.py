"""PDF pages as pictures: the thumbnail of page 1 and a PNG per page, drawn by PDFium from a real PDF."""

from __future__ import annotations

import io

from PIL import Image

from dispatch.pdf.engine import PdfRenderer
from dispatch.pdf.raster import page_images, page_pngs, thumbnail_png
from tests.conftest import row

TWO_PAGES = ('<html><head><style>@page { size: A4; margin: 2cm }</style></head>'
             '<body><p>First page</p><p style="break-before: page">Second page</p></body></html>')


def two_pages(make_workspace, tmp_path):
    templates = make_workspace([row("NA", "Namibia")]) / "templates"
    pdf = tmp_path / "two.pdf"
    pdf.write_bytes(PdfRenderer(templates).render(TWO_PAGES).data)
    return pdf


def test_thumbnail_of_page_one_and_the_number_of_pages(make_workspace, tmp_path):
    png, pages = thumbnail_png(two_pages(make_workspace, tmp_path), width_px=180)
    assert pages == 2 and png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.width == 180 and abs(image.height - 180 * 297 / 210) <= 1  # A4's proportions


def test_a_png_per_page_at_the_resolution_asked(make_workspace, tmp_path):
    pdf = two_pages(make_workspace, tmp_path)
    folder = tmp_path / "preview"
    written = page_pngs(pdf, folder, "NA", dpi=72)
    assert [p.name for p in written] == ["NA-page1.png", "NA-page2.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["NA-page1.png", "NA-page2.png"]  # no temporary file left
    for path in written:
        with Image.open(path) as image:
            assert (abs(image.width - 595) <= 1, abs(image.height - 842) <= 1) == (True, True)  # A4 at 72 dpi
    first, second = page_images(pdf, 36)
    assert abs(first.width - 298) <= 1 and first.size == second.size
    assert first.convert("L").getextrema()[0] < 128  # the text is drawn, not a blank page
