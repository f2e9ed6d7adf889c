"""Workbooks as recipient lists: read as the coordinator sees them, each problem placed by sheet and cell.

The workbooks are written by openpyxl and odfpy (tests/workbooks.py), as Excel and LibreOffice users'
files are written by their programs; the hostile ones are in tests/corpus/sheet-*.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from dispatch import workbook_scan
from dispatch.errors import CellProblem, RecipientsError, ValidationFailed
from dispatch.recipients import check_recipients, read_recipients
from tests.conftest import REPO, csv_text, row
from tests.workbooks import csv_grid, encrypt_xlsx, write_ods, write_xlsx

WRITERS = {"xlsx": write_xlsx, "ods": write_ods}
HEADER = ["id", "state", "regional_group", "mission", "channel", "email", "note"]


def messages(table) -> list[str]:
    return [str(p) for p in check_recipients(table)]


def grid(*rows: list) -> list[list]:
    return [HEADER, *[list(r) for r in rows]]


def mission(ident: str, state: str, **cells) -> list:
    values = {"id": ident, "state": state, "regional_group": "African States",
              "mission": f"Permanent Mission of {state} to the United Nations", "channel": "print", "email": "",
              "note": "", **cells}
    return [values[column] for column in HEADER]


@pytest.mark.parametrize("kind", WRITERS)
def test_the_sample_saved_as_a_workbook_reads_as_the_csv(tmp_path, kind):
    # The 125 States Parties, multi-line addresses and all, as Excel or LibreOffice would save them.
    path = WRITERS[kind](tmp_path / f"missions.{kind}", {"States Parties": csv_grid(REPO / "recipients.csv")})
    from_csv = read_recipients(REPO / "recipients.csv")
    from_sheet = read_recipients(path)
    assert from_sheet.columns == from_csv.columns
    assert [(r.id, dict(r.fields)) for r in from_sheet.rows] == [(r.id, dict(r.fields)) for r in from_csv.rows]
    assert [r.line for r in from_sheet.rows] == list(range(2, 127))  # rows as the sheet numbers them
    assert from_sheet.sheet == "States Parties" and from_sheet.letters[:3] == ("A", "B", "C")
    assert [p for p in check_recipients(from_sheet) if p.severity == "error"] == []


@pytest.mark.parametrize("kind", WRITERS)
def test_every_cell_as_the_text_the_coordinator_sees(tmp_path, kind):
    rows = grid(mission("007", "Namibia", note=7), mission("NA", "NA", note=7.25),
                mission("D", "Date", note=dt.date(2026, 6, 2)), mission("B", "Yes", note=True),
                mission("N", "None", note="NaN"))
    if kind == "xlsx":
        rows.append(mission("T", "Time", note=dt.datetime(2026, 6, 2, 14, 30)))
    table = read_recipients(WRITERS[kind](tmp_path / f"m.{kind}", {"Missions": rows}))
    notes = {r.id: r.get("note") for r in table.rows}
    assert notes["007"] == "7" and notes["NA"] == "7.25" and notes["D"] == "2026-06-02"
    assert notes["B"] == "TRUE" and notes["N"] == "NaN"
    assert table.by_id()["NA"].state == "NA"  # Namibia, not a missing value
    if kind == "xlsx":
        assert notes["T"] == "2026-06-02 14:30"


@pytest.mark.parametrize("kind", WRITERS)
def test_a_title_above_the_table_and_empty_rows_and_columns_below_and_beside(tmp_path, kind):
    rows = [["Missions to write to, June 2026"], [], HEADER + ["", ""], mission("NA", "Namibia") + ["", ""],
            ["", "", "", ""], mission("FR", "France"), ["", ""], [""] * 9]
    merges = {"Missions": ["A1:G1"]} if kind == "xlsx" else None
    path = write_xlsx(tmp_path / "m.xlsx", {"Missions": rows}, merges=merges) if kind == "xlsx" else \
        write_ods(tmp_path / "m.ods", {"Missions": rows})
    table = read_recipients(path)
    assert table.header_line == 3 and table.columns == tuple(HEADER)
    assert [(r.id, r.line) for r in table.rows] == [("NA", 4), ("FR", 6)]
    assert messages(table) == []


def test_a_problem_names_the_sheet_the_cell_and_the_column(tmp_path):
    rows = grid(mission("NA", "Namibia"), mission("FR", "France", channel="email", email="mission@"),
                mission("na", "Nauru"), mission("FR", "France again"))
    table = read_recipients(write_xlsx(tmp_path / "missions.xlsx", {"Missions": rows}))
    problems = check_recipients(table)
    assert [str(p) for p in problems] == [
        "missions.xlsx: sheet Missions, cell F3 (email): 'mission@' is not a valid address "
        "(There must be something after the @-sign.)",
        "missions.xlsx: sheet Missions, cell A4 (id): duplicate id 'na' ('NA' in cell A2 differs only in case)",
        "missions.xlsx: sheet Missions, cell A5 (id): duplicate id 'FR' (first used in cell A3)",
    ]
    shown = dataclasses.asdict(problems[0])
    assert (shown["sheet"], shown["cell"], shown["line"], shown["column"]) == ("Missions", "F3", 3, "email")
    with pytest.raises(ValidationFailed) as caught:
        raise ValidationFailed(problems)
    assert str(caught.value) == str(problems[0]) and isinstance(caught.value.problem, CellProblem)


def test_header_problems_name_the_column_letter(tmp_path):
    table = read_recipients(write_xlsx(tmp_path / "m.xlsx", {"Missions": [["id", "state", "misson", "channel"],
                                                                          ["NA", "Namibia", "M", "print"]]}))
    assert messages(table) == ["m.xlsx: sheet Missions, row 1: missing column 'mission'",
                               "m.xlsx: sheet Missions, cell C1 (misson): unknown column 'misson'"]
    for header, expected in (
            (["id", "state", "", "channel"], "m.xlsx: sheet Missions, cell C1: column C has no name"),
            (["id", "state", "id", "channel"], "m.xlsx: sheet Missions, cell C1 (id): column 'id' appears twice "
                                               "(columns A and C)")):
        path = write_xlsx(tmp_path / "m.xlsx", {"Missions": [header, ["NA", "Namibia", "X", "print"]]})
        with pytest.raises(RecipientsError) as caught:
            read_recipients(path)
        assert str(caught.value) == expected


def test_cells_merged_down_a_column_give_every_row_the_value(tmp_path):
    rows = grid(mission("NA", "Namibia"), mission("NG", "Nigeria", regional_group=None),
                mission("FR", "France", regional_group="Western European and other States"))
    table = read_recipients(write_xlsx(tmp_path / "m.xlsx", {"Missions": rows}, merges={"Missions": ["C2:C3"]}))
    assert [r.get("regional_group") for r in table.rows] == ["African States", "African States",
                                                             "Western European and other States"]


@pytest.mark.parametrize("kind", WRITERS)
def test_cells_merged_across_columns_are_refused(tmp_path, kind):
    rows = grid(mission("NA", "Namibia"), mission("NG", "Nigeria", email=""))
    if kind == "xlsx":
        path = write_xlsx(tmp_path / "m.xlsx", {"Missions": rows}, merges={"Missions": ["E3:F3"]})
    else:  # an OpenDocument merge: a cell spanning two columns, the next one covered
        from odf.opendocument import load
        from odf.table import CoveredTableCell, TableCell, TableRow

        path = write_ods(tmp_path / "m.ods", {"Missions": rows})
        document = load(str(path))
        third = document.spreadsheet.getElementsByType(TableRow)[2]
        cells = third.getElementsByType(TableCell)
        cells[4].setAttribute("numbercolumnsspanned", "2")
        third.insertBefore(CoveredTableCell(), cells[5])
        third.removeChild(cells[5])
        document.save(str(path))
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path)
    assert str(caught.value) == f"m.{kind}: sheet Missions, cell E3: cells E3:F3 are merged across columns"


def test_which_sheet(tmp_path):
    rows = grid(mission("NA", "Namibia"))
    notes = [["what", "when"], ["call Paris", "Monday"]]
    # Hidden sheets are not the list the coordinator sees: without a name, the only visible one is read.
    path = write_xlsx(tmp_path / "m.xlsx", {"Old list": grid(mission("XX", "Nowhere")), "Missions": rows},
                      hidden=("Old list",))
    assert [r.id for r in read_recipients(path).rows] == ["NA"]
    assert read_recipients(path, sheet="missions").sheet == "Missions"
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path, sheet="Old list")
    assert str(caught.value) == "m.xlsx: sheet Old list: the sheet is hidden in the workbook"
    assert "Unhide" in caught.value.hint
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path, sheet="Mission")
    assert str(caught.value) == "m.xlsx: the workbook has no sheet named 'Mission' (its sheets: Missions)"
    path = write_ods(tmp_path / "m.ods", {"Missions": rows, "Notes": notes})
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path)
    assert str(caught.value) == "m.ods: the workbook has 2 sheets (Missions, Notes): which one holds the recipients?"
    assert caught.value.hint == 'name it in dispatch.toml, under [campaign]: sheet = "Missions"'
    assert [r.id for r in read_recipients(path, sheet="Missions").rows] == ["NA"]


def test_a_csv_has_no_sheet(tmp_path):
    path = tmp_path / "recipients.csv"
    path.write_text(csv_text([row("NA", "Namibia")]), encoding="utf-8")
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path, sheet="Missions")
    assert str(caught.value) == "recipients.csv: dispatch.toml names a sheet ('Missions'), but this is a CSV file, which has none"


def test_formulas_give_their_stored_value_or_are_refused(tmp_path):
    rows = grid(mission("NA", "Namibia", note="x"), mission("FR", "France", note="y"))
    path = write_ods(tmp_path / "m.ods", {"Missions": rows},
                     formulas={("Missions", "G2"): ("of:=CONCATENATE(\"a\";\"b\")", "ab"),
                               ("Missions", "G3"): ("of:=CONCATENATE(\"c\";\"d\")", None)})
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path)
    assert str(caught.value) == "m.ods: sheet Missions, cell G3 (note): the formula's value was never calculated"
    path = write_ods(tmp_path / "m.ods", {"Missions": rows},
                     formulas={("Missions", "G2"): ("of:=CONCATENATE(\"a\";\"b\")", "ab")})
    assert read_recipients(path).by_id()["NA"].get("note") == "ab"


def test_a_password_protected_workbook(tmp_path):
    path = encrypt_xlsx(write_xlsx(tmp_path / "m.xlsx", {"Missions": grid(mission("NA", "Namibia"))}))
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path)
    assert str(caught.value) == "m.xlsx: the workbook is protected by a password"
    assert "File > Info > Protect Workbook" in caught.value.hint


def test_a_workbook_unpacking_past_the_cap_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    # Patched: the real cap (256 MB) takes a file far larger than a test should write.
    monkeypatch.setattr(workbook_scan, "MAX_UNPACKED_BYTES", 64 * 1024)
    rows = grid(*[mission(f"A{i}", "State", note="x" * 100) for i in range(1000)])
    path = write_xlsx(tmp_path / "m.xlsx", {"Missions": rows})
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path)
    assert str(caught.value).startswith("m.xlsx: the workbook would unpack to 0 MB, more than the 0 MB")
    assert "CSV" in caught.value.hint


def test_a_damaged_workbook(tmp_path):
    path = write_xlsx(tmp_path / "m.xlsx", {"Missions": grid(mission("NA", "Namibia"))})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path)
    assert str(caught.value).startswith("m.xlsx: the workbook is damaged")
    assert "save it again" in caught.value.hint


def test_a_text_file_named_xlsx(tmp_path):
    path = tmp_path / "m.xlsx"
    path.write_text(csv_text([row("NA", "Namibia")]), encoding="utf-8")
    with pytest.raises(RecipientsError) as caught:
        read_recipients(path)
    assert str(caught.value) == ("m.xlsx: this is not a workbook: it is a text file (perhaps CSV) saved under "
                                 "a spreadsheet's name")


@pytest.mark.slow
@pytest.mark.parametrize("kind", WRITERS)
def test_the_sample_from_a_workbook_renders_the_csvs_letters_byte_for_byte(sample, tmp_path, kind):
    import shutil

    from typer.testing import CliRunner

    from dispatch.cli import app
    from tests.workbooks import use_workbook

    from_sheet = tmp_path / "from-sheet"
    shutil.copytree(sample, from_sheet)
    WRITERS[kind](from_sheet / f"missions.{kind}", {"States Parties": csv_grid(sample / "recipients.csv")})
    (from_sheet / "recipients.csv").unlink()
    use_workbook(from_sheet, f"missions.{kind}")
    chosen = ["--only", "AF", "--only", "CI", "--only", "PS", "--only", "HU"]  # addresses, accents, notes
    runner = CliRunner()
    for folder in (sample, from_sheet):
        result = runner.invoke(app, ["-C", str(folder), "render", *chosen])
        assert result.exit_code == 0, result.output
    for ident in ("AF", "CI", "PS", "HU"):
        assert (from_sheet / "out" / "icc-states-parties-2020" / f"{ident}.pdf").read_bytes() == \
            (sample / "out" / "icc-states-parties-2020" / f"{ident}.pdf").read_bytes()
