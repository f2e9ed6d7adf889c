"""dispatch send --drafts: each message in the mailbox's Drafts folder (found by the \\Drafts flag) of a real
Dovecot, journaled as `drafted`, nothing sent; a later dispatch send leaves those recipients alone unless
asked with --resend."""

from __future__ import annotations

import json
import re
from email import message_from_bytes
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
from tests.imap_server import oauth_dovecot  # noqa: F401 (fixture)
from tests.mail_account import (CheckingRecorder, account_campaign, config_home, folder_messages, mailbox,  # noqa: F401
                                rows, sign_in_now, write_account)
from tests.smtp_server import smtp_server

runner = CliRunner()


def run(folder: Path, *args: str):
    return runner.invoke(app, ["-C", str(folder), *args], catch_exceptions=False)


def statuses(folder: Path) -> dict[str, str]:
    return {row["id"]: row["email"] for row in json.loads(run(folder, "status", "--format", "json").stdout)}


@pytest.mark.slow
def test_drafts_fill_the_drafts_folder_send_nothing_and_hold_back_a_later_send(config_home: Path, make_workspace,
                                                                              oauth_dovecot) -> None:
    authority, dovecot = oauth_dovecot
    handler = CheckingRecorder(authority)
    with smtp_server(handler) as server:
        write_account(config_home, smtp_port=server.port, authority=authority, imap_port=dovecot.port,
                      save_sent="true")
        folder = account_campaign(make_workspace, 3)
        sign_in_now(authority)

        drafted = run(folder, "send", "--drafts")
        assert drafted.exit_code == 0, drafted.output
        assert re.search(r'^drafted 3 in the Drafts folder "Drafts", skipped 0 in [\d.]+ s; nothing was sent$',
                         drafted.stdout, re.M), drafted.stdout
        assert handler.messages == [] and handler.logins == []  # no connection to the SMTP server at all
        drafts = folder_messages(dovecot, "Drafts")
        kept = sorted((folder / "out" / "letter" / "sent").glob("*/*-draft.eml"))
        assert [p.parent.name for p in kept] == ["R01", "R02", "R03"]
        assert sorted(drafts) == sorted(p.read_bytes() for p in kept)  # byte for byte
        assert all((p.with_suffix(".pdf")).is_file() for p in kept)
        with mailbox(dovecot) as imap:
            assert set(imap.flags("Drafts").values()) == {frozenset({"\\Draft", "\\Seen"})}
        with Journal(folder / "dispatch.db") as journal:
            events = journal.latest("letter", ["drafted"])
        assert sorted(events) == ["R01", "R02", "R03"]
        ids = {str(message_from_bytes(d)["Message-ID"]) for d in drafts}
        assert {e.data["message_id"] for e in events.values()} == ids
        assert all(e.data["folder"] == "Drafts" and e.data["archive_eml"].endswith("-draft.eml")
                   for e in events.values())
        assert statuses(folder) == {"R01": "drafted", "R02": "drafted", "R03": "drafted"}

        plain = run(folder, "send", "--yes")
        assert plain.exit_code == 0, plain.output
        assert "nothing to send" in plain.stdout
        assert ("skipped 3 with a draft in the mailbox (send it from there; dispatch send --resend ID sends one "
                "from here instead)") in plain.stdout
        assert re.search(r"^sent 0, failed 0, uncertain 0, skipped 3 in ", plain.stdout, re.M)
        again = run(folder, "send", "--drafts")
        assert again.exit_code == 0 and "nothing to send" in again.stdout
        assert handler.messages == [] and len(folder_messages(dovecot, "Drafts")) == 3
        assert folder_messages(dovecot, "Sent") == []

        resent = run(folder, "send", "--yes", "--resend", "R02")
    assert resent.exit_code == 0, resent.output
    assert re.search(r"^sent 1, failed 0, uncertain 0, skipped 2 in ", resent.stdout, re.M)
    assert [m.rcpt_tos for m in handler.messages] == [["mission02@example.org"]]
    assert statuses(folder) == {"R01": "drafted", "R02": "sent", "R03": "drafted"}
    assert folder_messages(dovecot, "Sent") == [handler.messages[0].data]


def test_drafts_and_dry_run_do_not_go_together(make_workspace, config_home: Path) -> None:
    folder = account_campaign(make_workspace, 1)
    result = run(folder, "send", "--drafts", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr == ("error: --dry-run writes files and connects to nothing; --drafts puts the messages in the "
                             "mailbox: choose one\n")


def test_drafts_need_a_mailbox_and_say_so_before_rendering(make_workspace, config_home: Path) -> None:
    folder = make_workspace(rows(1), settings='[smtp]\nsender = "me@example.org"\n')
    result = run(folder, "send", "--drafts")
    assert result.exit_code == 1
    assert result.stderr == ("error: no IMAP server is configured\n  hint: set imap_host in the account (accounts.toml) "
                             "or DISPATCH_IMAP_HOST\n")
    assert not (folder / "out" / "letter" / "R01.pdf").exists()
