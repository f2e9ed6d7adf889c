"""dispatch report: a self-contained page, checked by parsing it and by opening it in headless Chromium."""

from __future__ import annotations

import html.parser
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from dispatch.cli import app
from tests.conftest import row

runner = CliRunner()


class Rows(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.cells: list[str] | None = None
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.urls.append(attrs[key])
        if tag == "tr" and "data-status" in attrs:
            self.rows.append({"status": attrs["data-status"]})
            self.cells = []
        elif tag == "td" and self.cells is not None:
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "tr" and self.cells is not None:
            self.rows[-1]["cells"] = self.cells
            self.cells = None

    def handle_data(self, data):
        if self.cells:
            self.cells[-1] += data


def campaign_with_states(make_workspace) -> Path:
    folder = make_workspace([row("NA", "Namibia", address="1 Plaza\nNew York"),
                             row("FR", "France", address="2 Avenue\nNew York"),
                             row("DE", "Germany", address="3 Street\nNew York")])
    assert runner.invoke(app, ["-C", str(folder), "render"]).exit_code == 0
    result = runner.invoke(app, ["-C", str(folder), "mark", "FR", "--delivered", "--by", "Reception"])
    assert result.exit_code == 0, result.output
    assert "report: out/letter/report.html" in result.stdout  # mark keeps the report current
    return folder


def test_report_lists_every_recipient_with_its_status(make_workspace):
    folder = campaign_with_states(make_workspace)
    page = folder / "out" / "letter" / "report.html"
    parser = Rows()
    parser.feed(page.read_text(encoding="utf-8"))
    by_id = {r["cells"][1]: r for r in parser.rows}
    assert list(by_id) == ["NA", "FR", "DE"]
    assert by_id["FR"]["status"] == "delivered" and by_id["FR"]["cells"][8].startswith("delivered ")
    assert by_id["FR"]["cells"][8].endswith("to Reception")
    assert by_id["NA"]["status"] == "not yet" and by_id["NA"]["cells"][3] == "print"
    assert by_id["DE"]["cells"][9] == "DE.pdf"
    assert all(not u.startswith(("http:", "https:", "//")) for u in parser.urls)  # works offline
    thumbs = [u for u in parser.urls if u.endswith(".png")]
    assert len(thumbs) == 3 and all((page.parent / u).is_file() for u in thumbs)
    result = runner.invoke(app, ["-C", str(folder), "report"])
    assert result.exit_code == 0
    assert result.stdout == "out/letter/report.html: open it in a web browser (it needs no server or network)\n"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_report_renders_in_a_real_browser(make_workspace, tmp_path):
    folder = campaign_with_states(make_workspace)
    page = (folder / "out" / "letter" / "report.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('<tr data-status="') == 3
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1200,800", page],
                   capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 800)
    dark = sum(1 for value in image.get_flattened_data() if value < 128)
    assert dark > 2000  # text, the status bar and the thumbnails, not a blank page
