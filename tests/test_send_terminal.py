"""dispatch send in a real terminal (a pseudo-terminal): it shows the plan, asks, and asks for the password
without echoing it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import email_row
from tests.smtp_server import PASSWORD, smtp_server
from tests.processes import read_until

DISPATCH = Path(sys.executable).parent / "dispatch"


@pytest.mark.slow
def test_confirmation_and_password_prompt_in_a_terminal(make_workspace, smtp_env):
    smtp_env.delenv("DISPATCH_SMTP_PASSWORD")
    with smtp_server() as server:
        folder = make_workspace([email_row("NA", "Namibia", "na@example.org")], settings=server.settings())
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
        master, slave = os.openpty()
        proc = subprocess.Popen([str(DISPATCH), "-C", str(folder), "send"], stdin=slave, stdout=slave, stderr=slave,
                                env=env, close_fds=True)
        os.close(slave)
        seen = bytearray()
        try:
            read_until(master, b"Send 1 message(s)? [y/N]:", seen)
            assert b"  To: na@example.org" in seen and b"  | Your Excellency," in seen
            os.write(master, b"y\n")
            read_until(master, b"SMTP password for coordinator@example.org on 127.0.0.1: ", seen)  # the space: echo is off
            os.write(master, PASSWORD.encode() + b"\n")
            read_until(master, b"messages/s)", seen)
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            os.close(master)
    assert PASSWORD.encode() not in seen  # not echoed
    assert b"sent 1, failed 0, uncertain 0, skipped 0" in seen
    [received] = server.handler.messages
    assert received.user == "coordinator@example.org"
