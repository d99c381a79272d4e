"""Normalisation: every common writing of a value meets the same stored form."""

import re
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizuna.core.errors import Unprocessable
from kizuna.members.domain import (
    Profile,
    card_number,
    is_luhn_valid,
    mask,
    nfkc,
    normalise_address,
    normalise_card_number,
    normalise_email,
    normalise_kana,
    normalise_kanji_name,
    normalise_phone,
    normalise_postal_code,
    normalise_profile,
    parse_phone,
    validate_programme_card,
)


@pytest.mark.parametrize(
    "written",
    [
        "090-1234-5678",
        "09012345678",
        "０９０－１２３４－５６７８",
        "０９０ １２３４ ５６７８",
        "(090)1234-5678",
        "+81 90 1234 5678",
        "+81-90-1234-5678",
        "819012345678",
        "＋８１９０１２３４５６７８",
    ],
)
def test_japanese_mobile_numbers_in_any_common_writing_become_one_e164(written):
    assert normalise_phone(written) == "+819012345678"


def test_landline_numbers_keep_their_area_code():
    assert normalise_phone("03-1234-5678") == normalise_phone("０３（１２３４）５６７８")
    assert normalise_phone("03-1234-5678") == "+81312345678"


@pytest.mark.parametrize("nonsense", ["123", "abc", "090-1234", ""])
def test_a_phone_that_is_not_a_number_is_refused_without_echoing_it(nonsense):
    with pytest.raises(Unprocessable) as refused:
        normalise_phone(nonsense)
    assert refused.value.code == "invalid_identifier"
    assert nonsense not in refused.value.message or nonsense == ""


def test_email_is_lower_cased_and_full_width_letters_are_folded():
    assert normalise_email(" Taro.Yamada@EXAMPLE.co.jp ") == "taro.yamada@example.co.jp"
    assert normalise_email("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ") == "taro@example.jp"
    with pytest.raises(Unprocessable):
        normalise_email("not-an-address")


def test_kana_readings_meet_across_hiragana_half_width_and_spaces():
    assert normalise_kana("やまだ たろう") == "ヤマダタロウ"
    assert normalise_kana("ﾔﾏﾀﾞ　ﾀﾛｳ") == "ヤマダタロウ"
    assert normalise_kana("ヤマダ タロウ") == "ヤマダタロウ"


def test_kanji_names_written_with_old_forms_meet_the_new_forms():
    assert normalise_kanji_name("髙橋　一郎") == "高橋一郎"
    assert normalise_kanji_name("渡邊 健") == normalise_kanji_name("渡辺健")
    assert normalise_kanji_name("齋藤") == "斎藤"


def test_postal_codes_and_addresses_normalise_their_notation():
    assert normalise_postal_code("〒１００－０００５") == "1000005"
    assert normalise_address("東京都千代田区丸の内１丁目２番３号") == normalise_address(
        "東京都千代田区丸の内1-2-3"
    )


def test_card_numbers_lose_spaces_hyphens_and_full_width_digits():
    assert normalise_card_number("９８１０ ０００１-２３４５") == "981000012345"
    with pytest.raises(Unprocessable):
        normalise_card_number("12AB")


def test_issued_card_numbers_carry_prefix_and_a_valid_luhn_digit():
    number = card_number("980001", 42)
    assert number.startswith("980001")
    assert len(number) == 16
    assert is_luhn_valid(number)
    assert is_luhn_valid("79927398713")  # the textbook example
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not is_luhn_valid(wrong)
    with pytest.raises(Unprocessable):
        validate_programme_card(wrong, "980001")
    validate_programme_card("1234567890", "980001")  # another system's number: not ours to check


def test_masks_hide_all_but_what_staff_need():
    assert mask("email", "taro@example.jp") == "t***@example.jp"
    assert mask("phone", "+819012345678") == "*********5678"


def test_profile_normalisation_keeps_absent_fields_absent():
    profile = normalise_profile(
        Profile(name_kana="やまだ はなこ", phone="090-1111-2222", birth_date=date(1990, 4, 1))
    )
    assert profile.name_kana == "ヤマダハナコ"
    assert profile.phone == "+819011112222"
    assert profile.email is None
    assert profile.address is None


def _full_parse(written: str) -> str:
    """What `normalise_phone` did before its shortcut: every writing through `phonenumbers`."""
    digits = re.sub(r"[^\d+]", "", nfkc(written))
    if digits.startswith("81") and not digits.startswith("810") and len(digits) in (11, 12):
        digits = "+" + digits
    return parse_phone(digits)


def _outcome(normalise, written):
    try:
        return normalise(written)
    except Unprocessable as refused:
        return ("refused", refused.details["reason"])


_DIGITS = st.text(alphabet="0123456789", min_size=8, max_size=12)


@settings(max_examples=3000, deadline=None)
@given(
    number=st.one_of(
        _DIGITS,
        _DIGITS.map(lambda d: "0" + d),
        _DIGITS.map(lambda d: "+81" + d),
        _DIGITS.map(lambda d: "81" + d),
        st.sampled_from(
            ["070", "080", "090", "050", "0120", "0570", "010", "03", "06", "011"]
        ).flatmap(
            lambda prefix: st.text(alphabet="0123456789", min_size=5, max_size=9).map(
                lambda rest: prefix + rest
            )
        ),
    ),
    style=st.sampled_from(["plain", "hyphens", "full_width", "spaces"]),
)
def test_the_shortcut_for_plain_japanese_numbers_gives_what_the_full_parse_gives(number, style):
    written = {
        "plain": number,
        "hyphens": "-".join([number[:3], number[3:7], number[7:]]),
        "full_width": number.translate(str.maketrans("0123456789+", "０１２３４５６７８９＋")),
        "spaces": " ".join([number[:4], number[4:]]),
    }[style]
    assert _outcome(normalise_phone, written) == _outcome(_full_parse, written)


def test_every_plain_national_prefix_agrees_with_the_full_parse():
    # Validity turns on the leading digits: every 4-digit start, at both national lengths.
    for start in range(1000, 10000):
        for tail in ("234567", "2345678"):
            written = f"0{start}{tail}"
            assert _outcome(normalise_phone, written) == _outcome(_full_parse, written), written
