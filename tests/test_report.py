"""dispatch report: a self-contained page, checked by parsing it and by opening it in headless Chromium."""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from dispatch.cli import app
from tests.conftest import email_row, row
from tests.smtp_server import smtp_server

runner = CliRunner()
NOTE = 'Withdrawal effective 2 June 2026 </script><script>alert("x")</script> <!-- & "quotes"'


class Page(html.parser.HTMLParser):
    """The page's title, headings, rows (cells by column), links, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.title = self.h1 = ""
        self.headings: list[tuple[str, str]] = []  # (text, class)
        self.rows: list[dict] = []
        self.urls: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self._in: str | None = None
        self._row: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[key] for key in ("src", "href") if key in attrs]
        if tag in ("title", "h1"):
            self._in = tag
        elif tag == "th":
            self.headings.append(("", attrs.get("class") or ""))
            self._in = "th"
        elif tag == "tr" and "data-status" in attrs:
            self._row = {"status": attrs["data-status"], "cells": [], "classes": []}
            self.rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._row["cells"].append("")
            self._row["classes"].append(attrs.get("class") or "")
            self._in = "td"
        elif tag == "script":
            self.scripts.append((attrs, ""))
            self._in = "script"

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag in ("title", "h1", "th", "td", "script"):
            self._in = None

    def handle_data(self, data):
        if self._in in ("title", "h1"):
            setattr(self, self._in, getattr(self, self._in) + data)
        elif self._in == "th":
            text, cls = self.headings[-1]
            self.headings[-1] = (text + data, cls)
        elif self._in == "td":
            self._row["cells"][-1] += data
        elif self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def cell(self, row: dict, heading: str) -> str:
        return row["cells"][[h for h, _ in self.headings].index(heading)]


def campaign_with_states(make_workspace) -> Path:
    """NA to print, FR printed and delivered by hand, DE to print with a note full of markup, CH emailed.
    (Needs the smtp_env fixture: the test password, no SMTP setting from the machine.)"""
    with smtp_server() as server:
        folder = make_workspace([row("NA", "Namibia", address="1 Plaza\nNew York", note="", cc="", bcc=""),
                                 row("FR", "France", address="2 Avenue\nNew York", note="", cc="", bcc=""),
                                 row("DE", "Germany", address="3 Street\nNew York", note=NOTE, cc="", bcc=""),
                                 email_row("CH", "Switzerland", "ch@example.org", address="", note="")],
                                settings=server.settings())
        assert runner.invoke(app, ["-C", str(folder), "render"]).exit_code == 0
        sent = runner.invoke(app, ["-C", str(folder), "send", "--yes"])
        assert sent.exit_code == 0, sent.output
    result = runner.invoke(app, ["-C", str(folder), "mark", "FR", "--delivered", "--by", "Reception"])
    assert result.exit_code == 0, result.output
    assert "report: out/letter/report.html" in result.stdout  # mark keeps the report current
    return folder


def read(folder: Path) -> Page:
    page = Page()
    page.feed((folder / "out" / "letter" / "report.html").read_text(encoding="utf-8"))
    return page


def test_report_lists_every_recipient_with_its_status(make_workspace, smtp_env):
    folder = campaign_with_states(make_workspace)
    page = read(folder)
    assert page.title.startswith("Test Letter") and page.h1 == "Test Letter"  # the letter's title, not its name
    shown = [h for h, cls in page.headings if "more" not in cls]
    assert shown == ["id", "state", "channel", "status", "when", "note"]  # what a coordinator reads first
    assert "Message-ID" in [h for h, cls in page.headings if "more" in cls]  # the rest on demand
    by_id = {page.cell(r, "id"): r for r in page.rows}
    assert list(by_id) == ["NA", "FR", "DE", "CH"]
    assert [page.cell(r, "status") for r in page.rows] == ["not yet", "delivered", "not yet", "sent"]
    assert by_id["FR"]["status"] == "delivered" and page.cell(by_id["FR"], "hand delivery").endswith("to Reception")
    assert page.cell(by_id["FR"], "when")[:2] == "20" and page.cell(by_id["CH"], "when")[:2] == "20"
    assert page.cell(by_id["NA"], "channel") == "print" and by_id["NA"]["status"] == "not yet"
    assert page.cell(by_id["DE"], "note") == NOTE  # escaped in the cell, shown as written
    assert page.cell(by_id["CH"], "Message-ID").startswith("<") and page.cell(by_id["CH"], "sent copy").endswith(".pdf")
    assert all(not u.startswith(("http:", "https:", "//")) for u in page.urls)  # works offline
    report_dir = folder / "out" / "letter"
    assert {"NA.pdf", "FR.pdf", "DE.pdf", "CH.pdf"} <= set(page.urls)
    assert all((report_dir / u).is_file() for u in page.urls if u.endswith((".png", ".pdf")))
    sent_copy = [u for u in page.urls if u.startswith("sent/")]
    assert [u.split("/")[1] for u in sent_copy] == ["FR", "CH"]  # delivered by hand, emailed: the copies kept
    assert all((report_dir / u).is_file() for u in sent_copy)

    [(attrs, text)] = [s for s in page.scripts if s[0].get("type") == "application/json"]
    assert len(page.scripts) == 2  # the note's </script> ended nothing
    data = json.loads(text)  # valid JSON, not HTML-escaped
    assert "</" not in text and "<!--" not in text
    assert data["title"] == "Test Letter" and data["letter"] == "letter"
    assert data["totals"] == {"not yet": 2, "delivered": 1, "sent": 1}
    status = json.loads(runner.invoke(app, ["-C", str(folder), "status", "-f", "json"]).stdout)
    for item, expected in zip(data["rows"], status):
        assert {k: item[k] for k in expected} == expected  # every column of `status --format json`
    assert data["rows"][2]["note"] == NOTE
    images = [report_dir / r["page"] for r in data["rows"]]
    assert all(Image.open(p).width >= 900 for p in images)  # page 1, large enough to read the address

    result = runner.invoke(app, ["-C", str(folder), "report"])
    assert result.exit_code == 0
    assert result.stdout == "out/letter/report.html: open it in a web browser (it needs no server or network)\n"


def test_page_images_are_made_once_per_pdf(make_workspace):
    folder = make_workspace([row("NA", "Namibia", address="1 Plaza"), row("NA-2", "Namibia again", address="2 Plaza")])
    assert runner.invoke(app, ["-C", str(folder), "render"]).exit_code == 0
    assert runner.invoke(app, ["-C", str(folder), "report"]).exit_code == 0
    pages = folder / "out" / "letter" / "report-files"
    first = {p.name: p.stat().st_mtime_ns for p in pages.iterdir()}
    assert len(first) == 2
    assert runner.invoke(app, ["-C", str(folder), "report"]).exit_code == 0
    assert {p.name: p.stat().st_mtime_ns for p in pages.iterdir()} == first  # nothing drawn again
    (folder / "letters" / "letter.md").write_text(
        (folder / "letters" / "letter.md").read_text().replace("Thank you.", "Thank you again."))
    assert runner.invoke(app, ["-C", str(folder), "render", "--only", "NA"]).exit_code == 0
    assert runner.invoke(app, ["-C", str(folder), "report"]).exit_code == 0
    now = {p.name for p in pages.iterdir()}
    assert len(now) == 2 and [n for n in first if n.startswith("NA-2-")][0] in now  # NA's old image went, NA-2's stayed


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Added to a copy of the page: measures the layout once the page's own script ran, and writes it into the DOM.
MEASURE = """<script>
window.addEventListener("load", function () {
  var rows = document.querySelectorAll("#letters tbody tr"), heights = [];
  rows.forEach(function (tr) { heights.push(tr.getBoundingClientRect().height); });
  var mid = document.querySelector("th.more[title='sort by Message-ID']");
  var before = mid.getBoundingClientRect().width;
  document.getElementById("all-columns").click();
  var img = document.getElementById("page");
  var out = {heights: heights, midHidden: before, midShown: mid.getBoundingClientRect().width,
             panel: document.getElementById("panel-title").textContent, imgWidth: img ? img.naturalWidth : 0,
             chosen: document.querySelectorAll("tr.chosen").length};
  document.getElementById("shown").setAttribute("data-measured", JSON.stringify(out));
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_report_renders_in_a_real_browser(make_workspace, smtp_env, tmp_path):
    folder = campaign_with_states(make_workspace)
    report = folder / "out" / "letter" / "report.html"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('<tr data-status="') == 4
    assert '<h2 id="panel-title">Namibia (NA)</h2>' in dom.stdout  # the script ran: the first letter's panel

    measured = report.with_name("measured.html")
    measured.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE), encoding="utf-8")
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--window-size=1200,2000", "--virtual-time-budget=5000",
                          "--dump-dom", measured.as_uri()], capture_output=True, text=True, timeout=120)
    start = dom.stdout.index("data-measured=") + len("data-measured=") + 1
    found = json.loads(html.unescape(dom.stdout[start:dom.stdout.index('"', start)]))
    assert max(found["heights"]) <= 30, found  # one line a letter, a long note too: 60 and more in 2,000 px
    assert found["midHidden"] == 0 and 0 < found["midShown"] <= 250, found  # on demand, and not 600 px wide
    assert found["panel"] == "Namibia (NA)" and found["chosen"] == 1 and found["imgWidth"] >= 900, found

    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1200,800", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 800)
    dark = sum(1 for value in image.get_flattened_data() if value < 128)
    assert dark > 2000  # text, the status bar and page 1, not a blank page
