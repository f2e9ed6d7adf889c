"""dispatch status: one row per recipient, as a table, CSV (safe for spreadsheets) or JSON."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
from dispatch.status import COLUMNS, StatusRow, cells as width_of, clip, to_table
from tests.conftest import email_row
from tests.smtp_server import smtp_server

runner = CliRunner()


def run(folder, *args):
    return runner.invoke(app, ["-C", str(folder), *args], catch_exceptions=False)


def test_status_after_sending_flags_a_changed_pdf_and_hand_delivery(make_workspace, smtp_env):
    rows = [email_row("NA", "Namibia", "na@example.org", channel="both"),
            email_row("EQ", "=1+2", "eq@example.org"),
            email_row("DE", "Germany", "", channel="print")]
    with smtp_server() as server:
        folder = make_workspace(rows, settings=server.settings())
        assert run(folder, "send", "--yes").exit_code == 0
    with Journal(folder / "dispatch.db") as journal:
        journal.record("letter", "NA", "delivered", by="courier")
    pdf = folder / "out" / "letter" / "NA.pdf"
    pdf.write_bytes(pdf.read_bytes() + b"\n% changed\n")

    data = json.loads(run(folder, "status", "--format", "json").stdout)
    assert [(r["id"], r["channel"], r["email"], r["delivery"][:10], r["flag"]) for r in data] == [
        ("NA", "both", "sent", "delivered ", "PDF changed after it was sent"),
        ("EQ", "email", "sent", "", ""),
        ("DE", "print", "", "not yet", "")]
    assert data[0]["delivery"].endswith(" to courier")
    assert data[0]["reply"] == "250 2.0.0 Ok: queued as 1234"
    assert data[0]["message_id"] == str(server.handler.messages[0].message["Message-ID"])
    assert data[2]["pdf"] == "missing" and len(data[1]["pdf"]) == 12

    table = run(folder, "status").stdout.splitlines()
    assert table[0].split() == ["id", "state", "channel", "status", "when", "note"]  # what a coordinator reads first
    assert table[1].startswith("NA  Namibia  both     sent, delivered  20")
    assert table[1].endswith("  PDF changed after it was sent")
    assert table[2].startswith("EQ  =1+2     email    sent             20") and table[2].endswith("  -")
    assert table[3] == "DE  Germany  print    not yet          -                 -"
    assert table[-2:] == ["letter 'letter': 2 of 2 email(s) sent",
                          "letter 'letter': 1 of 2 letter(s) to print delivered by hand"]

    cells = list(csv.reader(io.StringIO(run(folder, "status", "-f", "csv").stdout.lstrip("\ufeff"))))
    assert cells[0] == list(COLUMNS)  # every column, the note and the copy that went out too
    assert cells[0][:12] == ["id", "state", "channel", "pdf", "email", "time", "message_id", "reply", "delivery",
                             "flag", "sent_copy", "note"]
    assert cells[2][:3] == ["EQ", "'=1+2", "email"]  # a spreadsheet shows it, does not compute it
    assert run(folder, "status", "-f", "xml").exit_code == 2


def test_status_before_anything_was_sent(make_workspace):
    folder = make_workspace([email_row("NA", "Namibia", "na@example.org")])
    [row] = json.loads(run(folder, "status", "-f", "json", "--only", "NA").stdout)
    assert row["email"] == "pending" and row["pdf"] == "missing" and row["time"] == ""


def test_the_table_of_the_sample_fits_100_columns_and_shows_the_notes(sample):
    result = run(sample, "status")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(width_of(line) for line in lines) <= 100
    by_id = {line.split()[0]: line for line in lines[1:-2]}
    assert len(by_id) == 125
    assert by_id["HU"].split("  not yet  ")[1].strip().startswith("-")  # nothing happened yet: no time
    assert "Hungary has given notice of" in by_id["HU"] and by_id["HU"].endswith("…")
    assert "No mission in New York" in by_id["CK"]
    assert "United Kingdom of" in by_id["GB"] and "Northern Ireland" not in by_id["GB"]  # cut, and marked
    assert by_id["GB"].split("  ")[1].strip().endswith("…")
    assert by_id["AL"].endswith("not yet  -  -") or by_id["AL"].split()[-1] == "-"
    notes = list(csv.DictReader(io.StringIO(run(sample, "status", "-f", "csv").stdout.lstrip("\ufeff"))))
    hungary = next(r for r in notes if r["id"] == "HU")
    assert hungary["note"].startswith("Hungary has given notice of withdrawal (Rome Statute art. 127)")
    assert json.loads(run(sample, "status", "-f", "json", "--only", "CK").stdout)[0]["note"].startswith(
        "No mission in New York")


def status_row(id: str, state: str, note: str = "", **extra: str) -> StatusRow:
    fields = dict(id=id, state=state, channel="print", pdf="missing", email="", time="", message_id="", reply="",
                  delivery="not yet", flag="", note=note)
    fields.update(extra)
    return StatusRow(**fields)


def column_starts(line: str, values: list[str]) -> list[int]:
    """Where (in terminal cells) each of the values starts in a line of the table."""
    starts, at = [], 0
    for value in values:
        at = line.index(value, at)
        starts.append(width_of(line[:at]))
        at += len(value)
    return starts


def test_wide_characters_are_measured_in_terminal_cells():
    long_note = "Notice of withdrawal given on 17 March 2025 (art. 127), effective one year later; verify " * 3
    rows = [status_row("CN", "中国", note="外交部条约法律司：请在发送前核实地址。" * 4),
            status_row("JP", "日本", email="sent", time="2026-11-28T13:30:00+00:00", channel="both"),
            status_row("SA", "المملكة العربية السعودية", note="ملاحظة: تحقق من العنوان قبل الإرسال " * 3),
            status_row("GB", "United Kingdom of Great Britain and Northern Ireland", note=long_note),
            status_row("NA", "Namibia")]
    table = to_table(rows).splitlines()
    assert [width_of(line) <= 100 for line in table] == [True] * 6
    assert max(width_of(line) for line in table) == 100  # the notes take the room there is
    statuses = ["not yet", "sent, not yet", "not yet", "not yet", "not yet"]
    starts = {tuple(column_starts(line, [row.id, row.channel, status]))
              for line, row, status in zip(table[1:], rows, statuses)}
    assert len(starts) == 1  # the channel and status columns start in the same cell on every row
    assert table[1].startswith("CN  中国  ") and table[1].endswith("…")  # a CJK note cut at a cell boundary
    assert table[4].split("  ")[1].endswith("…") and "Northern" not in table[4]
    assert table[5].endswith("-")

    wide = to_table(rows, wide=True).splitlines()
    assert wide[0].split()[:6] == ["id", "state", "channel", "pdf", "email", "time"] and "Message-ID" in wide[0]
    assert "Northern Ireland" in wide[4] and long_note.strip() in wide[4] and "…" not in "".join(wide)


def test_clip_marks_what_it_cuts():
    assert clip("Namibia", 7) == "Namibia" and clip("Namibia", 6) == "Namib…"
    assert clip("中国日本", 5) == "中国…" and width_of(clip("中国日本", 6)) <= 6  # never half a wide character
    assert clip("Côte d’Ivoire", 5) == "Côte…" and clip("x", 0) == ""
    assert width_of("e\u0301") == 1 and width_of("日本") == 4 and width_of("مصر") == 3
