"""Identity commands as an operator runs them: `kizuna rotate-keys`, `kizuna members withdraw`."""

import os

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from kizuna.cli.main import app
from kizuna.core.settings import Settings, get_settings
from kizuna.members import service
from kizuna.members.domain import Profile
from kizuna.members.models import MemberProfile
from kizuna.privacy import keys
from kizuna.privacy.keys import Keyring, write_key_file
from tests import factories as f


@pytest.fixture
def kizuna(fresh_database, tmp_path, monkeypatch):
    """Run `kizuna …` in-process against the module's database, with a key file."""
    previous = keys.keyring()  # before the environment names a key file that does not exist yet
    key_file = tmp_path / "keys.toml"
    monkeypatch.setenv("KIZUNA_DATABASE_URL", fresh_database.url)
    monkeypatch.setenv("KIZUNA_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    runner = CliRunner()
    yield key_file, lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()
    keys.configure(previous)


def test_rotate_keys_adds_a_version_and_reencrypts_everything_then_withdraw_erases(
    fresh_database, kizuna
):
    key_file, run = kizuna
    write_key_file(key_file, Keyring({1: os.urandom(32)}, 1, os.urandom(32)))
    keys.configure(Settings(key_file=key_file))
    with fresh_database.write() as session:
        program = f.program(session)
        member = service.create_member(
            session,
            program_id=program.id,
            joined_at=f.T0,
            identifiers={"email": "cli@example.jp"},
            profile=Profile(name_kana="てすと"),
        )

    rotated = run("rotate-keys", "--new-key")

    assert rotated.exit_code == 0, rotated.output
    ring = keys.configure(Settings(key_file=key_file))
    assert ring.current == 2
    with fresh_database.read() as session:
        versions = set(session.scalars(select(func.distinct(MemberProfile.key_version))))
        assert versions == {2}
        assert service.get_profile(session, member.id).name_kana == "テスト"

    withdrawn = run("members", "withdraw", str(member.id), "--yes")

    assert withdrawn.exit_code == 0, withdrawn.output
    assert "withdrawn" in withdrawn.output
    with fresh_database.read() as session:
        assert service.get_member(session, member.id).status == "withdrawn"
        assert session.get(MemberProfile, member.id) is None
