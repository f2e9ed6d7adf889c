"""dispatch track against a real Dovecot (messages placed with APPEND) after sends to a real SMTP server
(aiosmtpd): bounces, replies and automatic replies recorded once, the mailbox never changed, uncertain
messages found in Sent; and a delivery status notification made by a real MTA (exim4)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import ANSWER_KINDS, Journal
from tests.conftest import SENDER, email_row
from dispatch.mail.accounts import Account
from dispatch.mail.oauth import sign_in
from tests.imap_server import Dovecot, dovecot, oauth_dovecot  # noqa: F401  (the fixtures)
from tests.oauth_server import CLIENT_ID, AuthorizationServer
from tests.smtp_server import Faulty, smtp_server
from tests.track_mailbox import (
    append_all,
    create_folder,
    from_corpus,
    recreate_folder,
    reply,
    rfc822_date,
    running_exim,
    snapshot,
    standard_dsn,
)

runner = CliRunner()
SUMMARY = re.compile(r"^(\d+) bounced, (\d+) delayed, (\d+) replied, (\d+) auto-replies, (\d+) uncertain resolved; "
                     r"(\d+) message\(s\) read, (\d+) skipped$", re.M)


def run(folder, *args: str):
    return runner.invoke(app, ["-C", str(folder), *args], catch_exceptions=False)


def counts(result) -> tuple[int, ...]:
    found = SUMMARY.findall(result.stdout)
    assert found, result.output
    return tuple(int(n) for n in found[-1])


def address(i: int) -> str:
    return f"mission{i:02d}@m{i:02d}.example.org"


def rid(i: int) -> str:
    return f"R{i:02d}"


@pytest.fixture
def mailbox_env(smtp_env, dovecot: Dovecot):
    """The DISPATCH_IMAP_* variables for the test's Dovecot; nothing from the machine's account."""
    for name in ("DISPATCH_ACCOUNT", "DISPATCH_IMAP_CAFILE"):
        smtp_env.delenv(name, raising=False)
    for name, value in dovecot.environ().items():
        smtp_env.setenv(name, value)
    return dovecot


def sent_ids(folder) -> dict[str, str]:
    with Journal(folder / "dispatch.db") as journal:
        return {e.recipient: e.data["message_id"] for e in journal.events("letter", kinds=["sent"])}


def answers(folder) -> dict[str, list[str]]:
    """{kind: sorted recipient ids} of what dispatch track recorded."""
    found: dict[str, list[str]] = {}
    with Journal(folder / "dispatch.db") as journal:
        for event in journal.events(kinds=ANSWER_KINDS):
            found.setdefault(event.kind, []).append(event.recipient)
    return {kind: sorted(ids) for kind, ids in found.items()}


def status_json(folder, *args: str) -> dict[str, dict]:
    result = run(folder, "status", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return {row["id"]: row for row in json.loads(result.stdout)}


def send_campaign(make_workspace, server, count: int):
    rows = [email_row(rid(i), f"State {i:02d}", address(i)) for i in range(1, count + 1)]
    folder = make_workspace(rows, settings=SENDER + server.settings())
    result = run(folder, "send", "--yes")
    assert result.exit_code == 0, result.output
    return folder


def the_mail(ids: dict[str, str]) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """8 bounces (4 standard, 4 from the corpus), 5 replies, 3 automatic replies, 10 unrelated messages."""
    now = rfc822_date()
    bounces = [
        standard_dsn(ids["R01"], address(1), returned="message"),
        standard_dsn(ids["R02"], address(2), returned="headers", status="5.2.1",
                     diagnostic="smtp; 550 5.2.1 The email account that you tried to reach is disabled"),
        standard_dsn(None, address(3), returned="headers"),  # no Message-ID returned: tied by address and date
        standard_dsn(ids["R04"], address(4), returned="none", status="5.4.1",
                     diagnostic="smtp; 550 5.4.1 Recipient address rejected: Access denied"),
        from_corpus("postfix-text.eml", {"<8EF96F3F-377B-4E4D-9F3C-54EE1924B2BA@mirror.example.ne.jp>": ids["R05"],
                                         "kijitora@user.example.or.jp": address(5)}),
        from_corpus("gmail-text-5.1.1.eml", {"<D992C2C3-F175-4C4D-97E2-53A90E4E5BF5@gmail.com>": ids["R06"],
                                             "userunknown@example.jp": address(6)}),
        from_corpus("exim-text-5.7.0.eml", {"<E1P1ce6-000Egt-GZ@e1.example.org>": ids["R07"],
                                            "kijitora@example.ed.jp": address(7)}),
        from_corpus("qmail-text-5.1.1.eml", {"userx@example.jp": address(8)}, date=now),  # by address and date
    ]
    replies = [
        reply(address(11), in_reply_to=ids["R11"], references=ids["R11"]),
        reply(address(12), references=f"<older-thread@m12.example.org> {ids['R12']}"),
        reply(address(13), subject="Your letter about the Court"),  # no In-Reply-To: by address and date
        reply("deputy@m14.example.org", subject="Joint letter"),  # a colleague: by domain and date
        from_corpus("reply-gmail.eml", {"<171455040014.4242.5521908812763450071.r0033@mission.example.org>": ids["R15"]},
                    date=now),
    ]
    automatic = [
        reply(address(21), in_reply_to=ids["R21"], subject="Automatic reply: A test letter",
              extra=["Auto-Submitted: auto-replied", "X-Autoreply: yes"], body="I am out of the office until Monday."),
        from_corpus("autoreply-exchange-automatic-reply.eml", {"nekonyaan@example.org": address(22)}, date=now),
        reply(address(23), subject="Out of Office: A test letter", body="Je suis absent jusqu'au 3 janvier."),
    ]
    unrelated = [
        reply("news@m30.example.org", subject="Our newsletter", extra=["List-Id: <news.m30.example.org>",
                                                                        "List-Unsubscribe: <mailto:leave@m30.example.org>"]),
        reply("friend@elsewhere.example", subject="Lunch on Friday?", body="Are you free?"),
        reply(address(31), in_reply_to="<another-conversation@example.org>", subject="Re: the budget"),
        reply(address(32), subject="Our meeting last year", date=rfc822_date(time.time() - 365 * 86400)),
        from_corpus("unrelated-plain.eml", {}),
        from_corpus("unrelated-android-reply.eml", {}),
        from_corpus("unrelated-list-reply.eml", {}),
        from_corpus("unrelated-forwarded-attachment.eml", {}),
        from_corpus("read-receipt.eml", {}),
        from_corpus("rfc3464-deliverable-2.1.5.eml", {}),  # a report that a message was delivered
    ]
    return bounces, replies, automatic, unrelated


@pytest.mark.slow
def test_track_records_bounces_replies_and_automatic_replies_once_and_changes_nothing(make_workspace, mailbox_env):
    mailbox = mailbox_env
    with smtp_server() as server:
        folder = send_campaign(make_workspace, server, 40)
        assert len(server.handler.messages) == 40
    ids = sent_ids(folder)
    assert len(ids) == 40
    bounces, replies, automatic, unrelated = the_mail(ids)
    append_all(mailbox, "INBOX", bounces + replies + automatic + unrelated)
    append_all(mailbox, "INBOX", [reply("colleague@example.net", subject="Seen")], ("\\Seen", "\\Flagged"))
    before = snapshot(mailbox)

    first = run(folder, "track")
    assert first.exit_code == 0, first.output
    assert counts(first) == (8, 0, 5, 3, 0, 27, 0), first.output
    assert answers(folder) == {"bounced": [rid(i) for i in range(1, 9)],
                               "replied": [rid(i) for i in range(11, 16)],
                               "auto-replied": [rid(i) for i in (21, 22, 23)]}
    assert "INBOX: 27 new message(s) read" in first.stdout
    assert "bounced: R02 (letter): " + address(2) + ": 5.2.1" in first.stdout

    second = run(folder, "track")
    assert second.exit_code == 0, second.output
    assert counts(second) == (0, 0, 0, 0, 0, 0, 0), second.output
    assert sum(len(v) for v in answers(folder).values()) == 16

    assert snapshot(mailbox) == before  # same UIDVALIDITY, UIDNEXT, UIDs and flags: nothing marked, moved or deleted

    rows = status_json(folder)
    assert {r for r, row in rows.items() if row["email"] == "bounced"} == {rid(i) for i in range(1, 9)}
    assert rows["R01"]["reply"].startswith("5.1.1") and "User unknown" in rows["R01"]["reply"]
    assert rows["R02"]["reply"].startswith("5.2.1 ") and "disabled" in rows["R02"]["reply"]
    assert "said: 550" in rows["R05"]["reply"] and rows["R08"]["reply"].startswith("5.1.1 Sorry, no mailbox")
    for i in range(11, 16):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[rid(i)]["replied"]), rows[rid(i)]
        assert rows[rid(i)]["email"] == "sent" and rows[rid(i)]["auto_reply"] == ""
    for i in (21, 22, 23):
        assert rows[rid(i)]["auto_reply"] and rows[rid(i)]["replied"] == ""
    assert rows["R30"]["replied"] == rows["R30"]["auto_reply"] == "" and rows["R30"]["email"] == "sent"

    listed = run(folder, "status", "--bounced", "--format", "csv")
    assert [line.split(",")[0] for line in listed.stdout.splitlines()[1:]] == [rid(i) for i in range(1, 9)]
    table = run(folder, "status", "--bounced")
    assert "8 email(s) bounced" in table.stdout


@pytest.mark.slow
def test_uncertain_messages_found_in_sent_are_marked_sent_and_the_others_stay_uncertain(make_workspace, mailbox_env):
    mailbox = mailbox_env
    handler = Faulty(transient=0.0, drop_after_data={address(2), address(3)})
    with smtp_server(handler) as server:
        rows = [email_row(rid(i), f"State {i:02d}", address(i)) for i in range(1, 5)]
        folder = make_workspace(rows, settings=SENDER + server.settings())
        result = run(folder, "send", "--yes", "--only", "R01", "--only", "R02", "--only", "R03")
        assert result.exit_code == 1, result.output  # two uncertain
        received = {m.rcpt_tos[0]: m.data for m in handler.messages}
    assert status_json(folder)["R02"]["email"] == "uncertain"
    # R04: a run that stopped after the message was handed over, before its reply was recorded
    with Journal(folder / "dispatch.db") as journal:
        journal.record("letter", "R04", "sending", message_id="<interrupted-r04@example.org>", to=address(4),
                       recipients=[address(4)], sha256="0" * 64, attempt=1, reason="new")
    interrupted = reply(address(4), subject="A test letter", message_id="<interrupted-r04@example.org>")
    append_all(mailbox, "Sent", [received[address(2)], interrupted], ("\\Seen",))
    before = snapshot(mailbox)

    result = run(folder, "track")
    assert result.exit_code == 0, result.output
    assert counts(result) == (0, 0, 0, 0, 2, 0, 0), result.output
    assert "uncertain resolved: R02 (letter): found in Sent UID 1: recorded as sent" in result.stdout
    assert "still uncertain: R03 (letter): not in Sent yet" in result.stdout
    rows = status_json(folder)
    assert rows["R02"]["email"] == "sent" and rows["R02"]["reply"] == "found in Sent UID 1 by dispatch track"
    assert rows["R04"]["email"] == "sent"
    assert rows["R03"]["email"] == "uncertain"
    with Journal(folder / "dispatch.db") as journal:
        [found] = journal.events("letter", "R02", kinds=["sent"])
        assert found.data["found"]["folder"] == "Sent" and found.data["found"]["uid"] == 1
        assert found.data["message_id"] == sent_message_id(received[address(2)])
    assert snapshot(mailbox) == before
    again = run(folder, "send", "--yes")  # R02 and R04 are sent; R03 stays uncertain; nothing is sent twice
    assert "uncertain: R03" in again.stdout and "sent 0, failed 0, uncertain 1, skipped 3" in again.stdout
    assert len(handler.messages) == 3


def sent_message_id(data: bytes) -> str:
    return re.search(rb"(?im)^Message-ID: (<[^>]+>)", data).group(1).decode()


@pytest.mark.slow
def test_hostile_and_broken_messages_are_skipped_with_a_reason_and_delays_kept_apart(make_workspace, mailbox_env):
    mailbox = mailbox_env
    rows = [email_row("R01", "State 01", address(1), cc="copy@m01.example.org"),
            email_row("R02", "State 02", address(2)), email_row("R03", "State 03", address(3))]
    with smtp_server() as server:
        folder = make_workspace(rows, settings=SENDER + server.settings())
        assert run(folder, "send", "--yes").exit_code == 0
    ids = sent_ids(folder)
    listener = socket.create_server(("127.0.0.1", 0))  # where the reply's image and link point
    listener.settimeout(0.2)
    knocks: list[object] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                knocks.append(listener.accept())
            except OSError:
                continue

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    nested = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for depth in range(1, 40):
        nested += f"--b{depth - 1}\r\nContent-Type: multipart/mixed; boundary=b{depth}\r\n\r\n".encode()
    messages = [
        standard_dsn("<forged-1@other-campaign.example>", address(2)),  # another campaign's Message-ID
        reply(address(2), subject="A large attachment", body="x" * (11 * 1024 * 1024)),
        (b"From: MAILER-DAEMON@mx.example\r\nTo: coordinator@example.org\r\nSubject: Undelivered Mail\r\n"
         b"Date: " + rfc822_date().encode() + b"\r\n" + nested),
        standard_dsn(ids["R02"], address(2), status="4.4.7", action="delayed",
                     diagnostic="smtp; 451 4.4.7 Message delayed: connection timed out"),
        standard_dsn(ids["R01"], "copy@m01.example.org"),  # only the copy (cc) bounced
        reply(address(3), in_reply_to=ids["R03"], body="See the picture",
              html=f'<p>See <a href="{url}/read">this</a><img src="{url}/pixel.png"></p>'),
    ]
    append_all(mailbox, "INBOX", messages)
    before = snapshot(mailbox)
    result = run(folder, "track")
    stop.set()
    watcher.join(5)
    listener.close()
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert counts(result) == (0, 1, 1, 0, 0, 6, 4), result.output
    skipped = result.stderr
    assert "which is not a message of this campaign; not recorded" in skipped
    assert re.search(r"skipped: INBOX UID 2: 1\d\.\d MB, larger than the 10 MB read: not fetched", skipped)
    assert "skipped: INBOX UID 3: MIME parts nested deeper than 12 levels; not read" in skipped
    assert "a bounce for copy@m01.example.org, a copy (cc/bcc) of the message to R01, whose own address" in skipped
    assert answers(folder) == {"delayed": ["R02"], "replied": ["R03"]}
    rows = status_json(folder)
    assert rows["R02"]["email"] == "sent" and rows["R02"]["reply"].startswith("delayed: 4.4.7 451 4.4.7")
    assert rows["R01"]["email"] == "sent" and rows["R03"]["replied"]
    assert knocks == []  # nothing in what was read was followed or loaded
    assert snapshot(mailbox) == before


@pytest.mark.slow
def test_a_renumbered_folder_is_read_again_without_recording_twice_and_a_bounce_is_resent_to_a_new_address(
        make_workspace, mailbox_env):
    mailbox = mailbox_env
    with smtp_server() as server:
        folder = send_campaign(make_workspace, server, 2)
        ids = sent_ids(folder)
        create_folder(mailbox, "Bounces")
        bounce = standard_dsn(ids["R01"], address(1))
        append_all(mailbox, "Bounces", [bounce])
        first = run(folder, "track", "--folder", "Bounces")
        assert counts(first) == (1, 0, 0, 0, 0, 1, 0), first.output

        refused = run(folder, "send", "--yes")
        assert refused.exit_code == 1 and len(server.handler.messages) == 2
        assert "failed earlier: R01: bounced: 5.1.1 550 5.1.1" in refused.stdout

        with Journal(folder / "dispatch.db") as journal:
            validity = journal.read_position(f"{mailbox.user} at {mailbox.host}", "Bounces")[0]
        recreate_folder(mailbox, "Bounces")
        append_all(mailbox, "Bounces", [bounce, reply(address(2), in_reply_to=ids["R02"])])
        assert snapshot(mailbox, ["Bounces"])["Bounces"][0] != validity
        second = run(folder, "track", "--folder", "Bounces")
        assert counts(second) == (0, 0, 1, 0, 0, 2, 0), second.output
        assert "Bounces: 2 new message(s) read; read from the start: the server renumbered the folder" in second.stdout
        assert "1 answer(s) read again were already recorded" in second.stdout
        again = run(folder, "track", "--folder", "Bounces", "--reread")
        assert counts(again) == (0, 0, 0, 0, 0, 2, 0) and "2 answer(s) read again" in again.stdout
        assert answers(folder) == {"bounced": ["R01"], "replied": ["R02"]}

        csv_file = folder / "recipients.csv"
        csv_file.write_text(csv_file.read_text().replace(address(1), "new.address@m01.example.org"))
        resent = run(folder, "send", "--yes")
        assert resent.exit_code == 0, resent.output
        assert [m.rcpt_tos for m in server.handler.messages[2:]] == [["new.address@m01.example.org"]]
    assert status_json(folder)["R01"]["email"] == "sent"


def test_settings_and_an_unsent_campaign_are_reported_before_any_connection(make_workspace, smtp_env):
    for name, value in {"DISPATCH_IMAP_HOST": "127.0.0.1", "DISPATCH_IMAP_PORT": "9", "DISPATCH_IMAP_SECURITY": "none",
                        "DISPATCH_IMAP_USERNAME": "coordinator", "DISPATCH_IMAP_PASSWORD": "x"}.items():
        smtp_env.setenv(name, value)
    smtp_env.delenv("DISPATCH_ACCOUNT", raising=False)
    rows = [email_row("R01", "State 01", address(1))]
    folder = make_workspace(rows, settings=SENDER + '[track]\nfolders = ["INBOX", ""]\n')
    result = run(folder, "track")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: dispatch.toml:5: [track] folders: folders must be a list of folder names")
    (folder / "dispatch.toml").write_text(SENDER + '[track]\nfolders = "INBOX"\n')
    result = run(folder, "track")
    assert result.exit_code == 1 and "'folders' must be a list" in result.stderr
    (folder / "dispatch.toml").write_text(SENDER + '[track]\nfolders = ["INBOX", "Bounces"]\n')
    result = run(folder, "track")
    assert result.exit_code == 1
    assert "error: nothing was sent by email yet, so there is nothing to look for in the mailbox" in result.stderr
    smtp_env.delenv("DISPATCH_IMAP_HOST")
    result = run(folder, "track")
    assert result.exit_code == 1 and "error: no IMAP server is configured" in result.stderr


def test_read_positions_are_appended_never_changed(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "dispatch.db"
    with Journal(path) as journal:
        journal.record("letter", "R01", "sent", message_id="<a@example.org>")
        assert journal.read_position("me at host", "INBOX") is None  # no table yet: the journal is as it was
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["events", "sqlite_sequence"]
    db.close()
    with Journal(path) as journal:
        journal.record_read("me at host", "INBOX", 7, 10, [("letter", "R01", "replied", {"date": "2026-12-01T10:00:00Z"})])
        journal.record_read("me at host", "INBOX", 7, 12)
        journal.record_read("me at host", "Bounces", 3, 1)
        assert journal.read_position("me at host", "INBOX") == (7, 12)
        assert journal.read_position("other at host", "INBOX") is None
        assert journal.answers("letter")["R01"].replied == "2026-12-01T10:00:00Z"
    db = sqlite3.connect(path)
    for statement in ("UPDATE mailbox_reads SET last_uid = 0", "DELETE FROM mailbox_reads"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
    db.close()


@pytest.mark.slow
def test_a_delivery_status_notification_made_by_exim_is_recorded(make_workspace, mailbox_env):
    mailbox = mailbox_env
    with running_exim() as exim:
        rows = [email_row("R01", "State 01", "known@missions.example.org"),
                email_row("R02", "State 02", "nobody@missions.example.org")]
        smtp = (f'[smtp]\nhost = "{exim.host}"\nport = {exim.port}\nsecurity = "none"\nusername = ""\n'
                'sender = "coordinator@coalition.example.org"\nrate_limit = 0\nretries = 0\ntimeout = 30\n')
        folder = make_workspace(rows, settings=SENDER + smtp)
        sent = run(folder, "send", "--yes")
        assert sent.exit_code == 0, sent.output
        [notification] = exim.bounces(1)
    assert b"report-type=delivery-status" in notification and b"Mail Delivery System" in notification
    append_all(mailbox, "INBOX", [notification])
    result = run(folder, "track")
    assert counts(result) == (1, 0, 0, 0, 0, 1, 0), result.output
    rows = status_json(folder)
    assert rows["R01"]["email"] == "sent"
    # exim's report has no Diagnostic-Code field: the status is what the report says (its text says why)
    assert rows["R02"]["email"] == "bounced" and rows["R02"]["reply"] == "5.0.0", rows["R02"]
    assert re.search(rb"nobody@missions.example.org\s+Unknown user", notification)
    with Journal(folder / "dispatch.db") as journal:
        [bounce] = journal.events("letter", "R02", kinds=["bounced"])
    assert bounce.data["matched_by"] == "message-id" and bounce.data["email"] == "nobody@missions.example.org"


@pytest.mark.slow
def test_track_signs_in_with_the_accounts_oauth_token_over_verified_tls(
        make_workspace, smtp_env, oauth_dovecot: tuple[AuthorizationServer, Dovecot], tmp_path) -> None:
    authority, mailbox = oauth_dovecot
    for name in ("DISPATCH_IMAP_HOST", "DISPATCH_IMAP_PORT", "DISPATCH_IMAP_SECURITY", "DISPATCH_IMAP_USERNAME",
                 "DISPATCH_IMAP_PASSWORD"):
        smtp_env.delenv(name, raising=False)
    config = tmp_path / "config"
    smtp_env.setenv("XDG_CONFIG_HOME", str(config))
    smtp_env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    account = Account(name="coalition", email=mailbox.user, auth="oauth2", client_id=CLIENT_ID,
                      device_authorization_url=authority.device_url, token_url=authority.token_url, scope="mail",
                      imap_host="127.0.0.1", imap_port=mailbox.port, imap_security="starttls")
    sign_in(account, lambda shown: authority.approve(shown.user_code))
    (config / "dispatch" / "accounts.toml").write_text(
        f'[coalition]\nemail = "{mailbox.user}"\nauth = "oauth2"\nclient_id = "{CLIENT_ID}"\n'
        f'device_authorization_url = "{authority.device_url}"\ntoken_url = "{authority.token_url}"\nscope = "mail"\n'
        f'imap_host = "127.0.0.1"\nimap_port = {mailbox.port}\nimap_security = "starttls"\n')
    with smtp_server() as server:
        folder = send_campaign(make_workspace, server, 1)
    append_all(mailbox, "INBOX", [standard_dsn(sent_ids(folder)["R01"], address(1))])
    smtp_env.setenv("DISPATCH_ACCOUNT", "coalition")  # the mailbox of the account, its token, its authority
    smtp_env.setenv("DISPATCH_IMAP_CAFILE", mailbox.cafile)
    result = run(folder, "track")
    assert counts(result) == (1, 0, 0, 0, 0, 1, 0), result.output
    assert "method=XOAUTH2" in mailbox.log() and "TLS" in mailbox.log()
    assert not [secret for secret in authority.secrets() if secret in result.output]
