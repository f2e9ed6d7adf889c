"""Check, before installing, that this machine has what WeasyPrint needs; say what to install if not.

`make` runs it before it sets anything up; it also runs alone, on Linux, macOS or Windows:
    python3 tools/check_system.py
Exit status 1 when something needed is missing (what, and the command that installs it, on stderr).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class Library:
    what: str
    name: str  # as ctypes.util.find_library knows it
    debian: str  # the Debian/Ubuntu package
    dylib: str  # the file Homebrew installs (macOS)
    dll: str  # the file MSYS2 installs (Windows)


NEEDED = [
    Library("Pango, the text layout library WeasyPrint uses", "pango-1.0", "libpango-1.0-0",
            "libpango-1.0.dylib", "libpango-1.0-0.dll"),
    Library("Pango's FreeType back end", "pangoft2-1.0", "libpangoft2-1.0-0",
            "libpangoft2-1.0.dylib", "libpangoft2-1.0-0.dll"),
    Library("HarfBuzz, the text shaper", "harfbuzz", "libharfbuzz0b", "libharfbuzz.0.dylib", "libharfbuzz-0.dll"),
    Library("Fontconfig", "fontconfig", "libfontconfig1", "libfontconfig.1.dylib", "libfontconfig-1.dll"),
]
RECOMMENDED = [  # Linux only: Homebrew's and MSYS2's HarfBuzz come with it
    (Library("HarfBuzz-Subset", "harfbuzz-subset", "libharfbuzz-subset0", "", ""),
     "fonts are subset several times faster than with fontTools (dispatch render is faster)"),
]
HOMEBREW_LIBS = [Path("/opt/homebrew/lib"), Path("/usr/local/lib")]  # Apple silicon, Intel
# Where WeasyPrint looks for the DLLs on Windows unless WEASYPRINT_DLL_DIRECTORIES says otherwise.
WINDOWS_DLL_DIRECTORIES = r"C:\msys64\ucrt64\bin;C:\msys64\mingw64\bin;C:\Program Files\GTK3-Runtime Win64\bin"
WINDOWS_STEPS = [
    "  1. install MSYS2 (https://www.msys2.org), keeping the default options;",
    "  2. in the \"MSYS2 UCRT64\" shell: pacman -S mingw-w64-ucrt-x86_64-pango",
    "  3. if MSYS2 is not in C:\\msys64: set WEASYPRINT_DLL_DIRECTORIES=<MSYS2 folder>\\ucrt64\\bin",
]


@dataclass
class Findings:
    errors: list[str]
    warnings: list[str]


def check(platform: str = sys.platform, environ: Mapping[str, str] = os.environ,
          find: Callable[[str], str | None] = ctypes.util.find_library,
          exists: Callable[[Path], bool] = Path.exists, version: tuple[int, int] = sys.version_info[:2],
          os_release: str | None = None) -> Findings:
    """What this machine lacks for dispatch (errors) or would do better with (warnings), as lines to show."""
    found = Findings([], [])
    if tuple(version) < MIN_PYTHON:
        found.errors += [f"dispatch needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; this is "
                         f"{version[0]}.{version[1]}.", "  " + _python_hint(platform)]
    if platform == "darwin":
        _macos(found, environ, find, exists)
    elif platform == "win32":
        _windows(found, environ, find, exists)
    else:
        _linux(found, find, _os_release() if os_release is None else os_release)
    return found


def _linux(found: Findings, find, os_release: str) -> None:
    missing = [lib for lib in NEEDED if not find(lib.name)]
    debian = _is_debian(os_release)
    if missing:
        found.errors.append("dispatch cannot render PDFs on this machine yet: a system library is missing.")
        found.errors += [f"  missing: {lib.what}" + (f" (Debian/Ubuntu package {lib.debian})" if debian else "")
                         for lib in missing]
        if debian:
            found.errors.append("  install with: sudo apt-get install " + " ".join(lib.debian for lib in missing))
        elif "fedora" in os_release or "rhel" in os_release:
            found.errors.append("  install with: sudo dnf install pango")
        else:
            found.errors.append("  install Pango 1.44 or newer (it brings HarfBuzz and Fontconfig) with your "
                                "package manager")
        found.errors.append("  then run make again.")
    for lib, why in RECOMMENDED:
        if not find(lib.name):
            found.warnings.append(f"warning: recommended: {lib.what}: {why}")
            if debian:
                found.warnings.append(f"  install with: sudo apt-get install {lib.debian}")


def _macos(found: Findings, environ, find, exists) -> None:
    fallback = [Path(p) for p in environ.get("DYLD_FALLBACK_LIBRARY_PATH", "").split(":") if p]
    missing, only_homebrew = [], set()
    for lib in NEEDED:
        if find(lib.name) or any(exists(folder / lib.dylib) for folder in fallback):
            continue
        brewed = [folder for folder in HOMEBREW_LIBS if exists(folder / lib.dylib)]
        if brewed:
            only_homebrew.add(brewed[0])
        else:
            missing.append(lib)
    if missing:
        found.errors.append("dispatch cannot render PDFs on this Mac yet: Pango is not installed.")
        found.errors += [f"  missing: {lib.what}" for lib in missing]
        found.errors.append("  install Homebrew (https://brew.sh), then: brew install pango")
        found.errors.append("  then run this again.")
    elif only_homebrew:
        folders = ":".join(str(folder) for folder in sorted(only_homebrew))
        found.errors.append(f"Pango is installed in {folders}, where Python does not look for libraries.")
        found.errors.append(f"  add to ~/.zprofile: export DYLD_FALLBACK_LIBRARY_PATH={folders}"
                            "${DYLD_FALLBACK_LIBRARY_PATH:+:$DYLD_FALLBACK_LIBRARY_PATH}")
        found.errors.append("  then open a new terminal and run this again.")


def _windows(found: Findings, environ, find, exists) -> None:
    folders = [Path(p) for p in environ.get("WEASYPRINT_DLL_DIRECTORIES", WINDOWS_DLL_DIRECTORIES).split(";") if p]
    missing = [lib for lib in NEEDED
               if not any(exists(folder / lib.dll) for folder in folders) and not find(lib.dll[:-4])]
    if missing:
        found.errors.append("dispatch cannot render PDFs on this computer yet: Pango (from MSYS2) is not found.")
        found.errors += [f"  missing: {lib.what} ({lib.dll})" for lib in missing]
        found.errors.append("  looked in: " + "; ".join(str(folder) for folder in folders))
        found.errors += WINDOWS_STEPS
        found.errors.append("  then run this again.")


def _python_hint(platform: str) -> str:
    if platform == "darwin":
        return "install a newer one: brew install python@3.12, then: make PYTHON=python3.12"
    if platform == "win32":
        return "install a newer one with the Python Install Manager (Microsoft Store)"
    return "Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv, then: make PYTHON=python3.11"


def _os_release() -> str:
    for path in (Path("/etc/os-release"), Path("/usr/lib/os-release")):
        try:
            return path.read_text(errors="replace").lower()
        except OSError:
            continue
    return ""


def _is_debian(os_release: str) -> bool:
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key in ("id", "id_like") and {"debian", "ubuntu"} & set(value.strip('"').split()):
            return True
    return not os_release  # unknown: the commands most readers need


def main() -> int:
    found = check()
    for line in found.errors + found.warnings:
        print(line, file=sys.stderr)
    if found.errors:
        return 1
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError:
        print("Python's venv module is missing: sudo apt-get install python3-venv", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
