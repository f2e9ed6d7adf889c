"""Mail servers that stall, answer garbage or are interrupted mid-run: retry or `uncertain`, never twice.

Real sockets on 127.0.0.1: aiosmtpd for a server that is slow after the data, and raw socket servers
for what no real SMTP library would do (garbage replies, silence after connecting, a reply cut or too
long, the AUTH line echoed back).
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from dispatch.journal import Journal
from tests.conftest import SENDER, email_row, interruptible, row
from tests.raw_smtp_server import first, hang_up, raw_smtp, say
from tests.smtp_server import PASSWORD, USERNAME, Recorder, smtp_server
from tests.test_send import run, summary

DISPATCH = str(Path(sys.executable).parent / "dispatch")
ROWS = [email_row("NA", "Namibia", "mission.na@example.org"), email_row("FR", "France", "mission.fr@example.org")]


def settings_for(host: str, port: int, timeout: float = 1.0) -> str:
    return SENDER + (f'[smtp]\nhost = "{host}"\nport = {port}\nsecurity = "none"\nusername = ""\n'
                     f'sender = "coordinator@example.org"\nrate_limit = 0\nretries = 2\nretry_wait = 0.01\n'
                     f"timeout = {timeout}\n")


@contextmanager
def raw_server(script):
    """A TCP server on 127.0.0.1 that runs script(connection) for each client."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()
    connections = []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections.append(conn)
            threading.Thread(target=script, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], connections
    finally:
        stop.set()
        thread.join(2)
        for conn in connections:
            conn.close()
        listener.close()


def garbage(conn, stop):
    conn.sendall(b"220 mail.example.org ready\r\n")
    conn.recv(1024)
    conn.sendall(b"\x00\xffthis is not SMTP at all\r\n")


def silence(conn, stop):
    stop.wait(10)  # accepts the connection, never says a word


def journal_kinds(folder) -> list[tuple[str, str]]:
    return [(e.recipient, e.kind) for e in Journal(folder / "dispatch.db").events("letter")
            if e.kind not in ("rendered",)]


def test_a_server_that_answers_garbage_is_not_sent_to_and_nothing_breaks(make_workspace, smtp_env):
    with raw_server(garbage) as (port, connections):
        folder = make_workspace(ROWS, settings=settings_for("127.0.0.1", port))
        result = run(folder, "send", "--yes")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(connections) >= 1
    assert not any(kind in ("sending", "sent") for _, kind in journal_kinds(folder))


def test_a_server_that_never_answers_times_out_and_sends_nothing(make_workspace, smtp_env):
    with raw_server(silence) as (port, connections):
        folder = make_workspace(ROWS, settings=settings_for("127.0.0.1", port, timeout=0.5))
        result = run(folder, "send", "--yes")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert not any(kind in ("sending", "sent") for _, kind in journal_kinds(folder))


def test_a_server_that_stalls_after_the_data_makes_it_uncertain_never_twice(make_workspace, smtp_env):
    slow = Recorder(delay=2.5)  # answers the data after 2.5 s; dispatch waits 1 s
    with smtp_server(slow, auth=False) as server:
        folder = make_workspace(ROWS, settings=settings_for(server.host, server.port, timeout=1.0))
        first = run(folder, "send", "--yes")
        assert first.exit_code == 1
        assert summary(first)[2] >= 1  # uncertain
        time.sleep(3)
        second = run(folder, "send", "--yes")
        time.sleep(3)
        received = slow.by_recipient()
    assert "Traceback" not in first.output + second.output
    assert all(len(messages) == 1 for messages in received.values())  # nobody got it twice
    kinds = journal_kinds(folder)
    assert ("NA", "uncertain") in kinds or ("FR", "uncertain") in kinds


def test_ctrl_c_during_send_then_a_rerun_finishes_without_duplicates(make_workspace, smtp_env):
    rows = [email_row(f"R{i:02d}", f"State {i}", f"mission{i}@example.org") for i in range(12)]
    slow = Recorder(delay=0.3)
    with smtp_server(slow, auth=False) as server:
        folder = make_workspace(rows, settings=settings_for(server.host, server.port, timeout=10))
        env = dict(os.environ, DISPATCH_SMTP_PASSWORD=PASSWORD)
        assert subprocess.run([DISPATCH, "render"], cwd=folder, capture_output=True, env=env).returncode == 0
        process = subprocess.Popen(preexec_fn=interruptible, args=[DISPATCH, "send", "--yes"], cwd=folder, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(slow.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in (1, 130), stderr
        assert "Traceback" not in stderr
        interrupted_at = len(slow.messages)
        assert interrupted_at < 12
        again = subprocess.run([DISPATCH, "send", "--yes", "--resend-uncertain"], cwd=folder, env=env,
                               capture_output=True, text=True, timeout=120)
        received = slow.by_recipient()
    assert "Traceback" not in again.stderr
    assert sorted(received) == sorted(f"mission{i}@example.org" for i in range(12))
    duplicates = {who: len(m) for who, m in received.items() if len(m) > 1}
    uncertain = {e.recipient for e in Journal(folder / "dispatch.db").events("letter") if e.kind == "uncertain"}
    # Only a message that was in flight at Ctrl-C and then resent on request may have arrived twice.
    assert set(duplicates) <= {f"mission{r[1:].lstrip('0') or '0'}@example.org" for r in uncertain}
    assert len(duplicates) <= 1


def test_ctrl_c_during_print_stops_cleanly_and_a_rerun_finishes(make_workspace):
    rows = [row(f"P{i:02d}", f"State {i}", address=f"{i} First Avenue\nNew York") for i in range(30)]
    folder = make_workspace(rows)
    out = folder / "out" / "letter"
    process = subprocess.Popen(preexec_fn=interruptible, args=[DISPATCH, "print"], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and len(list(out.glob("*.pdf"))) >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in folder.rglob("*.tmp")) == []
    assert not (out / "print" / "letters.pdf").exists()
    again = subprocess.run([DISPATCH, "print"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (out / "print" / "letters.pdf").is_file() and (out / "print" / "manifest.csv").is_file()


# replies that are not SMTP, and credentials in replies (raw-socket servers, through the command) -----

def journal_bytes(folder) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(folder.glob("dispatch.db*")))


@pytest.mark.parametrize("fault", ["garbage", "dropped", "oversized"])
def test_no_valid_reply_after_the_data_is_uncertain_and_a_later_send_does_not_send_again(make_workspace, smtp_env,
                                                                                          fault):
    action = {"garbage": say(b"\x00\xffthis is not SMTP at all\r\n"), "dropped": hang_up(),
              "oversized": say(b"250 " + b"x" * 100_000 + b"\r\n")}[fault]
    with raw_smtp({"end": action}) as server:
        folder = make_workspace(ROWS, settings=settings_for(server.host, server.port))
        first = run(folder, "send", "--yes")
        assert len(server.messages) == 2  # one each, never retried
        second = run(folder, "send", "--yes")
        assert len(server.messages) == 2  # a plain send leaves them alone
    assert (first.exit_code, second.exit_code) == (1, 1)
    assert summary(first) == (0, 0, 2, 0)
    assert summary(second)[:2] == (0, 0)
    assert "Traceback" not in first.output + second.output
    assert "uncertain: NA: the message was transmitted but the server's reply never came" in first.output
    assert journal_kinds(folder) == [("NA", "sending"), ("NA", "uncertain"), ("FR", "sending"), ("FR", "uncertain")]


def test_garbage_in_reply_to_rcpt_is_retried_and_each_message_arrives_once(make_workspace, smtp_env):
    with raw_smtp({"RCPT": first(say(b"\x00\xff not a reply\r\n"))}) as server:
        folder = make_workspace(ROWS, settings=settings_for(server.host, server.port))
        result = run(folder, "send", "--yes")
        received = [m for m in server.messages]
    assert result.exit_code == 0, result.output
    assert summary(result) == (2, 0, 0, 0)
    assert len(received) == 2
    assert [kind for rid, kind in journal_kinds(folder) if rid == "NA"] == ["failed", "sending", "sent"]


PLAIN_B64 = base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()


def echo_auth(code: str):
    def fault(session, line):
        said = b" ".join(l.strip() for l in session.server.auth_lines).decode("ascii", "replace")
        return session.reply(f"{code} you said {said}")
    return fault


def refuse_fr_with_echo(session, line):
    if b"mission.fr" in line:
        return echo_auth("550 5.1.1 unknown user;")(session, line)
    return None  # the normal reply


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_server_that_echoes_the_auth_line_never_makes_dispatch_show_or_record_the_password(
        make_workspace, smtp_env, mechanism):
    with_login = settings_for("127.0.0.1", 0).replace('username = ""', f'username = "{USERNAME}"')
    with raw_smtp({"AUTH": echo_auth("535 5.7.8 authentication failed,")}, mechanisms=(mechanism,)) as server:
        folder = make_workspace(ROWS, settings=with_login.replace("port = 0", f"port = {server.port}"))
        refused = run(folder, "send", "--yes")
    faults = {"RCPT": refuse_fr_with_echo, "end": echo_auth("250 2.0.0 queued;")}
    with raw_smtp(faults, mechanisms=(mechanism,)) as server:
        (folder / "dispatch.toml").write_text(with_login.replace("port = 0", f"port = {server.port}"))
        accepted = run(folder, "send", "--yes")
        assert len(server.messages) == 1
    assert refused.exit_code == 1 and "refused the username or password" in refused.stderr
    assert accepted.exit_code == 1 and summary(accepted) == (1, 1, 0, 0)
    shown = refused.output + accepted.output
    recorded = journal_bytes(folder)
    assert "[redacted]" in shown and b"[redacted]" in recorded  # the echoes came, and were cut out
    for secret in (PASSWORD, PLAIN_B64, base64.b64encode(PASSWORD.encode()).decode()):
        assert secret not in shown
        assert secret.encode() not in recorded
