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


def test_one_reader_one_parse_without_pandas(tmp_path):
    # The csv module alone reads the file, once, with each record's line: pandas is not even imported.
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from dispatch.recipients import read_recipients; "
            f"t = read_recipients(Path({str(REPO / 'recipients.csv')!r})); "
            "print(len(t.rows), 'pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["125", "False"]


def test_a_cell_far_past_the_csv_modules_field_limit_is_placed_at_its_line(tmp_path):
    # 200,000 characters: under the 20 MB cap, over the csv module's default limit of 131,072.
    rows = [row("NA", "Namibia"), row("FR", "France", salutation="x" * 200_000)]
    table = read_recipients(write(tmp_path, csv_text(rows)))
    assert messages(table) == ["recipients.csv:3: salutation: cell has 200000 characters, more than 2000"]


@pytest.mark.parametrize("column, value, expected", [
    ("state", "\u202eecnarF", "invisible bidirectional control character (U+202E RIGHT-TO-LEFT OVERRIDE)"),
    ("mission", "Mission \u2066of\u2069 France", "invisible bidirectional control character (U+2066 LEFT-TO-RIGHT ISOLATE)"),
    ("ambassador", "Ms.\u202a X", "invisible bidirectional control character (U+202A LEFT-TO-RIGHT EMBEDDING)"),
    ("id", "FR\u200b", "invisible character (U+200B ZERO WIDTH SPACE)"),
    ("state", "Fra\ufeffnce", "invisible character (U+FEFF ZERO WIDTH NO-BREAK SPACE)"),
    ("state", "France\u2060", "invisible character (U+2060 WORD JOINER)"),
    ("email", "paris\u200f@example.org", "invisible character (U+200F RIGHT-TO-LEFT MARK)"),
    ("id", "F\u200dR", "invisible character (U+200D ZERO WIDTH JOINER)"),
])
def test_characters_that_change_what_is_shown_are_refused(tmp_path, column, value, expected):
    rows = [row("NA", "Namibia"), {**row("FR", "France"), column: value}]
    table = read_recipients(write(tmp_path, csv_text(rows)))
    problems = check_recipients(table)
    assert [str(p) for p in problems] == [f"recipients.csv:3: {column}: cell contains an {expected}"]
    assert problems[0].hint.startswith("delete it")


def test_marks_that_right_to_left_names_need_are_kept(tmp_path):
    # A right-to-left mark after a Latin abbreviation in an Arabic name, a non-joiner inside a Persian word.
    rows = [row("IR", "Iran (Islamic Republic of)", ambassador="\u0633\u0639\u06cc\u062f H.E.\u200f",
                salutation="\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645")]
    table = read_recipients(write(tmp_path, csv_text(rows)))
    assert messages(table) == []


def test_ids_that_differ_only_in_case_are_one_file_on_macos_and_windows(tmp_path):
    table = read_recipients(write(tmp_path, csv_text([row("NA", "Namibia"), row("na", "Nauru")])))
    problems = check_recipients(table)
    assert [str(p) for p in problems] == ["recipients.csv:3: id: duplicate id 'na' ('NA' on line 2 differs only in case)"]
    assert "NA.pdf" in problems[0].hint


def test_an_invisible_character_in_a_column_name(tmp_path):
    with pytest.raises(RecipientsError) as caught:
        read_recipients(write(tmp_path, "id,state,mission,channel,email\u200b\nNA,Namibia,M,print,\n"))
    assert str(caught.value) == ("recipients.csv:1: the column name 'email\\u200b' contains an invisible character "
                                 "(U+200B ZERO WIDTH SPACE)")
