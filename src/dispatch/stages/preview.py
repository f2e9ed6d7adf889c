"""Previewing one letter: its PDF and a PNG of each page, again each time a file of the campaign changes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dispatch.errors import DispatchError
from dispatch.extras import require
from dispatch.workspace import Workspace


@dataclass(frozen=True)
class Preview:
    pdf: Path
    pages: list[Path]


@dataclass(frozen=True)
class WatchEvent:
    """One round of `preview --watch`: what changed, and the new preview or the error it caused."""

    changed: tuple[str, ...]
    seconds: float
    preview: Preview | None = None
    error: DispatchError | None = None


def watch(ws: Workspace, once: Callable[[], Preview], on_event: Callable[[WatchEvent], None],
          stop_event=None) -> None:
    """Call once() now, then again each time the letter, a template, the settings or the recipients change.

    Runs until stop_event is set (or Ctrl-C). An error in an edited file is reported and watching goes on."""
    watchfiles = require("watchfiles", "watch", "preview --watch")  # an extra: pip install 'dispatch-letters[watch]'

    def round_(changed: tuple[str, ...]) -> None:
        started = time.monotonic()
        try:
            on_event(WatchEvent(changed, time.monotonic() - started, preview=once()))
        except DispatchError as exc:
            on_event(WatchEvent(changed, time.monotonic() - started, error=exc))

    round_(())
    watched = [p for p in (ws.letters, ws.templates, ws.root / "dispatch.toml", ws.recipients_file) if p.exists()]
    for changes in watchfiles.watch(*watched, stop_event=stop_event, debounce=150, step=50,
                                    raise_interrupt=False):
        names = tuple(sorted({ws.relative(Path(path)) for _, path in changes if not Path(path).name.startswith(".")}))
        if names:
            round_(names)
