"""Where an account's OAuth tokens are kept between runs: the system keyring when a usable one exists, else a
JSON file in the user's configuration folder that only the user can read (created with mode 0600, never
readable by others even for a moment).

Tokens never appear in a repr, an exception message or a log line.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from dispatch.errors import SendError
from dispatch.extras import missing
from dispatch.mail.accounts import config_dir

log = logging.getLogger(__name__)

KEYRING_SERVICE = "dispatch-oauth"
FILE_NAME = "tokens.json"
STORE_VARIABLE = "DISPATCH_TOKEN_STORE"  # "keyring" or "file": choose instead of the automatic choice
_MAX_FILE = 1 << 20


@dataclass(frozen=True)
class Tokens:
    """What a token endpoint gave for one account."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float = 0.0  # seconds since the epoch
    issued_at: float = 0.0
    token_type: str = "Bearer"
    scope: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token, "expires_at": self.expires_at,
                "issued_at": self.issued_at, "token_type": self.token_type, "scope": self.scope}

    @classmethod
    def from_json(cls, data: Any) -> "Tokens | None":
        """The tokens in a stored record, or None when the record is not one (then a new sign-in is needed)."""
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            return None
        refresh = data.get("refresh_token")
        times = [data.get("expires_at", 0), data.get("issued_at", 0)]
        if (refresh is not None and not isinstance(refresh, str)) or \
                not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
            return None
        return cls(data["access_token"], refresh, float(times[0]), float(times[1]),
                   str(data.get("token_type") or "Bearer"), str(data.get("scope") or ""))


class TokenStore(Protocol):
    description: str

    def load(self, account: str) -> Tokens | None: ...

    def save(self, account: str, tokens: Tokens) -> None: ...

    def delete(self, account: str) -> bool: ...


class KeyringStore:
    """One keyring entry per account (service "dispatch-oauth", user name = the account's name)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        name = getattr(backend, "name", None) or type(backend).__name__
        self.description = f"the system keyring ({name})"

    def load(self, account: str) -> Tokens | None:
        try:
            text = self._backend.get_password(KEYRING_SERVICE, account)
        except Exception as exc:  # a locked or broken keyring: keyring.errors.KeyringError and others
            raise _keyring_problem("read", exc) from None
        if not text:
            return None
        try:
            return Tokens.from_json(json.loads(text))
        except ValueError:
            return None

    def save(self, account: str, tokens: Tokens) -> None:
        try:
            self._backend.set_password(KEYRING_SERVICE, account, json.dumps(tokens.to_json()))
        except Exception as exc:
            raise _keyring_problem("write to", exc) from None

    def delete(self, account: str) -> bool:
        try:
            if self._backend.get_password(KEYRING_SERVICE, account) is None:
                return False
            self._backend.delete_password(KEYRING_SERVICE, account)
        except Exception as exc:
            raise _keyring_problem("change", exc) from None
        return True


def _keyring_problem(what: str, exc: BaseException) -> SendError:
    return SendError(f"cannot {what} the system keyring ({type(exc).__name__})",
                     hint=f"unlock the keyring, or set {STORE_VARIABLE}=file to keep the tokens in a file "
                          "only you can read")


class FileStore:
    """A JSON file {account: tokens} readable and writable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"the file {path} (readable only by you)"

    def _read(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SendError(f"cannot read {self.path}: {exc.strerror}", file=str(self.path),
                            hint="check the file's owner and permissions, or run dispatch logout and sign in again") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if hasattr(os, "getuid") and info.st_uid != os.getuid():
                raise SendError(f"{self.path} belongs to another user", file=str(self.path),
                                hint="delete it; dispatch login makes a new one")
            if stat.S_IMODE(info.st_mode) & 0o077:
                log.warning("%s could be read by others; now readable only by you", self.path)
                os.fchmod(handle.fileno(), 0o600)
            data = handle.read(_MAX_FILE + 1)
        try:
            found = json.loads(data) if len(data) <= _MAX_FILE else None
        except ValueError:
            found = None
        if not isinstance(found, dict):
            log.warning("%s is not a token file dispatch wrote; it is ignored", self.path)
            return {}
        return found

    def _write(self, records: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(records, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def load(self, account: str) -> Tokens | None:
        return Tokens.from_json(self._read().get(account))

    def save(self, account: str, tokens: Tokens) -> None:
        records = self._read()
        records[account] = tokens.to_json()
        self._write(records)

    def delete(self, account: str) -> bool:
        records = self._read()
        if account not in records:
            return False
        del records[account]
        if records:
            self._write(records)
        else:
            self.path.unlink(missing_ok=True)
        return True


def token_store(environ: Mapping[str, str] = os.environ) -> TokenStore:
    """The keyring when a usable back end exists (or DISPATCH_TOKEN_STORE=keyring), else the file."""
    choice = environ.get(STORE_VARIABLE, "").strip().lower()
    if choice not in ("", "keyring", "file"):
        raise SendError(f"{STORE_VARIABLE}={choice!r}: must be keyring or file",
                        hint="leave it unset to use the system keyring when there is one")
    if choice != "file":
        backend = _usable_keyring(environ)
        if backend is not None:
            return KeyringStore(backend)
        if choice == "keyring":
            if importlib.util.find_spec("keyring") is None:  # an extra: pip install 'dispatch-letters[keyring]'
                raise missing("keyring", f"{STORE_VARIABLE}=keyring", SendError)
            raise SendError(f"{STORE_VARIABLE}=keyring but no usable system keyring was found",
                            hint="install and unlock a keyring (GNOME Keyring, KWallet, macOS Keychain, Windows "
                                 f"Credential Manager), or set {STORE_VARIABLE}=file")
    return FileStore(token_file(environ))


def token_file(environ: Mapping[str, str] = os.environ) -> Path:
    return config_dir(environ) / FILE_NAME


def token_store_description(environ: Mapping[str, str] = os.environ) -> str:
    """Where `dispatch login` keeps tokens on this machine, in words (for `dispatch login` and the README)."""
    return token_store(environ).description


def forget_tokens(account: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Delete the account's tokens wherever they are (keyring and file); the places they were removed from."""
    removed = []
    store = token_store(environ)
    if store.delete(account):
        removed.append(store.description)
    if not isinstance(store, FileStore):
        fallback = FileStore(token_file(environ))
        if fallback.path.exists() and fallback.delete(account):
            removed.append(fallback.description)
    return removed


def _usable_keyring(environ: Mapping[str, str]) -> Any | None:
    if environ.get("PYTHON_KEYRING_BACKEND", "").strip() in ("keyring.backends.fail.Keyring",
                                                             "keyring.backends.null.Keyring"):
        return None
    try:
        import keyring
        from keyring.backends import chainer, fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring):
            return None
        if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
            return None
        if float(getattr(backend, "priority", 1)) <= 0:
            return None
    except Exception:  # a back end that cannot even say whether it works
        return None
    return backend
