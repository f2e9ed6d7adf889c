"""`dispatch report`: one self-contained HTML page that shows where every letter of a campaign stands.

It works offline and without a server: styles and a small sorting/filtering script are inline, page-1
thumbnails are PNG files in a folder beside the page, and the links go to the PDFs beside it.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from typing import Mapping, Sequence

from dispatch.status import StatusRow

ORDER = ("sent", "pending", "retry", "failed", "bounced", "uncertain", "interrupted", "delivered", "not yet")
COLOURS = {"sent": "#2e7d32", "delivered": "#1565c0", "pending": "#9e9e9e", "not yet": "#bdbdbd",
           "retry": "#f9a825", "failed": "#c62828", "bounced": "#c62828", "uncertain": "#ef6c00",
           "interrupted": "#ef6c00"}


def outcome(row: StatusRow) -> str:
    """One word for where a letter stands, for the totals bar."""
    if row.email:
        return row.email
    if row.delivery.startswith("delivered"):
        return "delivered"
    return "not yet"


def report_html(letter: str, generated: str, rows: Sequence[StatusRow], thumbnails: Mapping[str, str],
                rendered: Mapping[str, str]) -> str:
    """The page. thumbnails: id -> relative path of the page-1 PNG; rendered: id -> render status."""
    e = html.escape
    totals = Counter(outcome(r) for r in rows)
    kinds = [k for k in ORDER if totals[k]] + sorted(k for k in totals if k not in ORDER)
    bar = "".join(f'<span class="seg" style="flex:{totals[k]};background:{COLOURS.get(k, "#757575")}" '
                  f'title="{e(k)}: {totals[k]}"></span>' for k in kinds)
    legend = " · ".join(f'<b style="color:{COLOURS.get(k, "#757575")}">{totals[k]}</b> {e(k)}' for k in kinds)
    body = []
    for r in rows:
        thumb = thumbnails.get(r.id)
        img = f'<a href="{e(r.id)}.pdf"><img src="{e(thumb)}" alt="page 1 of {e(r.id)}" loading="lazy"></a>' if thumb else ""
        cells = [img, e(r.id), e(r.state), e(r.channel), e(rendered.get(r.id, "")), e(r.email or "-"),
                 e(r.time.replace("T", " ")[:19] if r.time else ""), e(r.message_id), e(r.delivery or "-"),
                 f'<a href="{e(r.id)}.pdf">{e(r.id)}.pdf</a>' if rendered.get(r.id) != "missing" else "missing",
                 e(r.flag)]
        body.append(f'<tr data-status="{e(outcome(r))}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    headings = ["page 1", "id", "state", "channel", "PDF", "email", "time (UTC)", "Message-ID", "hand delivery",
                "file", "note"]
    head = "".join(f'<th data-col="{i}">{e(h)}</th>' for i, h in enumerate(headings))
    data = json.dumps({"letter": letter, "generated": generated, "totals": dict(totals)})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Campaign report: {e(letter)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #111; }}
h1 {{ font-size: 1.4em; margin: 0 0 .2em; }}
.bar {{ display: flex; height: 18px; border-radius: 3px; overflow: hidden; margin: .6em 0 .3em; }}
.seg {{ display: block; }}
input {{ font: inherit; padding: .3em .5em; width: 22em; margin: .8em 0; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .35em .5em; text-align: left; vertical-align: top; }}
th {{ cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }}
td img {{ width: 56px; border: 1px solid #bbb; }}
td img:hover {{ width: 240px; }}
tr[data-status="failed"] td, tr[data-status="uncertain"] td {{ background: #fff3f0; }}
</style></head>
<body>
<h1>{e(letter)}</h1>
<div>{len(rows)} recipient(s) · generated {e(generated)} UTC</div>
<div class="bar" id="bar">{bar}</div>
<div id="legend">{legend}</div>
<input id="filter" type="search" placeholder="Filter: type a state, an id or a status">
<table id="letters"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script id="summary" type="application/json">{e(data)}</script>
<script>
(function () {{
  var table = document.getElementById("letters"), body = table.tBodies[0];
  document.getElementById("filter").addEventListener("input", function () {{
    var q = this.value.toLowerCase();
    Array.prototype.forEach.call(body.rows, function (row) {{
      row.style.display = row.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
    }});
  }});
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {{
    th.addEventListener("click", function () {{
      var col = +th.dataset.col, up = th.dataset.dir !== "up";
      th.dataset.dir = up ? "up" : "down";
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {{
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        return (up ? 1 : -1) * x.localeCompare(y, undefined, {{numeric: true}});
      }});
      rows.forEach(function (row) {{ body.appendChild(row); }});
    }});
  }});
}})();
</script>
</body></html>
"""
