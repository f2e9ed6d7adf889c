"""The email that carries each letter: subject and cover note from templates/email.txt.j2 (and an
optional HTML alternative, templates/email.html.j2), and the attachment's file name.

The templates run in the same sandbox as the letter (sandbox.environment: confined to templates/,
limited in size and time), with the same variables. A recipient whose language (its `language`
column, else the language of the letter it gets) has its own text, templates/email.<language>.txt.j2,
gets it, with email.<language>.html.j2 as its HTML version (or none: never an HTML part in another
language). Recipients' values are data: they are inserted as text, never run. The subject is [email]
subject in dispatch.toml when set, else the template's `{% set subject = ... %}`, else the letter's subject;
it must stay on one line.

The text is sent wrapped: a line longer than 78 characters is folded at spaces to 76 (write each paragraph on
one line). The HTML version gets the same text, unwrapped, as `text`, and `text | paragraphs` turns it into
<p> elements, so both parts say the same. The attachment's name keeps its script and its typographic
apostrophes (Côte d’Ivoire, 中国); mail/message.py adds an ASCII name for programs that need one.
"""

from __future__ import annotations

import os
import re
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import jinja2
from markupsafe import Markup, escape

from dispatch import i18n
from dispatch.errors import TemplateError
from dispatch.merge import limits, sandbox
from dispatch.merge.sandbox import Source

TEXT_TEMPLATE = "email.txt.j2"
HTML_TEMPLATE = "email.html.j2"
MAX_SUBJECT_CHARS = 998  # the longest line a mail header may have (RFC 5322)
MAX_LINE = 78  # RFC 5322's recommended line length; longer lines are folded ...
WRAP_AT = 76   # ... to this width
MAX_NAME_BYTES = 200  # an attachment's file name, in UTF-8 (file systems allow 255)


@dataclass(frozen=True)
class CoverNote:
    subject: str
    text: str
    html: str | None
    attachment_name: str


class CoverNotes:
    """Compiled email templates for one campaign."""

    def __init__(self, templates: Path, *, attachment: str, filters: Mapping[str, Callable] | None = None,
                 subject: str = "") -> None:
        self.templates = templates
        options = dict(templates=templates, keep_trailing_newline=True)
        self.text_env = sandbox.environment(limits.EMAIL, autoescape=False, filters=filters, **options)
        self.html_env = sandbox.environment(limits.EMAIL, autoescape=True,
                                            filters={**(filters or {}), "paragraphs": paragraphs}, **options)
        if not os.path.lexists(templates / TEXT_TEMPLATE):
            raise TemplateError(f"templates/{TEXT_TEMPLATE} not found", file="templates/",
                                hint="write the email that carries the letter there (`dispatch init` makes an example)")
        self._loaded: dict[str, jinja2.Template | None] = {}
        self.text = self._template(self.text_env, TEXT_TEMPLATE)
        self.html = self._template(self.html_env, HTML_TEMPLATE)
        self.attachment_source = Source(templates, "dispatch.toml")
        try:
            self.attachment = self.text_env.from_string(attachment)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error in the attachment name: {exc.message}", file="dispatch.toml",
                                column="[email] attachment", hint="check the {{ }} pairs") from None
        except (RecursionError, MemoryError, SyntaxError) as exc:
            raise TemplateError(f"the attachment name could not be compiled ({type(exc).__name__})",
                                file="dispatch.toml", column="[email] attachment",
                                hint="look for brackets or parentheses nested too deeply") from None
        self.subject_source = Source(templates, "dispatch.toml")
        try:
            self.subject = self.text_env.from_string(subject) if subject.strip() else None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error in the subject: {exc.message}", file="dispatch.toml",
                                column="[email] subject", hint="check the {{ }} pairs") from None
        except (RecursionError, MemoryError, SyntaxError) as exc:
            raise TemplateError(f"the subject could not be compiled ({type(exc).__name__})", file="dispatch.toml",
                                column="[email] subject", hint="look for brackets nested too deeply") from None

    def _template(self, env: jinja2.Environment, name: str) -> jinja2.Template | None:
        """The template called name, None when templates/ has no such file."""
        if name not in self._loaded:
            exists = os.path.lexists(self.templates / name)  # a link that leads nowhere is reported, not skipped
            source = Source(self.templates, f"templates/{name}")
            self._loaded[name] = sandbox.load(env, name, source) if exists else None
        return self._loaded[name]

    def _language(self, variables: Mapping[str, Any]) -> str | None:
        """The language whose own email text templates/ has for this recipient: its `language` column, else the
        language of the letter it gets; None for the common text."""
        recipient = variables.get("recipient")
        for language in (recipient.get("language") if isinstance(recipient, Mapping) else None,
                         variables.get("language")):
            if isinstance(language, str) and re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", language) \
                    and self._template(self.text_env, f"email.{language}.txt.j2") is not None:
                return language
        return None

    def render(self, variables: Mapping[str, Any], recipient_id: str) -> CoverNote:
        who = f"recipient {recipient_id!r}"
        language = self._language(variables)
        # A text in the recipient's language goes with an HTML version in that language, or with none.
        text_name = f"email.{language}.txt.j2" if language else TEXT_TEMPLATE
        html_name = f"email.{language}.html.j2" if language else HTML_TEMPLATE
        text_template = self._template(self.text_env, text_name)
        html_template = self._template(self.html_env, html_name)
        text_source = Source(self.templates, f"templates/{text_name}")
        try:
            with sandbox.time_budget(limits.EMAIL.seconds):  # one budget for the whole message
                shown_name = self._run(self.attachment, variables, who, self.attachment_source,
                                       "the attachment name", chars=limits.ATTACHMENT_NAME_CHARS)[0]
                name = attachment_file_name(shown_name, fallback=recipient_id)
                variables = {**variables, "attachment": name}
                text, context = self._run(text_template, variables, who, text_source, f"the email for {who}")
                text = text.strip("\n") + "\n"
                html = None
                if html_template is not None:
                    html = self._run(html_template, {**variables, "text": text}, who,
                                     Source(self.templates, f"templates/{html_name}"), f"the HTML email for {who}")[0]
                subject = None
                if self.subject is not None:
                    subject = self._run(self.subject, variables, who, self.subject_source, "the subject",
                                        chars=MAX_SUBJECT_CHARS + 1)[0]
        except sandbox.TimeBudgetExceeded as exc:  # time ran out between two templates
            raise sandbox.template_error(exc, text_source, limits.EMAIL, who=who) from None
        where = dict(file="dispatch.toml", column="[email] subject") if subject else dict(file=f"templates/{text_name}")
        subject = str(subject or context.get_exported().get("subject") or variables["letter"]["subject"]).strip()
        if "\n" in subject or "\r" in subject:
            raise TemplateError(f"the subject for recipient {recipient_id!r} has a line break", **where,
                                hint="the subject must stay on one line: use one-line columns in it")
        if len(subject) > MAX_SUBJECT_CHARS:
            raise TemplateError(f"the subject for recipient {recipient_id!r} is {len(subject):,} characters long",
                                **where, hint=f"a subject is one short line (at most {MAX_SUBJECT_CHARS} characters)")
        return CoverNote(subject=subject, text=wrap(text), html=html, attachment_name=name)

    def _run(self, template: jinja2.Template, variables: Mapping[str, Any], who: str, source: Source, output: str,
             chars: int | None = None):
        try:
            return sandbox.generate(template, variables, chars=chars)
        except Exception as exc:
            error = sandbox.template_error(exc, source, limits.EMAIL, who=who, output=output)
            if source is self.attachment_source or source is self.subject_source:
                column = "[email] attachment" if source is self.attachment_source else "[email] subject"
                error = TemplateError(error.problem.message, file="dispatch.toml", column=column,
                                      hint=error.problem.hint)
            raise error from None


def wrap(text: str, width: int = WRAP_AT) -> str:
    """The text with each line longer than MAX_LINE characters folded at spaces to `width`; shorter lines, blank
    lines and a word longer than a line (a link) are left as they are. A folded list item ("- ", "1. ") or
    indented line keeps its indent on the lines that follow."""
    lines: list[str] = []
    for line in text.split("\n"):
        if len(line) <= MAX_LINE:
            lines.append(line)
            continue
        lead = re.match(r"(\s*)((?:>\s*)*)([-*•]\s+|\d+[.)]\s+)?", line)
        follow = lead.group(1) + lead.group(2) + " " * len(lead.group(3) or "")  # quote marks repeat, bullets indent
        lines.extend(textwrap.wrap(line, width=width, subsequent_indent=follow, break_long_words=False,
                                   break_on_hyphens=False) or [""])
    return "\n".join(lines)


def paragraphs(value: object) -> Markup:
    """Plain text as HTML: a <p> per paragraph (blank lines between), a <br> per line break inside one."""
    text = str(value).replace("\r\n", "\n").strip("\n")
    blocks = [block for block in re.split(r"\n\s*\n", text) if block.strip()]
    return Markup("\n").join(Markup("<p>%s</p>") % Markup("<br>\n").join(escape(line) for line in block.split("\n"))
                             for block in blocks)


def attachment_file_name(text: str, *, fallback: str) -> str:
    """A file name that keeps its script (Côte-d’Ivoire, 中国, Ελλάδα): letters, digits and marks of any
    script, '’', '.', '_' and '-'; spaces and anything else become '-'. At most 120 characters and
    MAX_NAME_BYTES in UTF-8, ending in .pdf; the fallback when nothing is left."""
    text = unicodedata.normalize("NFC", re.sub(r"\.pdf$", "", text.strip(), flags=re.IGNORECASE))
    text = i18n.typographic(text)  # d'Ivoire -> d’Ivoire
    kept = "".join(ch if (_safe_char(ch)) else "-" for ch in text)
    slug = re.sub(r"-{2,}", "-", kept).strip("-._")[:120].strip("-._")
    while len(slug.encode("utf-8")) > MAX_NAME_BYTES:
        slug = slug[:-1].rstrip("-._")
    return (slug or fallback) + ".pdf"


def _safe_char(ch: str) -> bool:
    if ch.isascii():
        return ch.isalnum() or ch in "._-"
    category = unicodedata.category(ch)
    return ch == "’" or category[0] in "LMN"
