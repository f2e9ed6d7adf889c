"""Messages per second from `dispatch send --yes` to a local SMTP server (aiosmtpd on 127.0.0.1).

    python bench/send.py --recipients 500

Builds a campaign with N email recipients (`dispatch init`), renders their letters once (timed apart),
starts a real SMTP server in this process with AUTH, then runs the installed `dispatch send --yes`
with no rate limit and reports: the whole command's wall time (start-up, validation, planning, sending),
the sending loop's own rate (from the command's summary), and what the server received.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.smtp_server import PASSWORD, Recorder, smtp_server  # noqa: E402

DISPATCH = Path(sys.executable).parent / "dispatch"


def build(folder: Path, count: int) -> None:
    subprocess.run([str(DISPATCH), "init", str(folder)], check=True, capture_output=True)
    with open(folder / "recipients.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "state", "mission", "email", "channel"])
        for i in range(count):
            writer.writerow([f"R{i:04}", f"State {i}", f"Permanent Mission of State {i} to the United Nations",
                             f"mission{i:04}@example.org", "email"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=500)
    parser.add_argument("--keep", type=Path, help="build the campaign in this folder and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="dispatch-bench-")) / "campaign"
    build(folder, args.recipients)
    started = time.monotonic()
    subprocess.run([str(DISPATCH), "-C", str(folder), "render"], check=True, capture_output=True)
    render_seconds = time.monotonic() - started
    env = {**os.environ, "DISPATCH_SMTP_PASSWORD": PASSWORD}
    for name in ("DISPATCH_SMTP_HOST", "DISPATCH_SMTP_PORT", "DISPATCH_SMTP_SECURITY", "DISPATCH_SMTP_CAFILE",
                 "DISPATCH_SMTP_USERNAME", "DISPATCH_SENDER", "DISPATCH_JOURNAL"):
        env.pop(name, None)
    handler = Recorder()
    with smtp_server(handler) as server:
        settings = (folder / "dispatch.toml").read_text(encoding="utf-8")
        settings = settings[:settings.index("[smtp]")] + server.settings(rate_limit=0)
        (folder / "dispatch.toml").write_text(settings, encoding="utf-8")
        started = time.monotonic()
        result = subprocess.run([str(DISPATCH), "-C", str(folder), "send", "--yes"], env=env, capture_output=True,
                                text=True)
        wall = time.monotonic() - started
    if result.returncode != 0:
        print(result.stdout, result.stderr, file=sys.stderr)
        return 1
    loop = re.search(r"in ([\d.]+) s \(([\d.]+) messages/s\)", result.stdout)
    received = len(handler.messages)
    size = sum(len(m.data) for m in handler.messages) / max(received, 1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"recipients: {args.recipients}; rendered first in {render_seconds:.1f} s")
    print(f"server received {received} messages of {size / 1024:.0f} KiB on average")
    print(f"dispatch send --yes: {wall:.2f} s wall, {received / wall:.1f} messages/s "
          f"(sending loop: {loop.group(1)} s, {loop.group(2)} messages/s)")
    return 0 if received == args.recipients else 1


if __name__ == "__main__":
    sys.exit(main())
