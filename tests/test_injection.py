"""Cells that look like code, markup or links are printed as written and never fetched or run.

A real HTTP server on the loopback interface counts requests: the renderer must make none, and
every hostile string must appear literally in the text extracted from the real PDF.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from dispatch import campaign, i18n
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
        for line in value.split("\n"):  # as typeset: a straight quote prints as a typographic one
            assert "".join(i18n.typographic(line).split()) in squeezed, line
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
    html = campaign.merger(c).html(c.recipients.rows[0])
    assert "<script" not in html and "<svg" not in html
    assert "&lt;script" in html and "&lt;svg" in html


def test_cells_are_data_in_the_email_its_subject_and_the_attachment_name(make_workspace, smtp_env):
    """The cells that look like templates or markup reach the email as written: in the text, in the HTML part
    (escaped), in the subject, and in the attachment's name (made a safe file name, never evaluated)."""
    from email import policy
    from email.parser import BytesParser

    from typer.testing import CliRunner

    from dispatch.cli import app
    from tests.conftest import email_row

    code = "{{ 7*7 }} {% include 'letter.css' %}"
    folder = make_workspace([email_row("NA", code, "mission.na@example.org",
                                       salutation="<script>alert(1)</script> {{ 6*7 }},")])
    templates = folder / "templates"
    email = (templates / "email.txt.j2").read_text(encoding="utf-8")
    (templates / "email.txt.j2").write_text(
        email.replace("{% set subject = letter.subject %}", "{% set subject = letter.subject ~ ' — ' ~ state %}"),
        encoding="utf-8")
    (templates / "email.html.j2").write_text("<p>{{ salutation }}</p>\n<p>To {{ state }}: {{ attachment }}</p>\n",
                                             encoding="utf-8")
    result = CliRunner().invoke(app, ["-C", str(folder), "send", "--dry-run"])
    assert result.exit_code == 0, result.output
    message = BytesParser(policy=policy.default).parsebytes((folder / "out" / "letter" / "outbox" / "NA.eml").read_bytes())
    assert message["subject"] == f"Test Letter — {i18n.typographic(code)}"  # the subject names the State
    text = message.get_body(("plain",)).get_content()
    assert i18n.typographic(code) in " ".join(text.split())  # as written (typeset, the text wrapped at 78)
    assert "<script>alert(1)</script> {{ 6*7 }}," in text
    html = message.get_body(("html",)).get_content()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; {{ 6*7 }}," in html
    name = "Joint-letter-7-7-include-letter.css’.pdf"  # typeset, made safe for a file name, never run
    assert f"To {{{{ 7*7 }}}} {{% include ‘letter.css’ %}}: {name}" in html
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == name
    letter_css = (templates / "letter.css").read_text(encoding="utf-8")
    for part in (message["subject"], text, html):
        assert "49" not in part and "42" not in part and letter_css.strip().splitlines()[0] not in part


def test_html_templates_escape_and_text_templates_do_not(make_workspace):
    """Autoescaping is on for every HTML template (the letter's layout, the print layouts, the HTML email) and
    off for text (the letter's body is escaped for Markdown instead; the email text is plain text)."""
    from dispatch.merge.email import CoverNotes
    from dispatch.merge.letter import Layouts, markdown_escape
    from dispatch.merge.versions import VersionMerger

    folder = make_workspace([row("NA", "Namibia")])
    merger = VersionMerger(campaign.load(ws(folder))).mergers["en"]
    notes = CoverNotes(folder / "templates", attachment="x")
    assert merger.layout_env.autoescape is True and Layouts(folder / "templates").env.autoescape is True
    assert notes.html_env.autoescape is True and notes.text_env.autoescape is False
    assert merger.body_env.autoescape is False
    assert merger.body_env.finalize("<b>*x*</b>") == markdown_escape("<b>*x*</b>") == "\\<b\\>\\*x\\*\\<\\/b\\>"
