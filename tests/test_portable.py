"""What runs on macOS and Windows, proved on Linux: no POSIX-only module on any import path, and a send
lock that works between processes whatever the system.

Windows has no fcntl, no fork, no SIGALRM timers, no os.getuid; a module that needs one at import time
stops every command there. The import test takes them away in a new interpreter and imports every module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dispatch.errors import SendError
from dispatch.runlock import RunLock

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src" / "dispatch"

# Modules Windows does not have, and the names it lacks in os and signal.
POSIX_MODULES = ["fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "syslog", "posix_ipc"]
POSIX_OS_NAMES = ["fork", "forkpty", "register_at_fork", "getuid", "geteuid", "getgid", "getpgid", "setsid",
                  "killpg", "sched_getaffinity", "fchmod", "fchown", "chown", "getloadavg", "wait3", "wait4"]
POSIX_SIGNAL_NAMES = ["SIGALRM", "SIGHUP", "SIGKILL", "SIGCHLD", "SIGUSR1", "SIGUSR2", "setitimer", "alarm",
                      "ITIMER_REAL", "pthread_kill", "pthread_sigmask", "siginterrupt"]


def _modules() -> list[str]:
    return sorted(".".join(p.relative_to(SOURCE.parent).with_suffix("").parts).removesuffix(".__init__")
                  for p in SOURCE.rglob("*.py") if p.name != "__main__.py")


def test_every_module_imports_without_fcntl_fork_or_posix_signals():
    script = textwrap.dedent(f"""
        import json, os, signal, sys, traceback
        for name in {POSIX_MODULES!r}:
            sys.modules[name] = None  # import name now raises ImportError, as on Windows
        for name in {POSIX_OS_NAMES!r}:
            if hasattr(os, name):
                delattr(os, name)
        for name in {POSIX_SIGNAL_NAMES!r}:
            if hasattr(signal, name):
                delattr(signal, name)
        import importlib
        failed = {{}}
        for module in {_modules()!r}:
            try:
                importlib.import_module(module)
            except BaseException:
                failed[module] = traceback.format_exc(limit=-3)
        print(json.dumps(failed))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert failed == {}, "\n".join(f"{module}:\n{trace}" for module, trace in failed.items())


def test_the_import_test_sees_a_module_that_needs_fcntl(tmp_path):
    # Negative control: the same sabotage makes `import fcntl` fail, so a module that imports it would fail.
    script = "import sys; sys.modules['fcntl'] = None\ntry:\n import fcntl\nexcept ImportError:\n print('refused')"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "refused"


HOLDER = """
import sys, time
from pathlib import Path
from dispatch.runlock import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("holding", flush=True)
time.sleep(600)
"""


def _hold(path: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_send_is_refused_while_another_process_holds_the_lock(tmp_path):
    path = tmp_path / "dispatch.db.lock"
    holder = _hold(path)
    try:
        with pytest.raises(SendError) as refused:
            RunLock(path, shown="dispatch.db.lock").acquire()
        assert str(refused.value) == (f"dispatch.db.lock: another dispatch send is running on this campaign "
                                      f"(pid {holder.pid})")
        assert refused.value.hint == "wait for it to finish, then run dispatch send again to send what is left"
    finally:
        holder.kill()  # killed, not stopped: the system releases the lock all the same
        holder.wait(timeout=60)
    deadline = time.monotonic() + 60
    while True:
        try:
            with RunLock(path):
                break
        except SendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_lock_is_taken_again_once_released_in_the_same_process(tmp_path):
    path = tmp_path / "dispatch.db.lock"
    first = RunLock(path)
    first.acquire()
    with pytest.raises(SendError):
        RunLock(path).acquire()  # not re-entrant: a second send in this process is refused too
    first.release()
    with RunLock(path):
        assert path.read_bytes().split() == [str(os.getpid()).encode()]
