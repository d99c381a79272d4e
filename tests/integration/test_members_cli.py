"""Identity commands as an operator runs them: `kizuna rotate-keys`, `kizuna members withdraw`."""

import os
import subprocess
import sys

from sqlalchemy import func, select

from kizuna.core.settings import Settings
from kizuna.members import service
from kizuna.members.domain import Profile
from kizuna.members.models import MemberProfile
from kizuna.privacy import keys
from kizuna.privacy.keys import Keyring, write_key_file
from tests import factories as f


def _kizuna(database, key_file, *args):
    env = {**os.environ, "KIZUNA_DATABASE_URL": database.url, "KIZUNA_KEY_FILE": str(key_file)}
    return subprocess.run(
        [sys.executable, "-m", "kizuna", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rotate_keys_adds_a_version_and_reencrypts_everything_then_withdraw_erases(
    fresh_database, tmp_path
):
    key_file = tmp_path / "keys.toml"
    write_key_file(key_file, Keyring({1: os.urandom(32)}, 1, os.urandom(32)))
    previous = keys.keyring()
    keys.configure(Settings(key_file=key_file))
    try:
        with fresh_database.write() as session:
            program = f.program(session)
            member = service.create_member(
                session,
                program_id=program.id,
                joined_at=f.T0,
                identifiers={"email": "cli@example.jp"},
                profile=Profile(name_kana="てすと"),
            )

        rotated = _kizuna(fresh_database, key_file, "rotate-keys", "--new-key")

        assert rotated.returncode == 0, rotated.stderr
        ring = keys.configure(Settings(key_file=key_file))
        assert ring.current == 2
        with fresh_database.read() as session:
            versions = set(session.scalars(select(func.distinct(MemberProfile.key_version))))
            assert versions == {2}
            assert service.get_profile(session, member.id).name_kana == "テスト"

        withdrawn = _kizuna(
            fresh_database, key_file, "members", "withdraw", str(member.id), "--yes"
        )

        assert withdrawn.returncode == 0, withdrawn.stderr
        assert "withdrawn" in withdrawn.stdout
        with fresh_database.read() as session:
            assert service.get_member(session, member.id).status == "withdrawn"
            assert session.get(MemberProfile, member.id) is None
    finally:
        keys.configure(previous)
