"""Signing secrets at rest: sealed with the field-encryption keys, never stored in clear.

An endpoint's secret signs every delivery, so it is as sensitive as a password: a database dump
or a read replica must not reveal it. `webhook_endpoints.secret_enc` holds it encrypted by
`kizuna.privacy.crypto` under its own field name (a ciphertext copied from or into another
encrypted column does not decrypt), and `key_version` is the version of the key that sealed it,
as on member profiles, so `kizuna rotate-keys` re-encrypts it with the rest.

Endpoints registered before migration 0414 have their secret in clear in `secret_legacy`
(`key_version` 0, older than any key) until `kizuna rotate-keys` seals it; meanwhile it still
signs. Nothing here puts a secret in an error message, a log line or a `repr`.
"""

from __future__ import annotations

import secrets

from kizuna.core.errors import KizunaError
from kizuna.privacy import crypto
from kizuna.privacy.errors import ErrorCode
from kizuna.privacy.keys import Keyring, keyring

SECRET_FIELD = "webhook_secret"  # noqa: S105 - the field name ciphertexts are bound to


def new_secret() -> str:
    """A fresh signing secret (shown once to the client, then only stored sealed)."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def seal(secret: str, ring: Keyring | None = None) -> tuple[str, int]:
    """The secret encrypted with the current key, and that key's version."""
    ring = ring or keyring()
    return crypto.encrypt(secret, field=SECRET_FIELD, ring=ring), ring.current


def reveal(sealed: str | None, legacy: str | None, ring: Keyring | None = None) -> str:
    """The secret in clear: the legacy clear value while there is one, else the decrypted one."""
    if legacy is not None:
        return legacy
    if sealed is None:
        raise KizunaError(ErrorCode.UNREADABLE_VALUE, "the endpoint has no signing secret")
    return crypto.decrypt(sealed, field=SECRET_FIELD, ring=ring)
