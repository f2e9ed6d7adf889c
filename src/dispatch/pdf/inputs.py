"""What a letter's HTML brings in besides its text: images, fonts, stylesheets. Each one must load, or the
letter is not written.

WeasyPrint goes on without a part it cannot load (an image that is damaged or unreadable, an SVG that asks
for the network, an @font-face source that is not a font, a stylesheet that cannot be read): it logs
"Failed to load image at ..." and lays the letter out without it. A letter that is not what its template
says must never be sent, so load_failures turns those log records, for the time of one render, into a
RenderError naming the part and the template that refers to it.

Attachments (<a rel="attachment" href=...>, <link rel="attachment" href=...>) are refused whatever they
point at, inside templates/ or not: WeasyPrint would embed the file in the PDF, unseen by whoever reads
the letter on paper or checks it on screen. Documents that go with a letter are attached to its email
([email] attachment in dispatch.toml), where the recipient sees them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dispatch.errors import RenderError

# WeasyPrint's log messages (their format strings) for a part it could not load, and what the part is.
_FAILURES = {
    "Failed to load image at %r: %s": "image",
    "Failed to render SVG image %s": "SVG image",
    "Failed to load inline SVG: %s": "inline SVG image",
    "Font-face %r cannot be loaded": "font",
    "Failed to load stylesheet at %s: %s": "stylesheet",
    "Failed to load stylesheet at %s : %s": "stylesheet",
    "Failed to load attachment: %s": "attachment",
}
_HINT = ("every image, font and stylesheet a template uses must be a readable, undamaged file inside "
         "templates/, and an SVG may refer to nothing else (dispatch never fetches from the network): "
         "fix or replace the file, or remove the reference")
_ATTACHMENT = re.compile(r"<(?:a|link)\b[^>]*\brel\s*=\s*[\"']?[^\"'>]*\battachment\b", re.IGNORECASE)
_SEARCHED = ("*.html", "*.htm", "*.j2", "*.jinja", "*.css", "*.svg")


_ACTIVE: list[list[tuple[str, str]]] = []  # the failures of each load_failures block in progress (nested)


@contextmanager
def load_failures(templates: Path) -> Iterator[list[tuple[str, str]]]:
    """While WeasyPrint lays out or writes a document: the parts it could not load, as (kind, url); at the
    end a RenderError for the first one. The log records are kept from the command's log (the error says
    it), and seen whatever its verbosity. Blocks may nest (a stylesheet parsed while a document is laid
    out): each one sees every failure within it."""
    logger = logging.getLogger("weasyprint")
    level, previous = logger.getEffectiveLevel(), logger.level
    failures: list[tuple[str, str]] = []

    def catch(record: logging.LogRecord) -> bool:
        kind = _FAILURES.get(record.msg) if isinstance(record.msg, str) else None
        if kind is None:
            return record.levelno >= level
        for active in _ACTIVE:
            active.append((kind, str(record.args[0]) if record.args else ""))
        return False

    outermost = not _ACTIVE
    _ACTIVE.append(failures)
    if outermost:
        logger.addFilter(catch)
        if level > logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield failures
    finally:
        del _ACTIVE[next(index for index, active in enumerate(_ACTIVE) if active is failures)]
        if outermost:
            logger.removeFilter(catch)
            logger.setLevel(previous)
    if failures:
        raise failure(templates, *failures[0])


def failure(templates: Path, kind: str, url: str) -> RenderError:
    """The error for a part that could not be loaded: what it is, and where a template refers to it."""
    name = _name(templates, url)
    if kind == "font":
        what = f"the font {name!r} (@font-face) could not be loaded"
    elif kind == "inline SVG image" or not name:
        what = f"an {kind} in the letter could not be rendered"
    elif kind == "SVG image":
        what = f"the SVG image {name} could not be rendered (it is damaged, or refers to something outside templates/)"
    else:
        what = f"the {kind} {name} could not be loaded (missing, unreadable or damaged)"
    file, line = where(templates, Path(name).name if name else "")
    return RenderError(f"{what}; the letter was not written", file=file, line=line, hint=_HINT)


def refuse_attachments(html: str, templates: Path) -> None:
    """RenderError when html asks WeasyPrint to embed a file (rel="attachment"), wherever the file is."""
    match = _ATTACHMENT.search(html)
    if match is None:
        return
    file, line = where(templates, pattern=_ATTACHMENT)
    raise RenderError(f"a letter cannot carry an attached file ({match.group(0)}...>): the PDF would embed it unseen",
                      file=file, line=line,
                      hint="remove rel=\"attachment\"; attach documents to the email instead ([email] attachment "
                           "in dispatch.toml)")


def where(templates: Path, text: str = "", *, pattern: re.Pattern | None = None) -> tuple[str, int | None]:
    """The first template (then letter) file and line that contains text or matches pattern, as the user
    names it ("templates/letter.html.j2", 12); ("templates/", None) when none does."""
    if not text and pattern is None:
        return "templates/", None
    for folder, globs in ((templates, _SEARCHED), (templates.parent / "letters", ("*.md",))):
        for glob in globs:
            for path in sorted(folder.glob(glob)) if folder.is_dir() else ():
                try:
                    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                except OSError:
                    continue
                for number, content in enumerate(lines, 1):
                    if (pattern.search(content) if pattern is not None else text in content):
                        return f"{folder.name}/{path.name}", number
    return "templates/", None


def _name(templates: Path, url: str) -> str:
    """url as the user wrote it: a path relative to templates/ for a file inside it; else the url itself."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        return url
    path = Path(unquote(parts.path))
    try:
        relative = path.resolve().relative_to(templates.resolve())
    except ValueError:
        return url
    return relative.as_posix() if relative.parts else ""
