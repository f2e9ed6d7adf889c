"""dispatch print: the letters in one file, envelopes, labels, the manifest; checked on the PDFs themselves."""

from __future__ import annotations

import csv
import io
import math

import pypdfium2
import pytest
from pypdf import PdfReader

from dispatch import campaign, printing
from dispatch.errors import PrintError, SettingsError, ValidationFailed
from dispatch.pdf.engine import PdfRenderer
from dispatch.workspace import open_workspace
from tests.conftest import LETTER, flat, pdf_text, row, ws

PT = 25.4 / 72  # mm per PDF point

# A letter whose length depends on the row: `paras` long paragraphs after the usual text.
PARAGRAPH = ("The Assembly of States Parties meets this year at a difficult time for the Court, and we ask your "
             "delegation to speak for its independence, for its budget and for the cooperation it depends on. ") * 4
LONG_LETTER = LETTER.replace("Thank you.", "{% for i in range(paras | int) %}\n" + PARAGRAPH + "\n\n{% endfor %}\nThank you.")


def address(street: str, postcode: str = "10017") -> str:
    return f"{street}\nNew York, NY {postcode}\nUnited States of America"


ROWS = [  # CSV order is not state order, and not group order
    row("NA", "Namibia", paras="0", address=address("135 East 36th Street", "10016")),
    row("FR", "France", paras="4", regional_group="Western European and other States",
        address=address("245 East 47th Street, 44th Floor")),
    row("AL", "Albania", paras="9", regional_group="Eastern European States",
        address=address("320 East 79th Street", "10075")),
    row("KE", "Kenya", paras="0", address=address("866 United Nations Plaza, Room 304")),
    row("BA", "Bosnia and Herzegovina", paras="4", regional_group="Eastern European States",
        address=address("866 UN Plaza, Suite 585")),
    row("CH", "Switzerland", paras="0", channel="email", email="nyc@example.org",
        address=address("633 Third Avenue, 29th Floor")),
]


@pytest.fixture(scope="module")
def renderer(tmp_path_factory):
    from dispatch import campaign as c

    folder = tmp_path_factory.mktemp("fonts") / "w"
    c.init(folder)
    return PdfRenderer(folder / "templates")


@pytest.fixture
def five(make_workspace):
    return make_workspace([dict(r) for r in ROWS], letter=LONG_LETTER)


def first_page_states(reader: PdfReader, starts: list[int]) -> list[str]:
    return [flat(reader.pages[i].extract_text()) for i in starts]


def letter_pages(folder, ids):
    return {i: len(PdfReader(str(folder / "out" / "letter" / f"{i}.pdf")).pages) for i in ids}


def test_letters_in_state_order_simplex_then_duplex(five, renderer):
    summary = campaign.print_run(ws(five), renderer=renderer)
    out = five / "out" / "letter" / "print"
    assert sorted(p.name for p in out.iterdir()) == ["envelopes.pdf", "labels.pdf", "letters.pdf", "manifest.csv",
                                                     "manifest.pdf"]
    order = ["AL", "BA", "FR", "KE", "NA"]  # Albania, Bosnia..., France, Kenya, Namibia; Switzerland is email
    pages = letter_pages(five, order)
    assert sorted(set(pages.values())) == [1, 2, 3]  # the fixture makes letters of 1, 2 and 3 pages
    reader = PdfReader(str(out / "letters.pdf"))
    assert len(reader.pages) == sum(pages.values()) == summary.bundle.pages
    starts = [sum(pages[i] for i in order[:n]) for n in range(len(order))]
    for rid, start, text in zip(order, starts, first_page_states(reader, starts)):
        state = next(r["state"] for r in ROWS if r["id"] == rid)
        assert f"Permanent Mission of {state} to the United Nations" in text, (rid, start)
    assert [item.title for item in reader.outline] == [f"{n}. {s}" for n, s in enumerate(
        ["Albania", "Bosnia and Herzegovina", "France", "Kenya", "Namibia"], start=1)]

    campaign.print_run(ws(five), renderer=renderer, duplex=True)
    reader = PdfReader(str(out / "letters.pdf"))
    sheets = [math.ceil(pages[i] / 2) for i in order]
    assert len(reader.pages) == 2 * sum(sheets)
    start = 0
    for rid, count in ((i, pages[i]) for i in order):
        assert start % 2 == 0, f"{rid} does not start on a front side"
        assert "Permanent Mission of" in reader.pages[start].extract_text()
        if count % 2:  # the back of its last sheet is blank, so the next letter starts on a new sheet
            assert reader.pages[start + count].extract_text().strip() == ""
        start += count + count % 2


@pytest.mark.parametrize("order, expected", [
    ("group", ["KE", "NA", "AL", "BA", "FR"]),  # African, then Eastern European, then Western; by state within
    ("csv", ["NA", "FR", "AL", "KE", "BA"]),
])
def test_other_orders(five, renderer, order, expected):
    campaign.print_run(ws(five), renderer=renderer, order=order)
    csv_rows = list(csv.DictReader(io.StringIO(
        (five / "out" / "letter" / "print" / "manifest.csv").read_text(encoding="utf-8-sig"))))
    numbered = sorted(csv_rows, key=lambda r: int(r["number"]))
    assert [r["id"] for r in numbered] == expected
    reader = PdfReader(str(five / "out" / "letter" / "print" / "letters.pdf"))
    assert [item.title.split(". ", 1)[1] for item in reader.outline] == [r["state"] for r in numbered]


def test_duplex_default_comes_from_settings(make_workspace, renderer):
    folder = make_workspace([row("NA", "Namibia", address=address("1 Main Street"))])
    with open(folder / "dispatch.toml", "a", encoding="utf-8") as handle:
        handle.write('\n[print]\nduplex = true\nenvelope = "C5"\n')
    summary = campaign.print_run(ws(folder), renderer=renderer)
    assert (summary.options.duplex, summary.options.envelope.name) == (True, "C5")
    assert len(PdfReader(str(folder / "out" / "letter" / "print" / "letters.pdf")).pages) == 2
    envelope = PdfReader(str(folder / "out" / "letter" / "print" / "envelopes.pdf")).pages[0]
    assert (round(float(envelope.mediabox.width) * PT), round(float(envelope.mediabox.height) * PT)) == (229, 162)


def test_every_address_is_on_the_envelopes_and_labels(five, renderer):
    campaign.print_run(ws(five), renderer=renderer, envelope="DL")
    out = five / "out" / "letter" / "print"
    envelopes = PdfReader(str(out / "envelopes.pdf"))
    assert len(envelopes.pages) == 5
    for page in envelopes.pages:
        assert (round(float(page.mediabox.width) * PT), round(float(page.mediabox.height) * PT)) == (220, 110)
    envelope_text = [flat(page.extract_text()) for page in envelopes.pages]
    labels = flat(pdf_text(out / "labels.pdf"))
    for r in ROWS:
        if r["channel"] == "email":
            assert r["mission"] not in labels and all(r["mission"] not in t for t in envelope_text)
            continue
        block = flat(" ".join([r["mission"], r["address"]]))
        assert block in labels, r["id"]
        assert sum(block in text for text in envelope_text) == 1, r["id"]


def test_the_return_address_comes_from_the_sender_settings(make_workspace, renderer):
    folder = make_workspace([row("NA", "Namibia", address=address("1 Main Street"))])
    text = (folder / "dispatch.toml").read_text()
    (folder / "dispatch.toml").write_text(text.replace('name = ""', 'name = "Coalition for the ICC"', 1)
                                          .replace('address = ""', 'address = "708 Third Avenue\\nNew York, NY 10017"', 1))
    campaign.print_run(ws(folder), renderer=renderer)
    page = flat(pdf_text(folder / "out" / "letter" / "print" / "envelopes.pdf"))
    assert page.startswith("Coalition for the ICC 708 Third Avenue New York, NY 10017 The Permanent Representative of Namibia")


# --- labels: boxes on the page ---------------------------------------------------------------------------

def char_boxes(pdf_path, page_index=0):
    """(char, left, top, right, bottom) in mm from the page's top-left corner, for every visible character."""
    document = pypdfium2.PdfDocument(str(pdf_path))
    page = document[page_index]
    width, height = page.get_width() * PT, page.get_height() * PT
    text = page.get_textpage()
    boxes = []
    for index in range(text.count_chars()):
        char = text.get_text_range(index, 1)
        if char.strip():
            left, bottom, right, top = text.get_charbox(index)
            boxes.append((char, left * PT, height - top * PT, right * PT, height - bottom * PT))
    document.close()
    return (width, height), boxes


def assert_inside_labels(pdf_path, grid: printing.LabelGrid, count: int):
    document = pypdfium2.PdfDocument(str(pdf_path))
    sheets = len(document)
    document.close()
    assert sheets == math.ceil(count / grid.per_sheet)
    used = set()
    for sheet in range(sheets):
        (width, height), boxes = char_boxes(pdf_path, sheet)
        assert (round(width), round(height)) == (210, 297)
        assert boxes
        for char, left, top, right, bottom in boxes:
            assert 0 <= left and right <= width and 0 <= top and bottom <= height, char
            column = int((left - grid.left) // (grid.width + grid.column_gap))
            row_ = int((top - grid.top) // (grid.height + grid.row_gap))
            x = grid.left + column * (grid.width + grid.column_gap)
            y = grid.top + row_ * (grid.height + grid.row_gap)
            pad = grid.padding - 0.3  # glyph boxes may stick out of the line box by a hair
            assert x + pad <= left and right <= x + grid.width - pad, (char, left, right, x)
            assert y + pad <= top and bottom <= y + grid.height - pad, (char, top, bottom, y)
            used.add((sheet, row_, column))
    assert len(used) == count


LONG = row("GB", "United Kingdom of Great Britain and Northern Ireland",
           mission="Permanent Mission of the United Kingdom of Great Britain and Northern Ireland to the United Nations",
           title="H.E. Dame", ambassador="Barbara Woodward DCMG OBE",
           address="One Dag Hammarskjöld Plaza, 885 Second Avenue, 25th Floor\nNew York, NY 10017\nUnited States of America")


@pytest.mark.parametrize("sheet", ["3x7", "3x8"])
def test_label_text_stays_inside_its_label_and_the_page(make_workspace, renderer, sheet):
    rows = [row(f"S{n:02d}", f"State {n}", address=address(f"{100 + n} East 45th Street, Floor {n}")) for n in range(25)]
    rows.append(dict(LONG, id="LONG"))
    folder = make_workspace(rows)
    with open(folder / "dispatch.toml", "a", encoding="utf-8") as handle:
        handle.write(f'\n[print]\nlabels = "{sheet}"\n')
    summary = campaign.print_run(ws(folder), renderer=renderer)
    assert summary.options.labels.rows == (7 if sheet == "3x7" else 8)
    labels = folder / "out" / "letter" / "print" / "labels.pdf"
    assert_inside_labels(labels, summary.options.labels, len(rows))
    text = flat(pdf_text(labels))
    assert "One Dag Hammarskjöld Plaza, 885 Second Avenue, 25th Floor" in text


def test_a_long_address_shrinks_to_fit(make_workspace, renderer):
    folder = make_workspace([row("NA", "Namibia", address=address("1 Main Street")), dict(LONG)])
    summary = campaign.print_run(ws(folder), renderer=renderer)
    _, boxes = char_boxes(folder / "out" / "letter" / "print" / "labels.pdf")
    heights = {}
    for char, left, top, right, bottom in boxes:
        label = 0 if left < 70 else 1
        if char == "N":
            heights.setdefault(label, []).append(bottom - top)
    assert max(heights[1]) < 0.85 * min(heights[0])  # the long address is set smaller than 10 pt
    assert_inside_labels(folder / "out" / "letter" / "print" / "labels.pdf", summary.options.labels, 2)


def test_a_label_that_cannot_fit_is_an_error_naming_the_recipient(make_workspace, renderer):
    # Fits the envelope's address zone, not a 70 x 42.3 mm label even at 7 pt.
    huge = dict(LONG, address="\n".join(f"Corridor {n}" for n in range(10)))
    folder = make_workspace([row("NA", "Namibia", address=address("1 Main Street")), huge])
    with pytest.raises(PrintError) as caught:
        campaign.print_run(ws(folder), renderer=renderer)
    assert str(caught.value) == ("recipients.csv:5: address: the address of United Kingdom of Great Britain and Northern "
                                 "Ireland (GB) does not fit on a 70 x 42.3 mm label, even at 7 pt")
    assert not (folder / "out" / "letter" / "print").exists()


def test_a_custom_label_sheet(make_workspace, renderer):
    rows = [row(f"S{n}", f"State {n}", address=address(f"{n} Park Avenue")) for n in range(9)]
    folder = make_workspace(rows)
    with open(folder / "dispatch.toml", "a", encoding="utf-8") as handle:
        handle.write("\n[print]\nlabel_columns = 2\nlabel_rows = 4\nlabel_width_mm = 99.1\nlabel_height_mm = 67.7\n"
                     "label_top_mm = 13\nlabel_left_mm = 4.65\nlabel_column_gap_mm = 2.5\n")
    summary = campaign.print_run(ws(folder), renderer=renderer)
    grid = summary.options.labels
    assert (grid.columns, grid.rows, grid.width, grid.left, grid.column_gap, grid.row_gap) == (2, 4, 99.1, 4.65, 2.5, 0)
    assert_inside_labels(folder / "out" / "letter" / "print" / "labels.pdf", grid, 9)


def test_a_label_grid_that_does_not_fit_a4_is_refused(make_workspace):
    folder = make_workspace([row("NA", "Namibia", address=address("1 Main Street"))])
    with open(folder / "dispatch.toml", "a", encoding="utf-8") as handle:
        handle.write("\n[print]\nlabel_columns = 4\n")
    with pytest.raises(PrintError) as caught:
        campaign.print_run(ws(folder))
    assert str(caught.value) == "dispatch.toml: [print]: 4 x 7 labels of 70 x 42.3 mm do not fit on an A4 sheet"


def test_print_settings_are_checked(make_workspace):
    folder = make_workspace(settings='[campaign]\nletter = "letter"\n\n[print]\nenvelope = "C6"\n')
    with pytest.raises(SettingsError) as caught:
        open_workspace(folder)
    assert str(caught.value) == "dispatch.toml:5: envelope must be one of DL, C5, C4, not 'C6'"
    folder = make_workspace(settings='[print]\nlabel_width_mm = "70"\n')
    with pytest.raises(SettingsError) as caught:
        open_workspace(folder)
    assert str(caught.value) == "dispatch.toml:2: 'label_width_mm' must be a number, not '70'"


# --- the window envelope ----------------------------------------------------------------------------------

def address_char_boxes(letter_pdf, first_line: str, last_line: str):
    """The boxes of the address block on page 1: every character from its first line to its last."""
    document = pypdfium2.PdfDocument(str(letter_pdf))
    page = document[0]
    height = page.get_height()
    text = page.get_textpage()
    chars = [text.get_text_range(i, 1) for i in range(text.count_chars())]
    whole = "".join(chars)
    start = whole.index(first_line)
    end = whole.index(last_line, start) + len(last_line)
    boxes = []
    for index in range(start, end):
        if chars[index].strip():
            left, bottom, right, top = text.get_charbox(index)
            boxes.append((left * PT, (height - top) * PT, right * PT, (height - bottom) * PT))
    document.close()
    return boxes


def in_envelope(boxes, envelope: printing.Envelope):
    """Yield (dx, dy, boxes moved into the envelope) for positions of the folded sheet across its play."""
    play_x, play_y = envelope.play
    for i in range(6):
        for j in range(6):
            dx, dy = play_x * i / 5, play_y * j / 5
            yield dx, dy, [(l + dx, t + dy, r + dx, b + dy) for l, t, r, b in boxes]


def outside_window(boxes, envelope):
    left, top, width, height = envelope.window
    return [box for box in boxes
            if box[0] < left or box[2] > left + width or box[1] < top or box[3] > top + height]


WINDOW_ROWS = [
    row("KE", "Kenya", address=address("866 United Nations Plaza, Room 304")),
    row("BA", "Bosnia and Herzegovina", title="H.E. Mr.", ambassador="Zlatko Lagumdžija",
        address=address("420 Lexington Avenue, Suites 607 & 608")),
    row("GB", "United Kingdom of Great Britain and Northern Ireland", title="H.E. Mr.", ambassador="James Kariuki",
        address="One Dag Hammarskjöld Plaza, 885 Second Avenue\nNew York, NY\nUnited States of America"),
]


@pytest.mark.parametrize("name, shows", [("DL", {"KE", "BA", "GB"}), ("C5", {"KE"}), ("C4", {"KE"})])
def test_the_letter_address_shows_in_the_window_wherever_the_sheet_slides(make_workspace, renderer, name, shows):
    # Kenya's address has 5 lines, Bosnia and Herzegovina's 7 (the ambassador's name, long names that wrap), the
    # United Kingdom's 9 (the mission's name takes three); the address lines are up to 77 mm wide (DIN 5008).
    # A DL envelope lets the folded sheet slide 8 mm across and 3 mm down, a C5 17 x 11.5 mm, a C4 (flat sheet)
    # 17 x 25 mm: in a C5 or C4 window a line longer than 68 mm can hide.
    folder = make_workspace([dict(r) for r in WINDOW_ROWS])
    campaign.render(ws(folder), renderer=renderer)
    envelope = printing.ENVELOPES[name]
    recipients = campaign.load(ws(folder)).recipients.by_id()
    for rid in ("KE", "BA", "GB"):
        r = recipients[rid]
        boxes = address_char_boxes(folder / "out" / "letter" / f"{rid}.pdf", r.addressee_lines[0],
                                   "United States of America")
        assert len(boxes) > 100
        # Fold: only the part of the sheet above the first fold faces the window (DL: 105 mm; C5: 148.5 mm).
        assert max(b[3] for b in boxes) <= envelope.panel
        hidden = [(dx, dy) for dx, dy, moved in in_envelope(boxes, envelope) if outside_window(moved, envelope)]
        assert (not hidden) == (rid in shows), (rid, name, hidden[:3])
        assert (printing.window_problem(boxes, envelope) is None) == (rid in shows)
    with open(folder / "dispatch.toml", "a", encoding="utf-8") as handle:
        handle.write(f'\n[print]\nwindow = true\nenvelope = "{name}"\n')
    if shows == {"KE", "BA", "GB"}:
        campaign.print_run(ws(folder), renderer=renderer)  # the run's own check agrees
        return
    with pytest.raises(ValidationFailed) as caught:
        campaign.print_run(ws(folder), renderer=renderer)
    refused = {"KE", "BA", "GB"} - shows
    assert [str(p).split(", and the address")[0] for p in caught.value.problems] == [
        f"recipients.csv:{line}: address: {state} ({rid}): in a {name} window envelope the letter can slide "
        f"{envelope.play[0]:g} x {envelope.play[1]:g} mm"
        for line, state, rid in ((5, "Bosnia and Herzegovina", "BA"), (2, "Kenya", "KE"),
                                 (8, "United Kingdom of Great Britain and Northern Ireland", "GB")) if rid in refused]
    assert "past its right edge" in str(caught.value.problems[0])
    assert not (folder / "out" / "letter" / "print").exists()


# --- the manifest -----------------------------------------------------------------------------------------

def test_manifest_groups_missions_in_the_same_building(five, renderer):
    campaign.print_run(ws(five), renderer=renderer)
    out = five / "out" / "letter" / "print"
    rows = list(csv.DictReader(io.StringIO((out / "manifest.csv").read_text(encoding="utf-8-sig"))))
    assert list(rows[0]) == ["number", "id", "state", "mission", "address", "building", "pages", "date", "time",
                             "received_by"]
    # State order numbers the letters 1 AL, 2 BA, 3 FR, 4 KE, 5 NA; BA and KE share 866 UN Plaza.
    assert [(r["number"], r["id"], r["building"]) for r in rows] == [
        ("1", "AL", "320 East 79th Street"), ("2", "BA", "866 UN Plaza"), ("4", "KE", "866 UN Plaza"),
        ("3", "FR", "245 East 47th Street"), ("5", "NA", "135 East 36th Street")]
    pages = letter_pages(five, [r["id"] for r in rows])
    assert [int(r["pages"]) for r in rows] == [pages[r["id"]] for r in rows]
    assert rows[2]["address"] == "866 United Nations Plaza, Room 304, New York, NY 10017, United States of America"
    assert all(r["date"] == r["time"] == r["received_by"] == "" for r in rows)
    text = flat(pdf_text(out / "manifest.pdf"))
    assert "866 UN Plaza · 2 letters 2 Bosnia and Herzegovina BA Permanent Mission of Bosnia and Herzegovina" in text
    assert "Received by (name, signature)" in text


def test_manifest_csv_cells_are_never_formulas(make_workspace, renderer):
    folder = make_workspace([row("NA", "=HYPERLINK(\"http://evil.example\",\"x\")",
                                 mission="+Mission", address="@SUM(A1)\n-1 Street")])
    campaign.print_run(ws(folder), renderer=renderer)
    rows = list(csv.reader(io.StringIO((folder / "out" / "letter" / "print" / "manifest.csv").read_text(encoding="utf-8-sig"))))
    assert rows[1][2:6] == ["'=HYPERLINK(\"http://evil.example\",\"x\")", "'+Mission", "'@SUM(A1), -1 Street", "'@SUM(A1)"]


def test_building_key():
    same = ["866 United Nations Plaza, Room 304", "866 UN Plaza, Suite 500", "866 U.N. Plaza", "866 UN Plaza Suite 12"]
    assert {printing.building_key(a) for a in same} != set()
    assert printing.building_key("866 United Nations Plaza, Room 304") == printing.building_key("866 UN Plaza, Suite 500")
    assert printing.building_key("866 UN Plaza Suite 12") == printing.building_key("866 United Nations Plaza")
    assert printing.building_key("801 Second Avenue, 12th Floor") == printing.building_key("801 2nd Ave., 11th Floor")
    assert printing.building_key("801 Second Avenue") != printing.building_key("801 Third Avenue")
    assert printing.building_key("") == ""


# --- missing addresses ------------------------------------------------------------------------------------

def test_missing_addresses_stop_the_print_run_before_anything_is_written(make_workspace, renderer):
    folder = make_workspace([row("NA", "Namibia"), row("KE", "Kenya", address=address("866 UN Plaza")),
                             row("AL", "Albania")])
    with pytest.raises(ValidationFailed) as caught:
        campaign.print_run(ws(folder), renderer=renderer)
    assert [str(p) for p in caught.value.problems] == [
        "recipients.csv:2: address: Namibia (NA) is to be printed but has no postal address",
        "recipients.csv:6: address: Albania (AL) is to be printed but has no postal address"]
    assert not (folder / "out").exists()

    summary = campaign.print_run(ws(folder), renderer=renderer, allow_missing_address=True)
    assert [r.id for r in summary.bundle.without_address] == ["AL", "NA"]
    out = folder / "out" / "letter" / "print"
    assert len(PdfReader(str(out / "letters.pdf")).pages) == 3
    assert len(PdfReader(str(out / "envelopes.pdf")).pages) == 1
    rows = list(csv.DictReader(io.StringIO((out / "manifest.csv").read_text(encoding="utf-8-sig"))))
    no_address = "No postal address: deliver by hand or have collected"
    assert [(r["id"], r["building"]) for r in rows] == [("KE", "866 UN Plaza"), ("AL", no_address),
                                                       ("NA", no_address)]
