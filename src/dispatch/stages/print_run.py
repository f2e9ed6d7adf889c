"""The print run for hand delivery: who is printed, in which order, and the files of out/<letter>/print/."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from dispatch import printing
from dispatch.errors import PrintError, Problem, ValidationFailed
from dispatch.archive import keep
from dispatch.files import confined, sha256, write_atomic
from dispatch.inputs import Campaign
from dispatch.journal import Journal
from dispatch.merge.letter import Layouts
from dispatch.models import Recipient
from dispatch.recipients import RecipientTable


@dataclass
class PrintSummary:
    letter: str
    folder: Path
    options: printing.PrintOptions
    bundle: printing.PrintBundle
    files: list[Path] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def options(campaign: Campaign, *, order: str | None, duplex: bool | None,
            envelope: str | None) -> printing.PrintOptions:
    return printing.print_options(campaign.workspace.settings.section("print"), envelope=envelope, order=order,
                                  duplex=duplex)


def plan(campaign: Campaign, opts: printing.PrintOptions, *, only: list[str] | None,
         allow_missing_address: bool) -> list[Recipient]:
    """The recipients to print, in print order. Unless allow_missing_address, a recipient without a postal
    address stops the run (every one of them listed); allowed, their letters get no envelope or label."""
    table = campaign.recipients
    chosen = _print_recipients(table, only)
    missing = printing.missing_addresses(chosen, table)
    if missing and not allow_missing_address:
        missing[-1] = dataclasses.replace(missing[-1], hint=(
            f"{len(missing)} recipient(s) to be printed have no postal address: add it to {table.file}, or run "
            "dispatch print without --require-address to print their letters without envelope or label, to "
            "deliver by hand or have collected"))
        raise ValidationFailed(missing)
    return printing.order_recipients(chosen, opts.order)


def write(campaign: Campaign, opts: printing.PrintOptions, ordered: list[Recipient], *, renderer,
          journal: Journal, warnings: list[Problem]) -> PrintSummary:
    """Write out/<letter>/print/ from the letters already rendered: the files are made in memory first, so a
    refused run writes nothing into print/."""
    ws = campaign.workspace
    table = campaign.recipients
    items = [printing.PrintItem(number, r, campaign.output_dir / f"{r.id}.pdf", place=table.place(r.line, "address"))
             for number, r in enumerate(ordered, start=1)]
    if opts.window:
        _check_windows(items, opts.envelope, table)
    bundle = printing.build(items, opts, layouts=Layouts(ws.templates), renderer=renderer,
                            sender=ws.settings.section("sender"), title=campaign.letter.title or campaign.letter_name,
                            today=dt.date.today().isoformat())
    folder = confined(campaign.output_dir / "print", campaign.output_dir)
    summary = PrintSummary(campaign.letter_name, folder, opts, bundle, warnings=warnings)
    for stale in ("envelopes.pdf", "labels.pdf"):
        if stale not in bundle.files:
            (folder / stale).unlink(missing_ok=True)  # no one has an address: an old file would mislead
    for name, data in bundle.files.items():
        write_atomic(folder / name, data)
        summary.files.append(folder / name)
    _keep_printed(campaign, journal, items)
    return summary


def _keep_printed(campaign: Campaign, journal: Journal, items: list[printing.PrintItem]) -> None:
    """Each printed letter's exact bytes in the sent archive (once per distinct file), and a `printed` event."""
    letter = campaign.letter_name
    previous = journal.latest(letter, ["printed"])
    events = []
    for item in items:
        data = item.letter_pdf.read_bytes()
        digest = sha256(data)
        before = previous.get(item.recipient.id)
        if before is not None and before.data.get("sha256") == digest and before.data.get("archive_pdf"):
            where = before.data["archive_pdf"]
        else:
            where = keep(campaign.output_dir, item.recipient.id, "print", {"pdf": data})["pdf"].path
        events.append((letter, item.recipient.id, "printed", {"sha256": digest, "archive_pdf": where,
                                                               "number": item.number}))
    journal.record_many(events)


def _print_recipients(table: RecipientTable, only: list[str] | None) -> list[Recipient]:
    chosen = table.select(only)
    if only:
        for r in chosen:
            if not r.wants_print:
                raise PrintError(f"{r.state} ({r.id}) is not to be printed: its channel is {r.channel!r}",
                                 **table.place(r.line, "channel"),
                                 hint="set the channel to 'print' or 'both' to print this letter")
        return chosen
    chosen = [r for r in chosen if r.wants_print]
    if not chosen:
        raise PrintError("no recipient is to be printed", file=table.file, column="channel",
                         hint="set the channel of the recipients to print to 'print' or 'both'")
    return chosen


def _check_windows(items: list[printing.PrintItem], envelope: printing.Envelope, table: RecipientTable) -> None:
    problems = []
    for item in items:
        reason = printing.window_problem(printing.address_boxes(item.letter_pdf, item.lines), envelope)
        if reason:
            problems.append(table.problem(f"{item.recipient.state} ({item.recipient.id}): {reason}",
                                          row=item.recipient, column="address",
                                          hint="shorten the address, choose another envelope (--envelope), or set "
                                               "[print] window = false and use the printed envelopes"))
    if problems:
        raise ValidationFailed(problems)
