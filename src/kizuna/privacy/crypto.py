"""Field encryption and blind indexes.

A field is encrypted alone with AES-256-GCM: a fresh 96-bit nonce per value, the column's name as
associated data (a ciphertext copied into another column does not decrypt), and the key version
in front, `k<version>:<base64url(nonce ‖ ciphertext)>`, so values of several versions live side by
side during a rotation. A blind index is HMAC-SHA256 of the *normalised* value under a separate
key: equal values give equal indexes (exact lookups, uniqueness) while the table alone reveals
nothing. Errors never include the value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kizuna.core.errors import KizunaError
from kizuna.privacy.errors import ErrorCode
from kizuna.privacy.keys import Keyring, keyring

NONCE_BYTES = 12


@lru_cache(maxsize=32)
def _aead(key: bytes) -> AESGCM:
    # One cipher object per key: building it costs more than decrypting a short field.
    return AESGCM(key)


def version_of(token: str) -> int:
    """The key version a stored value was encrypted with."""
    prefix, _, _ = token.partition(":")
    if not prefix.startswith("k") or not prefix[1:].isdigit():
        raise KizunaError(ErrorCode.UNREADABLE_VALUE, "not an encrypted value")
    return int(prefix[1:])


def encrypt(plaintext: str, *, field: str, ring: Keyring | None = None) -> str:
    """`plaintext` encrypted with the current key, bound to `field`."""
    ring = ring or keyring()
    nonce = os.urandom(NONCE_BYTES)
    sealed = _aead(ring.data_keys[ring.current]).encrypt(
        nonce, plaintext.encode("utf-8"), field.encode()
    )
    return f"k{ring.current}:" + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt(token: str, *, field: str, ring: Keyring | None = None) -> str:
    """The plaintext of a value written by `encrypt` for the same field, with any known version."""
    ring = ring or keyring()
    version = version_of(token)
    key = ring.data_keys.get(version)
    if key is None:
        raise KizunaError(
            ErrorCode.UNKNOWN_KEY_VERSION, f"data key version {version} is not loaded"
        )
    raw = base64.urlsafe_b64decode(token.partition(":")[2])
    try:
        plain = _aead(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], field.encode())
    except InvalidTag as bad:
        raise KizunaError(
            ErrorCode.UNREADABLE_VALUE, f"a value of {field} does not decrypt"
        ) from bad
    return plain.decode("utf-8")


def encrypt_optional(
    plaintext: str | None, *, field: str, ring: Keyring | None = None
) -> str | None:
    """`encrypt`, passing None through."""
    return None if plaintext is None else encrypt(plaintext, field=field, ring=ring)


def decrypt_optional(token: str | None, *, field: str, ring: Keyring | None = None) -> str | None:
    """`decrypt`, passing None through."""
    return None if token is None else decrypt(token, field=field, ring=ring)


def reencrypt(token: str, *, field: str, ring: Keyring | None = None) -> str:
    """The same plaintext under the current key (unchanged if already current)."""
    ring = ring or keyring()
    if version_of(token) == ring.current:
        return token
    return encrypt(decrypt(token, field=field, ring=ring), field=field, ring=ring)


def blind_index(kind: str, normalised: str, *, ring: Keyring | None = None) -> str:
    """The keyed HMAC (hex) of a normalised value of `kind`: the same for equal values only."""
    ring = ring or keyring()
    message = f"{kind}\x00{normalised}".encode()
    return hmac.new(ring.index_key, message, hashlib.sha256).hexdigest()
