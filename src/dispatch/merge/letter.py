"""Merge a letter with one recipient into HTML (Jinja2, sandboxed); pdf/ turns the HTML into a PDF.

Two Jinja2 environments, both from sandbox.environment() (sandboxed, confined to templates/, limited,
strict about undefined names):
- the letter body (Markdown): every value is escaped for Markdown before the Markdown is converted,
  so a cell can never become markup, a link or a template;
- the layout (templates/*.html.j2): HTML autoescaping.

What the letter prints of a recipient is typeset first: straight quotes and apostrophes in the cells become
the language's (Côte d'Ivoire -> Côte d’Ivoire; codes and addresses such as `email` are left as written), the
salutation and the address follow the recipient's form of address (i18n.FORMS), and the state's name comes
ready for a sentence (`state_in_sentence`: "the Gambia", "the Plurinational State of Bolivia").
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from dispatch import i18n
from dispatch.errors import RecipientsError, TemplateError
from dispatch.merge import limits, sandbox
from dispatch.merge.loader import ConfinedLoader
from dispatch.merge.sandbox import Source, TimeBudgetExceeded
from dispatch.models import Letter, Recipient
from dispatch.regions import Marks, Parts

log = logging.getLogger(__name__)

# Limits that stop a template from running away: output size (and the size of any value), time.
MAX_OUTPUT_CHARS = limits.LETTER.chars
TIME_BUDGET_SECONDS = limits.LETTER.seconds
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&\"'=:;/^$%@?,])")
# Cells that are codes or addresses: printed (and sent) exactly as written.
CODE_COLUMNS = frozenset({"id", "email", "cc", "bcc", "language", "channel", "form"})
_ADDRESS_LIKE = re.compile(r"^\S+@\S+$|^[a-z][a-z0-9+.-]*://", re.I)


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


def typeset(column: str, value: str, language: str) -> str:
    """A cell as the letter prints it: the language's quotation marks and apostrophes, except in codes and
    addresses (an `email` with an apostrophe is sent as written)."""
    if column in CODE_COLUMNS or not isinstance(value, str) or _ADDRESS_LIKE.match(value.strip()):
        return value
    return i18n.typographic(value, language)


_ARTICLES = ("The ", "Le ", "La ", "Les ", "L’", "El ", "Los ", "Las ")


def in_sentence_form(lines: list[str]) -> str:
    """The addressee inside a sentence: "addressed to the Permanent Representative of Namibia"."""
    text = ", ".join(lines)
    for article in _ARTICLES:
        if text.startswith(article):
            return article.lower() + text[len(article):]
    return text


# Short words that belong with the word after them, in the languages the forms of address know.
_BINDING = frozenset("a an and at by for in of on the to à au aux d’ de del des du e el et l’ la las le les los "
                     "y".split())
_PHRASE_CHARS = 32  # a phrase longer than this may break inside (it must never overflow the address field)


def keep_phrases(value: Any) -> Markup:
    """An address line that breaks only between phrases, never after "of" or "the", inside a name
    ("United Nations", "Great Britain") or before the last word: "Permanent Mission of the Democratic
    Republic / of the Congo to the United Nations". Each phrase is a span that does not wrap."""
    words = str(value).split()
    if len(words) < 2:
        return escape(" ".join(words))

    def capitalised(word: str) -> bool:
        return word[:1].isupper() and not word.isupper()

    phrases = [[words[0]]]
    for index, (word, following) in enumerate(zip(words, words[1:]), start=1):
        bound = not word.endswith((",", ";")) and (
            word.lower() in _BINDING or word.isdigit() or index == len(words) - 1
            or capitalised(word) and capitalised(following))
        if bound:
            phrases[-1].append(following)
        else:
            phrases.append([following])
    # The space after a phrase stays inside its span, so the PDF's text has it (a space between two spans
    # is laid out but not drawn, and text extraction would read "Representativeof").
    pieces = []
    for number, phrase in enumerate(phrases):
        text = " ".join(phrase) + (" " if number < len(phrases) - 1 else "")
        if len(phrase) > 1 and len(text) <= _PHRASE_CHARS:
            pieces.append(Markup('<span style="white-space: nowrap">%s</span>') % text)
        else:
            pieces.append(escape(text))
    return Markup("").join(pieces)


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
        date = {"date": lambda value, language=None: i18n.format_letter_date(
            value, language or letter.language or context.default_language)}
        self.body_env = sandbox.environment(
            limits.LETTER, loader=jinja2.FunctionLoader(
                lambda name: (padded_body, letter_file, lambda: True) if name == letter_file else None),
            autoescape=False, finalize=markdown_escape, filters=date, keep_trailing_newline=True)
        # The letter layout's regions are marked as it is loaded (see regions.py): one merge gives both
        # the whole letter and its parts.
        self.marks = Marks()
        self.layout_env = layout_environment(templates, marks=(self.marks, letter.template))
        # The letter's own straight quotes become the language's ("…" -> “…”, « … »); nothing else is replaced.
        open_, close, inner_open, inner_close = i18n.quotes(letter.language or context.default_language)
        self.markdown = MarkdownIt("commonmark", {"html": True, "typographer": True,
                                                  "quotes": [open_, close, inner_open, inner_close]})
        self.markdown.enable("smartquotes")
        # Most letters merge to the same Markdown for every recipient: convert each distinct text once.
        self._converted: dict[str, str] = {}
        # A template that ran out of time for one recipient is not run again for the others.
        self._timed_out: dict[str, TemplateError] = {}
        self.body_source = Source(templates, letter_file, letter_file=letter_file)
        self.layout_source = Source(templates, f"templates/{letter.template}", letter_file=letter_file)
        self.body_template = sandbox.load(self.body_env, letter_file, self.body_source)
        self.layout_template = sandbox.load(self.layout_env, letter.template, self.layout_source)

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
        letter = ctx.letter
        raw = {column: "" for column in ctx.columns}
        raw.update(recipient.fields)
        for column in ("addressee", "title", "ambassador", "address", "salutation", "regional_group", "email"):
            raw.setdefault(column, "")
        # The language of the version this recipient gets (its own, or the letter's when there is none).
        language = letter.language or raw.get("language") or ctx.default_language
        fields = {column: typeset(column, value, language) for column, value in raw.items()}
        words = i18n.wording(language, page_label=letter.page_label)
        try:
            salutation = (fields.get("salutation") or letter.salutation or i18n.salutation(fields, language)
                          or words.salutation)
            addressee_lines = list(i18n.addressee_lines(fields, language))
        except ValueError as exc:
            raise RecipientsError(f"recipient {recipient.id!r}: {exc}", file="recipients.csv", line=recipient.line,
                                  column="form", hint="use one of: " + ", ".join(i18n.FORM_NAMES)) from None
        in_sentence = fields.get("state_in_sentence") or i18n.state_in_sentence(fields.get("state", ""), language)
        values: dict[str, Any] = {k: v for k, v in fields.items() if k.isidentifier()}
        values.update(
            recipient=fields,
            language=language,
            direction=i18n.direction(language),
            salutation=salutation,
            page_label=Markup(i18n.page_label_css(words.page_label)),
            comma=words.comma,
            addressee_lines=addressee_lines,
            addressee_in_sentence=in_sentence_form(addressee_lines),
            state_in_sentence=in_sentence,
            of_state=i18n.of_state(in_sentence, language),
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
        source = self.body_source if template is self.body_template else self.layout_source
        who = f"recipient {recipient.id!r}"
        earlier = self._timed_out.get(source.shown)
        if earlier is not None:
            raise TemplateError(f"not merged: the template ran for more than {TIME_BUDGET_SECONDS:g} s "
                                f"for an earlier recipient ({who})", file=earlier.problem.file,
                                line=earlier.problem.line, hint=earlier.problem.hint)
        try:
            return sandbox.generate(template, variables)[0]
        except Exception as exc:
            error = sandbox.template_error(exc, source, limits.LETTER, who=who,
                                           row=f", recipients.csv line {recipient.line}",
                                           output=f"the letter for {who}")
            if isinstance(exc, TimeBudgetExceeded):
                self._timed_out[source.shown] = error
            raise error from None


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


class _MarkingLoader(ConfinedLoader):
    """Loads templates/ files; the letter layout's source with its regions marked."""

    def __init__(self, templates: Path, marks: Marks, name: str) -> None:
        super().__init__(templates)
        self.marks, self.name = marks, name

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        if template == self.name:
            source = self.marks.mark_source(source, f"templates/{template}")
        return source, filename, uptodate


def _date_filter(value: Any, language: str = "en") -> str:
    return i18n.format_letter_date(value, language)


def layout_environment(templates: Path, *, marks: tuple[Marks, str] | None = None,
                       bounds: limits.Limits = limits.LETTER) -> sandbox.LimitedSandbox:
    """The sandboxed, HTML-escaping, strict Jinja2 environment for the files in templates/.

    marks: (the run's Marks, the letter layout's name), to mark that layout's regions.
    """
    loader = _MarkingLoader(templates, *marks) if marks else ConfinedLoader(templates)
    env = sandbox.environment(bounds, loader=loader, autoescape=True,
                              filters={"date": _date_filter, "keep_phrases": keep_phrases})
    if marks:
        env.globals[Marks.FUNCTION] = lambda name, end: Markup(marks[0].mark(name, end))
    return env


class Layouts:
    """The workspace's other layouts (envelopes, labels, manifest): templates/<name>, sandboxed like the letter.

    Each holds every letter of a print run, so its output may be larger than a letter's (limits.PRINT_LAYOUT)."""

    def __init__(self, templates: Path) -> None:
        self.templates = templates
        self.env = layout_environment(templates, bounds=limits.PRINT_LAYOUT)

    def html(self, name: str, variables: Mapping[str, Any]) -> str:
        source = Source(self.templates, f"templates/{name}")
        template = sandbox.load(self.env, name, source)
        try:
            return sandbox.generate(template, variables)[0]
        except Exception as exc:
            raise sandbox.template_error(exc, source, limits.PRINT_LAYOUT, output=source.shown,
                                         undefined_hint="use only the variables listed at the top of the template",
                                         ) from None
