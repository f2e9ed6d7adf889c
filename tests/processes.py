"""Processes the tests start: what a command writes to a terminal (a pty), waited for with a generous deadline;
a server stopped politely, then killed."""

from __future__ import annotations

import os
import select
import subprocess
import time


def read_until(fd: int, text: bytes, seen: bytearray, timeout: float = 300) -> None:
    """Read from fd into seen until text is in it (a failed assertion, showing what was seen, after timeout s)."""
    end = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < end, f"never saw {text!r} in {bytes(seen)[-3000:]!r}"
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen.extend(os.read(fd, 4096))
            except OSError:
                break


def stop(process: subprocess.Popen | None) -> None:
    """Stop a server the tests started, if it still runs: SIGTERM, then SIGKILL after 20 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
