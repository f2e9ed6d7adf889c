"""What `pipx install .` or `uv tool install .` gives: the wheel, installed in a clean environment, renders.

The slow test builds the wheel from a copy of the sources, installs it (runtime dependencies only, pinned
by constraints.txt) in a new virtual environment outside the repository, and runs `dispatch init` and
`dispatch render` there. The others check the declared dependencies against what the code imports, the
errors that name a missing extra, and the system check's advice for Linux, macOS and Windows.
"""

from __future__ import annotations

import ast
import csv
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
WHEEL_BOUND = 6 * 1024 * 1024  # measured: 3.2 MB, nearly all of it the fonts of the new campaign's templates
MODULES = sorted(".".join(p.relative_to(REPO / "src").with_suffix("").parts).removesuffix(".__init__")
                 for p in (REPO / "src" / "dispatch").rglob("*.py") if p.name != "__main__.py")


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _run(*args, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env={**clean, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result


# --- the wheel in a clean environment ------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_installs_alone_and_renders_a_new_campaign(tmp_path):
    tree = tmp_path / "source"  # a copy: building in the repository would leave build/ and egg-info there
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    _ok(_run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp_path / "dist", tree,
             cwd=tmp_path))
    [wheel] = (tmp_path / "dist").glob("*.whl")
    assert wheel.name == "dispatch_letters-0.1.0-py3-none-any.whl"
    assert wheel.stat().st_size < WHEEL_BOUND, f"the wheel grew to {wheel.stat().st_size:,} bytes"
    _check_wheel_contents(wheel)

    venv = tmp_path / "venv"
    _ok(_run(sys.executable, "-m", "venv", venv, cwd=tmp_path))
    bin_ = venv / ("Scripts" if os.name == "nt" else "bin")
    _ok(_run(bin_ / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-c", REPO / "constraints.txt", wheel, cwd=tmp_path, timeout=1200))

    where = _ok(_run(bin_ / "python", "-c", "import dispatch; print(dispatch.__file__)", cwd=tmp_path)).stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the installed copy, not the repository's
    listed = _ok(_run(bin_ / "python", "-m", "pip", "list", "--format=json", cwd=tmp_path)).stdout
    installed = {_normal(d["name"]) for d in json.loads(listed)}
    assert not installed & {"pandas", "numpy", "pyhanko", "watchfiles", "keyring", "pytest", "typst"}, installed

    # Every module imports in the plain install: none needs an extra, or a test tool, to be imported.
    script = f"import importlib; [importlib.import_module(m) for m in {MODULES!r}]"
    _ok(_run(bin_ / "python", "-c", script, cwd=tmp_path))

    _ok(_run(bin_ / "dispatch", "init", "campaign", cwd=tmp_path))
    rendered = _ok(_run(bin_ / "dispatch", "-C", "campaign", "render", cwd=tmp_path))
    with open(tmp_path / "campaign" / "recipients.csv", newline="", encoding="utf-8") as handle:
        ids = {row["id"] for row in csv.DictReader(handle)}
    pdfs = sorted((tmp_path / "campaign" / "out" / "letter").glob("*.pdf"))
    assert {p.stem for p in pdfs} == ids, rendered.stdout + rendered.stderr
    assert all(p.read_bytes().startswith(b"%PDF-") for p in pdfs)

    # verify works without the [sign] extra for letters that are not signed
    checked = _run(bin_ / "dispatch", "-C", "campaign", "verify", pdfs[0], cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # the commands that need an extra say which, and how to install it
    (tmp_path / "key.p12").write_bytes(b"not a key")
    signing = _run(bin_ / "dispatch", "-C", "campaign", "render", "--force", "--sign", tmp_path / "key.p12",
                   cwd=tmp_path)
    assert signing.returncode == 1
    assert "needs pyHanko, which is not installed (the [sign] extra)" in signing.stderr
    assert "hint: install it: pip install 'dispatch-letters[sign]'" in signing.stderr


def _check_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("dispatch_letters-0.1.0.dist-info/METADATA").decode("utf-8")
        entry_points = archive.read("dispatch_letters-0.1.0.dist-info/entry_points.txt").decode("utf-8")
    licences = "dispatch_letters-0.1.0.dist-info/licenses/"
    assert {licences + "LICENSE", licences + "src/dispatch/skeleton/templates/fonts/OFL.txt",
            licences + "src/dispatch/skeleton/templates/fonts/OFL-Noto.txt",
            licences + "src/dispatch/skeleton/templates/fonts/Apache-2.0.txt"} <= names
    fonts = {Path(n).name for n in names if n.startswith("dispatch/skeleton/templates/fonts/")}
    assert {"FONTS.md", "OFL.txt", "OFL-Noto.txt", "Apache-2.0.txt", "SourceSerifPro-Regular.ttf"} <= fonts
    assert not [n for n in names if n.startswith(("tests/", "bench/")) or "__pycache__" in n]
    assert "Name: dispatch-letters" in metadata and "License-Expression: MIT" in metadata
    assert "dispatch = dispatch.launch:run" in entry_points
    unconditional = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [line for line in unconditional if re.search(r"pandas|pyhanko|watchfiles|keyring|pytest", line)]


# --- the declared dependencies -------------------------------------------------------------------------


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level names of the modules src/dispatch imports that are neither the standard library nor dispatch."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "src" / "dispatch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "dispatch":
                    found.setdefault(top, set()).add(path.relative_to(REPO / "src").as_posix())
    return found


def test_every_library_the_code_imports_is_declared():
    runtime = {_normal(_name(r)) for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    optional = {_normal(_name(r)) for extra in ("sign", "watch", "keyring") for r in extras[extra]}
    brought = set()  # what the extras' packages bring (asn1crypto with pyHanko)
    for name in optional:
        brought |= {_normal(_name(r)) for r in importlib.metadata.requires(name) or [] if "extra ==" not in r}
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, where in _third_party_imports().items():
        dists = {_normal(d) for d in providers.get(module, [])}
        if not dists & (runtime | optional | brought):
            undeclared[module] = sorted(where)
    assert undeclared == {}


def test_the_extras_are_imported_only_inside_the_functions_that_need_them():
    extra_modules = {"pyhanko", "pyhanko_certvalidator", "asn1crypto", "watchfiles", "keyring"}
    at_top = []
    for path in (REPO / "src" / "dispatch").rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            at_top += [f"{path.name}: {n}" for n in names if n.split(".")[0] in extra_modules]
    assert at_top == []


def test_constraints_pin_every_declared_package():
    pinned = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[_normal(name)] = version.strip()
    project = PYPROJECT["project"]
    declared = list(project["dependencies"]) + [r for group in project["optional-dependencies"].values() for r in group]
    assert sorted({_normal(_name(r)) for r in declared} - set(pinned)) == []
    assert "dispatch-letters" not in pinned and "dispatch" not in pinned
    assert pinned["weasyprint"].startswith("70.")  # within the bound the PDF code is written for


def test_every_folder_of_code_is_a_package():
    # A folder without __init__.py is a namespace package: setuptools leaves it out of the wheel, and
    # import-linter does not see it. The installed command would then miss its modules.
    folders = {p.parent for p in (REPO / "src" / "dispatch").rglob("*.py")}
    assert sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file()) == []


def test_weasyprint_is_bounded_where_the_code_reaches_into_it():
    [weasyprint] = [r for r in PYPROJECT["project"]["dependencies"] if _name(r) == "weasyprint"]
    assert "<71" in weasyprint.replace(" ", "")


# --- a missing extra -------------------------------------------------------------------------------------


def _without(modules: list[str], code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run code in a new interpreter where `modules` cannot be imported, as in an install without the extra."""
    blocked = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return _run(sys.executable, "-c", "import sys\n" + blocked + textwrap.dedent(code), cwd=REPO, env=env)


def test_signing_without_pyhanko_names_the_sign_extra(tmp_path):
    key = tmp_path / "key.p12"
    key.write_bytes(b"\x30\x82")
    result = _without(["pyhanko", "pyhanko_certvalidator"], f"""
        from pathlib import Path
        from dispatch.errors import SignError
        from dispatch.pdf.signing import read_key_file, check_signature
        try:
            read_key_file(Path({str(key)!r}))
        except SignError as exc:
            print(exc.problem.message)
            print(exc.hint)
        print(check_signature(b"%PDF-1.7 a letter without a signature %%EOF").problem)
        try:
            check_signature(b"%PDF-1.7 /Type /Sig /ByteRange [0 10 20 30] %%EOF")
        except SignError as exc:
            print(exc.problem.message)
    """)
    assert result.stdout.splitlines() == [
        "signing PDFs (--sign) needs pyHanko, which is not installed (the [sign] extra)",
        "install it: pip install 'dispatch-letters[sign]'",
        "the file is not signed",
        "checking a PDF's signature needs pyHanko, which is not installed (the [sign] extra)",
    ], result.stderr


def test_watching_without_watchfiles_names_the_watch_extra(tmp_path):
    result = _without(["watchfiles"], f"""
        from pathlib import Path
        from dispatch.errors import DispatchError
        from dispatch.stages.preview import watch
        try:
            watch(None, lambda: None, lambda event: None)
        except DispatchError as exc:
            print(exc.problem.message)
            print(exc.hint)
    """)
    assert result.stdout.splitlines() == [
        "preview --watch needs watchfiles, which is not installed (the [watch] extra)",
        "install it: pip install 'dispatch-letters[watch]'",
    ], result.stderr


def test_a_keyring_asked_for_without_keyring_names_the_keyring_extra(tmp_path):
    result = _without(["keyring"], """
        from dispatch.errors import DispatchError
        from dispatch.mail.tokens import token_store
        try:
            token_store({"DISPATCH_TOKEN_STORE": "keyring"})
        except DispatchError as exc:
            print(exc.problem.message)
            print(exc.hint)
        print(type(token_store({"XDG_CONFIG_HOME": "/nonexistent"})).__name__)  # unasked: the private file
    """)
    assert result.stdout.splitlines() == [
        "DISPATCH_TOKEN_STORE=keyring needs keyring, which is not installed (the [keyring] extra)",
        "install it: pip install 'dispatch-letters[keyring]'",
        "FileStore",
    ], result.stderr


@pytest.mark.parametrize(("tool", "marker", "record", "command"), [
    ("pipx", "pipx_metadata.json", '{"main_package": {"package": "dispatch-letters", "package_or_url": "dispatch-letters"}}',
     "pipx install --force 'dispatch-letters[sign]'"),
    ("pipx", "pipx_metadata.json", '{"main_package": {"package": "dispatch-letters", "package_or_url": "%s"}}',
     "pipx install --force '%s[sign]'"),
    ("uv", "uv-receipt.toml", '[tool]\nrequirements = [{ name = "dispatch-letters" }]\n',
     "uv tool install --reinstall 'dispatch-letters[sign]'"),
    ("uv", "uv-receipt.toml", '[tool]\nrequirements = [{ name = "dispatch-letters", directory = "%s" }]\n',
     "uv tool install --reinstall '%s[sign]'"),
    ("uv", "uv-receipt.toml", "not toml [", "uv tool install --reinstall 'dispatch-letters[sign]'"),
    ("pip", None, None, "pip install 'dispatch-letters[sign]'"),
])
def test_the_install_command_is_the_one_of_the_tool_that_installed_dispatch(tmp_path, tool, marker, record, command):
    # What pipx (1.18) and uv (0.13) leave in the environments they make, as they wrote it for `pipx install .`
    # and `uv tool install .` from a clone (a folder) or for an install from the package index.
    from dispatch.extras import install_command

    clone = tmp_path / "clone"
    clone.mkdir()
    environment = tmp_path / "venv"
    environment.mkdir()
    if marker:
        (environment / marker).write_text(record.replace("%s", str(clone)), encoding="utf-8")
    assert install_command("sign", str(environment)) == command.replace("%s", str(clone))


# --- the system check (tools/check_system.py) -------------------------------------------------------------
# Linux, macOS and Windows keep their libraries in different places: the check is given what "this
# machine" has (which libraries ctypes finds, which files exist) instead of looking, since a Mac or a
# Windows computer is not at hand in the test.


@pytest.fixture(scope="module")
def check_system():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import check_system
    finally:
        sys.path.remove(str(REPO / "tools"))
    return check_system


DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n'.lower()


def test_the_check_names_the_debian_packages_of_what_is_missing(check_system):
    found = check_system.check("linux", {}, find=lambda name: None if name.startswith("pango") else name,
                               version=(3, 11), os_release=DEBIAN)
    assert found.errors == [
        "dispatch cannot render PDFs on this machine yet: a system library is missing.",
        "  missing: Pango, the text layout library WeasyPrint uses (Debian/Ubuntu package libpango-1.0-0)",
        "  missing: Pango's FreeType back end (Debian/Ubuntu package libpangoft2-1.0-0)",
        "  install with: sudo apt-get install libpango-1.0-0 libpangoft2-1.0-0",
        "  then run make again.",
    ]
    assert found.warnings == []


def test_the_check_passes_on_this_machine(check_system):
    found = check_system.check()
    assert found.errors == []


def test_the_check_says_brew_install_pango_on_a_mac_without_it(check_system):
    found = check_system.check("darwin", {}, find=lambda name: None, exists=lambda path: False, version=(3, 12))
    assert found.errors[0] == "dispatch cannot render PDFs on this Mac yet: Pango is not installed."
    assert "  install Homebrew (https://brew.sh), then: brew install pango" in found.errors


def test_the_check_points_python_at_homebrew_on_apple_silicon(check_system):
    brewed = {Path("/opt/homebrew/lib") / lib.dylib for lib in check_system.NEEDED}
    found = check_system.check("darwin", {}, find=lambda name: None, exists=lambda path: path in brewed,
                               version=(3, 12))
    assert found.errors[1] == ("  add to ~/.zprofile: export DYLD_FALLBACK_LIBRARY_PATH=/opt/homebrew/lib"
                               "${DYLD_FALLBACK_LIBRARY_PATH:+:$DYLD_FALLBACK_LIBRARY_PATH}")
    fine = check_system.check("darwin", {"DYLD_FALLBACK_LIBRARY_PATH": "/opt/homebrew/lib"}, find=lambda name: None,
                              exists=lambda path: path in brewed, version=(3, 12))
    assert fine.errors == []


def test_the_check_gives_the_msys2_steps_on_windows(check_system):
    found = check_system.check("win32", {}, find=lambda name: None, exists=lambda path: False, version=(3, 13))
    assert "  2. in the \"MSYS2 UCRT64\" shell: pacman -S mingw-w64-ucrt-x86_64-pango" in found.errors
    msys = Path("C:\\msys64\\ucrt64\\bin")
    installed = check_system.check("win32", {}, find=lambda name: None, exists=lambda path: path.parent == msys,
                                   version=(3, 13))
    assert installed.errors == []


def test_the_check_refuses_an_old_python(check_system):
    found = check_system.check("linux", {}, find=lambda name: name, version=(3, 10), os_release=DEBIAN)
    assert found.errors[0] == "dispatch needs Python 3.11 or newer; this is 3.10."
