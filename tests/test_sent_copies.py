"""A copy of each sent message in the mailbox's Sent folder (save_sent), against aiosmtpd and a real Dovecot:
byte for byte the .eml of the sent archive, found by the \\Sent flag, and never a reason to fail or repeat
a send."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatch.campaign.sending import wants_sent_copies
from dispatch.cli import app
from dispatch.journal import Journal
from dispatch.mail.accounts import Account
from tests.imap_server import Dovecot, dovecot, oauth_dovecot  # noqa: F401 (fixtures)
from tests.mail_account import (CheckingRecorder, account_campaign, config_home, folder_messages,  # noqa: F401
                                sign_in_now, write_account)
from tests.smtp_server import PASSWORD, USERNAME, free_port, smtp_server

runner = CliRunner()


def run(folder: Path, *args: str):
    return runner.invoke(app, ["-C", str(folder), *args], catch_exceptions=False)


def archived(folder: Path) -> dict[str, bytes]:
    """{recipient: the .eml the journal's `sent` event points at, as kept in the sent archive}."""
    with Journal(folder / "dispatch.db") as journal:
        sent = journal.latest("letter", ["sent"])
    return {rid: (folder / "out" / "letter" / event.data["archive_eml"]).read_bytes() for rid, event in sent.items()}


@pytest.mark.slow
def test_each_sent_message_is_in_sent_byte_for_byte_as_archived(config_home: Path, make_workspace,
                                                                 oauth_dovecot) -> None:
    authority, mailbox = oauth_dovecot
    handler = CheckingRecorder(authority)
    with smtp_server(handler) as server:
        write_account(config_home, smtp_port=server.port, authority=authority, imap_port=mailbox.port,
                      save_sent="true")
        folder = account_campaign(make_workspace, 4)
        sign_in_now(authority)
        result = run(folder, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert re.search(r"^sent 4, failed 0, uncertain 0, skipped 0 in ", result.stdout, re.M)
    assert 'saved a copy of 4 message(s) in the Sent folder "Sent"\n' in result.stdout
    kept = archived(folder)
    assert sorted(kept) == ["R01", "R02", "R03", "R04"]
    assert sorted(folder_messages(mailbox, "Sent")) == sorted(kept.values())
    assert sorted(m.data for m in handler.messages) == sorted(kept.values())  # what the server took
    assert folder_messages(mailbox, "Drafts") == []
    assert "method=XOAUTH2" in mailbox.log()  # the copies were saved with the account's token
    assert not [s for s in authority.secrets() if s in mailbox.log() or s in result.output]


@pytest.mark.slow
def test_a_password_account_saves_on_auto_and_not_on_false(config_home: Path, make_workspace, dovecot: Dovecot,
                                                           monkeypatch) -> None:
    monkeypatch.setenv("DISPATCH_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("DISPATCH_IMAP_USERNAME", dovecot.user)  # the mailbox's own login (environment wins)
    monkeypatch.setenv("DISPATCH_IMAP_PASSWORD", dovecot.password)
    with smtp_server() as server:
        write_account(config_home, smtp_port=server.port, imap_port=dovecot.port, auth="password", email=USERNAME,
                      save_sent="auto")
        folder = account_campaign(make_workspace, 2)
        result = run(folder, "send", "--yes")
        assert result.exit_code == 0, result.output
        assert len(folder_messages(dovecot, "Sent")) == 2  # 127.0.0.1 does not file what it is given in Sent
        write_account(config_home, smtp_port=server.port, imap_port=dovecot.port, auth="password", email=USERNAME,
                      save_sent="false")
        other = account_campaign(make_workspace, 2)
        result = run(other, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert "Sent folder" not in result.output
    assert len(folder_messages(dovecot, "Sent")) == 2
    assert [m.user for m in server.handler.messages] == [USERNAME] * 4


def test_a_mailbox_that_cannot_be_reached_neither_fails_nor_repeats_the_send(config_home: Path, make_workspace,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv("DISPATCH_SMTP_PASSWORD", PASSWORD)
    closed = free_port()  # nothing listens there
    with smtp_server() as server:
        write_account(config_home, smtp_port=server.port, imap_port=closed, auth="password", email=USERNAME,
                      save_sent="true")
        folder = account_campaign(make_workspace, 3)
        result = run(folder, "send", "--yes")
        assert result.exit_code == 0, result.output
        assert re.search(r"^sent 3, failed 0, uncertain 0, skipped 0 in ", result.stdout, re.M)
        reason = (f"IMAP connecting on 127.0.0.1:{closed} (none): Connection refused (check the IMAP host, port and "
                  "security, and the network)")
        assert result.stderr.splitlines()[-4:] == [
            f"warning: no copy in the Sent folder for R01: {reason}",
            f"warning: no copy in the Sent folder for R02: {reason}",
            f"warning: no copy in the Sent folder for R03: {reason}",
            "  3 message(s) were sent but have no copy in the Sent folder; the sent archive (out/<letter>/sent/) "
            "keeps each one"]
        assert sorted(archived(folder)) == ["R01", "R02", "R03"]
        again = run(folder, "send", "--yes")
    assert again.exit_code == 0 and "nothing to send" in again.stdout
    assert len(server.handler.messages) == 3


def test_auto_leaves_the_copy_to_the_servers_that_file_it_themselves() -> None:
    def account(save_sent: str) -> Account:
        return Account(name="a", email="a@ngo.example", smtp_host="smtp.office365.com", save_sent=save_sent)

    assert not wants_sent_copies(account("auto"), "smtp.office365.com")
    assert not wants_sent_copies(account("auto"), "smtp.gmail.com")
    assert wants_sent_copies(account("auto"), "mail.ngo.example")  # DISPATCH_SMTP_HOST named another server
    assert wants_sent_copies(account("true"), "smtp.office365.com")
    assert not wants_sent_copies(account("false"), "mail.ngo.example")
