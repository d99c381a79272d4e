"""Duplicate scoring (名寄せ): weights add up per compared field; blocking limits the pairs."""

from datetime import date

from kizuna.members.domain import (
    CANDIDATE_THRESHOLD,
    MatchRecord,
    Profile,
    candidate_pairs,
    compare,
    match_record,
)

HANAKO = MatchRecord(
    1,
    name_kana="ヤマダハナコ",
    name_kanji="山田花子",
    birth_date=date(1985, 7, 3),
    postal_code="1500001",
    address="東京都渋谷区神宮前1-2-3",
)


def test_same_phone_alone_makes_a_candidate_with_its_reason():
    a = MatchRecord(1, phone="+819012345678")
    b = MatchRecord(2, phone="+819012345678")
    pair = compare(a, b)
    assert pair.reasons == ["same_phone"]
    assert pair.score >= CANDIDATE_THRESHOLD


def test_same_name_and_birth_date_after_moving_is_a_candidate():
    moved = MatchRecord(
        2,
        name_kana="ヤマダハナコ",
        name_kanji="山田花子",
        birth_date=date(1985, 7, 3),
        postal_code="5300001",
        address="大阪府大阪市北区梅田3-1-1",
    )
    pair = compare(HANAKO, moved)
    assert {"same_kana", "same_kanji", "same_birth_date"} <= set(pair.reasons)
    assert pair.score >= CANDIDATE_THRESHOLD


def test_old_kanji_forms_and_kana_spelling_still_match():
    a = match_record(1, Profile(name_kanji="髙橋 一郎", name_kana="たかはし いちろう"))
    b = match_record(2, Profile(name_kanji="高橋一郎", name_kana="ﾀｶﾊｼ ｲﾁﾛｳ"))
    assert compare(a, b).reasons == ["same_kana", "same_kanji"]


def test_namesakes_born_on_different_days_are_not_candidates():
    other = MatchRecord(
        2,
        name_kana="ヤマダハナコ",
        name_kanji="山田花子",
        birth_date=date(1962, 1, 20),
        postal_code="0600001",
    )
    assert compare(HANAKO, other).score < CANDIDATE_THRESHOLD


def test_a_swapped_day_and_month_counts_as_a_typo_not_a_different_date():
    typo = MatchRecord(2, name_kana="ヤマダハナコ", birth_date=date(1985, 3, 7))
    assert "birth_date_typo" in compare(HANAKO, typo).reasons


def test_candidate_pairs_compares_only_within_blocks_and_orders_best_first():
    records = [
        HANAKO,
        MatchRecord(
            2, name_kana="ヤマダハナコ", name_kanji="山田花子", birth_date=date(1985, 7, 3)
        ),
        MatchRecord(3, name_kana="スズキイチロウ", birth_date=date(1970, 1, 1)),
        MatchRecord(4, email="a@example.jp"),
        MatchRecord(5, email="a@example.jp", name_kana="サトウ"),
    ]
    pairs = candidate_pairs(records)
    assert [(p.member_id, p.other_id) for p in pairs] == [(1, 2), (4, 5)]
    assert pairs[0].score >= pairs[1].score
