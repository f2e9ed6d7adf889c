"""Which letters need rendering: a letter is rendered again only when something that makes it changed.

A letter's key is a SHA-256 of everything its PDF is made from: the merged HTML, every file under
templates/ (layout, stylesheets, fonts, images; not the email templates, which make no PDF), the PDF engine's version and dispatch's version. The
journal records the key with each rendered PDF; a recipient whose latest `rendered` event has the same
key, and whose PDF on disk still has the recorded SHA-256, is up to date.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Mapping

_EMAIL = re.compile(r"^email(\.[A-Za-z-]+)?\.(txt|html)\.j2$")  # email.txt.j2, email.fr.html.j2, ...
REASONS = ("new", "changed", "missing", "forced")


def templates_digest(templates: Path, *versions: str) -> str:
    """A digest of every file under templates/ (names and bytes) and the given version strings."""
    digest = hashlib.sha256()
    for version in versions:
        digest.update(version.encode() + b"\0")
    root = templates.resolve()
    for path in sorted(p for p in templates.rglob("*") if p.is_file()):
        name = path.relative_to(templates).as_posix()
        if _EMAIL.match(name):
            continue  # the email's text is not part of the letter: editing it renders nothing again
        real = path.resolve()
        digest.update(name.encode() + b"\0")
        if real == root or root in real.parents:
            digest.update(hashlib.sha256(real.read_bytes()).digest())
        else:  # a link out of templates/: the renderer refuses it; its target is not read here either
            digest.update(b"link-outside\0" + str(path.readlink() if path.is_symlink() else "").encode())
    return digest.hexdigest()


def letter_key(templates_digest: str, html: str) -> str:
    return hashlib.sha256(templates_digest.encode() + b"\0" + html.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def reason_to_render(key: str, target: Path, previous: Mapping[str, Any] | None, *, force: bool = False) -> str | None:
    """Why this letter must be rendered (one of REASONS), or None when its PDF is up to date.

    previous is the data of the recipient's latest `rendered` event, if any.
    """
    if force:
        return "forced"
    if previous is None:
        return "changed" if target.exists() else "new"
    if previous.get("key") != key:
        return "changed"
    if not target.is_file():
        return "missing"
    if file_sha256(target) != previous.get("sha256"):
        return "changed"  # the PDF was edited or replaced since it was rendered
    return None
