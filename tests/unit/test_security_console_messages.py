"""The console speaks Japanese and English: every message key its templates use exists in both."""

import re
from pathlib import Path

from kizuna.console import i18n
from kizuna.security.domain import Role

TEMPLATES = Path(i18n.__file__).parent / "templates"
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_][a-z0-9_.]*)["']""")
DYNAMIC_PREFIX = re.compile(r"""\bt\(\s*["']([a-z_][a-z0-9_.]*\.)["']\s*~""")


def test_every_literal_key_in_the_templates_has_both_languages():
    used = {
        key
        for template in TEMPLATES.glob("*.html")
        for key in LITERAL_KEY.findall(template.read_text())
    }
    missing = sorted(k for k in used if not k.endswith(".") and k not in i18n.MESSAGES)
    assert missing == []
    assert all(ja and en for ja, en in i18n.MESSAGES.values())


def test_every_prefix_built_in_a_template_has_entries():
    prefixes = {
        prefix
        for template in TEMPLATES.glob("*.html")
        for prefix in DYNAMIC_PREFIX.findall(template.read_text())
    }
    assert prefixes
    for prefix in prefixes:
        assert any(key.startswith(prefix) for key in i18n.MESSAGES), prefix


def test_every_role_has_a_name_in_both_languages():
    assert all(f"role.{role.value}" in i18n.MESSAGES for role in Role)


def test_japanese_is_the_default_and_placeholders_are_filled():
    assert i18n.translate("login.title", "ja") == "ログイン"
    assert i18n.translate("login.title", "xx") == "ログイン"
    assert i18n.translate("member.title", "en", id=7) == "Member #7"
    assert i18n.translate("code.some_new_code", "ja") == "some_new_code"
