"""Field encryption and blind indexes (no database)."""

import os

import pytest

from kizuna.core.errors import KizunaError
from kizuna.core.settings import Settings
from kizuna.privacy import crypto
from kizuna.privacy.keys import Keyring, load_keyring, write_key_file


@pytest.fixture
def ring():
    return Keyring({1: os.urandom(32)}, 1, os.urandom(32))


def test_a_value_round_trips_and_carries_its_key_version(ring):
    token = crypto.encrypt("taro@example.jp", field="t.email", ring=ring)
    assert token.startswith("k1:")
    assert "taro" not in token
    assert crypto.decrypt(token, field="t.email", ring=ring) == "taro@example.jp"


def test_equal_values_encrypt_differently_but_index_equally(ring):
    a = crypto.encrypt("+819012345678", field="t.phone", ring=ring)
    b = crypto.encrypt("+819012345678", field="t.phone", ring=ring)
    assert a != b
    assert crypto.blind_index("phone", "+819012345678", ring=ring) == crypto.blind_index(
        "phone", "+819012345678", ring=ring
    )
    assert crypto.blind_index("phone", "x", ring=ring) != crypto.blind_index(
        "email", "x", ring=ring
    )


def test_a_ciphertext_moved_to_another_column_does_not_decrypt(ring):
    token = crypto.encrypt("secret", field="t.email", ring=ring)
    with pytest.raises(KizunaError) as refused:
        crypto.decrypt(token, field="t.phone", ring=ring)
    assert refused.value.code == "unreadable_value"
    assert "secret" not in str(refused.value)


def test_after_rotation_old_values_stay_readable_and_reencrypt_to_the_new_version(ring):
    old = crypto.encrypt("山田花子", field="t.name", ring=ring)
    rotated = ring.with_new_version(os.urandom(32))
    assert rotated.current == 2
    assert crypto.decrypt(old, field="t.name", ring=rotated) == "山田花子"
    new = crypto.reencrypt(old, field="t.name", ring=rotated)
    assert crypto.version_of(new) == 2
    assert crypto.decrypt(new, field="t.name", ring=rotated) == "山田花子"


def test_a_value_of_an_unknown_key_version_is_refused(ring):
    later = ring.with_new_version(os.urandom(32))
    token = crypto.encrypt("x", field="f", ring=later)
    with pytest.raises(KizunaError) as refused:
        crypto.decrypt(token, field="f", ring=ring)
    assert refused.value.code == "unknown_key_version"


def test_keys_come_from_a_key_file_that_wins_over_settings(tmp_path, ring):
    path = tmp_path / "keys.toml"
    write_key_file(path, ring.with_new_version(os.urandom(32)))
    loaded = load_keyring(Settings(key_file=path, data_keys={"7": os.urandom(32).hex()}))
    assert loaded.current == 2
    assert set(loaded.data_keys) == {1, 2}
    assert loaded.index_key == ring.index_key
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_without_configured_keys_a_key_is_derived_from_the_secret():
    a = load_keyring(Settings(secret_key="s1", key_file=None))
    b = load_keyring(Settings(secret_key="s2", key_file=None))
    assert a.current == 1
    assert a.data_keys[1] != b.data_keys[1]
