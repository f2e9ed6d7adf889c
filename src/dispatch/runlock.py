"""One `dispatch send` at a time per campaign: an exclusive lock on a file beside the journal.

The operating system releases the lock when the process ends, however it ends (even by kill -9), so
a stale lock never blocks the next run. The lock is filelock's: flock() on Linux and macOS, LockFileEx on
Windows (which locks the file's first byte against every other reader too: the holder's process id is
written after it, where a refused run can read it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from filelock import FileLock, Timeout

from dispatch.errors import SendError


class RunLock:
    def __init__(self, path: Path, *, shown: str | None = None) -> None:
        self.path = path
        self.shown = shown or path.name
        self._lock: FileLock | None = None

    def acquire(self) -> None:
        lock = FileLock(self.path, blocking=False, thread_local=False, on_acquired=_write_pid)
        try:
            lock.acquire()
        except Timeout:
            raise SendError(f"another dispatch send is running on this campaign (pid {_holder(self.path)})",
                            file=self.shown,
                            hint="wait for it to finish, then run dispatch send again to send what is left") from None
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _write_pid(fd: int) -> None:
    """Leave this process's id in the lock file it holds, after a first byte that Windows keeps locked."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"\n{os.getpid()}\n".encode("ascii"))


def _holder(path: Path) -> str:
    """The process id the holder wrote in the lock file, or "unknown"."""
    data = b""
    try:
        with open(path, "rb") as handle:
            try:
                data = handle.read(64)
            except OSError:  # Windows: the holder's lock covers the first byte
                handle.seek(1)
                data = handle.read(64)
    except OSError:
        pass
    found = re.search(rb"\d+", data)
    return found.group().decode("ascii") if found else "unknown"
