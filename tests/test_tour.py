"""The README's five-minute tour, command by command, on a fresh copy of the sample campaign.

The commands are read from README.md, so the tour and this test cannot drift apart. What `make demo` does
(validate, render) comes first; then each command of the first block runs as written, as the installed
`dispatch` in a subprocess, and must exit 0 and say what the tour promises. The second block's commands
need what the sample cannot ship; they run here with local stand-ins: a key made for the test, a mail
server on 127.0.0.1, a viewer that records what it was asked to open.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dispatch.status import cells
from tests.conftest import REPO, interruptible
from tests.processes import read_until

DISPATCH = str(Path(sys.executable).parent / "dispatch")
LETTER = "out/icc-states-parties-2020"

# What each command of the tour must say (on stdout, or on stderr after "stderr:"), besides exiting 0.
EXPECTED = {
    "dispatch validate": ["ok: 125 recipients, letter 'icc-states-parties-2020'"],
    "dispatch preview NA": [f"{LETTER}/NA.pdf\n{LETTER}/preview/NA-page1.png\n"],
    "dispatch proof": [f"{LETTER}/proof.pdf: 125 letters on 11 page(s)"],
    "dispatch render": ["rendered 0, 125 up to date, 0 failed"],
    "dispatch render --only NA --only FR": ["rendered 0, 2 up to date, 0 failed"],
    "dispatch render --force": ["rendered 125 (125 forced), 0 up to date, 0 failed"],
    "dispatch render --jobs 1": ["rendered 0, 125 up to date, 0 failed"],
    "dispatch render --format html": ["rendered 125 HTML file(s)"],
    "dispatch render --pdf-variant none": ["rendered 125 (125 changed), 0 up to date, 0 failed"],
    f"dispatch verify {LETTER}/NA.pdf": ["not signed (nothing to check)", "matches the journal",
                                         "ok: 1 file(s) verified"],
    "dispatch print --duplex": ["letters.pdf: 124 letter(s)", "envelopes.pdf: 12 DL envelope(s)",
                                "labels.pdf: 12 label(s) on 1 sheet(s)", "manifest.pdf, manifest.csv",
                                "stderr:warning: 112 of 124 letter(s) have no postal address, so no envelope or "
                                "label: AL, AD, AG, "],
    'dispatch mark NA FR --delivered --by "J. Doe"': ["NA: delivered ", " to J. Doe (Namibia)", "FR: delivered "],
    "dispatch send --dry-run": ["dry run: wrote 1 message(s) to", "nothing was sent"],
    "dispatch status": ["id  state", "  channel  status", "  when", "  note\n",
                        "letter 'icc-states-parties-2020': 2 of 124 letter(s) to print delivered by hand"],
    "dispatch report": [f"{LETTER}/report.html: open it in a web browser"],
    "dispatch init ~/my-campaign": ["created ", "my-campaign with "],
    "dispatch -C ~/my-campaign render": ["rendered 3 (3 new), 0 up to date, 0 failed into out/letter/"],
}


def tour_blocks() -> list[list[str]]:
    """The command lines of each ```sh block of the README's "A five-minute tour" section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A five-minute tour\n", 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [[line.split("  #")[0].strip() for line in block.splitlines() if line.strip()] for block in blocks]


def words(line: str, home: Path) -> list[str]:
    args = shlex.split(line, comments=True)
    assert args[0] == "dispatch", line
    return [DISPATCH] + [os.path.expanduser(a) if a.startswith("~") else a for a in args[1:]]


@pytest.fixture
def fresh_sample(tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A copy of the sample campaign after `make demo` (validate, render), and the environment to run in:
    HOME in tmp_path (for ~/my-campaign), no DISPATCH_* setting from this machine."""
    campaign = tmp_path / "sample"
    campaign.mkdir()
    for name in ("dispatch.toml", "recipients.csv"):
        shutil.copy(REPO / name, campaign / name)
    for folder in ("letters", "templates"):
        shutil.copytree(REPO / folder, campaign / folder)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    env.update(HOME=str(home), PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", COLUMNS="100")
    for command in ("validate", "render"):  # what make demo runs
        done = subprocess.run([DISPATCH, command], cwd=campaign, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
    return campaign, env


@pytest.mark.slow
def test_every_command_of_the_tour_runs_on_the_sample(fresh_sample):
    campaign, env = fresh_sample
    first, _ = tour_blocks()
    assert sorted(first) == sorted(EXPECTED)  # a command added to the tour gets its expectation here
    outputs = {}
    for line in first:
        done = subprocess.run(words(line, Path(env["HOME"])), cwd=campaign, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{line} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr, line
        for wanted in EXPECTED[line]:
            stream, text = (done.stderr, wanted[7:]) if wanted.startswith("stderr:") else (done.stdout, wanted)
            assert text in stream, f"{line}: {text!r} not in\n{stream[-3000:]}"
        outputs[line] = done

    printed = campaign / LETTER / "print"
    assert {p.name for p in printed.iterdir()} == {"letters.pdf", "envelopes.pdf", "labels.pdf", "manifest.pdf",
                                                   "manifest.csv"}
    manifest = (printed / "manifest.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(manifest) == 125  # the header and the 124 letters, those without an address too
    table = outputs["dispatch status"].stdout.splitlines()
    assert max(cells(line) for line in table) <= 100
    hungary = next(line for line in table if line.startswith("HU "))
    assert "Hungary has given notice of" in hungary and hungary.endswith("…")
    assert any(line.startswith("CK ") and "No mission in New York" in line for line in table)
    assert (campaign / LETTER / "outbox" / "CH.eml").is_file()
    report = (campaign / LETTER / "report.html").read_text(encoding="utf-8")
    assert "<h1>Joint NGO Letter to International Criminal Court States Parties</h1>" in report
    assert (Path(env["HOME"]) / "my-campaign" / "out" / "letter" / "NA.pdf").is_file()


@pytest.mark.slow
def test_the_tour_commands_that_need_more_than_the_sample(fresh_sample, tmp_path):
    pytest.importorskip("watchfiles")
    pytest.importorskip("pyhanko")
    from tests.smtp_server import PASSWORD, USERNAME, smtp_server
    from tests.test_signing import make_ca, make_signing_key
    from tests.test_signing import PASSWORD as KEY_PASSWORD

    campaign, env = fresh_sample
    _, second = tour_blocks()
    assert [shlex.split(line)[:3] for line in second] == [["dispatch", "preview", "NA"],
                                                        ["dispatch", "render", "--sign"], ["dispatch", "send"]]
    watch, sign, send = second

    # preview --watch --open: no desktop here; a stand-in xdg-open records what it was asked to open.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opened = tmp_path / "opened.txt"
    (bin_dir / "xdg-open").write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    (bin_dir / "xdg-open").chmod(0o755)
    watching = subprocess.Popen(words(watch, Path(env["HOME"])), cwd=campaign, preexec_fn=interruptible,
                                env=dict(env, PATH=f"{bin_dir}:{env['PATH']}"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not opened.exists():
            assert time.monotonic() < deadline and watching.poll() is None, "the watched letter was never opened"
            time.sleep(0.2)
    finally:
        watching.send_signal(signal.SIGINT)
        stdout, stderr = watching.communicate(timeout=60)
    assert watching.returncode == 0, stderr
    assert stdout.startswith(f"rendered {LETTER}/NA.pdf in ")
    assert opened.read_text().strip() == str(campaign / LETTER / "NA.pdf")

    # render --sign coalition.p12: a key made for this test, its password from the environment.
    ca_key, ca_cert = make_ca("Test Root CA")
    make_signing_key(campaign, ca_key, ca_cert).rename(campaign / "coalition.p12")
    signed = subprocess.run(words(sign, Path(env["HOME"])), cwd=campaign, capture_output=True, text=True,
                            env=dict(env, DISPATCH_SIGN_PASSWORD=KEY_PASSWORD), timeout=900)
    assert signed.returncode == 0, signed.stderr
    assert ", signed by Coalition Secretariat" in signed.stdout.splitlines()[-1]
    checked = subprocess.run([DISPATCH, "verify", f"{LETTER}/NA.pdf"], cwd=campaign, env=env, capture_output=True,
                             text=True, timeout=300)
    assert checked.returncode == 0 and "signature valid, signed by Coalition Secretariat" in checked.stdout

    # send: a mail server on this machine named by the DISPATCH_SMTP_* variables; the confirmation answered in
    # a terminal, as a coordinator would.
    with smtp_server() as server:
        mail_env = dict(env, DISPATCH_SMTP_HOST=server.host, DISPATCH_SMTP_PORT=str(server.port),
                        DISPATCH_SMTP_SECURITY="none", DISPATCH_SMTP_USERNAME=USERNAME, DISPATCH_SENDER=USERNAME,
                        DISPATCH_SMTP_PASSWORD=PASSWORD)
        master, slave = os.openpty()
        sending = subprocess.Popen(words(send, Path(env["HOME"])), cwd=campaign, env=mail_env, stdin=slave,
                                   stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        seen = bytearray()
        try:
            read_until(master, b"Send 1 message(s)? [y/N]: ", seen)
            os.write(master, b"y\n")
            read_until(master, b"messages/s)", seen)
            assert sending.wait(timeout=120) == 0, bytes(seen).decode(errors="replace")
        finally:
            sending.kill()
            os.close(master)
    assert b"sent 1, failed 0, uncertain 0, skipped 0" in seen
    [received] = server.handler.messages
    with open(campaign / "recipients.csv", encoding="utf-8", newline="") as table:
        emailed = [row["email"] for row in csv.DictReader(table) if row["email"]]
    assert received.rcpt_tos == emailed and received.message["Subject"]
