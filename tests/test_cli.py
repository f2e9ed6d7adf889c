"""The command line as a user meets it: exit codes, exact messages, no tracebacks."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
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


def every_command(group=None, path=()):
    """(words, command) for the application and each command and sub-command under it."""
    group = group or typer_group()
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from every_command(command, path + (name,))


# What Typer shows for a parameter without a metavar: a Python type instead of a word a user writes.
PYTHON_TYPES = re.compile(r"<(str|int|float|bool|path|file|list|tuple|dict|uuid|datetime|choice)\b|"
                          r"\[(str|int|Path)\]|<[a-z]+\|[a-z|]+>|\{[a-z_]+\}|x[<>]=|int range")


def test_every_command_has_help_without_python_type_names():
    commands = list(every_command())
    assert {" ".join(words) for words, _ in commands} >= {"", "render", "print", "send", "status", "mark", "verify",
                                                          "journal check", "journal repair"}
    for words, command in commands:
        assert command.help and len(command.help) > 20, words
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0, words
        assert command.help.splitlines()[0] in " ".join(result.output.split()), words
        found = PYTHON_TYPES.search(result.output)
        assert found is None, f"dispatch {' '.join(words)} --help shows {found.group(0)!r}:\n{result.output}"
    assert "--only ID" in runner.invoke(app, ["render", "--help"]).output
    assert "--jobs N" in runner.invoke(app, ["render", "--help"]).output
    assert "Usage: dispatch mark [OPTIONS] ID..." in runner.invoke(app, ["mark", "--help"]).output


def test_help_says_what_print_renders_and_where_send_finds_its_server():
    printing = " ".join(runner.invoke(app, ["print", "--help"]).output.split())
    assert printing.startswith("Usage: dispatch print [OPTIONS] Render the letters to print that are new or changed")
    sending = " ".join(runner.invoke(app, ["send", "--help"]).output.split())
    for variable in ("DISPATCH_SMTP_HOST", "DISPATCH_SMTP_PORT", "DISPATCH_SMTP_SECURITY", "DISPATCH_SMTP_USERNAME",
                     "DISPATCH_SENDER", "DISPATCH_SMTP_PASSWORD"):
        assert variable in sending
    assert "Renders first the letters that are new or changed" in sending


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
    result = run("-C", str(folder), "print", "--duplex", "--envelope", "C5")
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
    # Without an address the letter is printed all the same (no envelope or label), and the run goes on.
    assert result.stderr == (
        "warning: 1 of 3 letter(s) have no postal address, so no envelope or label: AL\n"
        "  hint: their letters are in letters.pdf and listed last in the manifest, to deliver by hand or have "
        "collected; add the address to recipients.csv for an envelope and a label (dispatch print "
        "--require-address stops when one is missing)\n")
    old = run("-C", str(folder), "print", "--allow-missing-address")  # what scripts said before it was the default
    assert old.exit_code == 0 and old.stdout.startswith("letters.pdf: 3 letter(s)")


def test_print_usage_errors(make_workspace):
    folder = make_workspace([row("NA", "Namibia", address="1 Main Street")])
    result = run("-C", str(folder), "print", "--envelope", "C6")
    assert (result.exit_code, result.stderr) == (1, "error: unknown envelope 'C6'\n  hint: use one of DL, C5, C4\n")
    result = run("-C", str(folder), "print", "--order", "size")
    assert (result.exit_code, result.stderr) == (1, "error: unknown order 'size'\n  hint: use one of state, group, csv\n")
    assert not (folder / "out").exists()


def test_print_require_address_refuses_the_sample_campaign_listing_missing_addresses(sample):
    result = run("-C", str(sample), "print", "--require-address")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 112  # 124 letters to print, 12 with an address
    assert errors[0] == "error: recipients.csv:5: address: Albania (AL) is to be printed but has no postal address"
    assert lines[-1] == ("  hint: 112 recipient(s) to be printed have no postal address: add it to recipients.csv, "
                         "or run dispatch print without --require-address to print their letters without envelope or "
                         "label, to deliver by hand or have collected")
    assert not (sample / "out").exists()
    both = run("-C", str(sample), "print", "--require-address", "--allow-missing-address")
    assert (both.exit_code, both.stderr) == (
        2, "error: --require-address and --allow-missing-address say opposite things: choose one\n")
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


def test_every_prompt_goes_to_stderr():
    # stdout is what a command answers (a table, JSON, a path) and may be redirected; a question on it
    # would be lost in a file, or break the JSON. Every typer.prompt and typer.confirm says err=True.
    import ast

    from tests.conftest import REPO

    calls = []
    for path in sorted((REPO / "src" / "dispatch" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("prompt", "confirm") and getattr(node.func.value, "id", "") == "typer":
                calls.append((path.name, node.lineno, any(k.arg == "err" and getattr(k.value, "value", None) is True
                                                          for k in node.keywords)))
    assert len(calls) >= 3  # the signing key's password, the confirmation to send, the SMTP password
    assert [c for c in calls if not c[2]] == []


@pytest.mark.slow
def test_send_asks_on_stderr_and_answers_on_stdout(make_workspace, smtp_env):
    # A real terminal for stdin and stdout (send asks only there); stderr goes to a pipe, where the
    # confirmation and the password prompt must appear, and not on the terminal's stdout.
    import os
    import select
    import subprocess
    import sys
    import time

    from tests.conftest import email_row
    from tests.smtp_server import PASSWORD, smtp_server

    smtp_env.delenv("DISPATCH_SMTP_PASSWORD")
    with smtp_server() as server:
        folder = make_workspace([email_row("NA", "Namibia", "na@example.org")], settings=server.settings())
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
        master, slave = os.openpty()
        proc = subprocess.Popen([str(Path(sys.executable).parent / "dispatch"), "-C", str(folder), "send"],
                                stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=env, close_fds=True)
        os.close(slave)
        stdout, stderr = bytearray(), bytearray()

        def read_until(text: bytes, seen: bytearray, timeout: float = 60) -> None:
            end = time.monotonic() + timeout
            while text not in seen:
                assert time.monotonic() < end, f"never saw {text!r}: stdout {bytes(stdout)!r} stderr {bytes(stderr)!r}"
                ready, _, _ = select.select([master, proc.stderr], [], [], 0.1)
                for fd in ready:
                    try:
                        chunk = os.read(master if fd == master else proc.stderr.fileno(), 4096)
                    except OSError:
                        chunk = b""
                    (stdout if fd == master else stderr).extend(chunk)

        try:
            read_until(b"Send 1 message(s)? [y/N]: ", stderr)
            os.write(master, b"y\n")
            read_until(b"SMTP password for coordinator@example.org on 127.0.0.1: ", stderr)
            os.write(master, PASSWORD.encode() + b"\n")
            read_until(b"messages/s)", stdout)
            assert proc.wait(timeout=60) == 0
        finally:
            proc.kill()
            os.close(master)
            proc.stderr.close()
    assert b"  To: na@example.org" in stdout  # the plan is the command's output
    assert b"Send 1 message(s)?" not in stdout and b"SMTP password" not in stdout
    assert PASSWORD.encode() not in stdout + stderr
    assert len(server.handler.messages) == 1


def test_ctrl_c_ends_watching_with_exit_0_even_while_rendering(make_workspace):
    # Ctrl-C is how `preview --watch` ends: the same exit 0 whether it comes while waiting for a change or
    # while a letter is being rendered (here: as soon as watching starts, during the first render).
    import signal
    import subprocess
    import sys

    from tests.conftest import interruptible

    pytest.importorskip("watchfiles")
    folder = make_workspace([row("NA", "Namibia")])
    process = subprocess.Popen([str(Path(sys.executable).parent / "dispatch"), "preview", "NA", "--watch"], cwd=folder,
                               preexec_fn=interruptible, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr.readline().startswith("watching letters/, templates/, dispatch.toml and recipients.csv")
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert stderr.endswith("stopped watching\n") and "Traceback" not in stderr and "interrupted" not in stderr
