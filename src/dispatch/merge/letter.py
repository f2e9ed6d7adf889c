"""Merge a letter with one recipient into HTML (Jinja2, sandboxed); pdf.py turns the HTML into a PDF.

Two Jinja2 environments, both sandboxed and strict about undefined names:
- the letter body (Markdown): every value is escaped for Markdown before the Markdown is converted,
  so a cell can never become markup, a link or a template;
- the layout (templates/*.html.j2): HTML autoescaping.
"""

from __future__ import annotations

import itertools
import logging
import contextlib
import os
import re
import signal
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from markdown_it import MarkdownIt
from markupsafe import Markup

from . import i18n
from .errors import TemplateError
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
