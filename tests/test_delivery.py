"""dispatch mark --delivered / --undo and dispatch status: hand delivery in the journal, as users see it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from dispatch import campaign
from dispatch.cli import app
from dispatch.errors import DispatchError
from dispatch.journal import Journal
from tests.conftest import row

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def folder(make_workspace):
    return make_workspace([row("NA", "Namibia"), row("KE", "Kenya"),
                           row("CH", "Switzerland", channel="email", email="nyc@example.org")])


def events(folder):
    with Journal(folder / "dispatch.db") as journal:
        return [(e.recipient, e.kind, dict(e.data)) for e in journal.events()]


def test_mark_and_undo_are_journal_events_shown_by_status(folder):
    result = run("-C", str(folder), "mark", "NA", "KE", "--delivered", "--by", "A. Receptionist",
                 "--at", "2020-04-28T14:30", "--note", "left at the front desk")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("NA: delivered 2020-04-28 14:30 to A. Receptionist (Namibia)\n"
                             "KE: delivered 2020-04-28 14:30 to A. Receptionist (Kenya)\n"
                             "report: out/letter/report.html\n")
    recorded = events(folder)
    assert [(rid, kind) for rid, kind, _ in recorded] == [("NA", "delivered"), ("KE", "delivered")]
    data = recorded[0][2]
    moment = dt.datetime.fromisoformat(data["delivered_at"])
    assert moment.tzinfo is not None  # stored with the local time zone
    assert moment.replace(tzinfo=None) == dt.datetime(2020, 4, 28, 14, 30)
    assert (data["by"], data["note"]) == ("A. Receptionist", "left at the front desk")

    status = run("-C", str(folder), "status")
    assert status.exit_code == 0
    assert status.stdout.splitlines() == [
        "id  state        channel  status     when              note",
        "NA  Namibia      print    delivered  2020-04-28 14:30  -",
        "KE  Kenya        print    delivered  2020-04-28 14:30  -",
        "CH  Switzerland  email    pending    -                 -",
        "letter 'letter': 0 of 1 email(s) sent",
        "letter 'letter': 2 of 2 letter(s) to print delivered by hand",
    ]
    [ke] = json.loads(run("-C", str(folder), "status", "-f", "json", "--only", "KE").stdout)
    assert ke["delivery"] == "delivered 2020-04-28 14:30 to A. Receptionist"

    undone = run("-C", str(folder), "mark", "KE", "--delivered", "--undo", "--note", "wrong mission")
    assert undone.exit_code == 0
    assert undone.stdout == "KE: delivery mark withdrawn (Kenya)\n" "report: out/letter/report.html\n"
    assert events(folder)[-1] == ("KE", "delivery-withdrawn", {"note": "wrong mission"})
    status = run("-C", str(folder), "status")
    assert status.stdout.splitlines()[2].split()[:5] == ["KE", "Kenya", "print", "not", "yet"]
    assert status.stdout.splitlines()[-1] == "letter 'letter': 1 of 2 letter(s) to print delivered by hand"

    again = run("-C", str(folder), "mark", "KE", "--delivered")  # default: now
    assert again.exit_code == 0
    latest = dt.datetime.fromisoformat(events(folder)[-1][2]["delivered_at"])
    assert abs(latest - dt.datetime.now().astimezone()) < dt.timedelta(minutes=2)


def test_mark_errors(folder):
    result = run("-C", str(folder), "mark", "KE", "--delivered", "--undo")
    assert result.exit_code == 1
    assert result.stderr == "error: dispatch.db: Kenya (KE) is not marked delivered\n  hint: nothing to withdraw; see dispatch status\n"
    assert run("-C", str(folder), "mark", "KE", "--delivered", "--at", "2020-04-28 09:05").exit_code == 0
    result = run("-C", str(folder), "mark", "KE", "NA", "--delivered")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: dispatch.db: Kenya (KE) is already marked delivered (2020-04-28T09:05")
    assert "hint: to correct it, withdraw the mark first: dispatch mark KE --delivered --undo" in result.stderr
    assert [(rid, kind) for rid, kind, _ in events(folder)] == [("KE", "delivered")]  # NA was not marked either

    result = run("-C", str(folder), "mark", "NAM", "--delivered")
    assert result.exit_code == 1
    assert result.stderr == "error: recipients.csv: no recipient with id 'NAM'\n  hint: did you mean 'NA'?\n"

    for bad in ("28/11/2026 14:30", "2026-11-28", "tomorrow", "2020-02-30T10:00"):
        result = run("-C", str(folder), "mark", "NA", "--delivered", "--at", bad)
        assert result.exit_code == 1, bad
        assert result.stderr.startswith(f"error: --at: '{bad}' is not a")
        assert "hint: write the date and time as 2026-11-28T14:30 or \"2026-11-28 14:30\" (local time)" in result.stderr
    future = (dt.datetime.now() + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    result = run("-C", str(folder), "mark", "NA", "--delivered", "--at", future)
    assert result.stderr.startswith(f"error: --at: '{future}' is in the future")

    result = run("-C", str(folder), "mark", "NA")
    assert result.exit_code == 2
    assert result.stderr == "error: say what to record: dispatch mark ID --delivered\n"
    assert [(rid, kind) for rid, kind, _ in events(folder)] == [("KE", "delivered")]


def test_parse_delivery_time_keeps_an_explicit_offset():
    moment = campaign.parse_delivery_time("2020-04-28T14:30-04:00")
    assert moment.utcoffset() == dt.timedelta(hours=-4)
    with pytest.raises(DispatchError):
        campaign.parse_delivery_time("2020-04-28T14:30:00.123")
