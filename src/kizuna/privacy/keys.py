"""The keyring: field-encryption keys by version, the version new values use, the index key.

Keys come from configuration (`KIZUNA_DATA_KEYS`, `KIZUNA_DATA_KEY_VERSION`, `KIZUNA_INDEX_KEY`)
or from a key file (`KIZUNA_KEY_FILE`, TOML, which wins); never from the database. Without either,
version 1 and the index key are derived from `secret_key` (fine for a demo, not for production).
Rotation = add a new version, make it current, run `kizuna rotate-keys`; old versions stay in
the keyring until no value uses them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kizuna.core.errors import KizunaError
from kizuna.core.settings import Settings, get_settings
from kizuna.privacy.errors import ErrorCode

KEY_BYTES = 32


@dataclass(frozen=True)
class Keyring:
    """Every data key Kizuna can read with, the one it writes with, and the blind-index key."""

    data_keys: dict[int, bytes]
    current: int
    index_key: bytes

    def __post_init__(self) -> None:
        if self.current not in self.data_keys:
            raise KizunaError(ErrorCode.UNKNOWN_KEY_VERSION, f"no data key {self.current}")
        for key in (*self.data_keys.values(), self.index_key):
            if len(key) != KEY_BYTES:
                raise KizunaError(ErrorCode.INVALID_KEY, "keys must be 32 bytes (64 hex digits)")

    def with_new_version(self, key: bytes) -> Keyring:
        """The same keyring plus `key` as the next version, made current."""
        version = max(self.data_keys) + 1
        return Keyring({**self.data_keys, version: key}, version, self.index_key)


def derive(secret: str, purpose: str) -> bytes:
    """A 32-byte key derived from `secret` for one purpose (HKDF-SHA256)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
    ).derive(secret.encode())


def _hex_key(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as bad:
        raise KizunaError(ErrorCode.INVALID_KEY, "a key is not valid hex") from bad


def _from_mapping(
    keys: dict[Any, str], current: int | None, index: str | None, secret: str
) -> Keyring:
    data_keys = {int(version): _hex_key(value) for version, value in keys.items()}
    if not data_keys:
        data_keys = {1: derive(secret, "kizuna data key 1")}
    index_key = _hex_key(index) if index else derive(secret, "kizuna blind index")
    return Keyring(data_keys, current or max(data_keys), index_key)


def load_keyring(settings: Settings) -> Keyring:
    """The keyring named by the settings: the key file if set, else the settings themselves."""
    if settings.key_file is not None:
        data = tomllib.loads(Path(settings.key_file).read_text(encoding="utf-8"))
        return _from_mapping(
            dict(data.get("keys", {})),
            data.get("current"),
            data.get("index_key"),
            settings.secret_key,
        )
    return _from_mapping(
        dict(settings.data_keys), settings.data_key_version, settings.index_key, settings.secret_key
    )


def write_key_file(path: Path, keyring: Keyring) -> None:
    """Write `keyring` as a TOML key file readable only by its owner."""
    lines = [f"current = {keyring.current}", f'index_key = "{keyring.index_key.hex()}"', "[keys]"]
    lines += [f'{version} = "{key.hex()}"' for version, key in sorted(keyring.data_keys.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)


_active: Keyring | None = None


def configure(source: Keyring | Settings) -> Keyring:
    """Make `source` (or the keyring the settings name) the process's keyring."""
    # One keyring per process, set at start-up (or by a test); services read it through keyring().
    global _active
    _active = source if isinstance(source, Keyring) else load_keyring(source)
    return _active


def keyring() -> Keyring:
    """The process's keyring (from the environment's settings unless configured)."""
    return _active if _active is not None else configure(get_settings())
