"""One `dispatch send` at a time per campaign: an exclusive lock on a file beside the journal.

The operating system releases the lock when the process ends, however it ends (even by kill -9), so
a stale lock never blocks the next run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import SendError


class RunLock:
    def __init__(self, path: Path, *, shown: str | None = None) -> None:
        self.path = path
        self.shown = shown or path.name
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise SendError(f"another dispatch send is running on this campaign (pid {holder})", file=self.shown,
                            hint="wait for it to finish, then run dispatch send again to send what is left") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
