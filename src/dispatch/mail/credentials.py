"""Passwords (SMTP, signing key) come from the environment or the system keyring, never from a file."""

from __future__ import annotations

import os
from typing import Mapping


def stored_secret(variable: str, service: str, user: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The value of the environment variable when set, else the system keyring's entry (when the keyring
    package and a back end are installed), else None."""
    if variable in environ:
        return environ[variable]
    try:
        import keyring  # optional: used when installed and a password is stored

        return keyring.get_password(service, user)
    except Exception:  # no keyring module, or no usable keyring back end
        return None
