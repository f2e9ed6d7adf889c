"""Bounces, replies and automatic replies read from real-world messages, and hostile ones skipped.

The corpus in tests/bounces/ holds messages from public test sets (see its LICENSES.md); manifest.json
says, for each, the campaign it is read in and what it must be recorded as.
"""

from __future__ import annotations

import json
import random
import socket
from email.message import EmailMessage
from pathlib import Path

import pytest

from dispatch.mail.bounces import AUTO_REPLY, BOUNCE, NOTHING, REPLY, classify
from dispatch.mail.inbound import MAX_DEPTH, MAX_PARTS, one_line

CORPUS = Path(__file__).parent / "bounces"
CASES = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["cases"]
BOUNCES = [case for case in CASES if case["kind"] == "bounce"]
KINDS = {BOUNCE, REPLY, AUTO_REPLY, NOTHING}
CAMPAIGN_ID = "<171455040099.4242.1111111111111111111.r0099@mission.example.org>"


def lookups(case: dict) -> dict:
    """The campaign a case is read in: its Message-IDs keyed "letter-N", its recipients keyed by address."""
    campaign = case.get("campaign", {})
    ids = {message_id: f"letter-{n}" for n, message_id in enumerate(campaign.get("message_ids", []))}
    people = {address.lower(): address.lower() for address in campaign.get("recipients", [])}
    return {"campaign_message_ids": ids, "recipients": people}


def read(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_the_corpus_has_what_a_tracker_meets():
    files = {path.name for path in CORPUS.glob("*.eml")}
    assert files == {case["file"] for case in CASES}
    detectors = [case.get("detector") for case in BOUNCES]
    assert detectors.count("rfc3464") >= 4
    assert {"exchange", "gmail", "postfix", "exim", "qmail", "domino", "flufl.bounce"} <= set(detectors)
    assert sum(1 for case in BOUNCES if case["status"] and case["status"].startswith("4")) >= 2
    assert sum(1 for case in CASES if case["kind"] == AUTO_REPLY) >= 3
    assert sum(1 for case in CASES if case["kind"] == REPLY) >= 2
    assert sum(1 for case in CASES if case["kind"] == NOTHING) >= 5
    licences = (CORPUS / "LICENSES.md").read_text(encoding="utf-8")
    assert all(f"`{case['file']}`" in licences for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_every_corpus_message_is_recorded_as_expected(case):
    given = lookups(case)
    result = classify(read(case["file"]), **given)
    assert result.kind == case["kind"], result
    if "detector" in case:
        expected = case["detector"]
        both_subjects = (expected or "").startswith("subject:") and (result.detector or "").startswith("subject:")
        assert result.detector == expected or both_subjects, result
    if case["kind"] == BOUNCE:
        assert sorted(result.addresses) == sorted(case["recipients"])
        assert result.permanent is case["permanent"]
        assert {one.action for one in result.failures} == {case["action"]}
        assert result.status == case["status"]
    if case["kind"] != NOTHING:
        assert result.matched_by == case["matched_by"]
        if case["matched_by"] == "message-id":
            assert result.message_id in given["campaign_message_ids"]
            assert result.key == given["campaign_message_ids"][result.message_id]
        elif case["matched_by"] == "address":
            assert set(result.keys) <= set(given["recipients"].values()) and result.keys
        else:
            assert result.keys == (case["campaign"]["recipients"][0],)
    assert bool(result.warning) is bool(case.get("warning")) or "broken MIME" in (result.warning or "")
    for text in [result.diagnostic or "", result.warning or "", result.subject]:
        assert "\n" not in text and "\r" not in text
    assert all(len(one.diagnostic or "") <= 300 for one in result.failures)


@pytest.mark.parametrize("case", BOUNCES, ids=[case["file"] for case in BOUNCES])
def test_a_bounce_is_read_by_its_form_without_any_campaign(case):
    result = classify(read(case["file"]))
    assert result.kind == BOUNCE
    assert sorted(result.addresses) == sorted(case["recipients"])
    assert result.matched_by is None and result.keys == ()


MATCHED_BY_ID = [case for case in BOUNCES if case["matched_by"] == "message-id"]


@pytest.mark.parametrize("case", MATCHED_BY_ID, ids=[case["file"] for case in MATCHED_BY_ID])
def test_a_bounce_naming_another_message_id_is_not_recorded(case):
    """The failed address is a recipient, but the returned Message-ID is not one of the campaign's."""
    recipients = {address: address for address in case["recipients"]}
    result = classify(read(case["file"]), campaign_message_ids={CAMPAIGN_ID: "letter-0"}, recipients=recipients)
    assert result.kind == NOTHING
    assert "not a message of this campaign" in result.warning


def dsn(returned_id: str, *, recipient: str = "ambassador@mission.example.org", diagnostic: str = "550 5.1.1 no",
        status: str = "5.1.1", action: str = "failed") -> bytes:
    """A delivery-status notification as Postfix writes it."""
    return (
        "From: MAILER-DAEMON@relay.example.org (Mail Delivery System)\n"
        "To: coordinator@ngo.example.org\nSubject: Undelivered Mail Returned to Sender\n"
        "Message-Id: <20240501.ABCDEF@relay.example.org>\nDate: Wed, 1 May 2024 10:00:00 +0200\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThis is the mail system at host relay.example.org.\n\n"
        f"<{recipient}>: host mx.example.org said: {diagnostic}\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.org\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\nFrom: coordinator@ngo.example.org\n"
        f"To: {recipient}\nSubject: Joint letter\nMessage-ID: {returned_id}\n\n--B--\n"
    ).encode()


def test_a_forged_report_for_a_foreign_message_id_is_skipped_and_the_genuine_one_recorded():
    campaign = {"campaign_message_ids": {CAMPAIGN_ID: "letter-0"},
                "recipients": {"ambassador@mission.example.org": "row-7"}}
    forged = classify(dsn("<forged.1@elsewhere.example.net>"), **campaign)
    assert forged.kind == NOTHING
    assert forged.warning.startswith("a bounce of <forged.1@elsewhere.example.net>, which is not a message of")
    genuine = classify(dsn(CAMPAIGN_ID), **campaign)
    assert (genuine.kind, genuine.key, genuine.matched_by) == (BOUNCE, "letter-0", "message-id")
    assert (genuine.status, genuine.permanent, genuine.failures[0].key) == ("5.1.1", True, "row-7")
    stranger = classify(dsn("<x@y>", recipient="someone@else.example.net"),
                        recipients={"ambassador@mission.example.org": "row-7"})
    assert stranger.kind == NOTHING and "not a recipient of this campaign" in stranger.warning


def test_a_delay_is_kept_apart_from_a_permanent_failure():
    delayed = classify(dsn(CAMPAIGN_ID, action="delayed", status="4.4.1", diagnostic="451 4.4.1 try later"))
    assert (delayed.kind, delayed.permanent, delayed.status, delayed.failures[0].action) == (
        BOUNCE, False, "4.4.1", "delayed")


def test_the_diagnostic_is_one_bounded_line_without_credentials():
    diagnostic = ("550 5.7.1 see https://admin:s3cretpass@mx.example.org/why?token=abcdef123456 "
                  "password=hunter2 AUTH PLAIN AGFkbWluAHMzY3JldHBhc3M= api_key: 9f8e7d6c5b4a\n\t and more "
                  + "x " * 400)
    result = classify(dsn(CAMPAIGN_ID, diagnostic=diagnostic))
    line = result.diagnostic
    assert result.kind == BOUNCE and line.startswith("550 5.7.1 see https://mx.example.org/why")
    for secret in ("s3cretpass", "abcdef123456", "hunter2", "AGFkbWluAHMzY3JldHBhc3M=", "9f8e7d6c5b4a"):
        assert secret not in line
    assert "\n" not in line and "\t" not in line and len(line) <= 300
    assert one_line("a\r\nb\x00c\u202ed") == "a b c d"


# --- Automatic and human replies ------------------------------------------------------------------

def answer(subject: str, *, sender: str = "ambassador@mission.example.org", **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "coordinator@ngo.example.org"
    message["Subject"] = subject
    message["Date"] = "Thu, 2 May 2024 09:00:00 +0000"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Thank you for your letter.")
    return message.as_bytes()


RECIPIENTS = {"ambassador@mission.example.org": "row-7"}
OUT_OF_OFFICE = [
    "Out of Office: Joint letter", "Automatic reply: Joint letter", "Auto-Reply: Joint letter", "OOO until 12 May",
    "Réponse automatique : Lettre conjointe", "Absence du bureau", "Absent jusqu'au 12 mai",
    "Respuesta automática: Carta conjunta", "Fuera de la oficina", "Abwesenheitsnotiz: Gemeinsamer Brief",
    "Automatische Antwort: Gemeinsamer Brief", "Resposta automática: Carta conjunta", "Fora do escritório",
    "رد تلقائي: رسالة مشتركة", "خارج المكتب", "Risposta automatica: Lettera", "自动回复: 联名信", "Автоответ: письмо",
]


@pytest.mark.parametrize("subject", OUT_OF_OFFICE)
def test_out_of_office_subjects_in_several_languages_are_automatic(subject):
    result = classify(answer(subject), recipients=RECIPIENTS)
    assert (result.kind, result.key, result.matched_by) == (AUTO_REPLY, "row-7", "address")
    assert result.detector.startswith("subject:")


@pytest.mark.parametrize("subject", [
    "Re: Joint letter", "Re: Absence of the director at the meeting", "Vacation plans for the mission",
    "Re: Urlaubsplanung 2024", "Re: Automatic renewal of the contract", "AW: Gemeinsamer Brief"])
def test_a_person_writing_about_absence_is_not_an_automatic_reply(subject):
    assert classify(answer(subject), recipients=RECIPIENTS).kind == REPLY


@pytest.mark.parametrize(("headers", "sign"), [
    ({"Auto_Submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
    ({"X_Autoreply": "yes"}, "X-Autoreply: yes"),
    ({"X_Autorespond": "Out of office"}, "X-Autorespond: out of office"),
    ({"Precedence": "auto_reply"}, "Precedence: auto_reply")])
def test_responder_headers_mark_an_automatic_reply(headers, sign):
    result = classify(answer("Re: Joint letter", **headers), recipients=RECIPIENTS)
    assert (result.kind, result.detector) == (AUTO_REPLY, sign)


def test_auto_submitted_no_and_bulk_mail_are_not_replies():
    assert classify(answer("Re: Joint letter", Auto_Submitted="no"), recipients=RECIPIENTS).kind == REPLY
    newsletter = classify(answer("Mission newsletter", Precedence="bulk"), recipients=RECIPIENTS)
    assert newsletter.kind == NOTHING
    listed = classify(answer("Weekly digest", List_Id="<news.mission.example.org>"), recipients=RECIPIENTS)
    assert listed.kind == NOTHING
    on_leave = classify(answer("Out of office", Precedence="bulk"), recipients=RECIPIENTS)
    assert on_leave.kind == AUTO_REPLY


def test_replies_are_tied_by_in_reply_to_then_address_then_domain():
    ids = {CAMPAIGN_ID: "letter-0"}
    by_id = classify(answer("Re: Joint letter", sender="someone@gmail.com", In_Reply_To=CAMPAIGN_ID),
                     campaign_message_ids=ids, recipients=RECIPIENTS)
    assert (by_id.kind, by_id.key, by_id.matched_by, by_id.message_id) == (REPLY, "letter-0", "message-id",
                                                                         CAMPAIGN_ID)
    by_domain = classify(answer("Re: Joint letter", sender="deputy@mission.example.org"),
                         campaign_message_ids=ids, recipients=RECIPIENTS)
    assert (by_domain.kind, by_domain.key, by_domain.matched_by) == (REPLY, "row-7", "domain")
    public = classify(answer("Hello", sender="someone@gmail.com"), recipients={"other@gmail.com": "row-8"})
    assert public.kind == NOTHING  # nobody is tied to a reply by a free-mail domain
    elsewhere = classify(answer("Re: lunch", In_Reply_To="<other.thread@ngo.example.org>"),
                         campaign_message_ids=ids, recipients=RECIPIENTS)
    assert elsewhere.kind == NOTHING
    copy = classify(answer("Joint letter", Message_ID=CAMPAIGN_ID), campaign_message_ids=ids, recipients=RECIPIENTS)
    assert copy.kind == NOTHING  # a copy of the campaign's own letter
    assert by_id.date == "2024-05-02T09:00:00Z" and by_id.sender == "someone@gmail.com"


def test_a_lookup_that_fails_is_the_callers_error():
    def broken(_: str) -> str | None:
        raise RuntimeError("journal is locked")

    with pytest.raises(RuntimeError, match="journal is locked"):
        classify(dsn(CAMPAIGN_ID), campaign_message_ids=broken)
    assert classify(dsn(CAMPAIGN_ID), campaign_message_ids={CAMPAIGN_ID.strip("<>"): "letter-0"}).key == "letter-0"
    assert classify(dsn(CAMPAIGN_ID), campaign_message_ids=lambda mid: "letter-0" if mid == CAMPAIGN_ID else None
                    ).key == "letter-0"


# --- Hostile messages -----------------------------------------------------------------------------

def skipped(data: object, *words: str) -> str:
    result = classify(data)  # type: ignore[arg-type]
    assert result.kind == NOTHING, result
    assert result.warning and all(word in result.warning for word in words), result.warning
    return result.warning


def with_attachment(size: int) -> bytes:
    head = dsn(CAMPAIGN_ID).replace(b"\n\n--B--\n", b"\n\n")
    line = b"QUJDRA" * 12 + b"\n"
    body = line * (size // len(line) + 1)
    return (head + b"--B\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + body
            + b"--B--\n")


def test_a_20_mb_message_is_refused_and_a_large_bounce_still_read():
    assert "over the 10,485,760-byte limit" in skipped(with_attachment(20 * 1024 * 1024))
    large = classify(with_attachment(9 * 1024 * 1024), campaign_message_ids={CAMPAIGN_ID: "letter-0"})
    assert (large.kind, large.key) == (BOUNCE, "letter-0")


def nested(depth: int) -> bytes:
    head = b"From: a@example.org\nSubject: nest\nMIME-Version: 1.0\n"
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (n, n) for n in range(depth))
    closing = b"".join(b"\n--b%d--\n" % n for n in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\n\nhello\n" + closing


def test_deep_nesting_and_too_many_parts_are_refused():
    assert classify(nested(MAX_DEPTH - 1)).warning is None
    skipped(nested(MAX_DEPTH + 1), "nested deeper than")
    skipped(nested(5000), "parts")
    flat_parts = (b'From: a@example.org\nContent-Type: multipart/mixed; boundary="z"\n\n'
                  + b"--z\nContent-Type: text/plain\n\nx\n" * (MAX_PARTS + 5) + b"--z--\n")
    skipped(flat_parts, "more than")


def test_truncated_mime_is_skipped_with_a_warning():
    whole = read("rfc3464-postfix-5.1.1.eml")
    cut = whole[: whole.index(b"Content-Description: Notification") + 20]
    skipped(cut, "broken MIME")


def test_an_undecodable_charset_is_read_as_latin_1_with_a_warning():
    message = (b"From: someone@example.net\nSubject: =?x-no-such-charset?q?caf=E9?=\nMIME-Version: 1.0\n"
               b"Content-Type: text/plain; charset=x-no-such-charset\nContent-Transfer-Encoding: 8bit\n\n"
               b"\xff\xfe\xe9\x00 binary \x81\x82\n")
    skipped(message, "unknown charset 'x-no-such-charset'")
    report = dsn(CAMPAIGN_ID).replace(b"Content-Type: text/plain\n", b"Content-Type: text/plain; charset=bogus-8\n")
    result = classify(report)
    assert result.kind == BOUNCE and "unknown charset 'bogus-8'" in result.warning


@pytest.mark.parametrize("junk", [b"", b"   \r\n", bytes(range(256)) * 64, "not bytes",
                                  b"Subject: x\n" + b"X-Pad: " + b"a" * 600_000 + b"\n\nbody"],
                         ids=["empty", "blank", "binary", "text", "huge-header"])
def test_junk_is_skipped_with_a_warning(junk):
    skipped(junk)


def test_random_damage_to_every_corpus_message_never_raises():
    chance = random.Random(19)
    for case in CASES:
        data = read(case["file"])
        for step in range(1, 13):
            damaged = bytearray(data[: len(data) * step // 12])
            for _ in range(step * 3):
                if damaged:
                    damaged[chance.randrange(len(damaged))] = chance.randrange(256)
            result = classify(bytes(damaged), **lookups(case))
            assert result.kind in KINDS
            assert "not recognised:" not in (result.warning or ""), (case["file"], step, result.warning)
            assert "\n" not in (result.warning or "") and "\n" not in (result.diagnostic or "")


def test_links_and_external_bodies_are_never_loaded():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        server.setblocking(False)
        host, port = server.getsockname()
        url = f"http://{host}:{port}/pixel.png"
        message = (
            "From: ambassador@mission.example.org\nSubject: Re: Joint letter\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="L"\n\n'
            f'--L\nContent-Type: text/html\n\n<img src="{url}"><a href="{url}">x</a>'
            f'<link rel="stylesheet" href="{url}">\n'
            f'--L\nContent-Type: message/external-body; access-type=URL; URL="{url}"\n\n'
            "Content-Type: text/plain\n\n--L--\n").encode()
        result = classify(message, recipients=RECIPIENTS)
        assert result.kind == REPLY
        with pytest.raises(BlockingIOError):
            server.accept()
