"""Reading recipients.csv: real spreadsheet exports, and each problem placed at its line and column."""

from __future__ import annotations

import codecs

import pytest

from dispatch.errors import RecipientsError
from dispatch.recipients import check_recipients, read_recipients
from tests.conftest import REPO, csv_text, row


def messages(table) -> list[str]:
    return [str(p) for p in check_recipients(table)]


def write(tmp_path, content, name="recipients.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_sample_has_125_states_parties_with_unique_iso_ids():
    table = read_recipients(REPO / "recipients.csv")
    assert len(table.rows) == 125
    ids = [r.id for r in table.rows]
    assert len(set(ids)) == 125
    assert all(len(i) == 2 and i.isupper() for i in ids)
    states = {r.state for r in table.rows}
    assert {"Namibia", "Armenia", "Ukraine", "Hungary", "State of Palestine", "Cook Islands", "Kiribati"} <= states
    assert not {"Burundi", "Philippines"} & states
    assert "2 June 2026" in table.by_id()["HU"].get("note")
    groups = {}
    for r in table.rows:
        groups[r.get("regional_group")] = groups.get(r.get("regional_group"), 0) + 1
    assert groups == {"African States": 33, "Asia-Pacific States": 19, "Eastern European States": 20,
                      "Latin American and Caribbean States": 28, "Western European and other States": 25}
    assert [str(p) for p in check_recipients(table) if p.severity == "error"] == []


def test_every_cell_is_text_exactly_as_written(tmp_path):
    rows = [row("NA", "Namibia", note="None", salutation="TRUE"), row("007", "1e5", title="NaN", ambassador="null")]
    table = read_recipients(write(tmp_path, csv_text(rows)))
    first, second = table.rows
    assert first.id == "NA" and first.get("note") == "None" and first.get("salutation") == "TRUE"
    assert second.id == "007" and second.state == "1e5" and second.get("title") == "NaN"
    assert second.get("ambassador") == "null"


def test_excel_export_with_bom_semicolons_and_spaced_headers(tmp_path):
    # Excel in a European locale writes a UTF-8 BOM, ';' between cells, and users pad headers with spaces.
    text = csv_text([row("NA", "Namibia"), row("FR", "France")], delimiter=";")
    header, rest = text.split("\n", 1)
    spaced = ";".join(f" {h} " for h in header.split(";"))
    table = read_recipients(write(tmp_path, codecs.BOM_UTF8 + (spaced + "\n" + rest).encode("utf-8")))
    assert table.columns[0] == "id"
    assert [r.id for r in table.rows] == ["NA", "FR"]
    assert messages(table) == []


def test_utf16_export_is_read(tmp_path):
    text = csv_text([row("CI", "Côte d’Ivoire")], delimiter="\t")
    table = read_recipients(write(tmp_path, text.encode("utf-16")))
    assert table.rows[0].state == "Côte d’Ivoire"


def test_windows_1252_is_refused_with_line_and_hint(tmp_path):
    text = csv_text([row("NA", "Namibia"), row("CI", "Côte d'Ivoire")])
    with pytest.raises(RecipientsError) as caught:
        read_recipients(write(tmp_path, text.encode("cp1252")))
    assert str(caught.value) == ("recipients.csv:3: not UTF-8 text: byte 0xf4 at column 5 "
                                 "(it looks like Windows-1252, Excel's plain 'CSV' format)")
    assert "CSV UTF-8" in caught.value.hint


def test_multiline_address_keeps_line_numbers_right(tmp_path):
    rows = [row("CH", "Switzerland", address="633 Third Avenue\nNew York, NY 10017\nUnited States of America"),
            row("NA", "Namibia", email="mission@")]
    table = read_recipients(write(tmp_path, csv_text(rows)))
    assert table.rows[0].line == 2
    assert table.rows[1].line == 5
    assert table.rows[0].get("address").count("\n") == 2
    assert messages(table) == [
        "recipients.csv:5: email: 'mission@' is not a valid address "
        "(There must be something after the @-sign.)"]


@pytest.mark.parametrize("content, expected", [
    ("", "recipients.csv:1: file is empty"),
    ("id,state,mission,channel\nNA,Namibia,Mission,print,extra\n", "recipients.csv:2: row has 5 cells but the header has 4"),
    ("id,state,mission,channel\nNA,Namibia,Mission\n", "recipients.csv:2: row has 3 cells but the header has 4"),
    ('id,state,mission,channel\nNA,Namibia,Mission,print\nFR,"France,Mission,print\nDE,Germany,M,print\n',
     "recipients.csv:3: a quoted cell is opened here but never closed"),
    ("id,state,id,channel\nNA,Namibia,X,print\n", "recipients.csv:1: id: column 'id' appears twice (columns 1 and 3)"),
    ("id,state,,channel\nNA,Namibia,X,print\n", "recipients.csv:1: column 3 has no name"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00",
     "recipients.csv:1: this is a binary file, not a CSV text file"),
])
def test_unreadable_files(tmp_path, content, expected):
    with pytest.raises(RecipientsError) as caught:
        read_recipients(write(tmp_path, content))
    assert str(caught.value) == expected
    assert caught.value.hint


def test_header_only_is_reported(tmp_path):
    table = read_recipients(write(tmp_path, "id,state,mission,channel\n"))
    assert messages(table) == ["recipients.csv:1: no recipients: the file has a header but no rows"]


def test_every_value_problem_at_once(tmp_path):
    rows = [
        row("NA", "Namibia", channel="email"),
        row("NA", "Namibia again"),
        row("../x", "Nowhere"),
        row("CON", "Console"),
        row("", "Empty"),
        row("FR", "France", channel="emial", email="paris@example.org"),
        row("DE", "Germany", language="german"),
        row("GB", "United Kingdom", ambassador="Line\nBreak"),
        row("IT", "Italy", channel="both", email="rome@@example.org"),
    ]
    table = read_recipients(write(tmp_path, csv_text(rows)))
    assert messages(table) == [
        "recipients.csv:2: email: channel is 'email' but there is no email address",
        "recipients.csv:3: id: duplicate id 'NA' (first used on line 2)",
        "recipients.csv:4: id: '../x' cannot be used as a file name",
        "recipients.csv:5: id: 'CON' cannot be used as a file name",
        "recipients.csv:6: id: empty id",
        "recipients.csv:7: channel: unknown channel 'emial'",
        "recipients.csv:8: language: unknown language 'german'",
        "recipients.csv:9: ambassador: cell has a line break",
        "recipients.csv:11: email: 'rome@@example.org' is not a valid address "
        "(The part after the @-sign contains invalid characters: '@'.)",
    ]
    hints = {str(p): p.hint for p in check_recipients(table)}
    assert hints["recipients.csv:7: channel: unknown channel 'emial'"] == "did you mean 'email'?"


def test_misspelled_column_is_named_with_the_fix(tmp_path):
    table = read_recipients(write(tmp_path, "id,state,misson,channel\nNA,Namibia,M,print\n"))
    problems = check_recipients(table)
    assert [str(p) for p in problems] == ["recipients.csv:1: missing column 'mission'",
                                          "recipients.csv:1: misson: unknown column 'misson'"]
    assert problems[0].hint == "rename the column 'misson' to 'mission'"
    assert problems[1].hint == "did you mean 'mission'?"


def test_several_cc_addresses_and_internationalised_address(tmp_path):
    table = read_recipients(write(tmp_path, csv_text([row("NA", "Namibia", channel="email", email="missão@exemplo.br",
                                                          cc="a@example.org; b@example.org")],
                                                     header=[*row("x", "y").keys(), "cc"])))
    assert messages(table) == []


def test_select_unknown_id_suggests(tmp_path):
    table = read_recipients(write(tmp_path, csv_text([row("NA", "Namibia")])))
    with pytest.raises(RecipientsError) as caught:
        table.select(["NAM"])
    assert str(caught.value) == "recipients.csv: no recipient with id 'NAM'"
    assert caught.value.hint == "did you mean 'NA'?"
