"""Identity rules without a database: normalisation, card numbers, and duplicate scoring.

Values are normalised before they are stored, indexed or compared, so that every common way of
writing them meets: NFKC (全角英数 → 半角, 半角カナ → 全角), katakana for readings (かな → カナ),
新字体 for names written with 旧字体, E.164 for phone numbers (`phonenumbers`), lower case for
e-mail. Card numbers are a programme prefix, a serial and a Luhn check digit.

Duplicate detection (名寄せ) follows Fellegi–Sunter: each compared field adds a weight —
log-odds that a pair agreeing (or disagreeing) that way is the same person — and the sum is the
pair's score. Blocking keys limit which pairs are compared at all.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

import jaconv
import phonenumbers
from rapidfuzz.distance import JaroWinkler, Levenshtein

from kizuna.core.errors import Unprocessable
from kizuna.members.errors import ErrorCode


class IdentifierKind(StrEnum):
    CARD = "card"
    PHONE = "phone"
    EMAIL = "email"
    LINE = "line"
    APP = "app"
    EC = "ec"
    POS = "pos"


# Kinds whose values are personal: stored as a blind index plus ciphertext, never in clear.
PERSONAL_KINDS = frozenset({IdentifierKind.CARD, IdentifierKind.PHONE, IdentifierKind.EMAIL})


class MemberStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    MERGED = "merged"
    WITHDRAWN = "withdrawn"


class ConsentChannel(StrEnum):
    EMAIL = "email"
    PUSH = "push"
    LINE = "line"
    DM = "dm"


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNDISCLOSED = "undisclosed"


def invalid(field_name: str, reason: str) -> Unprocessable:
    """A validation error naming the field and the reason, never the value (it may be personal)."""
    return Unprocessable(
        ErrorCode.INVALID_IDENTIFIER, f"{field_name}: {reason}", field=field_name, reason=reason
    )


_SPACES = re.compile(r"\s+")
_DASHES = re.compile(r"[\u2010-\u2015\u2212\u30fc\uff70\-]")
# 旧字体 and variant forms that people and old systems use for the same name.
_OLD_FORMS = str.maketrans(
    {
        "髙": "高",
        "﨑": "崎",
        "嵜": "崎",
        "邊": "辺",
        "邉": "辺",
        "齋": "斎",
        "齊": "斉",
        "澤": "沢",
        "濱": "浜",
        "廣": "広",
        "櫻": "桜",
        "國": "国",
        "德": "徳",
        "眞": "真",
        "龍": "竜",
        "嶋": "島",
        "嶌": "島",
        "淵": "渕",
        "實": "実",
        "惠": "恵",
        "榮": "栄",
        "學": "学",
        "壽": "寿",
        "瀧": "滝",
        "冨": "富",
        "藏": "蔵",
        "關": "関",
        "傳": "伝",
        "會": "会",
        "條": "条",
    }
)


def nfkc(value: str) -> str:
    """NFKC with runs of white space collapsed and the ends trimmed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip()


def normalise_kana(value: str) -> str:
    """A reading in full-width katakana without spaces: やまだ たろう, ﾔﾏﾀﾞﾀﾛｳ → ヤマダタロウ."""
    text = nfkc(value).replace(" ", "")
    text = jaconv.hira2kata(text)
    return _DASHES.sub("ー", text)


def normalise_kanji_name(value: str) -> str:
    """A written name with 新字体 for the usual 旧字体 and no spaces: 髙橋 一郎 → 高橋一郎."""
    return nfkc(value).replace(" ", "").translate(_OLD_FORMS)


_NON_DIGITS = re.compile(r"[^\d+]")
# Plain writings of a Japanese number: 0 and 9 or 10 digits (not 010, Japan's international call
# prefix), or +81 and 9 or 10 digits. ASCII digits only: other scripts' digits take the long way.
_JP_PLAIN = re.compile(r"(?:0(?!10)|\+81)([1-9][0-9]{8,9})")


def normalise_phone(value: str, region: str = "JP") -> str:
    """A phone number as E.164, from any common Japanese writing (全角, hyphens, +81, 81…)."""
    digits = _NON_DIGITS.sub("", nfkc(value))
    if digits.startswith("81") and not digits.startswith("810") and len(digits) in (11, 12):
        digits = "+" + digits  # written with the country code but without the plus
    if region == "JP":
        # Most numbers are written plainly; for those `phonenumbers.parse` (two thirds of the
        # cost) would only strip the trunk 0 or +81, so the number is built directly and
        # checked with the same metadata. Anything it does not find valid takes the full path.
        plain = _JP_PLAIN.fullmatch(digits)
        if plain is not None:
            national = plain.group(1)
            number = phonenumbers.PhoneNumber(country_code=81, national_number=int(national))
            if phonenumbers.is_valid_number(number):
                return "+81" + national
    return parse_phone(digits, region)


def parse_phone(digits: str, region: str = "JP") -> str:
    """E.164 of digits (and a leading +) through `phonenumbers`' full parse and validation."""
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException as bad:
        raise invalid("phone", "not a phone number") from bad
    if not phonenumbers.is_valid_number(number):
        raise invalid("phone", "not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_email(value: str) -> str:
    """An e-mail address in NFKC and lower case; refuses what cannot be an address."""
    text = nfkc(value).replace(" ", "").lower()
    if not _EMAIL.match(text) or len(text) > 254:
        raise invalid("email", "not an e-mail address")
    return text


def normalise_card_number(value: str) -> str:
    """A card number as its digits only (全角 digits, spaces and hyphens removed)."""
    text = re.sub(r"[\s\-]", "", _DASHES.sub("-", nfkc(value)))
    if not text.isdigit() or not 8 <= len(text) <= 20:
        raise invalid("card", "a card number is 8 to 20 digits")
    return text


def normalise_postal_code(value: str) -> str:
    """A Japanese postal code as seven digits: 〒１２３－４５６７ → 1234567."""
    digits = re.sub(r"\D", "", nfkc(value))
    if len(digits) != 7:
        raise invalid("postal_code", "a postal code has seven digits")
    return digits


_BLOCK_NUMBERS = re.compile(r"(\d+)\s*(?:丁目|番地|番|号|の)\s*")


def normalise_address(value: str) -> str:
    """An address in NFKC with 丁目/番地/号 written as hyphens and no spaces, for comparison."""
    text = nfkc(value).replace(" ", "")
    text = _DASHES.sub("-", text)
    text = _BLOCK_NUMBERS.sub(r"\1-", text)
    return text.rstrip("-").translate(_OLD_FORMS)


def normalise_identifier(kind: str, value: str) -> str:
    """The stored form of an identifier of `kind`, as every lookup will compute it."""
    if kind == IdentifierKind.PHONE:
        return normalise_phone(value)
    if kind == IdentifierKind.EMAIL:
        return normalise_email(value)
    if kind == IdentifierKind.CARD:
        return normalise_card_number(value)
    text = nfkc(value)
    if not text or len(text) > 200:
        raise invalid(kind, "an identifier has 1 to 200 characters")
    return text


@dataclass(frozen=True)
class Profile:
    """A member's personal data as people wrote it, or normalised (every field optional)."""

    name_kanji: str | None = None
    name_kana: str | None = None
    birth_date: date | None = None
    gender: str | None = None
    postal_code: str | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None

    def fields(self) -> dict[str, str | None]:
        """The fields as stored strings (dates in ISO form)."""
        return {
            "name_kanji": self.name_kanji,
            "name_kana": self.name_kana,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "gender": self.gender,
            "postal_code": self.postal_code,
            "address": self.address,
            "phone": self.phone,
            "email": self.email,
        }


PROFILE_FIELDS = tuple(Profile().fields())


_GENDERS = frozenset(Gender)


def _text(value: str) -> str | None:
    return nfkc(value) or None


def _gender(value: str) -> str:
    if value not in _GENDERS:
        raise invalid("gender", "unknown gender")
    return value


def _kana(value: str) -> str | None:
    return normalise_kana(value) or None if value else None


def _unless_empty(normalise: Callable[[str], str]) -> Callable[[str], str | None]:
    return lambda value: normalise(value) if value else None


# How each present field of a profile is normalised and validated (absent ones stay None).
_FIELD_RULES: dict[str, Callable[[Any], Any]] = {
    "name_kanji": _text,
    "name_kana": _kana,
    "birth_date": lambda value: value,
    "gender": _gender,
    "postal_code": _unless_empty(normalise_postal_code),
    "address": _text,
    "phone": _unless_empty(normalise_phone),
    "email": _unless_empty(normalise_email),
}


def normalise_field(name: str, value: Any) -> Any:
    """One profile field as `normalise_profile` stores it; refuses an invalid value."""
    return None if value is None else _FIELD_RULES[name](value)


def normalise_profile(profile: Profile) -> Profile:
    """The profile with every present field normalised and validated (names keep their writing;
    comparison normalises them further)."""
    if profile.gender is not None:
        _gender(profile.gender)
    return Profile(**{name: normalise_field(name, getattr(profile, name)) for name in _FIELD_RULES})


def match_record(member_id: int, profile: Profile) -> MatchRecord:
    """What duplicate detection compares of a (normalised) profile."""
    return MatchRecord(
        member_id=member_id,
        name_kana=normalise_kana(profile.name_kana) if profile.name_kana else None,
        name_kanji=normalise_kanji_name(profile.name_kanji) if profile.name_kanji else None,
        birth_date=profile.birth_date,
        postal_code=profile.postal_code,
        address=normalise_address(profile.address) if profile.address else None,
        phone=profile.phone,
        email=profile.email,
    )


# Card numbers -------------------------------------------------------------------------------


def luhn_check_digit(payload: str) -> str:
    """The Luhn check digit that makes `payload` + digit valid."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:  # every second digit from the right, counting the check digit
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def is_luhn_valid(number: str) -> bool:
    """True when the last digit of `number` is its Luhn check digit."""
    return len(number) >= 2 and number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def card_number(prefix: str, serial: int, length: int = 16) -> str:
    """The number of card `serial` of series `prefix`: prefix, zero-padded serial, check digit."""
    width = length - len(prefix) - 1
    if not prefix.isdigit() or width < 6 or serial >= 10**width:
        raise invalid("card", "the card series is exhausted or its prefix is not digits")
    payload = f"{prefix}{serial:0{width}d}"
    return payload + luhn_check_digit(payload)


def validate_programme_card(number: str, prefix: str) -> None:
    """Refuse a number of this programme's series whose check digit is wrong."""
    if number.startswith(prefix) and not is_luhn_valid(number):
        raise invalid("card", "the check digit is wrong")


def mask(kind: str, normalised: str) -> str:
    """A display form that hides most of a personal value: +81******5678, t***@example.com."""
    if kind == IdentifierKind.EMAIL:
        local, _, domain = normalised.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind in (IdentifierKind.PHONE, IdentifierKind.CARD):
        return "*" * max(len(normalised) - 4, 0) + normalised[-4:]
    return normalised


# Duplicate detection ------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchRecord:
    """What duplicate detection compares of one member, already normalised."""

    member_id: int
    name_kana: str | None = None
    name_kanji: str | None = None
    birth_date: date | None = None
    postal_code: str | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A pair that may be one person: the score and the reasons that made it."""

    member_id: int
    other_id: int
    score: float
    reasons: list[str] = field(default_factory=list)


# Weights are log2(m/u): m = P(agreement | same person), u = P(agreement | different people),
# estimated for Japanese retail data (shared birthdays are common, shared phones are not).
WEIGHTS = {
    "same_phone": 12.0,
    "same_email": 12.0,
    "same_kana": 5.0,
    "similar_kana": 3.0,
    "different_kana": -4.0,
    "same_kanji": 5.0,
    "similar_kanji": 3.0,
    "different_kanji": -3.0,
    "same_birth_date": 7.0,
    "birth_date_typo": 0.5,
    "different_birth_date": -6.0,
    "same_postal_code": 3.0,
    "near_postal_code": 1.0,
    "same_address": 3.0,
    "similar_address": 1.5,
}
CANDIDATE_THRESHOLD = 11.0


def _date_typo(a: date, b: date) -> bool:
    """One digit off, or day and month swapped: how a birth date is usually mistyped."""
    if (a.year, a.month, a.day) == (b.year, b.day, b.month):
        return True
    return Levenshtein.distance(a.isoformat(), b.isoformat()) == 1


def compare(a: MatchRecord, b: MatchRecord) -> Candidate:
    """The score of a pair and its reasons, from the fields both records have."""
    reasons: list[str] = []
    if a.phone and a.phone == b.phone:
        reasons.append("same_phone")
    if a.email and a.email == b.email:
        reasons.append("same_email")
    if a.name_kana and b.name_kana:
        similarity = JaroWinkler.similarity(a.name_kana, b.name_kana)
        reasons.append(
            "same_kana"
            if a.name_kana == b.name_kana
            else "similar_kana"
            if similarity >= 0.9
            else "different_kana"
        )
    if a.name_kanji and b.name_kanji:
        distance = Levenshtein.distance(a.name_kanji, b.name_kanji)
        reasons.append(
            "same_kanji"
            if distance == 0
            else "similar_kanji"
            if distance == 1 and min(len(a.name_kanji), len(b.name_kanji)) >= 3
            else "different_kanji"
        )
    if a.birth_date and b.birth_date:
        reasons.append(
            "same_birth_date"
            if a.birth_date == b.birth_date
            else "birth_date_typo"
            if _date_typo(a.birth_date, b.birth_date)
            else "different_birth_date"
        )
    if a.postal_code and b.postal_code:
        if a.postal_code == b.postal_code:
            reasons.append("same_postal_code")
        elif a.postal_code[:3] == b.postal_code[:3]:
            reasons.append("near_postal_code")
    if a.address and b.address:
        if a.address == b.address:
            reasons.append("same_address")
        elif JaroWinkler.similarity(a.address, b.address) >= 0.92:
            reasons.append("similar_address")
    score = round(sum(WEIGHTS[reason] for reason in reasons), 2)
    low, high = sorted((a.member_id, b.member_id))
    return Candidate(low, high, score, reasons)


def blocking_keys(record: MatchRecord) -> list[str]:
    """The blocks a record falls in; only records sharing a block are compared."""
    keys: list[str] = []
    if record.phone:
        keys.append(f"phone:{record.phone}")
    if record.email:
        keys.append(f"email:{record.email}")
    if record.name_kana:
        keys.append(f"kana:{record.name_kana}")
    if record.birth_date:
        keys.append(f"birth:{record.birth_date.isoformat()}")
    if record.postal_code and record.name_kana:
        keys.append(f"postal_kana1:{record.postal_code}:{record.name_kana[:1]}")
    return keys


def candidate_pairs(
    records: Iterable[MatchRecord], *, threshold: float = CANDIDATE_THRESHOLD, max_block: int = 500
) -> list[Candidate]:
    """Scored pairs at or above `threshold`, best first, comparing only within blocks.

    A block larger than `max_block` (a birthday shared by thousands) is skipped: it says nothing
    by itself, and its members still meet through their other keys.
    """
    by_id = {record.member_id: record for record in records}
    blocks: dict[str, list[int]] = {}
    for record in by_id.values():
        for key in blocking_keys(record):
            blocks.setdefault(key, []).append(record.member_id)
    seen: set[tuple[int, int]] = set()
    found: list[Candidate] = []
    for ids in blocks.values():
        if len(ids) < 2 or len(ids) > max_block:
            continue
        ordered = sorted(ids)
        for i, low in enumerate(ordered):
            for high in ordered[i + 1 :]:
                if (low, high) in seen:
                    continue
                seen.add((low, high))
                candidate = compare(by_id[low], by_id[high])
                if candidate.score >= threshold:
                    found.append(candidate)
    found.sort(key=lambda c: (-c.score, c.member_id, c.other_id))
    return found
