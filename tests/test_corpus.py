"""The hostile corpus: every case in tests/corpus/ fails with exactly one clear message.

Each case is a folder laid over a small valid campaign (two recipients, a short letter). Its
case.json gives the exact message expected after "error: " and, optionally, the command to run
(default: render) and a generator for files too large to keep in the repository. For every case:
exit code 1, that message first, a hint, no traceback, nothing in out/, the journal unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.journal import Journal
from tests import workbooks
from tests.conftest import row

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.json").is_file())
runner = CliRunner()


def fifty_megabytes(folder: Path) -> None:
    line = "NA,Namibia,African States,Permanent Mission of Namibia to the United Nations,,,,,en,print,\n"
    header = "id,state,regional_group,mission,title,ambassador,address,email,language,channel,salutation\n"
    with open(folder / "recipients.csv", "w", encoding="utf-8") as handle:
        handle.write(header)
        handle.write(line * (50 * 1024 * 1024 // len(line) + 1))


def cell_of_200000_characters(folder: Path) -> None:
    # Far under the 20 MB cap, but over the csv module's own field limit (131,072 characters).
    header = "id,state,regional_group,mission,title,ambassador,address,email,language,channel,salutation\n"
    first = "NA,Namibia,African States,Permanent Mission of Namibia to the United Nations,,,,,en,print,\n"
    second = "FR,France,African States,Permanent Mission of France to the United Nations,,,,,en,print,"
    (folder / "recipients.csv").write_text(header + first + second + "x" * 200_000 + "\n", encoding="utf-8")


GENERATORS = {"fifty_megabytes": fifty_megabytes, "cell_of_200000_characters": cell_of_200000_characters,
              **workbooks.GENERATORS}


def test_corpus_is_large_enough():
    assert len(CASES) >= 40
    groups = {name.split("-")[0] for name in CASES}
    assert groups == {"csv", "value", "letter", "template", "settings", "sheet"}


@pytest.mark.parametrize("name", CASES)
def test_hostile_case(name, make_workspace):
    case = json.loads((CORPUS / name / "case.json").read_text(encoding="utf-8"))
    folder = make_workspace([row("NA", "Namibia"), row("FR", "France")])
    for source in (CORPUS / name).rglob("*"):
        if source.is_file() and source.name != "case.json":
            target = folder / source.relative_to(CORPUS / name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    if "generate" in case:
        GENERATORS[case["generate"]](folder)
    with Journal(folder / "dispatch.db") as journal:
        journal.record("letter", "NA", "sent", reply="250 earlier run")
    before = [e.id for e in Journal(folder / "dispatch.db").events()]

    result = runner.invoke(app, ["-C", str(folder), *case.get("command", ["render"])])

    lines = result.stderr.splitlines()
    assert result.exit_code == 1, result.output
    assert lines[0] == "error: " + case["expected"]
    assert lines[1].startswith("  hint: ") or lines[1].startswith("error: "), lines[:2]
    assert "Traceback" not in result.output
    assert not (folder / "out").exists()
    assert [e.id for e in Journal(folder / "dispatch.db").events()] == before
