"""The master's slots called by WeasyPrint as it writes the master (pdf/slots.py), not put in by parsing it.

Each master is compared with the same document written as WeasyPrint writes it, each marker's painting then
found and replaced in the PDF (master._with_slots): the same operations, each slot called at the same place
in its page's content, in the page's own coordinates; what each letter's update needs (object numbers,
boxes, structure elements) is what a PDF reader finds in the file; a letter laid over either master has
the same words at the same places. A marker the writer cannot call its slot for is found in the PDF instead,
and a group whose marker cannot be found in its page at all is rendered whole, saying why.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace

import pdfplumber
import pikepdf
import pytest

from dispatch.pdf.engine import PdfRenderer
from dispatch.pdf.master import FellBack, Master, MasterJob, _base_facts, _find_slots, _with_slots, master_html
from dispatch.pdf.overlay import LayeredLetter, overlay
from dispatch.pdf.slots import titled_markers
from dispatch.regions import Marks
from tests.conftest import row

PAGE = ('<html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="stylesheet" href="letter.css">'
        '{style}</head><body><p>Before the regions.</p>'
        '<p data-variable="who" style="height:20pt">{who}Andorra{end_who}</p><p>Between them.</p>'
        '<div data-variable="where" style="height:40pt">{where}1 Main Street<br>Andorra la Vella{end_where}</div>'
        '<p>After the regions.</p></body></html>')


def parts_of(style: str = ""):
    marks = Marks()
    return marks.split(PAGE.format(title="Letter to Andorra", style=style, who=marks.mark("who", False),
                                   end_who=marks.mark("who", True), where=marks.mark("where", False),
                                   end_where=marks.mark("where", True)))


def job_of(parts) -> MasterJob:
    return MasterJob(parts.group, master_html(parts), 1, parts.body, parts.word)


def by_pikepdf(renderer: PdfRenderer, job: MasterJob) -> bytes:
    """The master as WeasyPrint writes the document, each marker's painting then replaced in the PDF."""
    document = renderer.layout(job.html)
    slots, size = _find_slots(document)
    with titled_markers():
        return _with_slots(renderer.write(document), slots, size[1])


def number(value) -> float | str:
    return round(float(value), 3) if isinstance(value, (int, float, pikepdf.Object)) and not isinstance(
        value, (pikepdf.Name, pikepdf.String, pikepdf.Array, pikepdf.Dictionary)) else str(value)


def operations(data: bytes) -> list[list[tuple]]:
    """Each page's operations, each slot call (q <matrix> cm /DispatchSlot<k> Do Q) as ("slot", k, transformation
    in force where the slot is drawn)."""
    pages = []
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            ops = [(str(op.operator), op.operands) for op in pikepdf.parse_content_stream(page)]
            found, ctm, stack, i = [], pikepdf.Matrix(), [], 0
            while i < len(ops):
                name, operands = ops[i]
                names = [n for n, _ in ops[i:i + 4]]
                if names == ["q", "cm", "Do", "Q"] and str(ops[i + 2][1][0]).startswith("/DispatchSlot"):
                    drawn = pikepdf.Matrix(*[float(v) for v in ops[i + 1][1]]) @ ctm
                    found.append(("slot", int(str(ops[i + 2][1][0])[13:]),
                                  tuple(round(v, 3) for v in drawn.shorthand)))
                    i += 4
                    continue
                if name == "q":
                    stack.append(ctm)
                elif name == "Q":
                    ctm = stack.pop()
                elif name == "cm":
                    ctm = pikepdf.Matrix(*[float(v) for v in operands]) @ ctm
                found.append((name, tuple(number(v) if not isinstance(v, pikepdf.Array) else
                                          tuple(number(x) for x in v) for v in operands)))
                i += 1
            pages.append(found)
    return pages


def calls(data: bytes) -> list[list[tuple]]:
    return [[op for op in page if op[0] == "slot"] for page in operations(data)]


def entries(dictionary: bytes) -> dict:
    """A dictionary's entries as written (whatever the spacing and order)."""
    return {key: tuple(value.strip(b"[] ").split()) for key, value in re.findall(
        rb"/(\w+)\s*(\[[^\]]*\]|\d+ 0 R|/\w+|\([^)]*\))", dictionary[2:-2])}


def floats(array: bytes) -> list[float]:
    return [float(v) for v in array.strip(b"[] ").split()]


IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    from tests.conftest import WorkspaceFactory

    return WorkspaceFactory(tmp_path_factory.mktemp("slots"))([row("AD", "Andorra")]) / "templates"


@pytest.mark.parametrize("variant", [None, "pdf/a-3u"])
def test_each_slot_is_called_where_the_pdf_had_its_marker(templates, variant):
    renderer = PdfRenderer(templates, pdf_variant=variant)
    job = job_of(parts_of())
    master = job.run(renderer)
    assert isinstance(master, Master)
    assert b"%\xf0\x9f\x96\xa4" in master.pdf[:20], "written by WeasyPrint's writer, not saved again"
    assert b"/ObjStm" not in master.pdf and master.pdf[master.base.startxref:].startswith(b"xref")
    old = by_pikepdf(renderer, job)
    assert operations(master.pdf) == operations(old)
    assert calls(master.pdf) == [[("slot", 0, IDENTITY), ("slot", 1, IDENTITY)]]
    with pikepdf.open(io.BytesIO(master.pdf)) as pdf:
        assert pdf.check_pdf_syntax() == []

    # What each letter's update replaces, as a PDF reader finds it in this file, and as it was in the old one.
    read, before = _base_facts(master.pdf, master.slots), _base_facts(old, master.slots)
    assert read["base"] == master.base
    assert [n for n, _ in master.slot_objects] == [n for n, _ in read["slot_objects"]]
    assert [floats(b) for _, b in master.slot_objects] == [floats(b) for _, b in read["slot_objects"]] == \
        [floats(b) for _, b in before["slot_objects"]]
    assert (master.metadata_object, master.producer) == (read["metadata_object"], read["producer"])
    assert [(k, n, entries(d)) for k, n, d in master.slot_tags] == \
        [(k, n, entries(d)) for k, n, d in read["slot_tags"]]
    assert [k for k, _, _ in master.slot_tags] == [k for k, _, _ in before["slot_tags"]] == \
        ([0, 1] if variant else [])
    assert all(b"/T " not in d and b"/S /Span" in d for _, _, d in master.slot_tags)


def words(pdf: bytes) -> list[list[tuple]]:
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        return [[(w["text"], w["x0"], w["top"], w["x1"], w["bottom"]) for w in page.extract_words()]
                for page in document.pages]


def test_a_letter_laid_over_the_master_has_its_words_where_the_old_master_put_them(templates, tmp_path):
    renderer = PdfRenderer(templates, pdf_variant="pdf/a-3u")
    parts = parts_of()
    job = job_of(parts)
    master = job.run(renderer)
    old_pdf = by_pikepdf(renderer, job)
    old = replace(master, pdf=old_pdf, **_base_facts(old_pdf, master.slots))
    made = {}
    for name, base in (("new", master), ("old", old)):
        letter = LayeredLetter(name, tmp_path / f"{name}.pdf", parts.contents, parts.head)
        (done, reason), = overlay(renderer, base, (letter,))
        assert reason is None and done.problem is None
        made[name] = letter.target.read_bytes()
    whole = renderer.render(master.whole_html(letter)).data
    assert words(made["new"]) == words(made["old"])
    for page, page_whole in zip(words(made["new"]), words(whole)):
        assert [w[0] for w in page] == [w[0] for w in page_whole]
        assert all(abs(a - b) <= 0.5 for w, v in zip(page, page_whole) for a, b in zip(w[1:], v[1:]))
    assert "Andorra la Vella" in " ".join(w[0] for w in words(made["new"])[0])


def test_a_marker_the_writer_does_not_paint_on_its_own_is_found_in_the_pdf(templates):
    # Shown as a block, the marker is painted with its paragraph's boxes, not as an element of its own: the
    # master is written again and the marker's painting found in the PDF, as before.
    renderer = PdfRenderer(templates, pdf_variant="pdf/a-3u")
    job = job_of(parts_of("<style>span[data-dispatch-slot] { display: block !important }</style>"))
    master = job.run(renderer)
    assert isinstance(master, Master)
    assert b"%\xf0\x9f\x96\xa4" not in master.pdf[:20], "saved again once its markers were replaced"
    assert calls(master.pdf) == [[("slot", 0, IDENTITY), ("slot", 1, IDENTITY)]]
    assert operations(master.pdf) == operations(by_pikepdf(renderer, job))
    assert _base_facts(master.pdf, master.slots)["base"] == master.base


def test_a_page_whose_marker_cannot_be_found_renders_its_group_whole(templates):
    # Inside a transparent element the marker is painted in a group of its own, not in the page's content.
    renderer = PdfRenderer(templates, pdf_variant="pdf/a-3u")
    result = job_of(parts_of('<style>p[data-variable="who"] { opacity: 0.5 }</style>')).run(renderer)
    assert isinstance(result, FellBack)
    assert "could not be found in the PDF" in result.reason
