"""Settings, addresses and message building; the cover note from the email templates."""

from __future__ import annotations

import pytest

from dispatch.merge.email import CoverNotes, attachment_file_name
from dispatch.errors import SendError, TemplateError
from dispatch.mail.message import Draft, build_message
from dispatch.mail.settings import is_loopback, smtp_settings

SMTP = {"host": "smtp.example.org", "port": 587, "security": "starttls", "username": "me@example.org",
        "sender": "", "rate_limit": 20}


def test_environment_overrides_every_setting():
    env = {"DISPATCH_SMTP_HOST": "localhost", "DISPATCH_SMTP_PORT": "2525", "DISPATCH_SMTP_SECURITY": "none",
           "DISPATCH_SMTP_USERNAME": "other@example.org", "DISPATCH_SENDER": "from@example.org"}
    s = smtp_settings(SMTP, "letterhead@example.org", env)
    assert (s.host, s.port, s.security, s.username, s.sender) == ("localhost", 2525, "none", "other@example.org",
                                                                  "from@example.org")
    assert smtp_settings(SMTP, "letterhead@example.org", {}).sender == "letterhead@example.org"
    with pytest.raises(SendError, match="DISPATCH_SMTP_PORT='abc' is not a port number"):
        smtp_settings(SMTP, "a@example.org", {"DISPATCH_SMTP_PORT": "abc"})
    with pytest.raises(SendError, match="no sender address"):
        smtp_settings(SMTP, "", {})
    with pytest.raises(SendError, match="DISPATCH_SMTP_CAFILE: no such file"):
        smtp_settings(SMTP, "a@example.org", {"DISPATCH_SMTP_CAFILE": "/no/such/ca.pem"})


def test_unencrypted_only_on_loopback():
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.3.4.5", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("smtp.example.org", "10.0.0.1", "192.168.1.1", "8.8.8.8"))
    with pytest.raises(SendError, match='security = "none" is allowed only for a server on this machine'):
        smtp_settings({**SMTP, "security": "none"}, "a@example.org", {})


def draft(**changes) -> Draft:
    values = dict(recipient_id="NA", from_name="Coalition", from_address="me@example.org", to="na@example.org",
                  subject="Joint letter", text="Dear colleagues,\n.\nA line that starts with a dot.\n",
                  attachment=b"%PDF-1.7\n...", attachment_name="Joint-letter-Namibia.pdf")
    values.update(changes)
    return Draft(**values)


def test_a_line_break_in_a_header_is_refused():
    for field in ("subject", "from_name", "attachment_name"):
        with pytest.raises(SendError, match="has a line break"):
            build_message(draft(**{field: "Joint letter\r\nBcc: everyone@example.org"}))


def test_message_ids_are_unique_and_on_the_senders_domain():
    ids = {build_message(draft()).message_id for _ in range(50)}
    assert len(ids) == 50 and all(i.endswith("@example.org>") for i in ids)


def test_html_alternative_and_envelope_without_duplicates():
    out = build_message(draft(html="<p>Dear colleagues</p>", cc=("NA@example.org", "x@example.org"), bcc=("x@example.org",)))
    assert out.recipients == ("na@example.org", "x@example.org")
    assert out.message.get_body(("html",)).get_content().strip() == "<p>Dear colleagues</p>"
    assert b"\r\n..\r\n" not in out.as_bytes()  # dots are doubled only on the wire


def test_attachment_file_names_keep_their_script():
    assert attachment_file_name("Joint NGO letter Namibia", fallback="NA") == "Joint-NGO-letter-Namibia.pdf"
    assert attachment_file_name("Lettre conjointe Côte d'Ivoire.pdf", fallback="CI") == "Lettre-conjointe-Côte-d’Ivoire.pdf"
    assert attachment_file_name("../../etc/passwd", fallback="X") == "etc-passwd.pdf"
    assert attachment_file_name("日本", fallback="JP") == "日本.pdf"
    assert attachment_file_name("Κοινή επιστολή — Ελλάδα", fallback="GR") == "Κοινή-επιστολή-Ελλάδα.pdf"
    assert attachment_file_name("<>:\"|?*\x00\u202e", fallback="X") == "X.pdf"  # nothing a file system refuses
    long = attachment_file_name("中" * 300, fallback="CN")
    assert len(long.encode("utf-8")) <= 204 and long.endswith(".pdf")


def test_cover_note_subject_and_values_as_data(tmp_path):
    (tmp_path / "email.txt.j2").write_text("{% set subject = 'Letter to ' ~ state %}\nDear {{ state }}, see {{ attachment }}.\n")
    notes = CoverNotes(tmp_path, attachment="Letter {{ state }}")
    note = notes.render({"state": "{{ 7*7 }} <b>", "letter": {"subject": "S"}}, "X")
    assert note.subject == "Letter to {{ 7*7 }} <b>"
    assert note.text == "Dear {{ 7*7 }} <b>, see Letter-7-7-b.pdf.\n"
    with pytest.raises(TemplateError, match="the subject for recipient 'X' has a line break"):
        notes.render({"state": "A\nBcc: x@example.org", "letter": {"subject": "S"}}, "X")
    (tmp_path / "email.txt.j2").write_text("Dear {{ sate }}\n")
    with pytest.raises(TemplateError) as caught:
        CoverNotes(tmp_path, attachment="x").render({"state": "A", "letter": {"subject": "S"}}, "X")
    assert str(caught.value) == "templates/email.txt.j2:1: 'sate' is undefined (recipient 'X')"
