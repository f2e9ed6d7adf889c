"""Merge a letter with one recipient into HTML (Jinja2, sandboxed), then HTML into PDF (WeasyPrint).

Two Jinja2 environments, both sandboxed and strict about undefined names:
- the letter body (Markdown): every value is escaped for Markdown before the Markdown is converted,
  so a cell can never become markup, a link or a template;
- the layout (templates/*.html.j2): HTML autoescaping.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import contextlib
import os
import re
import signal
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from markdown_it import MarkdownIt
from markupsafe import Markup

from . import i18n
from .errors import Problem, RenderError, TemplateError
from .models import Letter, Recipient
from .regions import Marks, Parts

log = logging.getLogger(__name__)

# Limits that stop a template from running away: output size, arithmetic that builds huge values, time.
MAX_OUTPUT_CHARS = 2_000_000
TIME_BUDGET_SECONDS = 10.0
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&\"'=:;/^$%@?,])")


class LimitedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox, which also refuses arithmetic that would build enormous values ('x' * 10**9)."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError(f"the power {right} is too large")
        if operator == "*":
            for value, times in ((left, right), (right, left)):
                if isinstance(value, str | list | tuple) and isinstance(times, int) \
                        and len(value) * times > MAX_OUTPUT_CHARS:
                    raise SecurityError("this repetition would make more text than a letter can hold")
        return super().call_binop(context, operator, left, right)


class TimeBudgetExceeded(Exception):
    """A template ran longer than TIME_BUDGET_SECONDS."""


@contextlib.contextmanager
def time_budget(seconds: float):
    """Interrupt the enclosed code after `seconds` (main thread only; elsewhere the size limits apply)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise TimeBudgetExceeded()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def markdown_escape(value: Any) -> Any:
    """Make a value print literally inside Markdown: no emphasis, links, HTML or entities."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return ""
    text = str(value)
    lines = [line.strip() for line in text.replace("\r", "").split("\n")]
    escaped = [_MD_SPECIAL.sub(r"\\\1", line) for line in lines]
    return "\\\n".join(escaped)  # a backslash at the end of a line is a hard line break


@dataclass(frozen=True)
class MergeContext:
    """What every recipient of one letter shares: the letter, the sender and the page settings."""

    letter: Letter
    sender: Mapping[str, Any]
    page_size: str = "A4"
    default_language: str = "en"
    columns: tuple[str, ...] = ()


class Merger:
    """Turns (letter, recipient) into the HTML of the letter. Holds the two compiled templates."""

    def __init__(self, templates: Path, context: MergeContext, *, letter_file: str) -> None:
        self.templates = templates
        self.context = context
        self.letter_file = letter_file
        letter = context.letter
        padded_body = "\n" * (letter.body_line - 1) + letter.body  # template lines = file lines
        self.body_env = LimitedSandbox(
            loader=jinja2.FunctionLoader(
                lambda name: (padded_body, letter_file, lambda: True) if name == letter_file else None),
            autoescape=False, finalize=markdown_escape, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        self.body_env.filters["date"] = lambda value, language=None: i18n.format_letter_date(
            value, language or letter.language or context.default_language)
        # The letter layout's regions are marked as it is loaded (see regions.py): one merge gives both
        # the whole letter and its parts.
        self.marks = Marks()
        self.layout_env = layout_environment(templates, marks=(self.marks, letter.template))
        self.markdown = MarkdownIt("commonmark", {"html": True, "typographer": False})
        # Most letters merge to the same Markdown for every recipient: convert each distinct text once.
        self._converted: dict[str, str] = {}
        self.body_template = load_template(self.body_env, letter_file, letter_file, letter_file=letter_file)
        self.layout_template = load_template(self.layout_env, letter.template, f"templates/{letter.template}",
                                             letter_file=letter_file)

    def used_fields(self) -> tuple[str, ...]:
        """The CSV columns the letter and its layout refer to, in the order of the CSV."""
        from jinja2 import meta

        names: set[str] = set()
        for env, template in ((self.body_env, self.body_template), (self.layout_env, self.layout_template)):
            source = env.loader.get_source(env, template.name)[0]
            names |= meta.find_undeclared_variables(env.parse(source))
            names |= set(re.findall(r"recipient(?:\.(\w+)|\[\s*['\"](\w+)['\"]\s*\])", source) and
                         [a or b for a, b in re.findall(r"recipient(?:\.(\w+)|\[\s*['\"](\w+)['\"]\s*\])", source)])
        return tuple(c for c in self.context.columns if c in names)

    def variables(self, recipient: Recipient) -> dict[str, Any]:
        ctx = self.context
        fields = {column: "" for column in ctx.columns}
        fields.update(recipient.fields)
        for column in ("addressee", "title", "ambassador", "address", "salutation", "regional_group", "email"):
            fields.setdefault(column, "")
        letter = ctx.letter
        # The language of the version this recipient gets (its own, or the letter's when there is none).
        language = letter.language or fields.get("language") or ctx.default_language
        words = i18n.wording(language, salutation=letter.salutation, page_label=letter.page_label)
        values: dict[str, Any] = {k: v for k, v in fields.items() if k.isidentifier()}
        values.update(
            recipient=fields,
            language=language,
            direction=i18n.direction(language),
            salutation=fields.get("salutation") or words.salutation,
            page_label=Markup(i18n.page_label_css(words.page_label)),
            comma=words.comma,
            addressee_lines=list(recipient.addressee_lines),
            sender=dict(ctx.sender),
            page_size=ctx.page_size,
            letter={
                "name": letter.name, "title": letter.title, "subject": letter.subject, "place": letter.place,
                "date": i18n.format_letter_date(letter.date, language), "senders": list(letter.senders),
                "signatories": list(letter.signatories), "author": letter.author,
            },
        )
        return values

    def body_html(self, recipient: Recipient, variables: Mapping[str, Any] | None = None) -> Markup:
        variables = variables if variables is not None else self.variables(recipient)
        source = self._run(self.body_template, variables, recipient)
        html = self._converted.get(source)
        if html is None:
            html = self.markdown.render(source)
            if len(self._converted) < 64:
                self._converted[source] = html
        return Markup(html)

    def html(self, recipient: Recipient) -> str:
        """The recipient's letter, as HTML."""
        return self.merged(recipient).html

    def merged(self, recipient: Recipient) -> "Merged":
        """The recipient's letter, whole or in parts (shared layout and regions)."""
        variables = self.variables(recipient)
        variables["body"] = self.body_html(recipient, variables)
        return Merged(self._run(self.layout_template, variables, recipient), self.marks)

    def _run(self, template: jinja2.Template, variables: Mapping[str, Any], recipient: Recipient) -> str:
        where = self.letter_file if template is self.body_template else f"templates/{template.name}"
        try:
            return generate_limited(template, variables, where=where,
                                    too_long=f"the letter for recipient {recipient.id!r} grows past {MAX_OUTPUT_CHARS:,} characters")
        except TimeBudgetExceeded:
            raise TemplateError(f"the template ran for more than {TIME_BUDGET_SECONDS:g} s for recipient {recipient.id!r}",
                                file=where, hint="look for a loop that never ends or repeats too often") from None
        except SecurityError as exc:
            file, line = self._place(exc, template)
            raise TemplateError(f"not allowed in a template: {exc} (recipient {recipient.id!r})", file=file, line=line,
                                hint="templates run in a sandbox: no huge values, no access to Python internals") from None
        except jinja2.TemplateNotFound as exc:
            file, line = self._place(exc, template)
            raise TemplateError(f"template not found: {exc.name}", file=file, line=line,
                                hint="templates are looked up in the workspace's templates/ folder only") from None
        except jinja2.UndefinedError as exc:
            file, line = self._place(exc, template)
            raise TemplateError(f"{exc.message} (recipient {recipient.id!r}, recipients.csv line {recipient.line})",
                                file=file, line=line,
                                hint="add the column to recipients.csv, or fix the name in the template") from None
        except jinja2.TemplateError as exc:
            file, line = self._place(exc, template)
            raise TemplateError(f"{type(exc).__name__}: {exc} (recipient {recipient.id!r})", file=file, line=line) from None
        except (RecursionError, MemoryError, OverflowError) as exc:
            file, line = self._place(exc, template)
            raise TemplateError(f"the template could not be evaluated ({type(exc).__name__}) for recipient {recipient.id!r}",
                                file=file, line=line, hint="look for a loop or recursion that never ends") from None

    def _place(self, exc: BaseException, template: jinja2.Template) -> tuple[str, int | None]:
        fallback = self.letter_file if template is self.body_template else f"templates/{template.name}"
        return template_place(exc, self.templates, fallback, letter_file=self.letter_file)


def _date_filter(value: Any, language: str = "en") -> str:
    return i18n.format_letter_date(value, language)


def generate_limited(template: jinja2.Template, variables: Mapping[str, Any], *, where: str, too_long: str) -> str:
    """The template's output, within the size and time limits (TimeBudgetExceeded when it runs too long)."""
    with time_budget(TIME_BUDGET_SECONDS):
        parts, size = [], 0
        chunks = template.generate(variables)
        while batch := list(itertools.islice(chunks, 64)):  # checked every 64 pieces: the loop costs less
            piece = "".join(batch)
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(too_long, file=where, hint="look for a loop that repeats text without end")
            parts.append(piece)
        return "".join(parts)


class Merged:
    """One merged letter, with its region marks: the whole letter (html), or its parts (parts())."""

    __slots__ = ("marked", "marks", "_html", "_parts")

    def __init__(self, marked: str, marks: Marks) -> None:
        self.marked, self.marks, self._html, self._parts = marked, marks, None, None

    @property
    def html(self) -> str:
        if self._html is None:
            self._html = self.marks.whole(self.marked)
        return self._html

    def parts(self) -> Parts:
        if self._parts is None:
            self._parts = self.marks.split(self.marked)
        return self._parts


class _MarkingLoader(jinja2.FileSystemLoader):
    """Loads templates/ files; the letter layout's source with its regions marked."""

    def __init__(self, templates: Path, marks: Marks, name: str) -> None:
        super().__init__(str(templates))
        self.marks, self.name = marks, name

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        if template == self.name:
            source = self.marks.mark_source(source, f"templates/{template}")
        return source, filename, uptodate


def layout_environment(templates: Path, *, marks: tuple[Marks, str] | None = None) -> SandboxedEnvironment:
    """The sandboxed, HTML-escaping, strict Jinja2 environment for the files in templates/.

    marks: (the run's Marks, the letter layout's name), to mark that layout's regions.
    """
    loader = _MarkingLoader(templates, *marks) if marks else jinja2.FileSystemLoader(str(templates))
    env = LimitedSandbox(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                         trim_blocks=True, lstrip_blocks=True)
    env.filters["date"] = _date_filter
    if marks:
        env.globals[Marks.FUNCTION] = lambda name, end: Markup(marks[0].mark(name, end))
    return env


def load_template(env: SandboxedEnvironment, name: str, shown: str, *, letter_file: str | None = None) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        where = f"templates/{exc.name}" if exc.name and exc.name != letter_file else shown
        raise TemplateError(f"template syntax error: {exc.message}", file=where, line=exc.lineno,
                            hint="check the {{ }} and {% %} pairs near this line") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template not found: {exc.name}", file=shown,
                            hint="templates are looked up in the workspace's templates/ folder only") from None


def template_place(exc: BaseException, templates: Path, fallback: str, *,
                   letter_file: str | None = None) -> tuple[str, int | None]:
    """The template file and line where exc was raised (Jinja2 rewrites tracebacks to template lines)."""
    for frame, line in reversed(list(traceback.walk_tb(exc.__traceback__))):
        filename = frame.f_code.co_filename
        if letter_file and filename == letter_file:
            return letter_file, line
        if filename.startswith(str(templates)):
            return "templates/" + os.path.relpath(filename, templates), line
    return fallback, None


class Layouts:
    """The workspace's other layouts (envelopes, labels, manifest): templates/<name>, sandboxed like the letter."""

    def __init__(self, templates: Path) -> None:
        self.templates = templates
        self.env = layout_environment(templates)

    def html(self, name: str, variables: Mapping[str, Any]) -> str:
        shown = f"templates/{name}"
        template = load_template(self.env, name, shown)
        try:
            return generate_limited(template, variables, where=shown,
                                    too_long=f"{shown} grows past {MAX_OUTPUT_CHARS:,} characters")
        except TimeBudgetExceeded:
            raise TemplateError(f"the template ran for more than {TIME_BUDGET_SECONDS:g} s", file=shown,
                                hint="look for a loop that never ends or repeats too often") from None
        except jinja2.UndefinedError as exc:
            file, line = template_place(exc, self.templates, shown)
            raise TemplateError(exc.message or "undefined name", file=file, line=line,
                                hint="use only the variables listed at the top of the template") from None
        except (jinja2.TemplateError, SecurityError, RecursionError, MemoryError, OverflowError) as exc:
            file, line = template_place(exc, self.templates, shown)
            raise TemplateError(f"{type(exc).__name__}: {exc}", file=file, line=line,
                                hint="templates run in a sandbox: no huge values, no access to Python internals") from None


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

        # Font subsets carry a timestamp; a fixed one makes the same letter give the same bytes.
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
                    parsed = self._weasyprint.CSS(string=text, base_url=path.as_uri(), url_fetcher=self.fetcher,
                                                  font_config=self.font_config)
            self._stylesheets[href] = parsed
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
            self._parsed[css] = self._weasyprint.CSS(string=css, base_url=self.base_url, url_fetcher=self.fetcher,
                                                     font_config=self.font_config)
        return self._parsed[css]

    def layout(self, html: str, *, plain: bool = False, stylesheets: tuple = ()):
        """The laid-out WeasyPrint document of html (plain: without this renderer's PDF variant and tags).

        stylesheets: more stylesheets from stylesheet(), after the document's own."""
        from weasyprint.urls import FatalURLFetchingError

        try:
            html, own = self._reuse_stylesheets(html)
            stylesheets = [*own, *stylesheets]
            document = self._weasyprint.HTML(string=html, base_url=self.base_url, url_fetcher=self.fetcher)
            return document.render(font_config=self.font_config, stylesheets=stylesheets, custom_metadata=True,
                                   **({} if plain else self.options))
        except FatalURLFetchingError as exc:
            raise RenderError(str(exc), file="templates/",
                              hint="templates may only use files inside templates/ (fonts, images, CSS)") from None
        except OSError as exc:  # WeasyPrint writes fonts to the temporary folder while it works
            raise _disk_error(exc) from None

    def write(self, rendered, *, plain: bool = False) -> bytes:
        """The PDF of a document laid out by layout()."""
        try:
            return rendered.write_pdf(custom_metadata=True, pdf_identifier=b"dispatch",
                                      **({} if plain else self.options))
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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path so that readers see either the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = exc.strerror
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a file stands where a folder should be"
        raise RenderError(f"cannot write {path.name}: {reason}", file=str(path.parent),
                          hint="check that the output folder is writable and the disk is not full") from None
    except BaseException:  # interrupted (Ctrl-C): leave nothing half-written behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


_TEMPORARY = re.compile(r"^\.(.+)\.(\d+)\.tmp$")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files write_atomic left behind when its process was killed."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and not _process_alive(int(match.group(2))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


Progress = Callable[[Recipient, str], None]
