"""dispatch send killed with SIGKILL at random moments, then run again until it finishes.

A real `dispatch send --yes` subprocess against a real SMTP server in this process, which keeps every
message it accepted. Afterwards: nobody got two messages, everybody is sent, failed or uncertain, the
journal is intact, and every uncertain message is compared with what the server really received.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dispatch.journal import Journal
from tests.conftest import email_row
from tests.smtp_server import PASSWORD, Recorder, smtp_server

KILLS = 50
RECIPIENTS = 300  # enough that 50 kills, each after one or a few messages, come before the last one
DISPATCH = Path(sys.executable).parent / "dispatch"


def wait_for(condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not condition():
        time.sleep(0.001)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_sends_twice(make_workspace, smtp_env, tmp_path):
    from typer.testing import CliRunner

    from dispatch.cli import app

    rng = random.Random(20200428)
    rows = [email_row(f"R{i:03}", f"State {i}", f"r{i:03}@example.org") for i in range(RECIPIENTS)]
    handler = Recorder(delay=0.03)  # the server takes 30 ms to answer each message, as real ones do
    with smtp_server(handler) as server:
        folder = make_workspace(rows, settings=server.settings(retry_wait=0.01))
        assert CliRunner().invoke(app, ["-C", str(folder), "render"]).exit_code == 0  # once, before the kills
        env = {**os.environ, "DISPATCH_SMTP_PASSWORD": PASSWORD}
        kills, runs, kill_points = 0, 0, []
        while True:
            runs += 1
            assert runs < KILLS + 20, "dispatch send never finished"
            started = time.monotonic()
            proc = subprocess.Popen([str(DISPATCH), "-C", str(folder), "send", "--yes"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert PASSWORD.encode() not in cmdline
            if kills < KILLS:
                before = len(handler.messages)
                if rng.random() < 0.25:
                    time.sleep(rng.uniform(0.0, 1.5))  # start-up, planning, the journal's first writes
                else:
                    wanted = before + rng.randint(1, 2)  # during or just after the n-th message's exchange
                    wait_for(lambda: len(handler.messages) >= wanted or proc.poll() is not None, 20)
                    time.sleep(rng.uniform(0.0, 0.045))
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                    kills += 1
                    kill_points.append(round(time.monotonic() - started, 3))
                    continue
            stdout, stderr = proc.communicate(timeout=60)
            assert proc.returncode in (0, 1), stderr.decode()
            assert b"Traceback" not in stderr
            break

    received = handler.by_recipient()
    duplicates = {rcpt: len(msgs) for rcpt, msgs in received.items() if len(msgs) > 1}
    db = folder / "dispatch.db"
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Journal(db) as journal:
        states = journal.email_states("letter")
    status = {rid: states[rid].status if rid in states else "pending" for rid in (r["id"] for r in rows)}
    uncertain = [rid for rid, s in status.items() if s == "uncertain"]
    delivered_uncertain = [rid for rid in uncertain if received.get(f"r{rid[1:]}@example.org")]
    lost_uncertain = [rid for rid in uncertain if rid not in delivered_uncertain]
    report = {"kills": kills, "runs": runs, "duplicates": len(duplicates), "sent": list(status.values()).count("sent"),
              "uncertain": len(uncertain), "uncertain_in_fact_delivered": len(delivered_uncertain),
              "kill_points_s": kill_points}
    print("\ncrash test:", json.dumps(report))
    (tmp_path / "crash-report.json").write_text(json.dumps(report))

    assert kills >= KILLS - 5
    assert duplicates == {}
    assert set(status.values()) <= {"sent", "failed", "uncertain"}, status
    for i in range(RECIPIENTS):
        rid, address = f"R{i:03}", f"r{i:03}@example.org"
        if status[rid] == "sent":
            assert len(received.get(address, [])) == 1, rid  # the journal says sent: it arrived, once
        # uncertain: arrived or not (the server's record says which; the report above counts them)
    # The last run's summary agrees with the journal: sent now + skipped (sent before) = all sent.
    found = re.search(r"^sent (\d+), failed (\d+), uncertain (\d+), skipped (\d+) ", stdout.decode(), re.M)
    sent_now, failed, uncertain_now, skipped = map(int, found.groups())
    assert sent_now + skipped == report["sent"]
    assert uncertain_now == len(uncertain)
    assert proc.returncode == (1 if uncertain else 0)

    # Every uncertain one is accounted for: the coordinator resends exactly those that did not arrive,
    # and then every recipient has had the letter once, nobody twice, nobody lost.
    with smtp_server(handler) as again:
        env = {**os.environ, "DISPATCH_SMTP_PASSWORD": PASSWORD, "DISPATCH_SMTP_PORT": str(again.port)}
        if lost_uncertain:
            only = [arg for rid in lost_uncertain for arg in ("--only", rid)]
            resent = subprocess.run([str(DISPATCH), "-C", str(folder), "send", "--yes", "--resend-uncertain", *only],
                                    env=env, capture_output=True, timeout=300)
            assert resent.returncode == 0, resent.stderr.decode()
    received = handler.by_recipient()
    assert {address: len(msgs) for address, msgs in received.items()} == {
        f"r{i:03}@example.org": 1 for i in range(RECIPIENTS)}
    # What the journal says went out is in the sent archive, byte for byte what the server took.
    with Journal(db) as journal:
        sent = journal.latest("letter", ["sent"])
    for rid in list(sent)[:: max(1, len(sent) // 20)]:
        eml = folder / "out" / "letter" / sent[rid].data["archive_eml"]
        got = received[f"r{rid[1:]}@example.org"][0]
        assert eml.read_bytes().replace(b"\r\n", b"\n") == got.data.replace(b"\r\n", b"\n")
