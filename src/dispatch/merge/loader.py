"""Templates load from templates/ only: the rule the PDF renderer's URL fetcher applies to fonts, images and CSS.

A name is looked up inside templates/; its real path (every link followed) must be inside the real
templates/ folder and be a regular file. So `{% include %}`, `{% extends %}`, `{% import %}` and
`{% from ... import %}` can name neither an absolute path nor `..`, nor follow a link (to a file or
through a linked folder) out of templates/, nor read a FIFO or a device. A hard link is the file
itself, under another name in templates/: no path shows where else it is linked, so it is read like
any other file there (templates are the coordinator's own files; the rule stops mistakes and links
that lead out, not someone who can write into templates/).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import jinja2
from jinja2.loaders import split_template_path

MAX_TEMPLATE_BYTES = 5 * 1024 * 1024


def inside(root: Path, path: Path) -> bool:
    """Whether path, every link followed, is a regular file inside root (root itself resolved)."""
    real = path.resolve()
    return real.is_relative_to(root.resolve()) and real.is_file()


class TemplateRefused(jinja2.TemplateNotFound):
    """A template name that leads outside templates/, or a file there that cannot be a template."""

    def __init__(self, name: str, reason: str, hint: str) -> None:
        super().__init__(name, message=f"{name} {reason}")
        self.reason, self.hint = reason, hint


_OUTSIDE_HINT = ("templates may only use files inside templates/ (as for fonts, images and CSS): "
                 "copy the file there instead of linking to it")


class ConfinedLoader(jinja2.BaseLoader):
    """Loads templates from one folder, never from outside it (see the module's text)."""

    def __init__(self, templates: Path) -> None:
        self.templates = Path(templates)

    def path(self, name: str) -> Path:
        """The file that holds the template called name, once it is known to be inside templates/."""
        if os.path.isabs(name) or name.startswith(("/", "\\")):
            raise TemplateRefused(name, "is an absolute path", "name templates by their path inside templates/")
        pieces = split_template_path(name)  # TemplateNotFound for '..'
        path = self.templates.joinpath(*pieces)
        real = path.resolve()
        if not real.is_relative_to(self.templates.resolve()):
            raise TemplateRefused(name, f"leads outside templates/ (to {real})", _OUTSIDE_HINT)
        if not os.path.lexists(path):
            raise jinja2.TemplateNotFound(name)
        if not real.is_file():
            raise TemplateRefused(name, "is not a regular file", "a template must be a text file in templates/")
        return real

    def get_source(self, environment: jinja2.Environment, template: str):
        real = self.path(template)
        try:
            # The real path, opened without following a link its last part may have become since.
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise jinja2.TemplateNotFound(template) from None
        except OSError as exc:
            raise TemplateRefused(template, f"cannot be read ({exc.strerror})",
                                  "check that the file is readable") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise TemplateRefused(template, "is not a regular file", "a template must be a text file in templates/")
            if info.st_size > MAX_TEMPLATE_BYTES:
                raise TemplateRefused(template, f"is larger than {MAX_TEMPLATE_BYTES // 2**20} MB",
                                      "a template is a page of text; keep data in recipients.csv")
            data = handle.read(MAX_TEMPLATE_BYTES + 1)
        try:
            source = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it
        except UnicodeDecodeError as exc:
            raise TemplateRefused(template, f"is not UTF-8 text (byte {exc.start})",
                                  "save the file as UTF-8") from None
        shown = os.path.normpath(os.path.join(str(self.templates), *split_template_path(template)))

        def uptodate() -> bool:
            try:
                return os.stat(real).st_mtime_ns == info.st_mtime_ns
            except OSError:
                return False

        return source, shown, uptodate
