"""The `dispatch` command's first step: for `render`, the render workers' server is started before anything
else is imported, so that it imports WeasyPrint (most of a second) on another core while this process
imports the command line and reads the campaign."""

from __future__ import annotations

import sys


def command_word(args: list[str]) -> str | None:
    """The command word of a command line: the first word that is neither an option nor -C's folder."""
    folder = False
    for arg in args:
        if folder:
            folder = False
        elif arg in ("-C", "--workspace"):
            folder = True
        elif not arg.startswith("-"):
            return arg
    return None


def run() -> None:
    if command_word(sys.argv[1:]) == "render":
        from dispatch.pdf.pool import warm_up

        warm_up()
    from dispatch.cli import run as command_line

    command_line()
