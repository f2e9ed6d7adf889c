"""Each input is read once per command: one `dispatch send` of the sample parses the recipients once and
merges each row once (counted with wrappers around the reader and the merger; nothing else is replaced)."""

from __future__ import annotations

import csv
from collections import Counter

import pytest
from typer.testing import CliRunner

import dispatch.inputs
from dispatch.cli import app
from dispatch.merge.letter import Merger
from tests.smtp_server import USERNAME, smtp_server

runner = CliRunner()


@pytest.mark.slow
def test_one_send_of_the_sample_reads_the_recipients_once_and_merges_each_row_once(sample, smtp_env, monkeypatch):
    parses: list[str] = []
    merges: Counter[str] = Counter()
    read = dispatch.inputs.read_recipients
    merged = Merger.merged

    def counting_read(path, **kwargs):
        parses.append(str(path))
        return read(path, **kwargs)

    def counting_merge(self, recipient):
        merges[recipient.id] += 1
        return merged(self, recipient)

    monkeypatch.setattr(dispatch.inputs, "read_recipients", counting_read)
    monkeypatch.setattr(Merger, "merged", counting_merge)
    with smtp_server() as server:
        for name, value in (("HOST", server.host), ("PORT", str(server.port)), ("SECURITY", server.security),
                            ("USERNAME", USERNAME)):
            monkeypatch.setenv(f"DISPATCH_SMTP_{name}", value)
        monkeypatch.setenv("DISPATCH_SENDER", "coordinator@example.org")
        result = runner.invoke(app, ["-C", str(sample), "send", "--yes"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert len(server.handler.messages) == 1  # the sample has one recipient by email (the others are printed)
    with (sample / "recipients.csv").open(encoding="utf-8", newline="") as handle:
        rows = [row["id"] for row in csv.DictReader(handle)]
    assert parses == [str(sample / "recipients.csv")]
    assert set(merges) == set(rows) and set(merges.values()) == {1}, merges.most_common(3)
