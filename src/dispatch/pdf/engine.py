"""HTML into PDF (WeasyPrint), and PDF files written whole.

A renderer per process keeps what every document shares (fonts, parsed stylesheets); it fetches files
inside templates/ and data: URLs only. Files are written under a temporary name, then renamed. This
module does not import Jinja2 or Markdown: the worker processes that render need none of the merging.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

from dispatch.errors import Problem, RenderError
from dispatch.pdf.inputs import load_failures, refuse_attachments, where
from dispatch.pdf.paints import replayed_pages

log = logging.getLogger(__name__)


def confined_fetcher(root: Path):
    """A WeasyPrint URL fetcher that reads files inside root and data: URLs; nothing else, ever.

    Anything else stops the render with FatalURLFetchingError, so a template that asks for the network
    or a file elsewhere fails loudly instead of producing a letter with a silently missing part.
    """
    from weasyprint.urls import FatalURLFetchingError, URLFetcher  # imported where PDFs are made

    root = root.resolve()

    class ConfinedFetcher(URLFetcher):
        def fetch(self, url: str, headers: Any = None):
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme == "data":
                return super().fetch(url, headers)
            if scheme == "file":
                path = Path(unquote(parts.path)).resolve()
                if path.is_relative_to(root) and path.is_file():
                    return super().fetch(url, headers)
                if path.is_relative_to(root):
                    missing = FatalURLFetchingError(f"{path.relative_to(root).as_posix()} is not a file in templates/; "
                                                    "the letter was not written")
                    missing.missing = path.relative_to(root).as_posix()
                    raise missing
                raise FatalURLFetchingError(f"{url} is not a file inside the templates folder")
            raise FatalURLFetchingError(f"{url}: dispatch never fetches from the network")

    return ConfinedFetcher(allowed_protocols=("file", "data"), timeout=1, fail_on_errors=True)


MM_PER_PX = 25.4 / 96


@dataclass(frozen=True)
class Pdf:
    data: bytes
    pages: int
    # Where each element with an id landed: id -> (page index, left, top, right, bottom), its border box in mm
    # from the page's top-left corner.
    anchors: Mapping[str, tuple[int, float, float, float, float]] = field(default_factory=dict)


# <link rel="stylesheet" href="..."> with a relative href (the template's own stylesheets).
_STYLESHEET_LINK = re.compile(
    r"""<link\s+rel=["']?stylesheet["']?\s+href=["']([^"':?#]+\.css)["']\s*/?>""", re.IGNORECASE)
# What a stylesheet may not contain to be parsed once and passed as a user stylesheet: WeasyPrint gives
# those the "user" origin and a counter-style table of their own, so these would behave differently.
_NOT_REUSABLE = ("!important", "@counter-style", "@layer")


# The variants of the WeasyPrint version in constraints.txt (a test checks it has them all): one of them is
# known without importing WeasyPrint, which costs most of a second; any other is looked up in WeasyPrint.
KNOWN_PDF_VARIANTS = ("pdf/a-1b", "pdf/a-2b", "pdf/a-3b", "pdf/a-2u", "pdf/a-3u", "pdf/a-4u", "pdf/a-1a", "pdf/a-2a",
                      "pdf/a-3a", "pdf/a-4e", "pdf/a-4f", "pdf/ua-1", "pdf/ua-2", "pdf/x-1a", "pdf/x-3", "pdf/x-4",
                      "pdf/x-5g")


def pdf_variants() -> tuple[str, ...]:
    """The PDF variants WeasyPrint can write: pdf/a-3u, pdf/a-2b, pdf/ua-1, ..."""
    from weasyprint.pdf import VARIANTS

    return tuple(VARIANTS)


def is_pdf_variant(name: str, variants: Callable[[], tuple[str, ...]] = pdf_variants) -> bool:
    """Whether WeasyPrint can write this variant (variants: where the full list comes from)."""
    return name in KNOWN_PDF_VARIANTS or name in variants()


def check_pdf_variant(pdf_variant: str) -> str:
    """The variant, if WeasyPrint can write it; else a RenderError."""
    if not is_pdf_variant(pdf_variant):
        raise RenderError(f"unknown PDF variant {pdf_variant!r}",
                          hint=f"use one of {', '.join(pdf_variants())}, or leave it empty for a plain PDF")
    return pdf_variant


class PdfRenderer:
    """Writes PDFs with WeasyPrint. One instance per process: it keeps what every letter shares.

    The font configuration (the @font-face fonts, loaded once) and the template's stylesheets: each
    <link rel="stylesheet"> to a file in templates/ is parsed on first use, then taken out of every
    later document and passed to WeasyPrint already parsed. A renderer assumes templates/ does not
    change while it lives (a render run, a worker process).

    pdf_variant (e.g. "pdf/a-3u") makes archival PDFs; they are also tagged for accessibility.
    """

    def __init__(self, templates: Path, *, pdf_variant: str | None = None) -> None:
        import weasyprint
        from weasyprint.text.fonts import FontConfiguration

        if pdf_variant:
            check_pdf_variant(pdf_variant)
        self.pdf_variant = pdf_variant or None
        self.options = {"pdf_variant": pdf_variant, "pdf_tags": True} if pdf_variant else {}

        # Font subsets made by fontTools carry a timestamp, taken from SOURCE_DATE_EPOCH when it is set: a
        # fixed one makes the same letter give the same bytes (see document_date).
        os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
        self._weasyprint = weasyprint
        self.templates = templates.resolve()
        self.base_url = self.templates.as_uri() + "/"
        self.fetcher = confined_fetcher(self.templates)
        self.font_config = FontConfiguration()
        self._stylesheets: dict[str, Any] = {}  # href -> parsed CSS, or None when it must stay a <link>
        self._parsed: dict[str, Any] = {}  # CSS text -> parsed (see stylesheet())

    def _stylesheet(self, href: str):
        if href not in self._stylesheets:
            path = (self.templates / href).resolve()
            parsed = None
            if path.is_relative_to(self.templates) and path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                if not any(marker in text for marker in _NOT_REUSABLE):
                    try:  # what it loads (fonts) is loaded once: a failure is kept for every later letter
                        with load_failures(self.templates):
                            parsed = self._weasyprint.CSS(string=text, base_url=path.as_uri(),
                                                          url_fetcher=self.fetcher, font_config=self.font_config)
                    except RenderError as exc:
                        parsed = exc
            self._stylesheets[href] = parsed
        if isinstance(self._stylesheets[href], RenderError):
            raise self._stylesheets[href]
        return self._stylesheets[href]

    def _reuse_stylesheets(self, html: str) -> tuple[str, list[Any]]:
        """The document without the <link>s to stylesheets already parsed, and those stylesheets."""
        head_end = html.find("</head>")
        if head_end < 0:
            return html, []
        sheets: list[Any] = []

        def take(match: re.Match) -> str:
            sheet = self._stylesheet(match.group(1))
            if sheet is None:
                return match.group(0)
            sheets.append(sheet)
            return ""

        return _STYLESHEET_LINK.sub(take, html[:head_end]) + html[head_end:], sheets

    def stylesheet(self, css: str):
        """css parsed once for this renderer (by its text), to pass to layout()."""
        if css not in self._parsed:
            try:
                with load_failures(self.templates):
                    self._parsed[css] = self._weasyprint.CSS(string=css, base_url=self.base_url,
                                                             url_fetcher=self.fetcher, font_config=self.font_config)
            except RenderError as exc:
                self._parsed[css] = exc
        if isinstance(self._parsed[css], RenderError):
            raise self._parsed[css]
        return self._parsed[css]

    def layout(self, html: str, *, plain: bool = False, stylesheets: tuple = ()):
        """The laid-out WeasyPrint document of html (plain: without this renderer's PDF variant and tags).

        stylesheets: more stylesheets from stylesheet(), after the document's own. A part that cannot be
        loaded (an image, a font, a stylesheet: see inputs.py) or an attachment is a RenderError."""
        from weasyprint.urls import FatalURLFetchingError

        refuse_attachments(html, self.templates)
        try:
            with load_failures(self.templates):
                html, own = self._reuse_stylesheets(html)
                stylesheets = [*own, *stylesheets]
                document = self._weasyprint.HTML(string=html, base_url=self.base_url, url_fetcher=self.fetcher)
                rendered = document.render(font_config=self.font_config, stylesheets=stylesheets,
                                           custom_metadata=True, **({} if plain else self.options))
        except FatalURLFetchingError as exc:
            raise _outside(exc, self.templates) from None
        except OSError as exc:  # WeasyPrint writes fonts to the temporary folder while it works
            raise _disk_error(exc) from None
        if not plain and (self.pdf_variant or "").startswith("pdf/x"):  # see write: its XMP document ID
            rendered.dispatch_key = hashlib.sha256(html.encode("utf-8", "surrogatepass")).digest()
        return rendered

    def write(self, rendered, *, plain: bool = False) -> bytes:
        """The PDF of a document laid out by layout().

        Its bytes depend on the document only: the file identifier is fixed (its second half a digest of
        the content), and where a PDF variant would stamp the time of day (PDF/X: creation and
        modification dates, a random XMP document ID), the date is document_date() and the ID a
        digest of the document's HTML."""
        from weasyprint.urls import FatalURLFetchingError

        variant = None if plain else self.pdf_variant
        try:
            with _fixed_stamps(rendered, variant), load_failures(self.templates), replayed_pages():
                return rendered.write_pdf(custom_metadata=True, pdf_identifier=b"dispatch",
                                          **({} if plain else self.options))
        except FatalURLFetchingError as exc:
            raise _outside(exc, self.templates) from None
        except OSError as exc:
            raise _disk_error(exc) from None

    def metadata(self, head: str):
        """The PDF metadata WeasyPrint takes from an HTML <head> (title, authors, description, keywords...)."""
        from weasyprint.html import get_html_metadata
        from weasyprint.pdf.metadata import DocumentMetadata

        document = self._weasyprint.HTML(string=head + "</head><body></body></html>", base_url=self.base_url,
                                         url_fetcher=self.fetcher)
        return DocumentMetadata(**get_html_metadata(document))

    def render(self, html: str) -> Pdf:
        rendered = self.layout(html)
        data = self.write(rendered)
        anchors = {name: (index, *(value * MM_PER_PX for value in box))
                   for index, page in enumerate(rendered.pages) for name, box in page.anchors.items()}
        return Pdf(data=data, pages=len(rendered.pages), anchors=anchors)


def document_date() -> str:
    """The date written where a PDF must carry one (W3C format, UTC): SOURCE_DATE_EPOCH when it is set
    (seconds since 1970, the reproducible-builds convention), else 1970-01-01. Never the time of day:
    the same letter gives the same bytes whenever it is rendered."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        seconds = int(value)
        moment = datetime.fromtimestamp(seconds, timezone.utc)
    except (ValueError, OverflowError, OSError):
        log.warning("SOURCE_DATE_EPOCH=%r is not a number of seconds: the PDF dates are 1970-01-01", value)
        moment = datetime.fromtimestamp(0, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


@contextmanager
def _fixed_stamps(rendered, pdf_variant: str | None):
    """While a PDF/X file is written: its dates are document_date() unless the HTML gives them, and its XMP
    document ID (WeasyPrint: a random UUID) is derived from the document's HTML."""
    if not (pdf_variant or "").startswith("pdf/x"):
        yield
        return
    from weasyprint.pdf import metadata as module

    metadata = rendered.metadata
    metadata.created = metadata.created or document_date()
    metadata.modified = metadata.modified or document_date()
    key = getattr(rendered, "dispatch_key", b"")
    original = module.uuid4
    module.uuid4 = lambda: uuid.UUID(bytes=hashlib.sha256(b"dispatch document id " + key).digest()[:16], version=4)
    try:
        yield
    finally:
        module.uuid4 = original


def _outside(exc: BaseException, templates: Path) -> RenderError:
    missing = getattr(exc, "missing", None)
    if missing:
        file, line = where(templates, Path(missing).name)
        return RenderError(str(exc), file=file, line=line,
                           hint="add the file to templates/ (images, fonts and stylesheets must be there), "
                                "or correct its name where the template refers to it")
    return RenderError(str(exc), file="templates/",
                       hint="templates may only use files inside templates/ (fonts, images, CSS)")


def _disk_error(exc: OSError) -> RenderError:
    return RenderError(f"cannot render a PDF: {exc.strerror or exc}",
                       hint="check that the disk is not full, the temporary folder (TMPDIR) included")


@dataclass(frozen=True)
class Done:
    """What became of one letter or document: the PDF written (pages, size, sha256), or the problem that stopped it."""

    name: str
    target: Path
    pages: int = 0
    size: int = 0
    sha256: str = ""
    problem: Problem | None = None
    staged: Path | None = None  # where the PDF waits to be renamed to target (write_atomic staged, commit)


def with_base(html: str, templates: Path) -> str:
    """The HTML with a <base> pointing at templates/, so it renders the same when opened from out/."""
    base = f'<base href="{templates.resolve().as_uri()}/">'
    match = re.search(r"<head[^>]*>", html, re.IGNORECASE)
    if match is None:
        return base + html
    return html[:match.end()] + base + html[match.end():]


def engine_version() -> str:
    """The version of the PDF engine, without importing it (importing WeasyPrint takes most of a second)."""
    from importlib.metadata import version

    return f"weasyprint {version('weasyprint')}"
