"""The command line as a user meets it: exit codes, exact messages, no tracebacks."""

from __future__ import annotations

import click
from typer.testing import CliRunner

from dispatch.cli import app
from tests.conftest import LETTER, flat, pdf_text, row

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_validate_clean_workspace(make_workspace):
    folder = make_workspace([row("NA", "Namibia", address="1 Street\nNew York")])
    result = run("-C", str(folder), "validate")
    assert result.exit_code == 0
    assert result.stdout == "ok: 1 recipients, letter 'letter'\n"


def test_validate_reports_every_error_with_place_and_hint(make_workspace):
    folder = make_workspace([row("NA", "Namibia", email="mission@", address="x"), row("NA", "Namibia", channel="mail", address="x")])
    result = run("-C", str(folder), "validate")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: recipients.csv:2: email: 'mission@' is not a valid address (There must be something after the @-sign.)",
        "  hint: correct the address or leave the cell empty",
        "error: recipients.csv:3: id: duplicate id 'NA' (first used on line 2)",
        "  hint: ids must be unique",
        "error: recipients.csv:3: channel: unknown channel 'mail'",
        "  hint: did you mean 'email'?",
        "3 error(s), 0 warning(s): fix the errors, then run dispatch validate again",
    ]
    assert "Traceback" not in result.output


def test_usage_error_exits_2(make_workspace):
    result = runner.invoke(app, ["render", "--no-such-option"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_version_answers_without_a_command():
    from dispatch import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"dispatch {__version__}\n"


def test_render_refuses_invalid_campaign_and_writes_nothing(make_workspace):
    folder = make_workspace([row("NA", "Namibia")], letter=LETTER.replace("{{ state }}", "{{ sate }}"))
    result = run("-C", str(folder), "render")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: letters/letter.md:10: 'sate' is undefined (recipient 'NA', recipients.csv line 2)\n")
    assert not (folder / "out").exists()


def test_render_only_and_html_format(make_workspace):
    folder = make_workspace([row("NA", "Namibia"), row("FR", "France")])
    result = run("-C", str(folder), "render", "--only", "FR")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "FR.pdf: new, 1 page(s)"
    assert lines[1].startswith("rendered 1 (1 new), 0 up to date, 0 failed into out/letter/ in ")
    assert len(lines) == 2
    assert sorted(p.name for p in (folder / "out" / "letter").iterdir()) == ["FR.pdf"]
    result = run("-C", str(folder), "render", "--format", "html")
    assert result.exit_code == 0
    assert (folder / "out" / "letter" / "NA.html").read_text().count("Namibia") >= 2


def test_render_unknown_id(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    result = run("-C", str(folder), "render", "--only", "NAM")
    assert result.exit_code == 1
    assert result.stderr == "error: recipients.csv: no recipient with id 'NAM'\n  hint: did you mean 'NA'?\n"


def test_preview_writes_pdf_and_page_images(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    result = run("-C", str(folder), "preview", "NA")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["out/letter/NA.pdf", "out/letter/preview/NA-page1.png"]
    png = (folder / "out" / "letter" / "preview" / "NA-page1.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "Namibia" in flat(pdf_text(folder / "out" / "letter" / "NA.pdf"))


def test_preview_checks_the_letter_it_shows(make_workspace):
    # Preview merges only its own recipient's letter: a character no font has elsewhere does not stop it;
    # in its own row it does, with the message validate gives.
    folder = make_workspace([row("NA", "Namibia"), row("FR", "France \U0001F600")])
    result = run("-C", str(folder), "preview", "NA")
    assert result.exit_code == 0, result.output
    result = run("-C", str(folder), "preview", "FR")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: recipients.csv:3: state: no font in templates/fonts/ can draw '😀' (U+1F600 GRINNING FACE)")
    assert not (folder / "out" / "letter" / "FR.pdf").exists()
    result = run("-C", str(folder), "validate")
    assert result.exit_code == 1 and "can draw '😀'" in result.stderr


def test_init_creates_a_working_campaign(tmp_path):
    target = tmp_path / "new-campaign"
    result = run("init", str(target))
    assert result.exit_code == 0
    assert (target / "dispatch.toml").is_file() and (target / "templates" / "fonts").is_dir()
    assert run("-C", str(target), "validate").exit_code == 0
    assert run("-C", str(target), "render", "--only", "NA").exit_code == 0
    assert "Government of Namibia" in flat(pdf_text(target / "out" / "letter" / "NA.pdf"))
    again = run("init", str(target))
    assert again.exit_code == 1
    assert "already exists and is not empty" in again.stderr


def test_not_a_campaign(tmp_path):
    result = run("-C", str(tmp_path), "validate")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path} is not a dispatch campaign: it has no dispatch.toml\n  hint: ")


def test_every_command_has_help():
    group = typer_group()
    for name, command in group.commands.items():
        assert command.help and len(command.help) > 20, name
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0
        assert command.help.splitlines()[0] in " ".join(result.output.split())


def typer_group() -> click.Group:
    import typer.main

    return typer.main.get_command(app)


def test_skeleton_templates_match_the_sample_campaign():
    # `dispatch init` ships the same layout as the sample campaign at the repository root.
    from tests.conftest import REPO

    skeleton = REPO / "src" / "dispatch" / "skeleton" / "templates"
    sample = REPO / "templates"
    names = sorted(p.relative_to(sample).as_posix() for p in sample.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(skeleton).as_posix() for p in skeleton.rglob("*") if p.is_file())
    for name in names:
        assert (sample / name).read_bytes() == (skeleton / name).read_bytes(), name


def test_print_writes_the_bundle_and_says_what_is_in_it(make_workspace):
    folder = make_workspace([row("NA", "Namibia", address="135 East 36th Street\nNew York, NY 10016"),
                             row("KE", "Kenya", address="866 UN Plaza\nNew York, NY 10017"), row("AL", "Albania")])
    result = run("-C", str(folder), "print", "--duplex", "--allow-missing-address", "--envelope", "C5")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "letters.pdf: 3 letter(s), 6 page(s) (with 3 blank back(s) for duplex), by state",
        "envelopes.pdf: 2 C5 envelope(s)",
        "labels.pdf: 2 label(s) on 1 sheet(s) of 3 x 7",
        "manifest.pdf, manifest.csv: the courier's checklist, by building",
    ]
    assert lines[4].startswith("written to out/letter/print/ in ")
    assert lines[4].endswith(" s; after delivery: dispatch mark ID --delivered --by NAME")
    assert result.stderr == "warning: no envelope or label for 1 recipient(s) without a postal address: AL\n"


def test_print_usage_errors(make_workspace):
    folder = make_workspace([row("NA", "Namibia", address="1 Main Street")])
    result = run("-C", str(folder), "print", "--envelope", "C6")
    assert (result.exit_code, result.stderr) == (1, "error: unknown envelope 'C6'\n  hint: use one of DL, C5, C4\n")
    result = run("-C", str(folder), "print", "--order", "size")
    assert (result.exit_code, result.stderr) == (1, "error: unknown order 'size'\n  hint: use one of state, group, csv\n")
    assert not (folder / "out").exists()


def test_print_refuses_the_sample_campaign_listing_missing_addresses(sample):
    result = run("-C", str(sample), "print")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 112  # 124 letters to print, 12 with an address
    assert errors[0] == "error: recipients.csv:5: address: Albania (AL) is to be printed but has no postal address"
    assert lines[-1] == ("  hint: 112 recipient(s) to be printed have no postal address: add them to recipients.csv, "
                         "or run dispatch print --allow-missing-address to print their letters without envelopes or labels")
    assert not (sample / "out").exists()
    assert run("-C", str(sample), "validate").exit_code == 0  # for validate, a missing address stays a warning


def test_validate_json(make_workspace):
    import json

    folder = make_workspace([row("NA", "Namibia", address="x"), row("NA", "Nigeria", address="y")])
    result = runner.invoke(app, ["-C", str(folder), "validate", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["errors"] == 1 and data["recipients"] is None
    assert data["problems"] == [{"message": "duplicate id 'NA' (first used on line 2)", "file": "recipients.csv",
                                 "line": 3, "column": "id", "hint": "ids must be unique", "severity": "error"}]
    folder = make_workspace([row("NA", "Namibia", address="x")])
    result = runner.invoke(app, ["-C", str(folder), "validate", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "letter": "letter", "recipients": 1, "errors": 0,
                                         "warnings": 0, "problems": []}


def test_no_color_and_plain_output(make_workspace):
    folder = make_workspace([row("NA", "Namibia", email="bad@")])
    result = CliRunner(env={"NO_COLOR": "1"}).invoke(app, ["-C", str(folder), "validate"])
    assert result.exit_code == 1
    assert "\x1b[" not in result.output


def test_render_shows_why_each_letter_is_rendered_and_what_is_up_to_date(make_workspace):
    folder = make_workspace([row("NA", "Namibia"), row("FR", "France")])
    first = run("-C", str(folder), "render", "--jobs", "1")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[:2] == ["NA.pdf: new, 1 page(s)", "FR.pdf: new, 1 page(s)"]
    assert first.stdout.splitlines()[2].startswith("rendered 2 (2 new), 0 up to date, 0 failed into out/letter/ in ")
    again = run("-C", str(folder), "render")
    assert again.stdout.startswith("rendered 0, 2 up to date, 0 failed into out/letter/ in ")
    (folder / "out" / "letter" / "NA.pdf").unlink()
    missing = run("-C", str(folder), "-q", "render")
    assert missing.stdout.startswith("rendered 1 (1 missing), 1 up to date, 0 failed into out/letter/ in ")
    forced = run("-C", str(folder), "render", "--force", "--only", "FR", "--jobs", "1")
    assert forced.stdout.splitlines()[0] == "FR.pdf: forced, 1 page(s)"
    assert forced.stdout.splitlines()[1].startswith("rendered 1 (1 forced), 0 up to date, 0 failed into out/letter/ in ")


def test_render_reports_a_letter_that_failed_and_exits_1(make_workspace):
    folder = make_workspace([row("NA", "Namibia", address="1 Street")])
    (folder / "out" / "letter" / "NA.pdf").mkdir(parents=True)  # a folder where the PDF goes
    result = run("-C", str(folder), "render")
    assert result.exit_code == 1
    out = folder / "out" / "letter"
    assert result.stderr.splitlines() == [
        f"error: {out}: cannot write NA.pdf: Is a directory",
        "  hint: check that the output folder is writable and the disk is not full"]
    assert result.stdout.startswith("rendered 0, 0 up to date, 1 failed into out/letter/ in ")


def test_render_jobs_must_be_positive(make_workspace):
    folder = make_workspace([row("NA", "Namibia")])
    result = runner.invoke(app, ["-C", str(folder), "render", "--jobs", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--jobs' / '-j': Input should be greater than or equal to 1" in result.output


def test_html_format_opens_from_the_output_folder(make_workspace):
    # The HTML carries a <base> to templates/, so it renders the same letter from out/ (as bench/render.py does).
    import weasyprint

    folder = make_workspace([row("NA", "Namibia")])
    assert run("-C", str(folder), "render", "--format", "html").exit_code == 0
    html = folder / "out" / "letter" / "NA.html"
    assert f'<base href="{(folder / "templates").resolve().as_uri()}/">' in html.read_text()
    weasyprint.HTML(filename=str(html)).write_pdf(folder / "naive.pdf")
    assert run("-C", str(folder), "render").exit_code == 0
    assert flat(pdf_text(folder / "naive.pdf")) == flat(pdf_text(folder / "out" / "letter" / "NA.pdf"))
