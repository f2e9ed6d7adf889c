"""Signed letters (PAdES B-B): render --sign, the journal's hash of the signed file, and dispatch verify.

Each test makes a throwaway CA, a signing certificate and a PKCS#12 file with `cryptography`; no key
is ever committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path

import pikepdf
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
from tests.conftest import email_row, row

PASSWORD = "correct horse battery staple"
SIGNER = "Coalition Secretariat"


def make_ca(name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_signing_key(folder: Path, ca_key, ca_cert, password: str = PASSWORD) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SIGNER),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Coalition")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    path = folder / "signing-key.p12"
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"signer", key, cert, [ca_cert], serialization.BestAvailableEncryption(password.encode())))
    return path


@pytest.fixture
def keys(tmp_path):
    ca_key, ca_cert = make_ca("Test Root CA")
    p12 = make_signing_key(tmp_path, ca_key, ca_cert)
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _, other = make_ca("Another CA")
    other_pem = tmp_path / "other-ca.pem"
    other_pem.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    return p12, ca_pem, other_pem


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def signed_campaign(make_workspace, keys, monkeypatch):
    folder = make_workspace([row("NA", "Namibia"), row("FR", "France")])
    monkeypatch.chdir(folder)  # file names on the command line are relative to the current folder
    monkeypatch.setenv("DISPATCH_SIGN_PASSWORD", PASSWORD)
    result = run("-C", str(folder), "render", "--sign", str(keys[0]))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith(
        f"rendered 2 (2 new), 0 up to date, 0 failed, signed by {SIGNER} (Test Coalition) into out/letter/ in ")
    return folder


def test_signed_letter_verifies_and_the_journal_has_the_signed_hash(make_workspace, keys, monkeypatch):
    folder = signed_campaign(make_workspace, keys, monkeypatch)
    pdf = folder / "out" / "letter" / "NA.pdf"
    data = pdf.read_bytes()
    with Journal(folder / "dispatch.db") as journal:
        rendered = journal.latest("letter", ["rendered"])["NA"]
    assert rendered.data["sha256"] == hashlib.sha256(data).hexdigest()
    with pikepdf.open(pdf) as opened:  # still PDF/A after the signature was appended
        assert opened.open_metadata()["{http://www.aiim.org/pdfa/ns/id/}part"] == "3"
        assert opened.Root.AcroForm.Fields[0].V.SubFilter == "/ETSI.CAdES.detached"  # PAdES
    result = run("-C", str(folder), "verify", "out/letter/NA.pdf", "out/letter/FR.pdf")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (f"out/letter/NA.pdf: signature valid, signed by {SIGNER} (Test Coalition), "
                        "signer not checked against a trusted certificate")
    assert lines[1].startswith("  matches the journal: the letter 'letter' rendered for NA on ")
    assert lines[1].endswith(" UTC (not sent yet)")
    assert lines[-1] == "ok: 2 file(s) verified"


def test_signed_letters_stay_up_to_date_and_signing_is_part_of_the_key(make_workspace, keys, monkeypatch):
    folder = signed_campaign(make_workspace, keys, monkeypatch)
    pdf = folder / "out" / "letter" / "NA.pdf"
    signed = pdf.read_bytes()
    again = run("-C", str(folder), "render", "--sign", str(keys[0]))
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("rendered 0, 2 up to date, 0 failed, signed by ")
    assert pdf.read_bytes() == signed  # not signed again: the journal's hash is still the file's
    assert run("-C", str(folder), "verify", str(pdf)).exit_code == 0
    unsigned = run("-C", str(folder), "render", "--jobs", "2")  # not signed: another kind of PDF, rendered again
    assert unsigned.exit_code == 0, unsigned.output
    assert unsigned.stdout.splitlines()[-1].startswith("rendered 2 (2 changed), 0 up to date, 0 failed into ")
    assert b"/ETSI.CAdES.detached" not in pdf.read_bytes()
    resigned = run("-C", str(folder), "render", "--sign", str(keys[0]), "--jobs", "2")
    assert resigned.stdout.splitlines()[-1].startswith("rendered 2 (2 changed), 0 up to date, 0 failed, signed by ")
    assert run("-C", str(folder), "verify", "out/letter/NA.pdf", "out/letter/FR.pdf").exit_code == 0


def test_send_attaches_the_signed_letters_without_rendering_them_again(make_workspace, keys, monkeypatch):
    folder = make_workspace([email_row("NA", "Namibia", "na@example.org")],
                            settings='[smtp]\nsender = "coordinator@example.org"\n')
    monkeypatch.setenv("DISPATCH_SIGN_PASSWORD", PASSWORD)
    assert run("-C", str(folder), "render", "--sign", str(keys[0])).exit_code == 0
    signed = (folder / "out" / "letter" / "NA.pdf").read_bytes()
    result = run("-C", str(folder), "send", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "dry run: wrote 1 message(s) to out/letter/outbox/; nothing was sent"
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes((folder / "out/letter/outbox/NA.eml").read_bytes())
    assert list(message.iter_attachments())[0].get_content() == signed


def test_a_letter_altered_by_one_byte_fails(make_workspace, keys, monkeypatch):
    folder = signed_campaign(make_workspace, keys, monkeypatch)
    pdf = folder / "out" / "letter" / "NA.pdf"
    data = bytearray(pdf.read_bytes())
    position = data.index(b"Namibia")  # inside the signed bytes: a compressed stream would do as well
    for offset in (position, len(data) // 3):
        altered = bytearray(data)
        altered[offset] ^= 0x01
        copy = folder / f"altered-{offset}.pdf"
        copy.write_bytes(bytes(altered))
        result = run("-C", str(folder), "verify", copy.name)
        assert result.exit_code == 1, result.output
        assert result.stdout.splitlines()[0].startswith(f"{copy.name}: signature INVALID: ")
        assert result.stdout.splitlines()[1] == ("  does NOT match the journal: not in the journal: no letter with "
                                                 "these bytes was rendered or sent")
        assert result.stderr == "1 of 1 file(s) failed verification\n"


def test_trust_and_journal_states(make_workspace, keys, monkeypatch):
    p12, ca_pem, other_pem = keys
    folder = signed_campaign(make_workspace, keys, monkeypatch)
    pdf = folder / "out" / "letter" / "NA.pdf"
    trusted = run("-C", str(folder), "verify", str(pdf), "--trust", str(ca_pem))
    assert trusted.exit_code == 0, trusted.output
    assert trusted.stdout.splitlines()[0].endswith(f"signed by {SIGNER} (Test Coalition), trusted")
    untrusted = run("-C", str(folder), "verify", str(pdf), "--trust", str(other_pem))
    assert untrusted.exit_code == 1
    assert untrusted.stdout.splitlines()[0].endswith(
        "signature INVALID: the signer's certificate does not chain to a trusted certificate")

    # Sent: the file must be the one the journal recorded as sent.
    old = folder / "old-NA.pdf"
    old.write_bytes(pdf.read_bytes())
    with Journal(folder / "dispatch.db") as journal:
        journal.record("letter", "NA", "sent", sha256=hashlib.sha256(pdf.read_bytes()).hexdigest())
    sent = run("-C", str(folder), "verify", str(pdf))
    assert sent.exit_code == 0 and sent.stdout.splitlines()[1].startswith(
        "  matches the journal: the letter 'letter' sent to NA on ")
    # Rendered again (a new signature, new bytes): the new file is not what was sent.
    assert run("-C", str(folder), "render", "--only", "NA", "--sign", str(p12), "--force").exit_code == 0
    again = run("-C", str(folder), "verify", str(pdf), str(old))
    assert again.exit_code == 1
    lines = again.stdout.splitlines()
    assert lines[1].startswith("  does NOT match the journal: differs from the letter 'letter' sent to NA on ")
    assert lines[3].startswith("  matches the journal: the letter 'letter' sent to NA on ")  # the copy sent


def test_an_older_rendering_that_was_never_sent_fails(make_workspace, keys, monkeypatch):
    folder = signed_campaign(make_workspace, keys, monkeypatch)
    pdf = folder / "out" / "letter" / "FR.pdf"
    old = folder / "old-FR.pdf"
    old.write_bytes(pdf.read_bytes())
    assert run("-C", str(folder), "render", "--only", "FR", "--sign", str(keys[0]), "--force").exit_code == 0
    result = run("-C", str(folder), "verify", str(old))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1] == ("  does NOT match the journal: an older rendering of the letter 'letter' "
                                             "for FR: it was rendered again since, and not sent")


def test_an_unsigned_letter_has_nothing_to_check_unless_a_signature_is_required(make_workspace, monkeypatch):
    folder = make_workspace([row("NA", "Namibia")])
    monkeypatch.chdir(folder)
    assert run("-C", str(folder), "render").exit_code == 0
    result = run("-C", str(folder), "verify", "out/letter/NA.pdf")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "out/letter/NA.pdf: not signed (nothing to check)",
        "  matches the journal: " + result.stdout.splitlines()[1].split("matches the journal: ")[1],
        "ok: 1 file(s) verified",
    ]
    assert "INVALID" not in result.stdout
    required = run("-C", str(folder), "verify", "--require-signature", "out/letter/NA.pdf")
    assert required.exit_code == 1
    assert required.stdout.splitlines()[0] == ("out/letter/NA.pdf: not signed (nothing to check); "
                                               "a signature is required (--require-signature)")


def test_wrong_password_is_a_clear_error_and_the_password_is_never_stored(make_workspace, keys, monkeypatch):
    folder = make_workspace([row("NA", "Namibia")])
    monkeypatch.setenv("DISPATCH_SIGN_PASSWORD", "wrong password")
    result = run("-C", str(folder), "render", "--sign", str(keys[0]))
    assert result.exit_code == 1
    assert result.stderr == (f"error: {keys[0]}: cannot open the key file: wrong password, or not a PKCS#12 file\n"
                             "  hint: check the password (DISPATCH_SIGN_PASSWORD) and that the file is a .p12/.pfx\n")
    assert not (folder / "out").exists()
    assert "wrong password" not in result.output.replace("wrong password, or", "")

    monkeypatch.setenv("DISPATCH_SIGN_PASSWORD", PASSWORD)
    assert run("-C", str(folder), "render", "--sign", str(keys[0])).exit_code == 0
    for path in folder.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    events = sqlite3.connect(folder / "dispatch.db").execute("SELECT data FROM events").fetchall()
    assert events and all(PASSWORD not in json.dumps(e) for e in events)


def test_password_from_a_hidden_prompt(make_workspace, keys, monkeypatch):
    folder = make_workspace([row("NA", "Namibia")])
    monkeypatch.delenv("DISPATCH_SIGN_PASSWORD", raising=False)
    result = CliRunner().invoke(app, ["-C", str(folder), "render", "--sign", str(keys[0])], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # typed, not echoed
    assert "Password of signing-key.p12:" in result.stderr


def test_missing_key_file_is_reported_before_any_password_is_asked(make_workspace, tmp_path, monkeypatch):
    folder = make_workspace([row("NA", "Namibia")])
    monkeypatch.delenv("DISPATCH_SIGN_PASSWORD", raising=False)
    missing = tmp_path / "nowhere.p12"
    result = CliRunner().invoke(app, ["-C", str(folder), "render", "--sign", str(missing)], input="")
    assert result.exit_code == 1
    assert result.stderr == (f"error: {missing}: key file not found\n  hint: pass the PKCS#12 file (.p12 or .pfx) "
                             "that holds the signing key and certificate\n")
    assert not (folder / "out").exists()
