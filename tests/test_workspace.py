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
