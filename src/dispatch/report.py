"""`dispatch report`: one self-contained HTML page that shows where every letter of a campaign stands.

It works offline and without a server: the styles and a small script are inline, page 1 of each letter is a
PNG in a folder beside the page, and the links go to the PDFs beside it. The table shows the columns a
coordinator reads first, one line per letter; "all columns" shows the rest, and the panel beside the table
shows the chosen letter's page 1 (a click opens the PDF) and everything known about it. The same data is
embedded as JSON (<script type="application/json">) for scripts.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence
from urllib.parse import quote

from dispatch.status import StatusRow, local_time, remarks, standing, when

ORDER = ("sent", "pending", "retry", "failed", "bounced", "uncertain", "interrupted", "delivered", "not yet")
COLOURS = {"sent": "#2e7d32", "delivered": "#1565c0", "pending": "#8a8a8a", "not yet": "#b0b0b0",
           "retry": "#f9a825", "failed": "#c62828", "bounced": "#c62828", "uncertain": "#ef6c00",
           "interrupted": "#ef6c00"}
# The table: (heading, key in the row's data, shown before "all columns" is ticked)
COLUMNS = (("id", "id", True), ("state", "state", True), ("channel", "channel", True),
           ("status", "status", True), ("when", "when", True), ("note", "remarks", True),
           ("PDF", "pdf", False), ("email", "email", False), ("email time", "email_time", False),
           ("Message-ID", "message_id", False), ("server reply", "reply", False),
           ("hand delivery", "delivery", False), ("sent copy", "sent_copy", False),
           ("replied", "replied", False), ("auto-reply", "auto_reply", False))


def outcome(row: StatusRow) -> str:
    """One word for where a letter stands, for the totals bar and the row's colour."""
    if row.email:
        return row.email
    if row.delivery.startswith("delivered"):
        return "delivered"
    return "not yet"


@dataclass(frozen=True)
class Files:
    """A letter's files, as paths relative to the report's folder ("" for none)."""

    pdf: str = ""   # the working copy, <id>.pdf
    page: str = ""  # page 1 as a PNG
    sent: str = ""  # the copy that went out, in the sent archive


def row_data(row: StatusRow, files: Files) -> dict[str, str]:
    """Everything the page knows about one letter: the status columns, the words the table shows, its files."""
    data = asdict(row)
    data.update(status=standing(row), outcome=outcome(row), when=when(row), remarks=remarks(row),
                email_time=local_time(row.time), replied=local_time(row.replied), auto_reply=local_time(row.auto_reply),
                file=files.pdf, page=files.page, sent_link=files.sent)
    return data


def embedded_json(value: object) -> str:
    """JSON to put inside <script type="application/json">: every '<' written as \\u003c, so no '</script>'
    or '<!--' in a cell can end or bend the element, and the text stays valid JSON."""
    return json.dumps(value, ensure_ascii=False, indent=1).replace("<", "\\u003c")


def url(path: str) -> str:
    return quote(path, safe="/")


def report_html(title: str, letter: str, generated: str, rows: Sequence[StatusRow],
                files: Mapping[str, Files]) -> str:
    """The page. title: the letter's title; letter: its name; files: each recipient's files (by id)."""
    e = html.escape
    items = [row_data(r, files.get(r.id, Files())) for r in rows]
    totals = Counter(item["outcome"] for item in items)
    kinds = [k for k in ORDER if totals[k]] + sorted(k for k in totals if k not in ORDER)
    bar = "".join(f'<span class="seg" style="flex:{totals[k]};background:{COLOURS.get(k, "#757575")}" '
                  f'title="{e(k)}: {totals[k]}"></span>' for k in kinds)
    legend = " · ".join(f'<b style="color:{COLOURS.get(k, "#757575")}">{totals[k]}</b> {e(k)}' for k in kinds)
    head = "".join(f'<th data-col="{i}"{"" if shown else " class=more"} title="sort by {e(h)}">{e(h)}</th>'
                   for i, (h, _, shown) in enumerate(COLUMNS))
    body = "\n".join(_row_html(item) for item in items)
    data = {"title": title, "letter": letter, "generated": generated, "totals": dict(totals), "rows": items}
    first = items[0] if items else None
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} — where every letter stands</title>
<style>{_STYLE}</style></head>
<body>
<header>
<h1>{e(title)}</h1>
<p class="meta">letter <code>{e(letter)}</code> · {len(items)} recipient(s) · generated {e(generated)}
 · times are local</p>
<div class="bar" id="bar">{bar}</div>
<div id="legend">{legend}</div>
</header>
<div class="tools">
<input id="filter" type="search" placeholder="Filter: a state, an id, a status, a word of a note"
 aria-label="Filter the letters">
<label><input type="checkbox" id="all-columns"> all columns</label>
<span id="shown">{len(items)} of {len(items)} shown</span>
</div>
<main>
<div class="list"><table id="letters"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></div>
<aside id="panel" aria-live="polite">{_panel_html(first)}</aside>
</main>
<script id="report-data" type="application/json">{embedded_json(data)}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def _row_html(item: Mapping[str, str]) -> str:
    e = html.escape
    cells = []
    for _, key, shown in COLUMNS:
        value = item[key]
        if key == "id" and item["file"]:
            text = f'<a href="{e(url(item["file"]))}">{e(value)}</a>'
        elif key == "status":
            text = f'<span class="badge" style="--c:{COLOURS.get(item["outcome"], "#757575")}">{e(value)}</span>'
        elif key == "sent_copy" and item["sent_link"]:
            text = f'<a href="{e(url(item["sent_link"]))}">{e(value.rsplit("/", 1)[-1])}</a>'
        else:
            text = e(value) if value else '<span class="none">–</span>'
        classes = " ".join(c for c in (key.replace("_", "-"), "" if shown else "more") if c)
        tip = f' title="{e(value)}"' if key in ("state", "remarks", "message_id", "reply", "delivery") and value else ""
        cells.append(f'<td class="{classes}"{tip}>{text}</td>')
    return (f'<tr data-status="{e(item["outcome"])}" data-id="{e(item["id"])}" tabindex="0">'
            + "".join(cells) + "</tr>")


_DETAILS = (("channel", "channel"), ("status", "status"), ("when", "when"), ("note", "remarks"),
            ("PDF (SHA-256)", "pdf"), ("email", "email"), ("email time", "email_time"), ("Message-ID", "message_id"),
            ("server reply", "reply"), ("hand delivery", "delivery"), ("sent copy", "sent_copy"))


def _panel_html(item: Mapping[str, str] | None) -> str:
    """The panel as it first shows (the first letter); the script fills it again for the letter chosen."""
    e = html.escape
    if item is None:
        return "<p>No recipients.</p>"
    picture = (f'<a id="page-link" href="{e(url(item["file"]))}" title="Open the letter (PDF)">'
               f'<img id="page" src="{e(url(item["page"]))}" alt="Page 1 of the letter to {e(item["state"])}"></a>'
               if item["page"] and item["file"] else '<p id="page-link" class="none">no PDF yet: dispatch render</p>')
    details = "".join(f"<dt>{e(label)}</dt><dd>{e(item[key]) or '–'}</dd>" for label, key in _DETAILS)
    return (f'<h2 id="panel-title">{e(item["state"])} ({e(item["id"])})</h2>{picture}'
            f'<p class="hint">click the page to open the PDF; ↑ ↓ choose another letter</p>'
            f'<dl id="panel-details">{details}</dl>')


_STYLE = """
:root { --line: #e3e3e3; --muted: #666; }
* { box-sizing: border-box; }
body { font: 13px/1.35 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #111; }
header { padding: 14px 20px 6px; }
h1 { font-size: 20px; margin: 0 0 2px; font-weight: 650; }
.meta { margin: 0; color: var(--muted); }
.bar { display: flex; height: 14px; border-radius: 3px; overflow: hidden; margin: 8px 0 4px; max-width: 900px; }
.seg { display: block; }
.tools { display: flex; gap: 16px; align-items: center; padding: 0 20px; height: 44px; position: sticky; top: 0;
         background: #fff; border-bottom: 1px solid var(--line); z-index: 2; }
#filter { font: inherit; padding: 4px 8px; width: 26em; }
#shown { color: var(--muted); }
main { display: grid; grid-template-columns: minmax(0, 1fr) min(480px, 36vw); gap: 20px; padding: 0 20px 20px; }
.list { min-width: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 3px 8px; text-align: left; white-space: nowrap; border-bottom: 1px solid var(--line); }
th { cursor: pointer; background: #f6f6f6; position: sticky; top: 44px; font-weight: 600; z-index: 1; }
th[data-dir="up"]::after { content: " ▲"; } th[data-dir="down"]::after { content: " ▼"; }
td.state { max-width: 13em; overflow: hidden; text-overflow: ellipsis; }
td.remarks { width: 100%; max-width: 0; overflow: hidden; text-overflow: ellipsis; color: #333; }
td.message-id, td.reply, td.delivery, td.sent-copy { max-width: 12em; overflow: hidden; text-overflow: ellipsis; }
td.pdf, td.message-id { font-family: ui-monospace, monospace; font-size: 12px; }
body:not(.all) .more { display: none; }
body.all main { grid-template-columns: minmax(0, 1fr); } body.all aside { display: none; }
body.all td.remarks { min-width: 14em; max-width: 18em; width: auto; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f3f7ff; }
tbody tr.chosen { background: #e3edff; outline: 1px solid #9db7f0; }
tr[data-status="failed"] td, tr[data-status="uncertain"] td, tr[data-status="interrupted"] td { background: #fff3f0; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; color: #fff; background: var(--c);
         font-size: 12px; line-height: 18px; }
.none { color: #aaa; }
aside { position: sticky; top: 44px; align-self: start; max-height: calc(100vh - 44px); overflow: auto;
        padding-top: 8px; }
aside h2 { font-size: 16px; margin: 0 0 6px; }
aside img { display: block; width: 100%; height: auto; border: 1px solid #bbb; box-shadow: 0 1px 4px #0002;
            background: #fff; }
aside .hint { color: var(--muted); margin: 4px 0 8px; font-size: 12px; }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 10px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } aside { position: static; max-height: none; } }
@media print { .tools, aside { display: none; } main { display: block; } th { position: static; } }
"""

_SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var byId = {};
  data.rows.forEach(function (row) { byId[row.id] = row; });
  var table = document.getElementById("letters"), body = table.tBodies[0];
  var shown = document.getElementById("shown"), panel = document.getElementById("panel");
  var details = [["channel", "channel"], ["status", "status"], ["when", "when"], ["note", "remarks"],
                 ["PDF (SHA-256)", "pdf"], ["email", "email"], ["email time", "email_time"], ["Message-ID", "message_id"],
                 ["server reply", "reply"], ["hand delivery", "delivery"], ["sent copy", "sent_copy"]];

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function href(path) { return path.split("/").map(encodeURIComponent).join("/"); }

  function choose(tr) {
    var row = byId[tr.dataset.id];
    Array.prototype.forEach.call(body.querySelectorAll("tr.chosen"), function (old) { old.classList.remove("chosen"); });
    tr.classList.add("chosen");
    panel.textContent = "";
    panel.appendChild(el("h2", {id: "panel-title"}, row.state + " (" + row.id + ")"));
    if (row.page && row.file) {
      var link = el("a", {id: "page-link", href: href(row.file), title: "Open the letter (PDF)"});
      link.appendChild(el("img", {id: "page", src: href(row.page), alt: "Page 1 of the letter to " + row.state}));
      panel.appendChild(link);
      panel.appendChild(el("p", {"class": "hint"}, "click the page to open the PDF; \\u2191 \\u2193 choose another letter"));
    } else {
      panel.appendChild(el("p", {id: "page-link", "class": "none"}, "no PDF yet: dispatch render"));
    }
    var dl = el("dl", {id: "panel-details"});
    details.forEach(function (pair) {
      dl.appendChild(el("dt", {}, pair[0]));
      dl.appendChild(el("dd", {}, row[pair[1]] || "\\u2013"));
    });
    panel.appendChild(dl);
  }

  function visible() {
    return Array.prototype.filter.call(body.rows, function (tr) { return tr.style.display !== "none"; });
  }

  body.addEventListener("click", function (event) {
    var tr = event.target.closest("tr");
    if (tr && !event.target.closest("a")) choose(tr);
  });
  body.addEventListener("focusin", function (event) {
    var tr = event.target.closest("tr");
    if (tr) choose(tr);
  });
  body.addEventListener("keydown", function (event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    var rows = visible(), at = rows.indexOf(event.target.closest("tr"));
    var next = rows[at + (event.key === "ArrowDown" ? 1 : -1)];
    if (next) { next.focus(); event.preventDefault(); }
  });

  document.getElementById("filter").addEventListener("input", function () {
    var words = this.value.toLowerCase().split(/\\s+/).filter(Boolean), count = 0;
    Array.prototype.forEach.call(body.rows, function (tr) {
      var row = byId[tr.dataset.id];
      var text = [row.id, row.state, row.channel, row.status, row.when, row.remarks, row.email, row.reply,
                  row.delivery, row.message_id].join(" ").toLowerCase();
      var hit = words.every(function (w) { return text.indexOf(w) >= 0; });
      tr.style.display = hit ? "" : "none";
      count += hit;
    });
    shown.textContent = count + " of " + body.rows.length + " shown";
  });

  document.getElementById("all-columns").addEventListener("change", function () {
    document.body.classList.toggle("all", this.checked);
  });

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.addEventListener("click", function () {
      var col = +th.dataset.col, up = th.dataset.dir !== "up";
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) { delete other.dataset.dir; });
      th.dataset.dir = up ? "up" : "down";
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        return (up ? 1 : -1) * x.localeCompare(y, undefined, {numeric: true});
      });
      rows.forEach(function (tr) { body.appendChild(tr); });
    });
  });

  if (body.rows.length) choose(body.rows[0]);
})();
"""
