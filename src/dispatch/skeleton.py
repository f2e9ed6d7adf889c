"""A new campaign folder, copied from the skeleton shipped with dispatch."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from dispatch.errors import WorkspaceError


def init(destination: Path) -> list[Path]:
    """Create a new, working campaign folder from the skeleton shipped with dispatch."""
    destination = destination.expanduser()
    if destination.exists() and any(destination.iterdir()):
        raise WorkspaceError(f"{destination} already exists and is not empty",
                             hint="choose a new folder name; dispatch init never overwrites files")
    skeleton = resources.files("dispatch") / "skeleton"
    with resources.as_file(skeleton) as source:
        staging = destination.with_name(f".{destination.name}.init-tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if destination.exists():
            destination.rmdir()
        staging.rename(destination)
    return [path for path in sorted(destination.rglob("*")) if path.is_file()]
