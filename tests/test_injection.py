"""Cells that look like code, markup or links are printed as written and never fetched or run.

A real HTTP server on the loopback interface counts requests: the renderer must make none, and
every hostile string must appear literally in the text extracted from the real PDF.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from dispatch import campaign
from tests.conftest import flat, pdf_text, row, ws


@pytest.fixture
def http_server():
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.end_headers()
            self.wfile.write(b"body { color: red }")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_hostile_cells_are_printed_literally_and_nothing_is_fetched(make_workspace, http_server, tmp_path):
    base, hits = http_server
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET CONTENT")
    hostile = {
        "state": "{{ 7*7 }} {% include 'letter.css' %}",
        "mission": f"<img src=\"{base}/img.png\"><link rel=stylesheet href=\"{base}/x.css\">",
        "ambassador": f"<style>@import url({base}/import.css); body {{ background: url({secret.as_uri()}) }}</style>",
        "title": f"[click]({base}/link) ![pic]({base}/pic.png)",
        "address": f"<iframe src=\"{secret.as_uri()}\"></iframe>\nfile:///etc/passwd\n{base}/plain",
        "salutation": "Dear <b>friend</b> &amp; {# comment #}",
    }
    letter = """---
subject: "Test"
date: 2020-04-28
---
To {{ state }}, {{ mission }}, {{ ambassador }}, {{ title }}.
"""
    folder = make_workspace([{**row("NA", "Namibia"), **hostile}], letter=letter)
    campaign.render(ws(folder))
    text = flat(pdf_text(folder / "out" / "letter" / "NA.pdf"))
    squeezed = "".join(text.split())  # long URLs wrap at any character: compare without white space
    for value in hostile.values():
        for line in value.split("\n"):
            assert "".join(line.split()) in squeezed, line
    # {{ 7*7 }} was printed, not computed: no 49 outside the URLs (whose port and temporary folder
    # are random digits and may hold a 49).
    outside_urls = squeezed.replace(base, " ").replace(secret.as_uri(), " ")
    assert "{{7*7}}" in outside_urls and "49" not in outside_urls
    assert "TOP SECRET" not in text
    assert hits == []


def test_merged_html_has_no_live_markup_from_cells(make_workspace, http_server):
    base, _ = http_server
    folder = make_workspace([{**row("NA", "Namibia", mission=f"<script src='{base}/x.js'></script>"),
                              "state": "\"><svg onload=alert(1)>"}])
    c = campaign.load(ws(folder))
    html = c.merger().html(c.recipients.rows[0])
    assert "<script" not in html and "<svg" not in html
    assert "&lt;script" in html and "&lt;svg" in html
