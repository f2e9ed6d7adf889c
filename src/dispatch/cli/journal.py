"""dispatch journal check | repair: is the record of what was sent sound, and the way back when it is not."""

from __future__ import annotations

import typer

from dispatch import campaign
from dispatch.cli.app import Typer, app, err, handle_errors, out, workspace

journal_app = Typer(help="Check the journal (dispatch.db), or repair a lost, empty or damaged one.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(journal_app, name="journal")


@journal_app.command()
@handle_errors
def check() -> None:
    """Say whether the journal is sound, how many events it holds, and what to do when it is not."""
    ws = workspace()
    state = campaign.journal_check(ws)
    shown = ws.relative(ws.journal_file)
    if not state.ok:
        err.print(f"error: {shown}: {state.problem}", markup=False)
        if state.hint:
            err.print(f"  hint: {state.hint}", markup=False)
        raise typer.Exit(1)
    if not ws.journal_file.exists():
        out.print(f"{shown}: not made yet (nothing was rendered or sent); the first command that records makes it",
                  markup=False)
        return
    letters = ", ".join(state.letters) or "none"
    out.print(f"{shown}: sound dispatch journal, {state.events} event(s), letters: {letters}", markup=False)


@journal_app.command()
@handle_errors
def repair() -> None:
    """Move a lost, empty or damaged journal aside (never deleted) and start a new one from out/ and the sent
    archive: every email found there counts as possibly sent, so nothing is sent twice."""
    ws = workspace()
    result = campaign.journal_repair(ws)
    if result.moved_to is not None:
        out.print(f"kept the old journal as {ws.relative(result.moved_to)}", markup=False)
    counts = ", ".join(f"{count} {kind}" for kind, count in sorted(result.recorded.items())) or "nothing"
    out.print(f"new journal {ws.relative(ws.journal_file)}: recorded {counts} from out/ and its sent archive",
              markup=False)
    if result.recorded.get("uncertain"):
        out.print("the letters recorded as uncertain are never sent again by themselves: dispatch status lists "
                  "them; check the Sent folder, then dispatch send --resend-uncertain --only ID", markup=False)
