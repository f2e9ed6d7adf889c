"""Typst reference for the rendering benchmark: the sample letter typeset by Typst, one PDF per recipient.

    python bench/typst_reference.py --recipients 125
    python bench/typst_reference.py --recipients 1000 --plain   # plain PDFs, no PDF/A, no tags

bench/reference.typ is templates/letter.html.j2 and letter.css written in Typst. The letter's front
matter, its Markdown body (turned into Typst markup here) and each recipient's address come in as JSON
through sys.inputs; the address lines are the ones dispatch prints. One typst.Compiler compiles every
letter in this process, so the fonts (templates/fonts/, no system fonts) are read once. The PDFs follow
the campaign's pdf_variant (PDF/A-3u, tagged, for the sample), as `dispatch render` does.
Extra recipients (beyond the 125 rows) are copies of the sample rows with new ids, as in bench/render.py.
It then checks with pypdf that each PDF names the recipient's state and prints the page counts.

Known differences from dispatch's letter (same text, same lines): when a list cannot start at the foot of a
page, WeasyPrint carries the paragraph's last two lines over with it, Typst does not; Typst does not
balance the two columns of signatories on the last page. The letterhead is the letter's title: the
sample campaign has no [sender].
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().with_name("reference.typ")
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # ASCII punctuation: each one may start Typst markup


def typst_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _inline(tokens) -> str:
    parts = []
    for token in tokens:
        match token.type:
            case "text":
                parts.append(_PUNCTUATION.sub(r"\\\1", token.content))
            case "softbreak":
                parts.append(" ")
            case "hardbreak":
                parts.append("#linebreak()")
            case "em_open":
                parts.append("#emph[")
            case "strong_open":
                parts.append("#strong[")
            case "link_open":
                parts.append(f"#link({typst_string(token.attrs['href'])})[")
            case "em_close" | "strong_close" | "link_close":
                parts.append("]")
            case "code_inline":
                parts.append(f"#raw({typst_string(token.content)})")
            case _:
                raise ValueError(f"the Typst reference does not handle Markdown {token.type}")
    return "".join(parts)


def typst_markup(markdown: str) -> str:
    """A letter's Markdown body (paragraphs, lists, emphasis, links) as Typst markup."""
    from markdown_it import MarkdownIt

    out, depth = [], 0
    for token in MarkdownIt("commonmark").parse(markdown):
        match token.type:
            case "paragraph_open" | "list_item_close":
                pass
            case "paragraph_close":
                out.append("" if depth else "\n\n")
            case "bullet_list_open" | "ordered_list_open":
                depth += 1
            case "bullet_list_close" | "ordered_list_close":
                depth -= 1
                out.append("" if depth else "\n\n")
            case "list_item_open":  # an ordered list's item has its number in info
                out.append("\n" + "  " * (depth - 1) + (f"{token.info}. " if token.info else "- "))
            case "inline":
                out.append(_inline(token.children))
            case _:
                raise ValueError(f"the Typst reference does not handle Markdown {token.type}")
    return "".join(out).strip() + "\n"


def campaign_settings(campaign: Path) -> dict:
    with open(campaign / "dispatch.toml", "rb") as handle:
        return tomllib.load(handle)["campaign"]


def letter_inputs(campaign: Path) -> dict:
    """What every letter of the campaign shares, in the words dispatch uses for English letters."""
    from dispatch import i18n
    from dispatch.letters import read_letter

    name = campaign_settings(campaign)["letter"]
    letter = read_letter(campaign / "letters" / f"{name}.md")
    if "{{" in letter.body or "{%" in letter.body:
        raise ValueError("the Typst reference takes a letter body without Jinja2 expressions")
    words = i18n.wording("en")
    date = i18n.format_letter_date(letter.date, "en")
    return {
        "title": letter.title, "author": letter.author,
        "place_date": f"{letter.place}{words.comma}{date}" if letter.place else date,
        "salutation": words.salutation, "page_label": words.page_label,
        "body": typst_markup(letter.body), "signatories": list(letter.signatories),
    }


def recipient_inputs(row: dict) -> dict:
    from dispatch.models import Recipient

    recipient = Recipient(id=row["id"], line=0, fields=row)
    return {
        "state": row["state"], "mission": row["mission"],
        "addressee_lines": list(recipient.addressee_lines),
        "address_lines": [line for line in row.get("address", "").splitlines() if line.strip()],
    }


def render_typst(campaign: Path, rows: list[dict], out_dir: Path, *, plain: bool = False) -> dict:
    """Compile out_dir/<id>.pdf for each row of recipients.csv, in this process.

    Returns the wall and CPU time (from reading the letter to the last PDF on disk), the letters and pages made,
    letters and pages per second. plain=True writes plain PDFs rather than the campaign's pdf_variant.
    """
    import typst
    from pypdf import PdfReader

    variant = "" if plain else campaign_settings(campaign).get("pdf_variant", "")
    options = {"pdf_standards": [variant.removeprefix("pdf/")], "pdf_tags": True} if variant else {"pdf_tags": False}
    out_dir.mkdir(parents=True, exist_ok=True)
    started, cpu = time.perf_counter(), time.process_time()
    letter = json.dumps(letter_inputs(campaign), ensure_ascii=False)
    fonts = typst.Fonts(include_system_fonts=False, include_embedded_fonts=False,
                        font_paths=[str(campaign / "templates" / "fonts")])
    compiler = typst.Compiler(str(TEMPLATE), root=str(TEMPLATE.parent), font_paths=fonts, ignore_system_fonts=True)
    for row in rows:
        recipient = json.dumps(recipient_inputs(row), ensure_ascii=False)
        compiler.compile(output=str(out_dir / f"{row['id']}.pdf"), format="pdf", timestamp=0,
                         sys_inputs={"letter": letter, "recipient": recipient}, **options)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    pages = sum(len(PdfReader(out_dir / f"{row['id']}.pdf").pages) for row in rows)
    return {"wall_s": wall, "cpu_s": cpu, "letters": len(rows), "pages": pages,
            "letters_per_s": len(rows) / wall, "pages_per_s": pages / wall}


def recipient_rows(campaign: Path, count: int) -> list[dict]:
    """The campaign's rows, then copies of them with new ids (AF-2, AL-2, ...) up to count."""
    with open(campaign / campaign_settings(campaign)["recipients"], encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out, copy = rows[:count], 2
    while len(out) < count:
        out.extend(dict(row, id=f"{row['id']}-{copy}") for row in rows[:count - len(out)])
        copy += 1
    return out


def check_letters(out_dir: Path, rows: list[dict]) -> tuple[Counter, list[str]]:
    """Page counts (pages -> letters), and the ids of the PDFs whose text does not name the state."""
    from pypdf import PdfReader

    pages, missing = Counter(), []
    for row in rows:
        reader = PdfReader(out_dir / f"{row['id']}.pdf")
        pages[len(reader.pages)] += 1
        text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
        if " ".join(row["state"].split()) not in text:
            missing.append(row["id"])
    return pages, missing


def main() -> None:
    import typst

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=125, help="how many letters (default 125)")
    parser.add_argument("--plain", action="store_true", help="plain PDFs (no PDF/A, no tags)")
    parser.add_argument("--keep", action="store_true", help="keep the PDFs (their folder is printed)")
    args = parser.parse_args()

    print(f"typst {typst.__version__}, load average {os.getloadavg()[0]:.2f} at start")
    rows = recipient_rows(REPO, args.recipients)
    folder = Path(tempfile.mkdtemp(prefix="dispatch-typst-"))
    try:
        result = render_typst(REPO, rows, folder, plain=args.plain)
        pages, missing = check_letters(folder, rows)
        print(f"{result['letters']} letters, {result['pages']} pages in {result['wall_s']:.2f} s wall "
              f"({result['cpu_s']:.2f} s CPU): "
              f"{result['letters_per_s']:.1f} letters/s, {result['pages_per_s']:.1f} pages/s")
        print("page counts: " + ", ".join(f"{n} letters of {p} pages" for p, n in sorted(pages.items())))
        if missing:
            raise SystemExit(f"{len(missing)} PDFs do not name their state: {', '.join(missing[:10])}")
        print("every PDF names its recipient's state")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
