"""The email that carries each letter: subject and cover note from templates/email.txt.j2 (and an
optional HTML alternative, templates/email.html.j2), and the attachment's file name.

The templates run in the same sandbox as the letter (sandbox.environment: confined to templates/,
limited in size and time), with the same variables. A recipient whose language (its `language`
column, else the language of the letter it gets) has its own text, templates/email.<language>.txt.j2,
gets it, with email.<language>.html.j2 as its HTML version (or none: never an HTML part in another
language). Recipients' values are data: they are inserted as text, never run. The subject is set in
the template with `{% set subject = ... %}` (default: the letter's subject) and must stay on one line.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import jinja2

from dispatch.errors import TemplateError
from dispatch.merge import limits, sandbox
from dispatch.merge.sandbox import Source

TEXT_TEMPLATE = "email.txt.j2"
HTML_TEMPLATE = "email.html.j2"
MAX_SUBJECT_CHARS = 998  # the longest line a mail header may have (RFC 5322)


@dataclass(frozen=True)
class CoverNote:
    subject: str
    text: str
    html: str | None
    attachment_name: str


class CoverNotes:
    """Compiled email templates for one campaign."""

    def __init__(self, templates: Path, *, attachment: str, filters: Mapping[str, Callable] | None = None) -> None:
        self.templates = templates
        options = dict(templates=templates, filters=filters, keep_trailing_newline=True)
        self.text_env = sandbox.environment(limits.EMAIL, autoescape=False, **options)
        self.html_env = sandbox.environment(limits.EMAIL, autoescape=True, **options)
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
                html = None
                if html_template is not None:
                    html = self._run(html_template, variables, who, Source(self.templates, f"templates/{html_name}"),
                                     f"the HTML email for {who}")[0]
        except sandbox.TimeBudgetExceeded as exc:  # time ran out between two templates
            raise sandbox.template_error(exc, text_source, limits.EMAIL, who=who) from None
        subject = str(context.get_exported().get("subject") or variables["letter"]["subject"]).strip()
        if "\n" in subject or "\r" in subject:
            raise TemplateError(f"the subject for recipient {recipient_id!r} has a line break",
                                file=f"templates/{text_name}",
                                hint="the subject must stay on one line: use one-line columns in it")
        if len(subject) > MAX_SUBJECT_CHARS:
            raise TemplateError(f"the subject for recipient {recipient_id!r} is {len(subject):,} characters long",
                                file=f"templates/{text_name}",
                                hint=f"a subject is one short line (at most {MAX_SUBJECT_CHARS} characters)")
        return CoverNote(subject=subject, text=text.strip("\n") + "\n", html=html, attachment_name=name)

    def _run(self, template: jinja2.Template, variables: Mapping[str, Any], who: str, source: Source, output: str,
             chars: int | None = None):
        try:
            return sandbox.generate(template, variables, chars=chars)
        except Exception as exc:
            error = sandbox.template_error(exc, source, limits.EMAIL, who=who, output=output)
            if source is self.attachment_source:
                error = TemplateError(error.problem.message, file="dispatch.toml", column="[email] attachment",
                                      hint=error.problem.hint)
            raise error from None


def attachment_file_name(text: str, *, fallback: str) -> str:
    """A file name any mail program shows well: ASCII letters, digits and '-', ending in .pdf."""
    text = re.sub(r"\.pdf$", "", text.strip(), flags=re.IGNORECASE)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", ascii_text).strip("-._")[:120].strip("-._")
    return (slug or fallback) + ".pdf"
