"""Files on disk: atomic writes, hashes, and the temporary files a killed process left behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from dispatch.errors import RenderError


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes, *, staged: bool = False) -> Path:
    """Write data to path so that readers see either the old file or the whole new one; return path.

    staged: leave the data in its temporary file (synced to the disk) for commit() to rename to path
    later, and return that file: letters are renamed into place by the command that records them."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if staged:
            return tmp
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:  # interrupted (Ctrl-C): leave nothing half-written behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path


def commit(staged: Path, path: Path) -> None:
    """Rename a file that write_atomic(staged=True) wrote into its place."""
    try:
        os.replace(staged, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
        raise _write_error(path, exc) from None


def _write_error(path: Path, exc: OSError) -> RenderError:
    reason = exc.strerror
    if isinstance(exc, FileExistsError | NotADirectoryError):
        reason = "a file stands where a folder should be"
    if os.name == "nt" and isinstance(exc, PermissionError) and path.exists():
        return RenderError(f"cannot replace {path.name}: another program has it open", file=str(path.parent),
                           hint="close it in the PDF viewer (or the program that shows it), then run the command again")
    return RenderError(f"cannot write {path.name}: {reason}", file=str(path.parent),
                       hint="check that the output folder is writable and the disk is not full")


_TEMPORARY = re.compile(r"^\.(.+)\.(\d+)\.tmp$")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files write_atomic left behind when its process was killed."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and not _process_alive(int(match.group(2))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    """Whether a process still runs (its temporary files are its own). On Windows os.kill would end it."""
    if os.name == "nt":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _windows_process_alive(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)



def confined(folder: Path, root: Path) -> Path:
    """folder, once it is certain that it is root or lies inside it with every symlink resolved; dispatch
    never writes or deletes through a link that leads out of the campaign's output (e.g. an outbox/ that
    points at another folder). Returns folder; raises DispatchError when it leads elsewhere."""
    from dispatch.errors import DispatchError

    real_root = root.resolve()
    real = folder.resolve()
    if real != real_root and real_root not in real.parents:
        raise DispatchError(f"{folder.name}/ leads out of {root.name}/ (to {real})", file=str(folder),
                            hint=f"dispatch does not write or delete through a link that leaves {root.name}/: "
                                 "remove the link, and dispatch makes a plain folder there")
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DispatchError(f"{folder.name} is not a plain folder", file=str(folder),
                            hint="remove or rename it, and dispatch makes a plain folder there")
    return folder
