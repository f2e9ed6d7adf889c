"""The SMTP reply reader against servers that misbehave on purpose (raw sockets on 127.0.0.1).

After the message data went out, anything but a valid reply (garbage, a cut reply, silence, a closed
connection, a reply too long) is `uncertain`; before, the same is `transient` (safe to retry). Every
exchange has a deadline and every reply a size cap, so a slow or endless server ends the attempt.
Credentials a server echoes never come out in a reply.
"""

from __future__ import annotations

import base64
import logging
import time

import pytest

from dispatch.errors import SendError
from dispatch.mail.connection import MAX_LINE, Redactor
from dispatch.mail.message import Draft, build_message
from dispatch.mail.settings import SmtpSettings
from dispatch.mail.smtp import Mailer
from tests.raw_smtp_server import endless, first, hang_up, raw_smtp, reply, say
from tests.smtp_server import PASSWORD, USERNAME

DEADLINE = 0.5  # seconds a test server may take per exchange; the faults below never finish in time


def settings(server, **changes) -> SmtpSettings:
    values = dict(host="127.0.0.1", port=server.port, security="none", username="", sender="coordinator@example.org",
                  timeout=DEADLINE, retries=0, retry_wait=0)
    values.update(changes)
    return SmtpSettings(**values)


def message():
    return build_message(Draft(recipient_id="NA", from_name="Coalition", from_address="coordinator@example.org",
                               to="mission.na@example.org", subject="Joint letter", text="Dear colleagues,\n",
                               attachment=b"%PDF-1.7\n" + b"x" * 200_000, attachment_name="letter.pdf"))


def deliver(server, mailer: Mailer | None = None):
    mailer = mailer or Mailer(settings(server))
    handed_over = []
    try:
        outcome = mailer.deliver(message(), lambda: handed_over.append(True))
    finally:
        mailer.close()
    return outcome, bool(handed_over)


def silence(session, line):
    session.server.stop.wait(60)  # says nothing until the test ends
    return False


def wait_for(condition, seconds: float = 30.0) -> bool:
    """Poll until condition() holds or `seconds` pass (generous: the machine may be busy)."""
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()


NOT_SMTP = "the server answered something that is not SMTP"
CLOSED = "Connection unexpectedly closed"
TOO_LONG = f"a line of the server's reply passed {MAX_LINE} bytes"
TOO_BIG = "the server's reply passed 200 lines or 64 KiB"
TOO_SLOW = f"no complete reply within {DEADLINE:g} s"

AFTER_DATA = {  # fault at the reply to the end of the data: (what the server does, what dispatch says)
    "garbage": (say(b"\x00\xffthis is not SMTP at all\r\n"), NOT_SMTP),
    "garbage-then-250": (say(b"queued, I think\r\n250 2.0.0 Ok\r\n"), NOT_SMTP),
    "cut-reply": (say(b"25"), CLOSED),
    "cut-continuation": (say(b"250-2.0.0 Ok\r\n"), CLOSED),
    "mixed-codes": (say(b"250-2.0.0 Ok\r\n451 4.3.0 later\r\n"), NOT_SMTP),
    "dropped": (hang_up(), CLOSED),
    "silence": (silence, TOO_SLOW),
    "oversized-line": (say(b"250 " + b"x" * (MAX_LINE + 10) + b"\r\n"), TOO_LONG),
    "endless-continuation": (endless("end", b"250-still going\r\n"), TOO_BIG),
    "slow-drip": (endless("end", b"250-slowly\r\n", pause=0.02), TOO_SLOW),
    "3xx": (reply("354 go ahead"), "which is no answer to a message"),
}


@pytest.mark.parametrize("fault", sorted(AFTER_DATA))
def test_no_valid_reply_after_the_data_is_uncertain(fault):
    action, said = AFTER_DATA[fault]
    with raw_smtp({"end": action}) as server:
        outcome, handed_over = deliver(server)
        assert len(server.messages) == 1  # the data arrived whole
        if fault.startswith(("endless", "slow")):
            assert wait_for(lambda: server.hung_up == ["end"])  # dispatch gave up, not the server
    assert handed_over
    assert outcome.kind == "uncertain", outcome
    assert outcome.reply.startswith("the message was transmitted but ") and "it may have been delivered" in outcome.reply
    assert said in outcome.reply


BEFORE_DATA = {  # (stage, fault): (what the server does, what dispatch says)
    ("greeting", "garbage"): (say(b"hello?\r\n"), NOT_SMTP),
    ("greeting", "slow-drip"): (endless("greeting", b"220-greetings from a slow server\r\n", pause=0.02), TOO_SLOW),
    ("greeting", "silence"): (silence, TOO_SLOW),
    ("EHLO", "endless-continuation"): (endless("EHLO", b"250-" + b"x" * 60 + b"\r\n"), TOO_BIG),
    ("EHLO", "oversized-line"): (say(b"250 " + b"x" * (MAX_LINE + 10) + b"\r\n"), TOO_LONG),
    ("EHLO", "too-many-bytes"): (say(b"".join(b"250-" + b"y" * 1000 + b"\r\n" for _ in range(70))), TOO_BIG),
    ("MAIL", "garbage"): (say(b"\x00\xff\r\n"), NOT_SMTP),
    ("RCPT", "garbage"): (say(b"OK!\r\n"), NOT_SMTP),
    ("RCPT", "cut-reply"): (say(b"250-2.1.5 Ok\r\n25"), CLOSED),
    ("DATA", "garbage"): (say(b"go ahead\r\n"), NOT_SMTP),
    ("DATA", "slow-drip"): (endless("DATA", b"354-wait for it\r\n", pause=0.02), TOO_SLOW),
}


@pytest.mark.parametrize("stage,fault", sorted(BEFORE_DATA))
def test_no_valid_reply_before_the_data_is_transient(stage, fault):
    action, said = BEFORE_DATA[stage, fault]
    with raw_smtp({stage: action}) as server:
        outcome, handed_over = deliver(server)
        assert server.messages == []
        if fault in ("slow-drip", "endless-continuation"):
            assert wait_for(lambda: server.hung_up == [stage])
    assert outcome.kind == "transient", outcome
    assert outcome.connection_lost
    assert said in outcome.reply
    assert handed_over == (stage == "DATA")  # `sending` is recorded just before DATA


def tls_record_dripped(session, line):
    """A TLS handshake record announced (16 KiB), then its bytes one at a time."""
    session.send(b"\x16\x03\x03\x40\x00")
    return endless("handshake", b"\x02", pause=0.02)(session, line)


def starttls_then(fault):
    def go_ahead(session, line):
        session.reply("220 2.0.0 Ready to start TLS")
        return fault(session, line)
    return go_ahead


OFFERS_STARTTLS = reply("250-raw.example.org\r\n250 STARTTLS")


@pytest.mark.parametrize("security,faults,dripped", [
    ("tls", {"greeting": tls_record_dripped}, True),
    ("tls", {"greeting": silence}, False),
    ("starttls", {"EHLO": OFFERS_STARTTLS, "STARTTLS": starttls_then(tls_record_dripped)}, True),
    ("starttls", {"EHLO": OFFERS_STARTTLS, "STARTTLS": starttls_then(silence)}, False),
], ids=["tls-drip", "tls-silence", "starttls-drip", "starttls-silence"])
def test_a_tls_handshake_that_never_ends_is_transient(security, faults, dripped, tmp_path):
    from tests.smtp_server import make_ca

    cafile = str(make_ca(tmp_path).cafile)
    with raw_smtp(faults) as server:
        outcome, handed_over = deliver(server, Mailer(settings(server, security=security, cafile=cafile)))
        if dripped:
            assert wait_for(lambda: server.hung_up == ["handshake"])
    assert (outcome.kind, outcome.connection_lost, handed_over) == ("transient", True, False)
    assert server.messages == []


def test_after_a_garbage_reply_to_rcpt_the_next_attempt_sends_once():
    with raw_smtp({"RCPT": first(say(b"\x00\xff garbage\r\n"))}) as server:
        mailer = Mailer(settings(server))
        try:
            failed = mailer.deliver(message())
            sent = mailer.deliver(message())
        finally:
            mailer.close()
        assert [failed.kind, sent.kind] == ["transient", "sent"]
        assert len(server.messages) == 1
        assert mailer.connections == 2


def test_a_2xx_reply_after_the_data_is_sent_and_4xx_5xx_are_refusals():
    for answer, kind in (("250 2.0.0 Ok", "sent"), ("251 2.0.0 Ok, forwarded", "sent"),
                         ("451 4.3.0 try later", "transient"), ("554 5.7.1 rejected", "permanent")):
        with raw_smtp({"end": reply(answer)}) as server:
            outcome, _ = deliver(server)
        assert (outcome.kind, outcome.reply) == (kind, answer)


# credentials in replies --------------------------------------------------------------------------

def echo(prefix: str, *, then_close: bool = False):
    """A fault that answers with every line the client sent during AUTH."""
    def fault(session, line):
        said = b" ".join(l.strip() for l in session.server.auth_lines).decode("ascii", "replace")
        session.reply(f"{prefix} {said}")
        return not then_close
    return fault


def login_echo(session, line):
    """AUTH LOGIN, then a refusal that repeats the user name and password lines."""
    if b"LOGIN" not in line.upper():
        return session.reply("504 5.5.4 Unrecognized authentication type")
    if len(line.split()) == 2:
        session.reply("334 VXNlcm5hbWU6")
        session.server.auth_lines.append(session.readline())
    session.reply("334 UGFzc3dvcmQ6")
    session.server.auth_lines.append(session.readline())
    return echo("535-5.7.8 Authentication failed for")(session, line) and session.reply("535 5.7.8 Bye")


PLAIN_B64 = base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()
PASSWORD_B64 = base64.b64encode(PASSWORD.encode()).decode()


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in (PASSWORD, PLAIN_B64, PASSWORD_B64, *secrets):
        assert secret not in text
        for start in range(0, len(secret) - 12, 4):  # no piece of it either
            assert secret[start:start + 12] not in text, (secret[start:start + 12], text)


@pytest.mark.parametrize("mechanisms,fault", [(("PLAIN",), echo("535 5.7.8 Authentication failed:")),
                                              (("LOGIN",), login_echo)])
def test_a_refusal_that_echoes_the_auth_line_does_not_show_the_password(mechanisms, fault):
    with raw_smtp({"AUTH": fault}, mechanisms=mechanisms) as server:
        mailer = Mailer(settings(server, username=USERNAME), PASSWORD)
        with pytest.raises(SendError) as caught:
            mailer.open()
        assert server.auth_lines  # the password did go out, and came back
    shown = str(caught.value) + str(caught.value.hint)
    assert "refused the username or password" in shown and "[redacted]" in shown
    assert_no_secret(shown)


def test_an_echo_of_the_auth_line_in_later_replies_is_redacted():
    faults = {"RCPT": echo("250 2.1.5 Ok, and you said"), "end": echo("250 2.0.0 Queued for")}
    with raw_smtp(faults, mechanisms=("PLAIN",)) as server:
        outcome, _ = deliver(server, Mailer(settings(server, username=USERNAME), PASSWORD))
    assert outcome.kind == "sent"
    assert outcome.reply == "250 2.0.0 Queued for AUTH PLAIN [redacted]"
    assert_no_secret(outcome.reply)


def test_the_redactor_removes_secrets_whole_in_part_and_as_sent():
    redact = Redactor()
    redact.add(PASSWORD)
    redact.add(PLAIN_B64)
    echoed = f"535 {PLAIN_B64[:20]}, {PASSWORD}, {PLAIN_B64[5:]}, queued as 4XyZ1q2 on mail.example.org".encode()
    assert redact(echoed) == b"535 [redacted], [redacted], [redacted], queued as 4XyZ1q2 on mail.example.org"
    assert redact(b"250 2.0.0 Ok: queued as 1234") == b"250 2.0.0 Ok: queued as 1234"
    short = Redactor()
    short.add("ab")  # too short to redact without wrecking every reply (the Mailer adds its base64 form too)
    assert short(b"250 ab") == b"250 ab"


def test_nothing_is_logged_with_a_secret(caplog):
    caplog.set_level(logging.DEBUG)
    with raw_smtp({"AUTH": echo("535 5.7.8 No:")}, mechanisms=("PLAIN",)) as server:
        with pytest.raises(SendError):
            Mailer(settings(server, username=USERNAME), PASSWORD).open()
    assert_no_secret(caplog.text)
