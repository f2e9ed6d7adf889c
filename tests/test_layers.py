"""Layered rendering (one master per group, regions laid over it) against whole rendering.

Each layered letter is compared with the same letter rendered whole: same pages, the same words at the
same places (pdfplumber word boxes, within 0.5 pt), the same extracted text, metadata, PDF/A identity,
embedded fonts; and the guards send the letters that cannot be layered down the whole path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pdfplumber
import pikepdf
import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from dispatch import campaign
from dispatch.cli import app
from dispatch.pdf.batch import Explanation
from tests.conftest import LETTER, REPO, WorkspaceFactory, flat, pdf_text, row, ws

TOLERANCE = 0.5  # pt
LAYERED_LETTER = LETTER.replace(
    "We write to {{ state }} about the Court.",
    "We write to every State Party about the Court.\n\n"
    "{% if state == 'Kenya' %}A paragraph for Kenya alone.{% endif %}")
LONG_ADDRESS = "\n".join(f"Line {n} of a very long address" for n in range(1, 10))
INJECTED = 'Dear <b>friend</b> & {{ 7 * 7 }} </p><p data-variable="x">'
ROWS = [
    row("NA", "Namibia", title="H.E. Mr.", ambassador="Neville Gertze", address="135 East 36th Street\nNew York"),
    row("DE", "Germany", address="871 United Nations Plaza\nNew York, NY 10017"),
    row("FR", "France"),
    row("JP", "Japan", salutation=INJECTED),
    row("KE", "Kenya"),
    row("GB", "United Kingdom", address=LONG_ADDRESS),
]
LAYERED = ["NA", "DE", "FR", "JP"]


def words(path: Path) -> list[list[dict]]:
    with pdfplumber.open(path) as pdf:
        return [page.extract_words(keep_blank_chars=False, use_text_flow=False) for page in pdf.pages]


def pixels(path: Path, dpi: int = 60) -> list:
    """Each page drawn as a reader draws it (PDFium), in grey."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(path))
    try:
        return [page.render(scale=dpi / 72).to_pil().convert("L") for page in document]
    finally:
        document.close()


def assert_same_letter(layered: Path, whole: Path) -> None:
    for number, (image_a, image_b) in enumerate(zip(pixels(layered), pixels(whole)), start=1):
        assert image_a.size == image_b.size
        differ = sum(1 for x, y in zip(image_a.tobytes(), image_b.tobytes()) if abs(x - y) > 48)
        assert differ <= image_a.size[0] * image_a.size[1] // 2000, f"page {number}: {differ} pixels differ"
    a, b = words(layered), words(whole)
    assert len(a) == len(b), "page count"
    for number, (page_a, page_b) in enumerate(zip(a, b), start=1):
        assert [w["text"] for w in page_a] == [w["text"] for w in page_b], f"words of page {number}"
        for x, y in zip(page_a, page_b):
            for key in ("x0", "x1", "top", "bottom"):
                assert abs(x[key] - y[key]) <= TOLERANCE, (number, x["text"], key, x[key], y[key])
    assert [p.extract_text() for p in PdfReader(layered).pages] == [p.extract_text() for p in PdfReader(whole).pages]


def fonts(obj, seen=None) -> list:
    """Every font used by a page or form XObject, nested forms included."""
    seen = seen if seen is not None else set()
    found = []
    resources = obj.get("/Resources")
    if resources is None:
        return found
    for font in (resources.get("/Font") or {}).values():
        found.append(font)
    for xobject in (resources.get("/XObject") or {}).values():
        if xobject.objgen not in seen and xobject.get("/Subtype") == "/Form":
            seen.add(xobject.objgen)
            found += fonts(xobject, seen)
    return found


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same campaign rendered layered (kept in layered/) and whole (in out/letter/)."""
    folder = WorkspaceFactory(tmp_path_factory.mktemp("layers"))(ROWS, letter=LAYERED_LETTER)
    explanation = Explanation()
    summary = campaign.render(ws(folder), jobs=2, explanation=explanation)
    assert not summary.failed
    layered = folder / "layered"
    shutil.copytree(folder / "out" / "letter", layered)
    whole = Explanation()
    campaign.render(ws(folder), jobs=2, force=True, layers=False, explanation=whole)
    return folder, layered, folder / "out" / "letter", explanation, whole


def test_a_letter_in_parts_makes_the_whole_letter_again(sample):
    """What an overlay job renders whole when a region does not fit: the same HTML as the merge gives."""
    from dispatch.pdf.master import Master
    from dispatch.pdf.overlay import LayeredLetter

    loaded, _ = campaign.check(ws(sample))
    merger = campaign.merger(loaded)
    for recipient in loaded.recipients.rows[:40]:
        merged = merger.merged(recipient)
        parts = merged.parts()
        master = Master(parts.group, b"", 3, 0, 0, None, "", (), body=parts.body, word=parts.word)
        assert master.whole_html(LayeredLetter(recipient.id, Path("x"), parts.contents, parts.head)) == merged.html
        assert "\ue000" not in merged.html and len(parts.contents) == 3


def test_groups_regions_and_who_was_rendered_whole(both):
    _, _, _, explanation, whole = both
    # KE's letter differs from the others outside the regions: a group of its own, layered over its own
    # master, so that its PDF is the same whether it is rendered alone or with the others.
    group, alone = explanation.groups
    assert sorted(group.members) == sorted(["NA", "DE", "FR", "JP", "GB"]) and group.reason is None
    assert alone.members == ("KE",) and alone.reason is None
    assert group.master_pages == alone.master_pages == 1
    sizes = {name: (round(w, 1), round(h, 1), pages) for name, w, h, pages in group.regions}
    assert sizes == {"address": (77.0, 40.0, (1,)), "salutation": (165.0, 5.3, (1,))}  # templates/letter.css
    assert alone.regions == group.regions
    assert set(explanation.whole) == {"GB"}
    assert explanation.whole["GB"].startswith("the address does not fit in its box (")
    assert set(whole.whole.values()) == {"--no-layers"}


@pytest.mark.parametrize("rid", LAYERED + ["KE", "GB"])
def test_layered_letters_have_the_same_words_at_the_same_places(both, rid):
    _, layered, out, _, _ = both
    assert_same_letter(layered / f"{rid}.pdf", out / f"{rid}.pdf")


def test_recipient_values_in_a_region_stay_text(both):
    _, layered, _, _, _ = both
    text = flat(pdf_text(layered / "JP.pdf"))
    # The markup stays text (its straight quotes may be typeset as the language's own: data-variable=“x”).
    assert flat(INJECTED.split('"')[0]) in text and "49" not in text
    assert "We write to every State Party about the Court." in text


@pytest.mark.parametrize("rid", LAYERED + ["KE"])
def test_metadata_pdf_a_identity_and_embedded_fonts(both, rid):
    _, layered, out, _, _ = both
    with pikepdf.open(layered / f"{rid}.pdf") as a, pikepdf.open(out / f"{rid}.pdf") as b:
        assert a.check_pdf_syntax() == []
        assert {k: str(v) for k, v in a.docinfo.items()} == {k: str(v) for k, v in b.docinfo.items()}
        assert dict(a.open_metadata()) == dict(b.open_metadata())  # XMP: title, description, PDF/A part 3 U
        assert a.open_metadata()["{http://www.aiim.org/pdfa/ns/id/}part"] == "3"
        assert bytes(a.trailer.ID[0]) == bytes(b.trailer.ID[0]) == b"dispatch"  # the file's identifier
        assert len(bytes(a.trailer.ID[1])) == 16 and str(a.Root.Lang) == "en"  # and a digest of its content
        assert a.Root.OutputIntents[0].S == "/GTS_PDFA1"
        used = [font for page in a.pages for font in fonts(page)]
        assert len({f.objgen for f in used}) > len({f.objgen for page in a.pages for f in page.Resources.Font.values()})
        for font in used:
            descriptor = font.DescendantFonts[0].FontDescriptor
            assert "/FontFile2" in descriptor or "/FontFile3" in descriptor, font.BaseFont


def test_explain_on_the_command_line_and_no_layers(both):
    folder = both[0]
    result = CliRunner().invoke(app, ["-C", str(folder), "render", "--force", "--explain", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("group 1: ")))
    assert lines[start:start + 9] == [
        "group 1: 5 letter(s), first NA: one master of 1 page(s), regions laid over it:",
        "  address: 77.0 × 40.0 mm, page 1",
        "  salutation: 165.0 × 5.3 mm, page 1",
        "group 2: 1 letter(s), first KE: one master of 1 page(s), regions laid over it:",
        "  address: 77.0 × 40.0 mm, page 1",
        "  salutation: 165.0 × 5.3 mm, page 1",
        "the groups' text differs outside the regions after “…every State Party about the Court.” "
        "(letters/letter.md:12:1): NA has nothing, KE “A paragraph for Kenya alone.…”",
        "layered: 5 letter(s); rendered whole: 1",
        lines[start + 8],
    ]
    assert lines[start + 8].startswith("  GB: the address does not fit in its box (")
    result = CliRunner().invoke(app, ["-C", str(folder), "render", "--force", "--explain", "--no-layers"])
    assert "layered: 0 letter(s); rendered whole: 6" in result.stdout
    assert "  NA, DE, FR, JP, KE, GB: --no-layers" in result.stdout


def test_layered_letters_are_the_same_for_any_number_of_workers(make_workspace):
    folder = make_workspace(ROWS[:4], letter=LAYERED_LETTER)
    out = folder / "out" / "letter"
    campaign.render(ws(folder), jobs=1)
    one = {p.name: p.read_bytes() for p in sorted(out.glob("*.pdf"))}
    campaign.render(ws(folder), jobs=2, force=True)
    assert {p.name: p.read_bytes() for p in sorted(out.glob("*.pdf"))} == one


def test_a_layout_without_regions_renders_whole(make_workspace):
    folder = make_workspace(ROWS[:3], letter=LAYERED_LETTER)
    layout = folder / "templates" / "letter.html.j2"
    layout.write_text(layout.read_text().replace(" data-variable=", " data-other="))
    explanation = Explanation()
    summary = campaign.render(ws(folder), explanation=explanation)
    assert len(summary.rendered) == 3 and not explanation.groups
    assert set(explanation.whole.values()) == {"the layout has no regions"}


def test_a_region_without_a_fixed_height_makes_its_group_render_whole(make_workspace):
    folder = make_workspace(ROWS[:3], letter=LAYERED_LETTER)
    css = folder / "templates" / "letter.css"
    css.write_text(css.read_text().replace(".salutation { height: 15pt;", ".salutation {"))
    explanation = Explanation()
    campaign.render(ws(folder), explanation=explanation)
    [group] = explanation.groups
    assert group.reason == ("region 'salutation' has no fixed height in the stylesheet, so its content could move "
                            "the rest of the letter")
    assert set(explanation.whole) == {"NA", "DE", "FR"}


def test_a_letter_alone_in_a_group_that_cannot_be_layered_renders_whole_and_says_why(make_workspace):
    folder = make_workspace(ROWS[:1], letter=LAYERED_LETTER)
    css = folder / "templates" / "letter.css"
    css.write_text(css.read_text().replace(".salutation { height: 15pt;", ".salutation {"))
    explanation = Explanation()
    summary = campaign.render(ws(folder), explanation=explanation)
    assert [r.recipient_id for r in summary.rendered] == ["NA"]
    [group] = explanation.groups
    assert group.members == ("NA",) and group.reason.startswith("region 'salutation' has no fixed height")
    assert explanation.whole == {"NA": group.reason}
    with pikepdf.open(folder / "out" / "letter" / "NA.pdf") as pdf:  # whole: no slot
        assert not any(name.startswith("/DispatchSlot") for page in pdf.pages
                       for name in (page.Resources.get("/XObject") or {}))


@pytest.mark.parametrize("change, message", [
    ('<address class="recipient" data-variable="address">',
     "region 'address' is inside region 'outer'"),
    ('</p>', "region 'salutation' is never closed"),
])
def test_badly_marked_regions_are_reported_with_their_line(make_workspace, change, message):
    folder = make_workspace(ROWS[:1], letter=LAYERED_LETTER)
    layout = folder / "templates" / "letter.html.j2"
    source = layout.read_text()
    line = source[:source.index(change)].count("\n") + 1
    if change.startswith("<address"):
        source = source.replace('<div class="window">', '<div class="window" data-variable="outer">')
        line = source[:source.index('<address class="recipient"')].count("\n") + 1
    else:
        source = source.replace("{{ salutation }}</p>", "{{ salutation }}", 1)
        line = source[:source.index('<p class="salutation"')].count("\n") + 1
    layout.write_text(source)
    result = CliRunner().invoke(app, ["-C", str(folder), "validate"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: templates/letter.html.j2:{line}: {message}"


def test_signed_layered_letter_verifies(make_workspace, monkeypatch, tmp_path):
    from tests.test_signing import PASSWORD, make_ca, make_signing_key

    folder = make_workspace(ROWS[:3], letter=LAYERED_LETTER)
    key = make_signing_key(tmp_path, *make_ca("Test Root CA"))
    monkeypatch.setenv("DISPATCH_SIGN_PASSWORD", PASSWORD)
    result = CliRunner().invoke(app, ["-C", str(folder), "render", "--sign", str(key), "--explain"])
    assert result.exit_code == 0, result.output
    assert "layered: 3 letter(s); rendered whole: 0" in result.stdout
    result = CliRunner().invoke(app, ["-C", str(folder), "verify", *(str(folder / "out" / "letter" / f"{r}.pdf")
                                                                       for r in ("NA", "DE", "FR"))])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "ok: 3 file(s) verified"


def test_arabic_letters_layered_right_to_left(make_workspace):
    translation = (REPO / "tests" / "data" / "translations" / "letter.ar.md").read_text(encoding="utf-8")
    folder = make_workspace([row("JO", "Jordan", language="ar", address="عمان\nالأردن"),
                             row("EG", "Egypt", language="ar", salutation="سعادة السفير،"),
                             row("NA", "Namibia")], letter=LAYERED_LETTER)
    (folder / "letters" / "letter.ar.md").write_text(translation.replace("{{ state }}", "الدولة"), encoding="utf-8")
    explanation = Explanation()
    campaign.render(ws(folder), explanation=explanation, jobs=1)
    assert [sorted(g.members) for g in explanation.groups] == [["EG", "JO"], ["NA"]]
    layered = folder / "layered"
    shutil.copytree(folder / "out" / "letter", layered)
    campaign.render(ws(folder), force=True, layers=False, jobs=1)
    for rid in ("JO", "EG"):
        assert_same_letter(layered / f"{rid}.pdf", folder / "out" / "letter" / f"{rid}.pdf")


@pytest.mark.slow
def test_the_sample_campaign_takes_the_fast_path(sample):
    chosen = ["NA", "DE", "BR", "JP"]
    explanation = Explanation()
    summary = campaign.render(ws(sample), only=chosen, explanation=explanation)
    assert len(summary.rendered) == 4 and explanation.whole == {}
    [group] = explanation.groups
    assert [name for name, *_ in group.regions] == ["address", "running-head", "salutation"]
    assert group.master_pages == 3
    out = sample / "out" / "icc-states-parties-2020"
    layered = sample / "layered"
    shutil.copytree(out, layered)
    campaign.render(ws(sample), only=chosen, force=True, layers=False)
    for rid in chosen:
        assert_same_letter(layered / f"{rid}.pdf", out / f"{rid}.pdf")


@pytest.mark.slow
def test_letters_rendered_while_the_campaign_is_checked_are_the_letters_rendered_after(make_workspace):
    # 150 letters: the first batches go to the workers while later rows are still being merged (eager,
    # every letter new). With --only, the letters go to the workers once the check has ended. Batches are
    # the same 64 letters either way, and so are the PDFs.
    rows = [row(f"R{n:03}", f"State {n}", address=f"{n} First Avenue\nNew York") for n in range(150)]
    folder = make_workspace(rows, letter=LAYERED_LETTER)
    out = folder / "out" / "letter"
    explanation = Explanation()
    summary = campaign.render(ws(folder), jobs=2, explanation=explanation)
    assert len(summary.rendered) == 150 and explanation.whole == {}
    assert [len(group.members) for group in explanation.groups] == [150]
    eager = {p.name: p.read_bytes() for p in sorted(out.glob("*.pdf"))}
    after = campaign.render(ws(folder), jobs=2, force=True, only=[r["id"] for r in rows])
    assert len(after.rendered) == 150
    assert {p.name: p.read_bytes() for p in sorted(out.glob("*.pdf"))} == eager
    assert [p.name for p in out.iterdir() if not p.name.endswith(".pdf")] == []


@pytest.mark.slow
def test_a_check_that_fails_late_puts_nothing_in_place(make_workspace):
    # Rows are merged (and their letters rendered) until the last one (line 8002: each address has two
    # lines), which no font can draw: the run
    # fails, and the letters the workers had written under temporary names are gone with the folder.
    import subprocess
    import sys
    import time

    rows = [row(f"R{n:04}", f"State {n}", address=f"{n} First Avenue\nNew York") for n in range(4000)]
    folder = make_workspace([*rows, row("XX", "State \U0001F600")], letter=LAYERED_LETTER)
    out = folder / "out" / "letter"
    process = subprocess.Popen([str(Path(sys.executable).parent / "dispatch"), "-C", str(folder), "render"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staged = set()
    while process.poll() is None:
        if out.is_dir():
            staged.update(p.name for p in out.iterdir() if p.name.endswith(".tmp"))
        time.sleep(0.01)
    stdout, stderr = process.communicate()
    assert process.returncode == 1, stderr
    assert "recipients.csv:8002: state: no font in templates/fonts/ can draw" in stderr
    assert staged, "no letter was rendered before the check failed: the case tests nothing"
    assert not (folder / "out").exists()
    assert not (folder / "dispatch.db").exists()
