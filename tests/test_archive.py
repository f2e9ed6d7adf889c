"""The sent archive: the exact bytes of what went out (by email, printed, by hand), kept and never rewritten."""

from __future__ import annotations

import json
import stat

import pikepdf
import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
from tests.conftest import SENDER, email_row, row
from tests.smtp_server import smtp_server

runner = CliRunner()
pytestmark = pytest.mark.slow


def run(folder, *args):
    return runner.invoke(app, ["-C", str(folder), *args], catch_exceptions=False)


def latest(folder, kind):
    with Journal(folder / "dispatch.db") as journal:
        return journal.latest("letter", [kind])


@pytest.fixture
def server(smtp_env):
    with smtp_server() as running:
        yield running


def test_an_email_keeps_the_exact_message_and_pdf_that_went_to_the_server(make_workspace, server):
    folder = make_workspace([email_row("NA", "Namibia", "mission.na@example.org")],
                            settings=SENDER + server.settings())
    result = run(folder, "send", "--yes")
    assert result.exit_code == 0, result.output
    sent = latest(folder, "sent")["NA"]
    letter = folder / "out" / "letter"
    pdf, eml = letter / sent.data["archive_pdf"], letter / sent.data["archive_eml"]
    assert pdf.parent == letter / "sent" / "NA"
    assert pdf.name.endswith("Z-email.pdf") and eml.name == pdf.name.replace(".pdf", ".eml")
    received = server.handler.messages[0]
    attachment = next(part for part in received.message.iter_attachments())
    assert pdf.read_bytes() == attachment.get_content() == (letter / "NA.pdf").read_bytes()
    assert eml.read_bytes().replace(b"\r\n", b"\n") == received.data.replace(b"\r\n", b"\n")
    assert not pdf.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # read-only


def test_render_force_after_sending_says_so_and_the_sent_copy_stays(make_workspace, server):
    folder = make_workspace([email_row("NA", "Namibia", "mission.na@example.org")],
                            settings=SENDER + server.settings())
    assert run(folder, "send", "--yes").exit_code == 0
    sent = latest(folder, "sent")["NA"]
    kept = folder / "out" / "letter" / sent.data["archive_pdf"]
    before = kept.read_bytes()
    letter = folder / "letters" / "letter.md"
    letter.write_text(letter.read_text(encoding="utf-8").replace("Thank you.", "With thanks."), encoding="utf-8")
    result = run(folder, "render")
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("NA.pdf: "))
    assert f"changed since it was sent on {sent.at[:16].replace('T', ' ')} UTC" in line
    assert line.endswith(f"the copy that went out is kept in {sent.data['archive_pdf']}")
    assert kept.read_bytes() == before != (folder / "out" / "letter" / "NA.pdf").read_bytes()
    verified = run(folder, "verify", str(kept))
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.splitlines()[1].startswith("  matches the journal: the letter 'letter' sent to NA on ")
    assert " by email, kept in sent/NA/" in verified.stdout
    [status] = json.loads(run(folder, "status", "--format", "json").stdout)
    assert status["flag"] == "PDF changed after it was sent"
    assert status["sent_copy"] == f"out/letter/{sent.data['archive_pdf']}"


def test_a_letter_sent_before_the_archive_existed_is_kept_before_it_is_replaced(make_workspace):
    folder = make_workspace([row("NA", "Namibia", email="na@example.org", channel="email")])
    assert run(folder, "render").exit_code == 0
    pdf = folder / "out" / "letter" / "NA.pdf"
    original = pdf.read_bytes()
    with Journal(folder / "dispatch.db") as journal:  # as dispatch 0.1 recorded a sending: no archive
        digest = latest(folder, "rendered")["NA"].data["sha256"]
        journal.record("letter", "NA", "sent", sha256=digest, message_id="<old@example.org>")
    result = run(folder, "render", "--force")
    assert result.exit_code == 0, result.output
    kept = list((folder / "out" / "letter" / "sent" / "NA").glob("*-email.pdf"))
    assert [k.read_bytes() for k in kept] == [original]
    assert f"the copy that went out is kept in sent/NA/{kept[0].name}" in result.stdout


def test_print_prints_the_letters_render_made_and_keeps_them(make_workspace):
    rows = [row("NA", "Namibia", address="1 Main Street\nWindhoek"), row("FR", "France", address="2 Rue\nParis"),
            row("DE", "Germany", address="3 Strasse\nBerlin", channel="both", email="de@example.org")]
    folder = make_workspace(rows)
    assert run(folder, "render").exit_code == 0
    letters = folder / "out" / "letter"
    before = {p.name: p.read_bytes() for p in letters.glob("*.pdf")}
    result = run(folder, "print")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in letters.glob("*.pdf")} == before  # nothing rendered again
    with pikepdf.open(letters / "NA.pdf") as pdf:  # still the archival, tagged PDF render made
        assert pdf.Root.MarkInfo.Marked and "/Metadata" in pdf.Root
    bundle = PdfReader(str(letters / "print" / "letters.pdf"))
    pages = sum(len(PdfReader(str(letters / name)).pages) for name in before)
    assert len(bundle.pages) >= pages
    text = "\n".join(page.extract_text() for page in bundle.pages)
    for state in ("Namibia", "France", "Germany"):
        assert state in text
    printed = latest(folder, "printed")
    assert sorted(printed) == ["DE", "FR", "NA"]
    for rid, event in printed.items():
        assert (letters / event.data["archive_pdf"]).read_bytes() == before[f"{rid}.pdf"]
    again = run(folder, "print")  # the same files printed again: recorded, not archived twice
    assert again.exit_code == 0
    assert len(list((letters / "sent" / "NA").iterdir())) == 1
    marked = run(folder, "mark", "NA", "--delivered", "--by", "Reception")
    assert marked.exit_code == 0, marked.output
    delivered = latest(folder, "delivered")["NA"]
    assert delivered.data["archive_pdf"] == printed["NA"].data["archive_pdf"]


def test_a_mark_without_a_print_run_keeps_the_letter_handed_over(make_workspace):
    folder = make_workspace([row("NA", "Namibia", address="1 Main Street\nWindhoek")])
    assert run(folder, "render").exit_code == 0
    assert run(folder, "mark", "NA", "--delivered").exit_code == 0
    delivered = latest(folder, "delivered")["NA"]
    kept = folder / "out" / "letter" / delivered.data["archive_pdf"]
    assert kept.name.endswith("-hand.pdf")
    assert kept.read_bytes() == (folder / "out" / "letter" / "NA.pdf").read_bytes()
