"""Templates reach files inside templates/ only: {% include %}, {% extends %}, {% import %} and {% from %}
follow no link out of the folder, take no absolute path or '..', and read no FIFO or folder; the rule is
the one the PDF renderer's URL fetcher applies to fonts, images and CSS.

Each case is a copy of the sample campaign with a file outside it that holds a secret; the command is run
as a user runs it, and the secret appears nowhere: not in the output, not in out/.
"""

from __future__ import annotations

import os
import shutil

import jinja2
import pytest

from dispatch.merge.letter import Layouts
from dispatch.merge.loader import ConfinedLoader
from dispatch.errors import TemplateError
from tests.merge_campaign import (OUTBOX, add_to_layout, append_line, assert_clear_error, dispatch, replace_in,
                                  sample_campaign)

SECRET = "TOP SECRET: the text of a file outside the campaign"


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.html").write_text(f"<p>{SECRET}</p>\n", encoding="utf-8")
    (folder / "macros.html").write_text("{% macro hello() %}" + SECRET + "{% endmacro %}\n", encoding="utf-8")
    return folder


@pytest.fixture
def campaign(tmp_path):
    return sample_campaign(tmp_path, only=["AF"])


def assert_secret_kept(campaign, result):
    assert SECRET not in result.output
    for path in (campaign / "out").rglob("*") if (campaign / "out").exists() else ():
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("statement, name", [
    ('{% include "footer.html" %}', "footer.html"),
    ('{% import "macros.html" as m %}{{ m.hello() }}', "macros.html"),
    ('{% from "macros.html" import hello %}{{ hello() }}', "macros.html"),
])
def test_a_link_to_a_file_outside_templates_is_refused(campaign, outside, statement, name):
    target = outside / ("secret.html" if name == "footer.html" else name)
    (campaign / "templates" / name).symlink_to(target)
    line = add_to_layout(campaign, statement)
    result = dispatch(campaign, "render", "--format", "html")
    assert_clear_error(result, f"templates/letter.html.j2:{line}: {name} leads outside templates/ (to {target})")
    assert "inside templates/" in result.stderr.splitlines()[1]
    assert not (campaign / "out").exists()
    assert_secret_kept(campaign, result)


def test_extends_follows_no_link_out(campaign, outside):
    (campaign / "templates" / "base.html").symlink_to(outside / "secret.html")
    layout = campaign / "templates" / "letter.html.j2"
    layout.write_text('{% extends "base.html" %}\n' + layout.read_text(encoding="utf-8"), encoding="utf-8")
    result = dispatch(campaign, "render", "--format", "html")
    assert_clear_error(result, f"templates/letter.html.j2:1: base.html leads outside templates/ (to {outside / 'secret.html'})")
    assert_secret_kept(campaign, result)


def test_a_linked_folder_leads_out_too(campaign, outside):
    # templates/parts is a link to the outside folder; templates/footer.html a link inside templates/ that
    # goes through it: both lead out.
    (campaign / "templates" / "parts").symlink_to(outside, target_is_directory=True)
    (campaign / "templates" / "footer.html").symlink_to("parts/secret.html")
    for statement, name in (('{% include "parts/secret.html" %}', "parts/secret.html"),
                            ('{% include "footer.html" %}', "footer.html")):
        folder = campaign.parent.parent / name.replace("/", "-")
        folder.mkdir()
        copy = folder / "sample"
        shutil.copytree(campaign, copy, symlinks=True)  # the links stay links
        line = add_to_layout(copy, statement)
        result = dispatch(copy, "render", "--format", "html")
        assert_clear_error(result, f"templates/letter.html.j2:{line}: {name} leads outside templates/ "
                                   f"(to {outside / 'secret.html'})")
        assert_secret_kept(copy, result)


def test_a_link_that_stays_inside_templates_is_followed(campaign):
    (campaign / "templates" / "partials").mkdir()
    (campaign / "templates" / "partials" / "footer.html").write_text("<p>Signed in Geneva</p>\n", encoding="utf-8")
    (campaign / "templates" / "footer.html").symlink_to("partials/footer.html")
    add_to_layout(campaign, '{% include "footer.html" %}')
    result = dispatch(campaign, "render", "--format", "html")
    assert result.exit_code == 0, result.output
    assert "<p>Signed in Geneva</p>" in (campaign / "out" / "icc-states-parties-2020" / "AF.html").read_text()


@pytest.mark.parametrize("name, problem", [
    ("/etc/hostname", "/etc/hostname is an absolute path"),
    ("../dispatch.toml", "template not found: ../dispatch.toml"),
    ("fonts", "fonts is not a regular file"),
    ("pipe.html", "pipe.html is not a regular file"),  # a FIFO: reading it would wait for ever
])
def test_absolute_paths_parent_folders_and_special_files_are_refused(campaign, name, problem):
    os.mkfifo(campaign / "templates" / "pipe.html")
    line = add_to_layout(campaign, '{% include "' + name + '" %}')
    result = dispatch(campaign, "render", "--format", "html")
    assert_clear_error(result, f"templates/letter.html.j2:{line}: {problem}")
    assert not (campaign / "out").exists()


def test_the_layout_itself_may_not_be_a_link_out(campaign, outside):
    layout = campaign / "templates" / "letter.html.j2"
    (outside / "letter.html.j2").write_text(layout.read_text(encoding="utf-8"), encoding="utf-8")
    layout.unlink()
    layout.symlink_to(outside / "letter.html.j2")
    result = dispatch(campaign, "render", "--format", "html")
    assert_clear_error(result, "templates/letter.html.j2: letter.html.j2 leads outside templates/ "
                               f"(to {outside / 'letter.html.j2'})")


def test_a_hard_link_is_the_file_itself_and_is_read(campaign, outside):
    """A hard link is not a link to follow: it is one more name of the same file, here inside templates/.
    No path says that the file has another name elsewhere, so it is read like any file in templates/.
    (Only someone who can write into templates/ can make one; the rule stops links that lead out.)"""
    os.link(outside / "secret.html", campaign / "templates" / "footer.html")
    add_to_layout(campaign, '{% include "footer.html" %}')
    result = dispatch(campaign, "render", "--format", "html")
    assert result.exit_code == 0, result.output
    assert SECRET in (campaign / "out" / "icc-states-parties-2020" / "AF.html").read_text()


def test_the_email_templates_follow_no_link_out(tmp_path, outside):
    campaign = sample_campaign(tmp_path, only=["CH"])
    (campaign / "templates" / "signature.txt").symlink_to(outside / "secret.html")
    email = campaign / "templates" / "email.txt.j2"
    line = append_line(email, '{% include "signature.txt" %}')
    result = dispatch(campaign, "send", "--dry-run")
    assert_clear_error(result, f"templates/email.txt.j2:{line}: signature.txt leads outside templates/ "
                               f"(to {outside / 'secret.html'})")
    assert not (campaign / OUTBOX).exists() or not list((campaign / OUTBOX).iterdir())
    assert_secret_kept(campaign, result)
    # The email text itself a link out: refused the same way.
    (outside / "email.txt.j2").write_text("Dear colleagues,\n" + SECRET + "\n", encoding="utf-8")
    email.unlink()
    email.symlink_to(outside / "email.txt.j2")
    result = dispatch(campaign, "send", "--dry-run")
    assert_clear_error(result, f"templates/email.txt.j2: email.txt.j2 leads outside templates/ "
                               f"(to {outside / 'email.txt.j2'})")
    assert_secret_kept(campaign, result)


def test_the_print_layouts_follow_no_link_out(tmp_path, outside):
    campaign = sample_campaign(tmp_path, only=["AF"])
    (campaign / "templates" / "footer.html").symlink_to(outside / "secret.html")
    replace_in(campaign / "templates" / "manifest.html.j2", "<h1>Delivery manifest</h1>",
               '<h1>Delivery manifest</h1>{% include "footer.html" %}')
    layouts = Layouts(campaign / "templates")
    with pytest.raises(TemplateError) as caught:
        layouts.html("manifest.html.j2", {"title": "T", "today": "1 May 2020", "letters": 1, "pages": 1,
                                          "duplex": False, "groups": []})
    line = next(i for i, text in enumerate((campaign / "templates" / "manifest.html.j2").read_text().splitlines(), 1)
                if "footer.html" in text)
    assert str(caught.value) == (f"templates/manifest.html.j2:{line}: footer.html leads outside templates/ "
                                 f"(to {outside / 'secret.html'})")
    assert caught.value.hint and SECRET not in str(caught.value)


@pytest.mark.slow
def test_print_stops_at_an_envelope_layout_that_links_out(tmp_path, outside):
    campaign = sample_campaign(tmp_path, only=["AF", "AM"])
    (campaign / "templates" / "footer.html").symlink_to(outside / "secret.html")
    line = append_line(campaign / "templates" / "envelope.html.j2", '{% include "footer.html" %}')
    result = dispatch(campaign, "print")
    assert_clear_error(result, f"templates/envelope.html.j2:{line}: footer.html leads outside templates/ "
                               f"(to {outside / 'secret.html'})")
    assert_secret_kept(campaign, result)


def test_the_loader_and_the_pdf_fetcher_apply_one_rule(tmp_path, outside):
    """Every file a template can name is accepted by the Jinja2 loader exactly when WeasyPrint's fetcher
    (pdf/engine.py, confined_fetcher) accepts it as a file: URL."""
    from weasyprint.urls import FatalURLFetchingError

    from dispatch.pdf.engine import confined_fetcher

    templates = tmp_path / "templates"
    (templates / "partials").mkdir(parents=True)
    (templates / "plain.html").write_text("x")
    (templates / "partials" / "real.html").write_text("x")
    (templates / "inside-link.html").symlink_to("partials/real.html")
    (templates / "outside-link.html").symlink_to(outside / "secret.html")
    (templates / "linked-folder").symlink_to(outside, target_is_directory=True)
    (templates / "through-folder.html").symlink_to("linked-folder/secret.html")
    (templates / "dangling.html").symlink_to(tmp_path / "nowhere.html")
    os.mkfifo(templates / "pipe.html")
    names = ["plain.html", "partials/real.html", "inside-link.html", "outside-link.html", "linked-folder/secret.html",
             "through-folder.html", "dangling.html", "pipe.html", "partials"]
    loader, fetcher = ConfinedLoader(templates), confined_fetcher(templates)
    verdicts = {}
    for name in names:
        try:
            loader.path(name)
            by_loader = True
        except jinja2.TemplateNotFound:  # TemplateRefused is one
            by_loader = False
        try:
            fetched = fetcher.fetch((templates / name).as_uri())
        except FatalURLFetchingError:
            by_fetcher = False
        else:
            by_fetcher = True
            if hasattr(fetched, "close"):
                fetched.close()
        verdicts[name] = (by_loader, by_fetcher)
    assert verdicts == {name: (accepted, accepted) for name, accepted in (
        ("plain.html", True), ("partials/real.html", True), ("inside-link.html", True), ("outside-link.html", False),
        ("linked-folder/secret.html", False), ("through-folder.html", False), ("dangling.html", False),
        ("pipe.html", False), ("partials", False))}
