"""dispatch.toml: defaults, and errors that name the line and the fix."""

from __future__ import annotations

import pytest

from dispatch.errors import SettingsError, WorkspaceError
from dispatch.workspace import open_workspace


def test_defaults(make_workspace):
    ws = open_workspace(make_workspace())
    assert ws.settings.page_size == "A4"
    assert ws.letter_name() == "letter"
    assert ws.output_dir("letter") == ws.root / "out" / "letter"


@pytest.mark.parametrize("settings, expected, hint", [
    ('[campaign]\nletter = "x\n', "dispatch.toml:2: column 12: illegal character '\\n'", "TOML syntax"),
    ('[campaign]\nletre = "x"\n', "dispatch.toml:2: unknown setting 'letre' in [campaign]", "did you mean the setting 'letter'?"),
    ('[campaing]\nletter = "x"\n', "dispatch.toml:1: unknown section [campaing]", "did you mean the section 'campaign'?"),
    ('[campaign]\nletter = 3\n', "dispatch.toml:2: 'letter' must be text in quotes, not 3", None),
    ('[campaign]\npage_size = "A5"\n', "dispatch.toml:2: page_size must be one of A4, Letter, not 'A5'", None),
])
def test_settings_errors(make_workspace, settings, expected, hint):
    folder = make_workspace(settings=settings)
    with pytest.raises(SettingsError) as caught:
        open_workspace(folder)
    assert str(caught.value).startswith(expected)
    if hint:
        assert hint in caught.value.hint


def test_not_a_campaign_folder(tmp_path):
    with pytest.raises(WorkspaceError) as caught:
        open_workspace(tmp_path)
    assert str(caught.value) == f"{tmp_path} is not a dispatch campaign: it has no dispatch.toml"
    assert "dispatch init" in caught.value.hint


def test_the_sheet_setting(make_workspace):
    folder = make_workspace(settings='[campaign]\nrecipients = "missions.xlsx"\nsheet = "Missions"\n')
    ws = open_workspace(folder)
    assert ws.settings.sheet == "Missions" and ws.recipients_file == ws.root / "missions.xlsx"
    assert open_workspace(make_workspace()).settings.sheet is None


def test_a_letter_is_found_among_its_language_versions_and_other_letters(make_workspace):
    folder = make_workspace(settings="[campaign]\n")
    (folder / "letters" / "letter.fr.md").write_text("---\nsubject: x\n---\nb\n", encoding="utf-8")
    assert open_workspace(folder).letter_name() == "letter"
    (folder / "letters" / "letter.v2.md").write_text("---\nsubject: x\ndate: 2020-04-28\n---\nb\n", encoding="utf-8")
    with pytest.raises(WorkspaceError) as caught:
        open_workspace(folder).letter_name()
    assert str(caught.value) == "dispatch.toml: no letter chosen"
    assert open_workspace(folder).letter_name("letter.v2") == "letter.v2"
    with pytest.raises(WorkspaceError) as caught:
        open_workspace(folder).letter_name("letter.fr")
    assert str(caught.value) == "letters/letter.fr.md is the 'fr' version of the letter 'letter', not a letter"
    assert caught.value.hint == "choose the letter 'letter': each recipient gets the version in their language"


@pytest.mark.slow
def test_letter_v2_is_its_own_letter_with_its_own_folder_and_journal(make_workspace, smtp_env):
    # letters/letter.v2.md was cut at the first dot and taken for letters/letter.md: "already sent",
    # and its render overwrote the sent letter's PDF.
    from typer.testing import CliRunner

    from dispatch.cli import app
    from dispatch.journal import Journal
    from tests.conftest import SENDER, email_row, pdf_text

    folder = make_workspace([email_row("NA", "Namibia", "mission.na@example.org")],
                            settings=SENDER + '[smtp]\nsender = "coordinator@example.org"\n')
    second = (folder / "letters" / "letter.md").read_text(encoding="utf-8").replace(
        "We write to", "We write again to")
    (folder / "letters" / "letter.v2.md").write_text(second, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["-C", str(folder), "render", "--letter", "letter"]).exit_code == 0
    first_pdf = (folder / "out" / "letter" / "NA.pdf").read_bytes()
    with Journal(folder / "dispatch.db") as journal:
        journal.record("letter", "NA", "sent", reply="250 earlier run")
    result = runner.invoke(app, ["-C", str(folder), "send", "--dry-run", "--letter", "letter.v2"])
    assert result.exit_code == 0, result.output
    assert "dry run: wrote 1 message(s) to out/letter.v2/outbox/" in result.stdout
    assert (folder / "out" / "letter" / "NA.pdf").read_bytes() == first_pdf
    assert "We write again to Namibia" in pdf_text(folder / "out" / "letter.v2" / "NA.pdf")
    assert "We write to Namibia" in pdf_text(folder / "out" / "letter" / "NA.pdf")
