"""The email that carries each letter, read back with Python's email parser (and Courier's reformime and
ripmime when they are installed, as mail systems read it): a subject naming the recipient, text folded to
78 characters, an HTML part that says the same, states with their article, attachment names in their script."""

from __future__ import annotations

import csv
import html
import io
import re
import shutil
import subprocess
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from dispatch.errors import TemplateError
from dispatch.mail.message import Draft, build_message
from dispatch.merge.email import CoverNotes, attachment_file_name, paragraphs, wrap
from tests.merge_campaign import OUTBOX, dispatch, replace_in, sample_campaign

TITLE = "Joint NGO Letter to International Criminal Court States Parties"
IDS = ["BO", "CK", "CI", "GM", "GR", "JP", "NA", "NL", "PS"]
LOCAL = {"GR": "Ελλάδα", "JP": "日本", "CI": "Côte d'Ivoire", "CN": "中国"}


@pytest.fixture(scope="module")
def outbox(tmp_path_factory) -> dict[str, object]:
    """The sample's messages to nine States (and China, added), written by `dispatch send --dry-run`."""
    folder = sample_campaign(tmp_path_factory.mktemp("email"), only=IDS)
    with open(folder / "recipients.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    china = dict(rows[0], id="CN", state="China", mission="Permanent Mission of China to the United Nations",
                 form="representative", addressee="", note="")
    for r in [*rows, china]:
        r["channel"] = "email"
        r["email"] = "d'ivoire@missions.example.org" if r["id"] == "CI" else f"{r['id'].lower()}@missions.example.org"
        r["local_name"] = LOCAL.get(r["id"], r["state"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*rows[0].keys()], lineterminator="\n")
    writer.writeheader()
    writer.writerows([*rows, china])
    (folder / "recipients.csv").write_text(buffer.getvalue(), encoding="utf-8")
    replace_in(folder / "dispatch.toml", 'attachment = "Joint NGO letter {{ state }}"',
               'attachment = "Joint NGO letter {{ local_name }}"')
    result = dispatch(folder, "send", "--dry-run")
    assert result.exit_code == 0, result.output
    parser = BytesParser(policy=policy.default)
    return {path.stem: parser.parsebytes(path.read_bytes()) for path in (folder / OUTBOX).glob("*.eml")} | {
        "_folder": folder}


def messages(outbox) -> dict:
    return {k: v for k, v in outbox.items() if not k.startswith("_")}


def plain(message) -> str:
    return message.get_body(("plain",)).get_content()


@pytest.mark.slow
def test_each_subject_names_its_recipient(outbox):
    subjects = {rid: m["Subject"] for rid, m in messages(outbox).items()}
    assert subjects["NA"] == f"{TITLE} — Namibia"
    assert subjects["CI"] == f"{TITLE} — Côte d’Ivoire"
    assert subjects["BO"] == f"{TITLE} — Bolivia (Plurinational State of)"
    assert len(set(subjects.values())) == len(subjects) == len(IDS) + 1


@pytest.mark.slow
def test_text_is_folded_to_78_characters(outbox):
    for rid, message in messages(outbox).items():
        lines = plain(message).splitlines()
        assert max(len(line) for line in lines) <= 78, rid
        assert len(lines[2]) > 60  # the paragraph is folded, not chopped into short lines


@pytest.mark.slow
@pytest.mark.parametrize("rid, addressed_to, authorities", [
    ("NA", "the Permanent Representative of Namibia", "of Namibia"),
    ("GM", "the Permanent Representative of the Gambia", "of the Gambia"),
    ("NL", "the Permanent Representative of the Kingdom of the Netherlands", "of the Netherlands"),
    ("PS", "the Permanent Observer of the State of Palestine", "of the State of Palestine"),
    ("BO", "the Permanent Representative of the Plurinational State of Bolivia",
     "of the Plurinational State of Bolivia"),
    ("CK", "the Secretary of Foreign Affairs and Immigration", "of the Cook Islands"),
])
def test_states_and_addressees_read_correctly_mid_sentence(outbox, rid, addressed_to, authorities):
    text = " ".join(plain(messages(outbox)[rid]).split())
    assert f"addressed to {addressed_to}." in text
    assert f"the relevant authorities {authorities}. We remain" in text
    assert "addressed to The" not in text and "(" not in text


@pytest.mark.slow
def test_salutation_follows_the_form_of_address(outbox):
    assert plain(messages(outbox)["CK"]).splitlines()[0] == "Dear Secretary,"
    assert plain(messages(outbox)["NA"]).splitlines()[0] == "Your Excellency,"


@pytest.mark.slow
def test_the_html_part_says_what_the_text_says(outbox):
    for rid, message in messages(outbox).items():
        markup = message.get_body(("html",)).get_content()
        body = re.search(r"<body[^>]*>(.*)</body>", markup, re.S).group(1)
        shown = html.unescape(re.sub(r"<[^>]+>", " ", body))
        assert " ".join(shown.split()) == " ".join(plain(message).split()), rid
        assert body.count("<p>") == 4


@pytest.mark.slow
def test_apostrophes_are_typographic_except_in_the_address(outbox):
    message = messages(outbox)["CI"]
    assert message["To"].addresses[0].addr_spec == "d'ivoire@missions.example.org"
    assert "Côte d’Ivoire" in plain(message) and "Côte d'Ivoire" not in plain(message)


@pytest.mark.slow
def test_attachment_names_keep_their_script(outbox):
    names = {rid: [a.get_filename() for a in m.iter_attachments()] for rid, m in messages(outbox).items()}
    assert names["CN"] == ["Joint-NGO-letter-中国.pdf"]
    assert names["GR"] == ["Joint-NGO-letter-Ελλάδα.pdf"]
    assert names["JP"] == ["Joint-NGO-letter-日本.pdf"]
    assert names["CI"] == ["Joint-NGO-letter-Côte-d’Ivoire.pdf"]
    assert names["NA"] == ["Joint-NGO-letter-Namibia.pdf"]
    raw = (outbox["_folder"] / OUTBOX / "CN.eml").read_bytes()
    assert b"filename*=utf-8''Joint-NGO-letter-%E4%B8%AD%E5%9B%BD.pdf" in raw
    assert b'name="Joint-NGO-letter-CN.pdf"' in raw  # the ASCII name, for a program without RFC 2231
    assert b'filename="Joint-NGO-letter-Namibia.pdf"' in (outbox["_folder"] / OUTBOX / "NA.eml").read_bytes()


NAMES = ["Joint-NGO-letter-中国.pdf", "Joint-NGO-letter-Ελλάδα.pdf", "日本.pdf", "Joint-NGO-letter-Côte-d’Ivoire.pdf",
         "Joint-NGO-Letter-to-International-Criminal-Court-States-Parties-Ελλάδα-και-η-Κύπρος.pdf"]


def eml(tmp_path: Path, name: str, rid: str = "XX") -> Path:
    outgoing = build_message(Draft(rid, "Coalition", "me@example.org", "mission@example.org", f"Letter — {name}",
                                   "Text.\n", b"%PDF-1.7\n%\xe2\xe3\n", name))
    path = tmp_path / f"{rid}.eml"
    path.write_bytes(outgoing.as_bytes())
    return path


@pytest.mark.parametrize("name", NAMES)
def test_python_reads_the_names_and_the_subject(tmp_path, name):
    message = BytesParser(policy=policy.default).parsebytes(eml(tmp_path, name).read_bytes())
    assert [a.get_filename() for a in message.iter_attachments()] == [name]
    assert message["Subject"] == f"Letter — {name}"  # no doubled space where the header was folded
    assert all(len(line) <= 78 for line in eml(tmp_path, name).read_bytes().split(b"\r\n\r\n")[0].split(b"\r\n"))
    legacy = BytesParser(policy=policy.compat32).parsebytes(eml(tmp_path, name).read_bytes())
    assert [p.get_filename() for p in legacy.walk() if p.get_content_disposition() == "attachment"] == [name]


@pytest.mark.skipif(not shutil.which("reformime"), reason="reformime (Debian package maildrop) is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_courier_reformime_reads_the_names(tmp_path, name):
    with eml(tmp_path, name, "GR").open("rb") as handle:
        info = subprocess.run(["reformime", "-i"], stdin=handle, capture_output=True, timeout=60).stdout.decode()
    assert f"content-disposition-filename: {name}\n" in info
    ascii_name = re.search(r"content-name: (.*)\n", info)
    if name.isascii():
        assert ascii_name is None
    else:
        assert ascii_name and ascii_name.group(1).isascii() and ascii_name.group(1).endswith(".pdf")


@pytest.mark.skipif(not shutil.which("ripmime"), reason="ripmime is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_ripmime_saves_the_attachment_under_its_name(tmp_path, name):
    target = tmp_path / "saved"
    target.mkdir()
    subprocess.run(["ripmime", "-i", str(eml(tmp_path, name)), "-d", str(target), "--no-nameless"], check=True,
                   capture_output=True, timeout=60)
    assert [p.name for p in target.iterdir()] == [name]
    assert (target / name).read_bytes() == b"%PDF-1.7\n%\xe2\xe3\n"


def test_wrap_folds_long_lines_only():
    text = "Short line.\n\n" + "word " * 40 + "\n- " + "item " * 30 + "\nhttps://example.org/" + "x" * 90 + "\n"
    lines = wrap(text).splitlines()
    assert lines[0] == "Short line." and lines[1] == ""
    assert all(len(line) <= 76 for line in lines if not line.startswith("https://"))
    assert any(line.startswith("- item") for line in lines)
    assert any(line.startswith("  item") for line in lines)  # a list item's lines keep its indent
    assert lines[-1].startswith("https://") and len(lines[-1]) > 78  # a link is never cut


def test_paragraphs_escape_and_keep_line_breaks():
    assert str(paragraphs("Dear <b>,\n\nOne\ntwo\n")) == "<p>Dear &lt;b&gt;,</p>\n<p>One<br>\ntwo</p>"


def test_the_subject_setting_wins_over_the_template(tmp_path):
    (tmp_path / "email.txt.j2").write_text("{% set subject = 'From the template' %}\nText {{ state }}.\n")
    variables = {"state": "Namibia", "letter": {"subject": "S", "title": "T"}}
    assert CoverNotes(tmp_path, attachment="x").render(variables, "NA").subject == "From the template"
    notes = CoverNotes(tmp_path, attachment="x", subject="{{ letter.title }} — {{ state }}")
    assert notes.render(variables, "NA").subject == "T — Namibia"


def test_attachment_file_names_are_safe_in_any_script():
    assert attachment_file_name("Joint NGO letter 中国", fallback="CN") == "Joint-NGO-letter-中国.pdf"
    assert attachment_file_name("Lettre — Côte d'Ivoire", fallback="CI") == "Lettre-Côte-d’Ivoire.pdf"
    assert attachment_file_name("हिन्दी पत्र", fallback="IN") == "हिन्दी-पत्र.pdf"  # vowel signs are kept
    assert attachment_file_name("a/b\\c:d*e?f\"g<h>i|j", fallback="X") == "a-b-c-d-e-f-g-h-i-j.pdf"
    assert attachment_file_name(" . ", fallback="X") == "X.pdf"


def test_a_subject_setting_with_a_line_break_names_the_setting(tmp_path):
    (tmp_path / "email.txt.j2").write_text("Text.\n")
    notes = CoverNotes(tmp_path, attachment="x", subject="Letter — {{ state }}")
    with pytest.raises(TemplateError) as caught:
        notes.render({"state": "A\nBcc: x@example.org", "letter": {"subject": "S"}}, "X")
    assert str(caught.value).startswith("dispatch.toml: [email] subject: the subject for recipient 'X' has a line break")
