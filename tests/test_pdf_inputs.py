"""A letter whose template uses an image, font or stylesheet that cannot be loaded is not written: the
render stops with an error naming the file and the template that refers to it (WeasyPrint alone would
log a warning and lay the letter out without it). Attachments (rel="attachment") are refused whatever
they point at. Through the CLI, on a copy of the repository's sample campaign."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatch.cli import app

pytestmark = pytest.mark.slow  # each renders a letter of the sample through the CLI

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
NETWORK_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
               '<image href="http://127.0.0.1:9/seal.png" width="10" height="10"/></svg>')


def add_to_body(campaign: Path, html: str) -> None:
    template = campaign / "templates" / "letter.html.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("<body>\n", "<body>\n" + html + "\n", 1), encoding="utf-8")


def body_line(campaign: Path, html: str) -> int:
    lines = (campaign / "templates" / "letter.html.j2").read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if html in line)


def render_na(campaign: Path):
    return CliRunner().invoke(app, ["-C", str(campaign), "render", "--only", "NA"])


def refused(campaign: Path, *names: str):
    result = render_na(campaign)
    assert result.exit_code == 1, result.output
    assert all(name in result.output for name in names), result.output
    assert "Traceback" not in result.output
    assert not (campaign / "out" / "icc-states-parties-2020" / "NA.pdf").exists()
    return result


def test_the_sample_renders_with_a_good_image(sample):  # the checks below are about the bad files only
    (sample / "templates" / "seal.png").write_bytes(PNG)
    add_to_body(sample, '<img src="seal.png" alt="Seal">')
    result = render_na(sample)
    assert result.exit_code == 0, result.output
    assert (sample / "out" / "icc-states-parties-2020" / "NA.pdf").exists()


@pytest.mark.parametrize("name, content", [
    ("seal.png", b"this is not a PNG"),  # damaged
    ("seal.svg", NETWORK_SVG.encode()),  # an SVG that asks for the network
])
def test_an_image_that_cannot_be_loaded_stops_the_letter(sample, name, content):
    (sample / "templates" / name).write_bytes(content)
    tag = f'<img src="{name}" alt="Seal">'
    add_to_body(sample, tag)
    result = refused(sample, name, f"templates/letter.html.j2:{body_line(sample, tag)}", "the letter was not written")
    assert "inside templates/" in result.output  # the hint


def test_a_missing_image_names_the_file_and_the_template(sample):
    tag = '<img src="seal.png" alt="Seal">'
    add_to_body(sample, tag)
    refused(sample, "seal.png", f"templates/letter.html.j2:{body_line(sample, tag)}")


def test_an_image_that_is_a_folder_is_refused(sample):
    (sample / "templates" / "seal.png").mkdir()
    add_to_body(sample, '<img src="seal.png" alt="Seal">')
    refused(sample, "seal.png", "templates/letter.html.j2")


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root reads a file whatever its permissions")
def test_an_unreadable_image_is_refused(sample):
    image = sample / "templates" / "seal.png"
    image.write_bytes(PNG)
    image.chmod(0)
    add_to_body(sample, '<img src="seal.png" alt="Seal">')
    refused(sample, "seal.png")


def test_a_background_image_in_the_stylesheet_that_cannot_be_loaded(sample):
    (sample / "templates" / "paper.png").write_bytes(b"GIF89a but not really")
    with (sample / "templates" / "letter.css").open("a", encoding="utf-8") as css:
        css.write("\nbody { background-image: url(paper.png); }\n")
    refused(sample, "paper.png", "templates/letter.css")


def test_a_font_that_cannot_be_loaded(sample):
    (sample / "templates" / "fonts" / "Seal.ttf").write_bytes(b"not a font at all")
    with (sample / "templates" / "letter.css").open("a", encoding="utf-8") as css:
        css.write('\n@font-face { font-family: "Seal"; src: url(fonts/Seal.ttf); }\nbody { font-family: "Seal"; }\n')
    refused(sample, "Seal", "@font-face")


def test_a_missing_font_file(sample):
    with (sample / "templates" / "letter.css").open("a", encoding="utf-8") as css:
        css.write('\n@font-face { font-family: "Seal"; src: url(fonts/Seal.ttf); }\nbody { font-family: "Seal"; }\n')
    refused(sample, "fonts/Seal.ttf", "templates/letter.css")


def test_a_missing_stylesheet(sample):
    add_to_body(sample, "")
    template = sample / "templates" / "letter.html.j2"
    template.write_text(template.read_text(encoding="utf-8").replace(
        '<link rel="stylesheet" href="letter.css">',
        '<link rel="stylesheet" href="letter.css">\n<link rel="stylesheet" href="seal.css">'), encoding="utf-8")
    refused(sample, "seal.css", f"templates/letter.html.j2:{body_line(sample, 'seal.css')}")


@pytest.mark.parametrize("tag", [
    '<a rel="attachment" href="file:///etc/hostname">the host</a>',
    '<link rel="attachment" href="file:///etc/passwd">',
    '<a href="annex.pdf" rel="attachment">annex</a>',  # inside templates/: refused too (see pdf/inputs.py)
])
def test_an_attachment_is_refused_with_the_template_line(sample, tag):
    (sample / "templates" / "annex.pdf").write_bytes(b"%PDF-1.4\n")
    add_to_body(sample, tag)
    result = refused(sample, f"templates/letter.html.j2:{body_line(sample, tag)}", "attach")
    assert "[email] attachment" in result.output
    assert len(result.output.splitlines()) < 10
