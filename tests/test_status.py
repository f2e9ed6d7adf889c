"""dispatch status: one row per recipient, as a table, CSV (safe for spreadsheets) or JSON."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
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
    assert table[0].split() == ["id", "state", "channel", "pdf", "email", "time", "message_id", "reply", "hand",
                                "delivery", "flag"]
    assert table[1].startswith("NA  Namibia  both ") and table[1].endswith("to courier  PDF changed after it was sent")
    assert table[-2:] == ["letter 'letter': 2 of 2 email(s) sent",
                          "letter 'letter': 1 of 2 letter(s) to print delivered by hand"]

    cells = list(csv.reader(io.StringIO(run(folder, "status", "-f", "csv").stdout.lstrip("\ufeff"))))
    assert cells[0] == ["id", "state", "channel", "pdf", "email", "time", "message_id", "reply", "delivery", "flag",
                        "sent_copy"]
    assert cells[2][:3] == ["EQ", "'=1+2", "email"]  # a spreadsheet shows it, does not compute it
    assert run(folder, "status", "-f", "xml").exit_code == 2


def test_status_before_anything_was_sent(make_workspace):
    folder = make_workspace([email_row("NA", "Namibia", "na@example.org")])
    [row] = json.loads(run(folder, "status", "-f", "json", "--only", "NA").stdout)
    assert row["email"] == "pending" and row["pdf"] == "missing" and row["time"] == ""
