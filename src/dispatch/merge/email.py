"""The email that carries each letter: subject and cover note from templates/email.txt.j2 (and an
optional HTML alternative, templates/email.html.j2), and the attachment's file name.

The templates run in Jinja2's sandbox with the same variables as the letter. Recipients' values are
data: they are inserted as text, never run. The subject is set in the template with
`{% set subject = ... %}` (default: the letter's subject) and must stay on one line.
"""

from __future__ import annotations

import re
import traceback
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError

TEXT_TEMPLATE = "email.txt.j2"
HTML_TEMPLATE = "email.html.j2"


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
        options = dict(loader=jinja2.FileSystemLoader(str(templates)), undefined=jinja2.StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        self.text_env = SandboxedEnvironment(autoescape=False, **options)
        self.html_env = SandboxedEnvironment(autoescape=True, **options)
        for env in (self.text_env, self.html_env):
            env.filters.update(filters or {})
        if not (templates / TEXT_TEMPLATE).is_file():
            raise TemplateError(f"templates/{TEXT_TEMPLATE} not found", file="templates/",
                                hint="write the email that carries the letter there (`dispatch init` makes an example)")
        self.text = self._load(self.text_env, TEXT_TEMPLATE)
        self.html = self._load(self.html_env, HTML_TEMPLATE) if (templates / HTML_TEMPLATE).is_file() else None
        try:
            self.attachment = self.text_env.from_string(attachment)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error in the attachment name: {exc.message}", file="dispatch.toml",
                                column="[email] attachment", hint="check the {{ }} pairs") from None

    def _load(self, env: SandboxedEnvironment, name: str) -> jinja2.Template:
        try:
            return env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}", file=f"templates/{name}", line=exc.lineno,
                                hint="check the {{ }} and {% %} pairs near this line") from None

    def render(self, variables: Mapping[str, Any], recipient_id: str) -> CoverNote:
        name = attachment_file_name(self._run(self.attachment.render, variables, recipient_id, "dispatch.toml"),
                                    fallback=recipient_id)
        variables = {**variables, "attachment": name}
        module = self._run(self._module, variables, recipient_id, f"templates/{TEXT_TEMPLATE}")
        subject = str(getattr(module, "subject", "") or variables["letter"]["subject"]).strip()
        if "\n" in subject or "\r" in subject:
            raise TemplateError(f"the subject for recipient {recipient_id!r} has a line break",
                                file=f"templates/{TEXT_TEMPLATE}",
                                hint="the subject must stay on one line: use one-line columns in it")
        html = None
        if self.html is not None:
            html = self._run(self.html.render, variables, recipient_id, f"templates/{HTML_TEMPLATE}")
        return CoverNote(subject=subject, text=str(module).strip("\n") + "\n", html=html, attachment_name=name)

    def _module(self, variables: Mapping[str, Any]):
        try:
            return self.text.make_module(variables)
        except Exception:
            self.text.render(variables)  # raises the same error, its traceback mapped to template lines
            raise

    def _run(self, call: Callable, variables: Mapping[str, Any], recipient_id: str, shown: str):
        try:
            return call(variables)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{exc.message} (recipient {recipient_id!r})", file=shown, line=_line(exc, shown),
                                hint="add the column to recipients.csv, or fix the name in the template") from None
        except (jinja2.TemplateError, RecursionError, OverflowError) as exc:
            raise TemplateError(f"{type(exc).__name__}: {exc} (recipient {recipient_id!r})", file=shown,
                                line=_line(exc, shown)) from None


def _line(exc: BaseException, shown: str) -> int | None:
    name = shown.removeprefix("templates/")
    for frame, line in reversed(list(traceback.walk_tb(exc.__traceback__))):
        if frame.f_code.co_filename.endswith(name):
            return line
    return None


def attachment_file_name(text: str, *, fallback: str) -> str:
    """A file name any mail program shows well: ASCII letters, digits and '-', ending in .pdf."""
    text = re.sub(r"\.pdf$", "", text.strip(), flags=re.IGNORECASE)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", ascii_text).strip("-._")[:120].strip("-._")
    return (slug or fallback) + ".pdf"
