"""Check, before installing, that this machine has what WeasyPrint needs; say what to install if not."""

import ctypes.util
import sys

NEEDED = [
    # (library name for ctypes, Debian package, what it is)
    ("pango-1.0", "libpango-1.0-0", "Pango, the text layout library WeasyPrint uses"),
    ("pangoft2-1.0", "libpangoft2-1.0-0", "Pango's FreeType back end"),
    ("harfbuzz", "libharfbuzz0b", "HarfBuzz, the text shaper"),
    ("fontconfig", "libfontconfig1", "Fontconfig"),
]
RECOMMENDED = [
    # (library name for ctypes, Debian package, why)
    ("harfbuzz-subset", "libharfbuzz-subset0",
     "HarfBuzz-Subset: fonts are subset several times faster than with fontTools (dispatch render is faster)"),
]


def main() -> int:
    if sys.version_info < (3, 11):
        print(f"dispatch needs Python 3.11 or newer; this is {sys.version.split()[0]}.", file=sys.stderr)
        print("  Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv, then: make PYTHON=python3.11", file=sys.stderr)
        return 1
    missing = [(pkg, what) for lib, pkg, what in NEEDED if not ctypes.util.find_library(lib)]
    if missing:
        print("dispatch cannot render PDFs on this machine yet: a system library is missing.", file=sys.stderr)
        for pkg, what in missing:
            print(f"  missing: {what} (Debian/Ubuntu package {pkg})", file=sys.stderr)
        print("  install with: sudo apt-get install " + " ".join(pkg for pkg, _ in missing), file=sys.stderr)
        print("  then run make again.", file=sys.stderr)
        return 1
    for lib, pkg, why in RECOMMENDED:
        if not ctypes.util.find_library(lib):
            print(f"warning: recommended: {why}", file=sys.stderr)
            print(f"  install with: sudo apt-get install {pkg}", file=sys.stderr)
    try:
        import venv  # noqa: F401
        import ensurepip  # noqa: F401
    except ImportError:
        print("Python's venv module is missing: sudo apt-get install python3-venv", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
