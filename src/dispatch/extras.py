"""The optional parts of dispatch: what a command needs that the plain install leaves out.

`pip install dispatch-letters` gives every command; signing PDFs ([sign], pyHanko), `preview --watch`
([watch], watchfiles) and the system keyring ([keyring]) are extras. A command that needs one imports it
through `require`, which names the extra and the command that installs it.
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType

from dispatch.errors import DispatchError

DISTRIBUTION = "dispatch-letters"  # the name on the package index; the command and the package are `dispatch`

EXTRAS = {"sign": "pyHanko", "watch": "watchfiles", "keyring": "keyring"}


def install_command(extra: str, prefix: str | None = None) -> str:
    """How to add an extra to this installation: with the tool that made it (pipx, uv), else pip; from the
    folder it was installed from, when it was (a clone: `pipx install .`), else from the package index.

    prefix: the installation's environment (sys.prefix), where pipx leaves pipx_metadata.json and uv
    uv-receipt.toml, each saying where the package came from."""
    where = Path(prefix or sys.prefix)
    if (where / "pipx_metadata.json").is_file():
        source = _recorded(lambda: json.loads((where / "pipx_metadata.json").read_text(encoding="utf-8"))
                           ["main_package"]["package_or_url"])
        return f"pipx install --force {_spec(source, extra)}"
    if (where / "uv-receipt.toml").is_file():
        source = _recorded(lambda: tomllib.loads((where / "uv-receipt.toml").read_text(encoding="utf-8"))
                           ["tool"]["requirements"][0]["directory"])
        return f"uv tool install --reinstall {_spec(source, extra)}"
    return f"pip install {_spec(None, extra)}"


def _recorded(read) -> str | None:
    try:
        source = read()
    except (OSError, ValueError, LookupError, TypeError):
        return None
    return source if isinstance(source, str) and Path(source).is_dir() else None


def _spec(folder: str | None, extra: str) -> str:
    return f"'{folder or DISTRIBUTION}[{extra}]'"


def missing(extra: str, what: str, error: type[DispatchError] = DispatchError) -> DispatchError:
    """The error for a command that needs an extra that is not installed."""
    return error(f"{what} needs {EXTRAS[extra]}, which is not installed (the [{extra}] extra)",
                 hint=f"install it: {install_command(extra)}")


def require(module: str, extra: str, what: str, error: type[DispatchError] = DispatchError) -> ModuleType:
    """Import an optional module, or raise `error` saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(extra, what, error) from None
