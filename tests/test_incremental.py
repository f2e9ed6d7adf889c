"""Incremental rendering: an unchanged letter is never rendered twice; a change re-renders what it touches."""

from __future__ import annotations

from pathlib import Path

from dispatch import campaign
from dispatch.journal import Journal
from tests.conftest import csv_text, row, ws

ROWS = [row("NA", "Namibia"), row("FR", "France"), row("KE", "Kenya")]


def rendered(summary) -> list[tuple[str, str]]:
    return [(r.recipient_id, r.reason) for r in summary.rendered]


def pdf_bytes(folder: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((folder / "out" / "letter").glob("*.pdf"))}


def test_second_render_skips_every_unchanged_letter(make_workspace):
    folder = make_workspace(ROWS)
    first = campaign.render(ws(folder), jobs=1)
    assert rendered(first) == [("NA", "new"), ("FR", "new"), ("KE", "new")]
    before = {p: p.stat().st_mtime_ns for p in (folder / "out" / "letter").glob("*.pdf")}
    second = campaign.render(ws(folder), jobs=1)
    assert rendered(second) == [] and second.up_to_date == 3 and second.failed == []
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_a_changed_row_re_renders_only_that_letter(make_workspace):
    folder = make_workspace(ROWS)
    campaign.render(ws(folder), jobs=1)
    old = pdf_bytes(folder)
    rows = [ROWS[0], dict(ROWS[1], ambassador="Jean Dupont", title="H.E. Mr."), ROWS[2]]
    (folder / "recipients.csv").write_text(csv_text(rows), encoding="utf-8")
    summary = campaign.render(ws(folder), jobs=1)
    assert rendered(summary) == [("FR", "changed")]
    assert summary.up_to_date == 2
    new = pdf_bytes(folder)
    assert new["NA"] == old["NA"] and new["KE"] == old["KE"] and new["FR"] != old["FR"]


def test_a_template_css_or_font_change_re_renders_every_letter(make_workspace):
    folder = make_workspace(ROWS)
    campaign.render(ws(folder), jobs=1)
    css = folder / "templates" / "letter.css"
    css.write_text(css.read_text(encoding="utf-8") + "\n/* darker */ html { color: #000; }\n", encoding="utf-8")
    assert rendered(campaign.render(ws(folder), jobs=1)) == [("NA", "changed"), ("FR", "changed"), ("KE", "changed")]
    assert campaign.render(ws(folder), jobs=1).up_to_date == 3
    # A font (any file under templates/) counts by its bytes, not by its date.
    font = next((folder / "templates" / "fonts").glob("*.ttf"))
    font.write_bytes(font.read_bytes())
    assert campaign.render(ws(folder), jobs=1).up_to_date == 3
    (folder / "templates" / "fonts" / "Extra.ttf").write_bytes(font.read_bytes())
    assert [reason for _, reason in rendered(campaign.render(ws(folder), jobs=1))] == ["changed"] * 3


def test_force_deleted_and_edited_pdfs(make_workspace):
    folder = make_workspace(ROWS)
    campaign.render(ws(folder), jobs=1)
    out = folder / "out" / "letter"
    (out / "NA.pdf").unlink()
    (out / "KE.pdf").write_bytes(b"%PDF-1.7 edited by hand")
    assert rendered(campaign.render(ws(folder), jobs=1)) == [("NA", "missing"), ("KE", "changed")]
    forced = campaign.render(ws(folder), jobs=1, force=True, only=["FR"])
    assert rendered(forced) == [("FR", "forced")] and forced.up_to_date == 0


def test_the_journal_records_the_key_of_each_render(make_workspace):
    folder = make_workspace(ROWS[:1])
    campaign.render(ws(folder), jobs=1)
    campaign.render(ws(folder), jobs=1, force=True)
    events = Journal(folder / "dispatch.db").events("letter", kinds=["rendered"])
    assert [e.data["reason"] for e in events] == ["new", "forced"]
    assert len(events[0].data["key"]) == 64 and events[0].data["key"] == events[1].data["key"]
    assert events[0].data["sha256"] == events[1].data["sha256"]


def test_parallel_rendering_gives_the_same_bytes_as_one_process(make_workspace):
    # Two worker processes (spawned, so each imports WeasyPrint itself) against the calling process.
    folder = make_workspace(ROWS)
    single = campaign.render(ws(folder), jobs=1)
    one_process = pdf_bytes(folder)
    parallel = campaign.render(ws(folder), jobs=2, force=True)
    assert [r.recipient_id for r in parallel.rendered] == ["NA", "FR", "KE"]
    assert pdf_bytes(folder) == one_process
    assert [(r.sha256, r.pages, r.size) for r in parallel.rendered] == [(r.sha256, r.pages, r.size) for r in single.rendered]


def test_stale_temporary_files_of_a_killed_render_are_removed(make_workspace):
    folder = make_workspace(ROWS[:1])
    out = folder / "out" / "letter"
    out.mkdir(parents=True)
    stale = out / ".NA.pdf.999999999.tmp"  # no process has this id
    stale.write_bytes(b"%PDF-1.7 half")
    campaign.render(ws(folder), jobs=1)
    assert sorted(p.name for p in out.iterdir()) == ["NA.pdf"]
