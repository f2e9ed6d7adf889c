"""Pages of a PDF as pictures (PDFium): thumbnails for the proof sheet and the report, PNGs for preview."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterator


def page_images(pdf: Path, dpi: int) -> Iterator:
    """Each page of the PDF drawn at dpi, as a PIL image, in page order."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    try:
        for page in document:
            yield page.render(scale=dpi / 72).to_pil()
    finally:
        document.close()


def thumbnail_png(pdf: Path, width_px: int = 330) -> tuple[bytes, int]:
    """Page 1 of a PDF as a PNG width_px wide, and the PDF's number of pages."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    try:
        page = document[0]
        scale = width_px / page.get_width()
        image = page.render(scale=scale).to_pil()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue(), len(document)
    finally:
        document.close()


def page_pngs(pdf: Path, folder: Path, stem: str, dpi: int) -> list[Path]:
    """Write folder/<stem>-page<N>.png for each page of the PDF (each atomically); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for number, image in enumerate(page_images(pdf, dpi), start=1):
        target = folder / f"{stem}-page{number}.png"
        tmp = target.with_name(f".{target.name}.tmp")
        image.save(tmp, format="PNG")
        tmp.replace(target)
        images.append(target)
    return images
