"""dispatch send against a real SMTP server (aiosmtpd on 127.0.0.1): what arrived, what was recorded."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re

import pytest
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
from tests.conftest import SENDER, email_row
from tests.smtp_server import PASSWORD, USERNAME, Faulty, smtp_server

runner = CliRunner()
SUMMARY = re.compile(r"^sent (\d+), failed (\d+), uncertain (\d+), skipped (\d+) in [\d.]+ s \([\d.]+ messages/s\)$", re.M)


def run(folder, *args: str):
    return runner.invoke(app, ["-C", str(folder), *args], catch_exceptions=False)


def summary(result) -> tuple[int, ...]:
    found = SUMMARY.findall(result.stdout)
    assert found, result.output
    return tuple(int(n) for n in found[-1])


def events(folder, recipient=None):
    with Journal(folder / "dispatch.db") as journal:
        return journal.events("letter", recipient)


ROWS = [
    email_row("NA", "Namibia", "mission.na@example.org", cc="first.cc@example.org; second.cc@example.org"),
    email_row("FR", "France", "mission.fr@example.org", channel="both", bcc="hidden@example.org"),
    email_row("DE", "Germany", "", channel="print"),
]


@pytest.fixture
def plain(smtp_env):
    with smtp_server() as server:
        yield server


def campaign_for(make_workspace, server, rows=ROWS, extra="", **smtp):
    settings = SENDER + '[email]\nbcc = "archive@example.org"\n' + extra + server.settings(**smtp)
    return make_workspace(rows, settings=settings)


def test_send_delivers_each_letter_once_with_headers_and_the_exact_pdf(make_workspace, plain):
    folder = campaign_for(make_workspace, plain)
    result = run(folder, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert summary(result) == (2, 0, 0, 0)
    assert result.stdout.startswith("rendered 2 missing or out-of-date letter(s) first\n")
    received = plain.handler.messages
    assert [m.rcpt_tos for m in received] == [
        ["mission.na@example.org", "first.cc@example.org", "second.cc@example.org", "archive@example.org"],
        ["mission.fr@example.org", "archive@example.org", "hidden@example.org"],
    ]
    na = received[0].message
    assert received[0].mail_from == "coordinator@example.org"
    assert received[0].user == USERNAME
    assert str(na["From"]) == "Coalition for the Court <coordinator@example.org>"
    assert str(na["To"]) == "mission.na@example.org"
    assert str(na["Cc"]) == "first.cc@example.org, second.cc@example.org"
    assert str(na["Reply-To"]) == "replies@example.org"
    assert str(na["Subject"]) == "Test Letter — Namibia"
    assert na["Bcc"] is None and received[1].message["Bcc"] is None
    body = na.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body.startswith("Your Excellency,\n\nPlease find attached a joint letter from 2 organisations")
    [attachment] = list(na.iter_attachments())
    assert attachment.get_filename() == "Test-Letter-Namibia.pdf"
    pdf = (folder / "out" / "letter" / "NA.pdf").read_bytes()
    assert attachment.get_content() == pdf
    kinds = [e.kind for e in events(folder, "NA")]
    assert kinds == ["rendered", "sending", "sent"]
    sending, sent = events(folder, "NA")[1:]
    assert sending.data["message_id"] == sent.data["message_id"] == str(na["Message-ID"])
    assert sending.data["sha256"] == sent.data["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert sent.data["reply"] == "250 2.0.0 Ok: queued as 1234"
    assert events(folder, "DE") == []  # print only: neither rendered nor sent by send

    again = run(folder, "send", "--yes")
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[:2] == [
        "nothing to send", "skipped 2 already sent (dispatch send --resend ID sends one again)"]
    assert summary(again) == (0, 0, 0, 2)
    assert len(plain.handler.messages) == 2

    resent = run(folder, "send", "--yes", "--resend", "NA")
    assert resent.exit_code == 0, resent.output
    assert summary(resent) == (1, 0, 0, 1)
    assert [m.rcpt_tos[0] for m in plain.handler.messages] == [
        "mission.na@example.org", "mission.fr@example.org", "mission.na@example.org"]


def test_one_connection_for_the_whole_run_and_limit(make_workspace, smtp_env):
    rows = [email_row(f"R{i}", f"State {i}", f"r{i}@example.org") for i in range(5)]
    with smtp_server() as server:
        folder = campaign_for(make_workspace, server, rows)
        first = run(folder, "send", "--yes", "--limit", "3")
        assert first.exit_code == 0, first.output
        assert "left for a later run (--limit): 2" in first.stdout
        assert summary(first) == (3, 0, 0, 0)
        rest = run(folder, "send", "--yes", "--only", "R4", "--only", "R3")
        assert summary(rest) == (2, 0, 0, 0)
    assert [m.rcpt_tos[0] for m in server.handler.messages] == [f"r{i}@example.org" for i in (0, 1, 2, 4, 3)]
    message_ids = {m.message_id for m in server.handler.messages}
    assert len(message_ids) == 5
    assert server.handler.greetings == 2  # one connection per run, reused for every message


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_a_verified_certificate_and_auth(make_workspace, smtp_env, smtp_ca, security):
    smtp_env.setenv("DISPATCH_SMTP_CAFILE", str(smtp_ca.cafile))
    with smtp_server(security=security, ca=smtp_ca, host="127.0.0.1") as server:
        folder = campaign_for(make_workspace, server, ROWS[:1])
        (folder / "dispatch.toml").write_text((folder / "dispatch.toml").read_text().replace(
            'host = "127.0.0.1"', 'host = "localhost"'))
        result = run(folder, "send", "--yes")
        assert result.exit_code == 0, result.output
        assert summary(result) == (1, 0, 0, 0)
    [received] = server.handler.messages
    assert received.user == USERNAME
    assert list(received.message.iter_attachments())[0].get_content() == (folder / "out/letter/NA.pdf").read_bytes()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_an_unverifiable_server_is_refused(make_workspace, smtp_env, smtp_ca, security):
    with smtp_server(security=security, ca=smtp_ca) as server:
        folder = campaign_for(make_workspace, server, ROWS[:1])
        result = run(folder, "send", "--yes")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        f"error: the certificate of 127.0.0.1:{server.port} cannot be verified (unable to get local issuer certificate)",
        "  hint: dispatch sends only to a server it can verify; if the server uses your organisation's own "
        "certificate authority, set DISPATCH_SMTP_CAFILE to that authority's PEM file"]
    assert server.handler.messages == []
    assert "sending" not in [e.kind for e in events(folder)]


def test_wrong_password_is_refused_and_never_shown(make_workspace, plain, smtp_env):
    smtp_env.setenv("DISPATCH_SMTP_PASSWORD", "wrong-" + PASSWORD)
    folder = campaign_for(make_workspace, plain, ROWS[:1])
    result = run(folder, "send", "--yes")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: 127.0.0.1 refused the username or password for coordinator@example.org (535 5.7.8 Authentication "
        "credentials invalid)\n")
    assert PASSWORD not in result.output
    assert plain.handler.messages == []


def test_no_server_configured_explains_how(make_workspace, smtp_env):
    folder = make_workspace(ROWS)
    result = run(folder, "send")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: dispatch.toml: no SMTP server is configured\n"
        "  hint: set host, port, security and username under [smtp] in dispatch.toml (or DISPATCH_SMTP_HOST); "
        "dispatch send --dry-run writes the messages without a server\n")


def test_unencrypted_is_refused_for_a_remote_host(make_workspace, smtp_env):
    folder = make_workspace(ROWS, settings='[smtp]\nhost = "smtp.example.org"\nsecurity = "none"\nsender = "a@example.org"\n')
    result = run(folder, "send", "--yes")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        'error: dispatch.toml: [smtp] security: security = "none" is allowed only for a server on this machine, '
        "not smtp.example.org\n")
    smtp_env.setenv("DISPATCH_SMTP_HOST", "127.0.0.2")  # the environment overrides; loopback is allowed
    smtp_env.setenv("DISPATCH_SMTP_PORT", "1")
    result = run(folder, "send", "--yes")
    assert result.stderr.startswith("error: cannot connect to 127.0.0.2:1: Connection refused\n")


def test_without_yes_and_without_a_terminal_it_shows_the_plan_and_refuses(make_workspace, plain):
    folder = campaign_for(make_workspace, plain)
    result = run(folder, "send")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[1] == (f"letter 'letter': 2 message(s) to send via 127.0.0.1:{plain.port} (none), "
                        "from coordinator@example.org")
    assert lines[2:4] == ["  NA       mission.na@example.org (+3 cc/bcc)", "  FR       mission.fr@example.org (+2 cc/bcc)"]
    assert lines[4:9] == ["first message:", "  From: Coalition for the Court <coordinator@example.org>",
                          "  To: mission.na@example.org", "  Cc: first.cc@example.org, second.cc@example.org",
                          "  Bcc: archive@example.org"]
    assert "  | Your Excellency," in lines
    assert result.stderr == (
        "error: not sending: confirmation is needed and this is not a terminal\n"
        "  hint: run dispatch send in a terminal to confirm, or dispatch send --yes to send without asking "
        "(dispatch send --dry-run writes the messages to files to check first)\n")
    assert plain.handler.messages == []


def test_dry_run_writes_every_message_and_connects_to_nothing(make_workspace, smtp_env):
    folder = make_workspace(ROWS, settings=SENDER + '[smtp]\nsender = "coordinator@example.org"\n')
    result = run(folder, "send", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "rendered 2 missing or out-of-date letter(s) first",
        "dry run: wrote 2 message(s) to out/letter/outbox/; nothing was sent",
        "to send them: dispatch send (shows the plan and asks), or dispatch send --yes"]
    outbox = folder / "out" / "letter" / "outbox"
    assert sorted(p.name for p in outbox.iterdir()) == ["FR.eml", "NA.eml"]
    from email import policy
    from email.parser import BytesParser

    fr = BytesParser(policy=policy.default).parsebytes((outbox / "FR.eml").read_bytes())
    assert str(fr["Bcc"]) == "hidden@example.org"
    assert list(fr.iter_attachments())[0].get_content() == (folder / "out/letter/FR.pdf").read_bytes()
    assert [e.kind for e in events(folder)] == ["rendered", "rendered"]


def test_a_second_send_is_refused_while_one_runs(make_workspace, plain):
    folder = campaign_for(make_workspace, plain)
    with open(folder / "dispatch.db.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("4242\n")
        holder.flush()
        result = run(folder, "send", "--yes")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: dispatch.db.lock: another dispatch send is running on this campaign (pid 4242)\n"
        "  hint: wait for it to finish, then run dispatch send again to send what is left\n")
    assert plain.handler.messages == []
    assert run(folder, "send", "--yes").exit_code == 0  # the lock went with its holder


def test_uncertain_delivery_is_reported_and_never_resent_unless_asked(make_workspace, smtp_env):
    handler = Faulty(transient=0, drop_after_data={"mission.na@example.org"})
    with smtp_server(handler) as server:
        folder = campaign_for(make_workspace, server)
        first = run(folder, "send", "--yes")
        assert first.exit_code == 1
        assert summary(first) == (1, 0, 1, 0)
        assert ("uncertain: NA: the message was transmitted but the server's reply never came "
                "(Connection unexpectedly closed); it may have been delivered") in first.stderr
        assert [e.kind for e in events(folder, "NA")] == ["rendered", "sending", "uncertain"]
        second = run(folder, "send", "--yes")
        assert second.exit_code == 1
        assert summary(second) == (0, 0, 1, 1)
        assert len(server.handler.by_recipient()["mission.na@example.org"]) == 1
        third = run(folder, "send", "--yes", "--resend-uncertain")
        assert third.exit_code == 0, third.output
        assert summary(third) == (1, 0, 0, 1)
    assert len(server.handler.by_recipient()["mission.na@example.org"]) == 2


def test_transient_failures_are_retried_and_permanent_ones_recorded(make_workspace, smtp_env):
    rows = [email_row(f"R{i:02}", f"State {i}", f"r{i}@example.org") for i in range(12)]
    handler = Faulty(seed=7, transient=0.3, permanent={"r3@example.org", "r8@example.org"})
    with smtp_server(handler) as server:
        folder = campaign_for(make_workspace, server, rows, retries=8)
        result = run(folder, "send", "--yes")
        assert result.exit_code == 1
        assert summary(result) == (10, 2, 0, 0)
        assert handler.refusals, "the server refused nothing: the test did not inject faults"
        assert handler.greetings > 1  # after a 421 the connection was opened again
        assert "failed: R03: r3@example.org: 550 5.1.1 <r3@example.org>: Recipient address rejected: User unknown" \
            in result.stderr
        received = server.handler.by_recipient()
        del received["archive@example.org"]
        assert sorted(received) == sorted(f"r{i}@example.org" for i in range(12) if i not in (3, 8))
        assert all(len(v) == 1 for v in received.values())
        journal = events(folder)
        retried = [e for e in journal if e.kind == "failed" and not e.data["permanent"]]
        assert len(retried) == len(handler.refusals)
        [r3] = [e for e in journal if e.kind == "failed" and e.recipient == "R03"]
        assert r3.data["permanent"] and r3.data["code"] == 550
        again = run(folder, "send", "--yes")
        assert summary(again) == (0, 2, 0, 10)
        assert "failed earlier: R03: r3@example.org: 550 5.1.1" in again.stdout
    assert len(server.handler.messages) == 10


def test_non_ascii_names_and_addresses(make_workspace, smtp_env):
    rows = [email_row("CI", "Côte d'Ivoire", "mission@ambassade-côte.example.org"),
            email_row("ES", "España", "misión@example.org")]
    extra = '[sender]\nname = "Coalition pour la Cour pénale"\n'
    with smtp_server() as server:
        folder = make_workspace(rows, settings=extra + server.settings())
        result = run(folder, "send", "--yes")
        assert result.exit_code == 0, result.output
    ci, es = server.handler.messages
    assert ci.rcpt_tos == ["mission@" + "ambassade-côte.example.org".encode("idna").decode()] and not ci.smtp_utf8
    assert str(ci.message["From"]) == "Coalition pour la Cour pénale <coordinator@example.org>"
    assert list(ci.message.iter_attachments())[0].get_filename() == "Test-Letter-Côte-d’Ivoire.pdf"
    assert es.rcpt_tos == ["misión@example.org"] and es.smtp_utf8
    assert str(es.message["To"]) == "misión@example.org"

    with smtp_server(smtputf8=False) as server:
        folder = make_workspace(rows, settings=extra + server.settings())
        result = run(folder, "send", "--yes")
    assert result.exit_code == 1
    assert summary(result) == (1, 1, 0, 0)
    assert ("failed: ES: an address has non-ASCII characters before the @ and the server does not offer SMTPUTF8, "
            "which such an address needs") in result.stderr


def test_a_letter_changed_since_its_render_is_rendered_again_before_sending(make_workspace, plain):
    folder = campaign_for(make_workspace, plain, ROWS[:1])
    assert run(folder, "render").exit_code == 0
    letter = folder / "letters" / "letter.md"
    letter.write_text(letter.read_text().replace("Thank you.", "Thank you very much."))
    result = run(folder, "send", "--yes")
    assert result.stdout.startswith("rendered 1 missing or out-of-date letter(s) first\n")
    [received] = plain.handler.messages
    pdf = (folder / "out/letter/NA.pdf").read_bytes()
    assert list(received.message.iter_attachments())[0].get_content() == pdf
    from tests.conftest import flat, pdf_text

    assert "Thank you very much." in flat(pdf_text(folder / "out/letter/NA.pdf"))


def test_the_password_is_never_written_anywhere(make_workspace, plain, tmp_path):
    folder = campaign_for(make_workspace, plain)
    result = runner.invoke(app, ["-v", "-C", str(folder), "send", "--yes"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert run(folder, "send", "--dry-run", "--resend", "NA").exit_code == 0
    assert PASSWORD not in result.output
    for path in folder.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in " ".join(os.environ.get(k, "") for k in os.environ if k != "DISPATCH_SMTP_PASSWORD")
