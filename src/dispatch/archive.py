"""The sent archive: the exact bytes of every letter that went out, kept where nothing rewrites them.

out/<letter>/sent/<id>/<UTC time>-<channel>.pdf, and for email the .eml given to the server beside it.
Files are created once (never replaced, never deleted by dispatch), read-only, synced to the disk before the
journal points at them; a folder on the way that leads out of out/<letter>/ is refused, never followed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from dispatch.errors import DispatchError
from dispatch.files import confined

FOLDER = "sent"
CHANNELS = ("email", "print", "hand", "draft")
_NAME = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?-(email|print|hand|draft)\.(pdf|eml)$")


@dataclass(frozen=True)
class Kept:
    """One archived file: where it is (relative to out/<letter>/) and its SHA-256."""

    path: str
    sha256: str


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def keep(letter_dir: Path, recipient_id: str, channel: str, files: dict[str, bytes],
         moment: dt.datetime | None = None) -> dict[str, Kept]:
    """Archive files ({"pdf": bytes, "eml": bytes}) for one recipient and channel; returns what was kept, by
    suffix. Each file is new: a name already taken gets a number (-2, -3, ...), nothing is overwritten."""
    if channel not in CHANNELS:
        raise ValueError(channel)
    moment = moment or dt.datetime.now(dt.timezone.utc)
    folder = _folder(letter_dir, recipient_id)
    base = stamp(moment)
    for number in range(1, 1000):
        stem = base if number == 1 else f"{base}-{number}"
        names = {suffix: folder / f"{stem}-{channel}.{suffix}" for suffix in files}
        if not any(os.path.lexists(p) for p in names.values()):
            break
    else:
        raise DispatchError("too many archived copies in one second", file=str(folder))
    kept = {}
    for suffix, data in files.items():
        _write_once(names[suffix], data)
        kept[suffix] = Kept(names[suffix].relative_to(letter_dir).as_posix(), hashlib.sha256(data).hexdigest())
    _sync_folder(folder)
    return kept


def _folder(letter_dir: Path, recipient_id: str) -> Path:
    """out/<letter>/sent/<id>/, made if needed, each step a plain folder inside out/<letter>/."""
    sent = letter_dir / FOLDER
    for step in (letter_dir, sent, sent / recipient_id):
        if step.exists() or step.is_symlink():
            confined(step, letter_dir if step != letter_dir else letter_dir.parent)
        else:
            step.mkdir(parents=step == letter_dir)
    return sent / recipient_id


def _write_once(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o444)
    except OSError as exc:
        raise DispatchError(f"cannot keep a copy in {FOLDER}/: {exc.strerror}", file=str(path),
                            hint="check that the output folder is writable and the disk is not full") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # this run's own half-written file, never an earlier copy
        raise


def _sync_folder(folder: Path) -> None:
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Entry:
    recipient_id: str
    channel: str
    moment: dt.datetime
    pdf: Path | None
    eml: Path | None


def entries(letter_dir: Path) -> Iterator[Entry]:
    """Every archived sending of a letter, oldest first per recipient (read-only; for repair and status)."""
    sent = letter_dir / FOLDER
    if not sent.is_dir() or sent.is_symlink():
        return
    for folder in sorted(p for p in sent.iterdir() if p.is_dir() and not p.is_symlink()):
        found: dict[tuple[str, str], dict[str, Path]] = {}
        for path in folder.iterdir():
            match = _NAME.match(path.name)
            if match and path.is_file() and not path.is_symlink():
                key = (match.group(1) + (match.group(2) or ""), match.group(3))
                found.setdefault(key, {})[match.group(4)] = path
        for (when, channel), files in sorted(found.items()):
            moment = dt.datetime.strptime(when[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
            yield Entry(folder.name, channel, moment, files.get("pdf"), files.get("eml"))
