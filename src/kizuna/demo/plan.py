"""A year of a programme's life as dated events, drawn from one seed without touching a database.

Members join over the year (a launch rush in the first two weeks), each with a habit: how often
they shop, where, how much online, whether they pay with points. Shopping follows the calendar of
a Japanese retailer: busier on weekends and public holidays, at lunch and in the evening, and in
December (year-end gifts, 年末商戦). A few receipts come back in part or in full; EC orders wait
for shipping and the return window before their points are confirmed. The same seed and the same
end date always give the same events, so the demo and its tests are reproducible.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import jpholiday
from faker import Faker

from kizuna.demo.catalogue import (
    BASKET_SIZE,
    EC_STORE,
    EXCLUDED_CATEGORIES,
    FORMAT_MIX,
    STORES,
    StoreSpec,
    partner_of,
    products_by_category,
)
from kizuna.purchases.domain import ReturnLine
from kizuna.rules.domain import PurchaseLine

K = TypeVar("K")
TOKYO = ZoneInfo("Asia/Tokyo")
WELCOME_BONUS = 100  # 入会特典: limited points, spent first, gone after WELCOME_DAYS
WELCOME_DAYS = 60
EC_PENDING_DAYS = 30  # the longest an EC order's points can stay pending
RETURN_WINDOW_DAYS = 7

WEEKDAY_FACTOR = (0.85, 0.85, 0.9, 0.9, 1.05, 1.35, 1.3)  # Monday … Sunday
MONTH_FACTOR = (1.05, 0.85, 1.0, 1.0, 1.05, 0.9, 1.0, 1.05, 0.9, 0.95, 1.0, 1.35)
# Shop hours 9–21 with a lunch peak and an evening peak; EC around the clock, late evening peak.
STORE_HOURS = {9: 3, 10: 5, 11: 7, 12: 10, 13: 8, 14: 6, 15: 6, 16: 8, 17: 11, 18: 12, 19: 10}
STORE_HOURS |= {20: 7, 21: 4}
EC_HOURS = dict.fromkeys(range(24), 2) | {7: 3, 12: 5, 13: 4, 20: 8, 21: 10, 22: 9, 23: 6}


@dataclass(frozen=True)
class Person:
    """Who a member is (Faker ja_JP): what sign-up would have asked."""

    name_kanji: str
    name_kana: str
    gender: str
    birth_date: date
    postal_code: str
    address: str
    phone: str
    email: str
    email_consent: bool
    dm_consent: bool


@dataclass(frozen=True)
class Join:
    at: datetime
    member_no: int
    person: Person
    store_code: str
    channel: str


@dataclass(frozen=True)
class Sale:
    """A receipt; `redeem` says how the member wants to pay with points ("all", "round", None)."""

    at: datetime
    member_no: int
    store_code: str
    receipt_no: str
    lines: tuple[PurchaseLine, ...]
    redeem: str | None = None
    pending_until: datetime | None = None


@dataclass(frozen=True)
class Refund:
    """A return of some lines, or of the whole receipt (`lines` None)."""

    at: datetime
    store_code: str
    receipt_no: str
    lines: tuple[ReturnLine, ...] | None


@dataclass(frozen=True)
class Ship:
    """An EC order shipped and its return window closed: its pending points are confirmed."""

    at: datetime
    store_code: str
    receipt_no: str


@dataclass(frozen=True)
class ExpiryRun:
    """The nightly expiry job."""

    at: datetime


Event = Join | Sale | Refund | Ship | ExpiryRun


@dataclass(frozen=True)
class Habit:
    """How one member shops."""

    per_week: float
    home: StoreSpec
    ec_share: float
    redeem_chance: float
    stops_at: date | None  # lapsed members stop shopping and let their points expire


def local_date(moment: datetime) -> date:
    """The calendar day in Tokyo of an instant."""
    return moment.astimezone(TOKYO).date()


def day_factor(day: date) -> float:
    """How busy a day is relative to an average day."""
    factor = WEEKDAY_FACTOR[day.weekday()] * MONTH_FACTOR[day.month - 1]
    if jpholiday.is_holiday(day) and day.weekday() < 5:
        factor = WEEKDAY_FACTOR[6] * MONTH_FACTOR[day.month - 1]
    if day.month == 12 and day.day >= 20:
        factor *= 1.3  # 年末: the last shopping days of the year
    return factor


def _weighted(rng: random.Random, weights: Mapping[K, float]) -> K:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[key] for key in keys])[0]


class Planner:
    """Draws a programme's year from a seed; iterate `events()` for them in time order."""

    def __init__(self, *, members: int, seed: int, end: datetime, days: int = 365) -> None:
        self.members = members
        self.seed = seed
        self.end = end
        self.start = end - timedelta(days=days)
        self.rng = random.Random(seed)
        self.faker = Faker("ja_JP")
        self.faker.seed_instance(seed)
        self.catalogue = products_by_category()
        self.receipts: Counter[tuple[str, date]] = Counter()
        self.days = [local_date(self.start) + timedelta(days=n) for n in range(days)]
        mean = sum(day_factor(day) for day in self.days) / len(self.days)
        self.factors = {day: day_factor(day) / mean for day in self.days}

    def events(self) -> list[Event]:
        """Every event of the year, oldest first."""
        events: list[Event] = []
        for member_no in range(1, self.members + 1):
            events.extend(self._member_life(member_no))
        events.extend(
            ExpiryRun(datetime.combine(day, datetime.min.time(), TOKYO) + timedelta(minutes=10))
            for day in self.days[1:]
        )
        kind_order = {Join: 0, ExpiryRun: 1, Ship: 2, Sale: 3, Refund: 4}
        numbered = sorted(
            enumerate(events), key=lambda item: (item[1].at, kind_order[type(item[1])], item[0])
        )
        return [event for _, event in numbered if event.at < self.end]

    def _join_day(self) -> date:
        # A launch rush (グランドオープン) in the first two weeks, then a steady trickle.
        if self.rng.random() < 0.2:
            return self.rng.choice(self.days[: max(len(self.days) // 26, 1)])
        return self.rng.choice(self.days[: max(len(self.days) * 19 // 20, 1)])

    def _habit(self, joined: date) -> Habit:
        stores = [store for store in STORES if store.code != EC_STORE]
        home = self.rng.choices(stores, weights=[store.weight for store in stores])[0]
        stops_at = None
        if self.rng.random() < 0.15:
            stops_at = joined + timedelta(days=self.rng.randint(20, 200))
        return Habit(
            per_week=min(self.rng.lognormvariate(math.log(0.3), 0.8), 4.0),
            home=home,
            ec_share=0.0 if self.rng.random() < 0.65 else self.rng.uniform(0.1, 0.6),
            redeem_chance=0.0 if self.rng.random() < 0.35 else self.rng.uniform(0.05, 0.3),
            stops_at=stops_at,
        )

    def _person(self, member_no: int, prefecture: str | None) -> Person:
        fake, rng = self.faker, self.rng
        gender = rng.choice(("female", "female", "male", "male", "other"))
        last, last_kana, last_roman = fake.last_name_pair()
        pick = fake.first_name_female_pair if gender == "female" else fake.first_name_male_pair
        first, first_kana, first_roman = pick()
        age = rng.randint(18, 82)
        birth = date(self.end.year - age, rng.randint(1, 12), rng.randint(1, 28))
        address = (
            f"{prefecture or fake.prefecture()}{fake.city()}{fake.town()}"
            f"{fake.chome()}{fake.ban()}{fake.gou()}"
        )
        domain = fake.free_email_domain()
        return Person(
            name_kanji=f"{last} {first}",
            name_kana=f"{last_kana} {first_kana}",
            gender=gender,
            birth_date=birth,
            postal_code=fake.zipcode(),
            address=address,
            phone=f"0{rng.choice('987')}0-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
            email=f"{first_roman}.{last_roman}{member_no}@{domain}".lower(),
            email_consent=rng.random() < 0.7,
            dm_consent=rng.random() < 0.3,
        )

    def _member_life(self, member_no: int) -> Iterator[Event]:
        join_day = self._join_day()
        habit = self._habit(join_day)
        online_first = habit.ec_share > 0.4 and self.rng.random() < 0.5
        join_store = self._store_for(habit, online_first)
        joined = self._time_on(join_day, online_first)
        yield Join(
            at=joined,
            member_no=member_no,
            person=self._person(member_no, habit.home.prefecture),
            store_code=join_store.code,
            channel="ec" if online_first else "pos",
        )
        # The first purchase comes with the sign-up, the usual way people join at a till.
        yield from self._sale(member_no, join_store, joined + timedelta(minutes=3), habit)
        for day in self.days:
            if day <= join_day or (habit.stops_at and day >= habit.stops_at):
                continue
            if self.rng.random() >= habit.per_week / 7 * self.factors[day]:
                continue
            online = self.rng.random() < habit.ec_share
            at = self._time_on(day, online)
            yield from self._sale(member_no, self._store_for(habit, online), at, habit)

    def _time_on(self, day: date, online: bool) -> datetime:
        hour = _weighted(self.rng, EC_HOURS if online else STORE_HOURS)
        local = datetime(day.year, day.month, day.day, hour, tzinfo=TOKYO)
        return local + timedelta(seconds=self.rng.randint(0, 3599))

    def _store_for(self, habit: Habit, online: bool) -> StoreSpec:
        if online:
            return next(store for store in STORES if store.code == EC_STORE)
        if self.rng.random() < 0.8:
            return habit.home
        # Coalition: now and then the member shops at another partner's store.
        others = [
            s for s in STORES if s.code != EC_STORE and s.partner_code != habit.home.partner_code
        ]
        return self.rng.choices(others, weights=[s.weight for s in others])[0]

    def _basket(self, store: StoreSpec, at: datetime) -> tuple[PurchaseLine, ...]:
        store_format = partner_of(store).store_format
        mix: dict[str, float] = dict(FORMAT_MIX[store_format])
        local = at.astimezone(TOKYO)
        if local.month == 12 and "gift_card" in mix:
            mix["gift_card"] *= 4  # year-end gifts
        low, high = BASKET_SIZE[store_format]
        size = min(low + int(self.rng.expovariate(1 / max((high - low) / 2, 0.5))), high)
        lines: list[PurchaseLine] = []
        for _ in range(size):
            category = _weighted(self.rng, mix)
            product = self.rng.choice(self.catalogue[category])
            quantity = self.rng.choices((1, 2, 3), weights=(80, 15, 5))[0]
            amount = product.price * quantity
            if category == "food" and local.hour >= 19 and self.rng.random() < 0.3:
                amount = amount * 7 // 10  # evening markdown (見切り品)
            lines.append(
                PurchaseLine(sku=product.sku, amount=amount, quantity=quantity, category=category)
            )
        return tuple(lines)

    def _receipt_no(self, store: StoreSpec, at: datetime) -> str:
        day = local_date(at)
        self.receipts[(store.code, day)] += 1
        return f"{store.code}-{day:%Y%m%d}-{self.receipts[(store.code, day)]:04d}"

    def _sale(
        self, member_no: int, store: StoreSpec, at: datetime, habit: Habit
    ) -> Iterator[Event]:
        lines = self._basket(store, at)
        receipt = self._receipt_no(store, at)
        redeem = None
        if self.rng.random() < habit.redeem_chance:
            redeem = self.rng.choice(("all", "round"))
        online = store.code == EC_STORE
        pending_until = at + timedelta(days=EC_PENDING_DAYS) if online else None
        yield Sale(at, member_no, store.code, receipt, lines, redeem, pending_until)
        if online:
            yield from self._ec_after(store, receipt, at, lines)
        elif self.rng.random() < 0.03:
            later = at + timedelta(hours=self.rng.uniform(1, 24 * 10))
            yield from self._refund(store, receipt, later, lines)

    def _ec_after(
        self, store: StoreSpec, receipt: str, at: datetime, lines: Sequence[PurchaseLine]
    ) -> Iterator[Event]:
        shipped = at + timedelta(days=self.rng.randint(1, 3), hours=self.rng.uniform(0, 8))
        closes = shipped + timedelta(days=RETURN_WINDOW_DAYS)
        draw = self.rng.random()
        if draw < 0.03:  # cancelled before shipping: the pending points go with it
            yield Refund(at + timedelta(hours=self.rng.uniform(0.5, 20)), store.code, receipt, None)
            return
        if draw < 0.06:  # sent back within the return window, before the points were confirmed
            returned = shipped + timedelta(days=self.rng.uniform(1, RETURN_WINDOW_DAYS - 1))
            yield from self._refund(store, receipt, returned, lines)
        yield Ship(closes, store.code, receipt)

    def _refund(
        self, store: StoreSpec, receipt: str, at: datetime, lines: Sequence[PurchaseLine]
    ) -> Iterator[Event]:
        returnable = [n for n, line in enumerate(lines) if line.category not in EXCLUDED_CATEGORIES]
        if not returnable:
            return
        if len(lines) == 1 or self.rng.random() < 0.3:
            if len(returnable) == len(lines):
                yield Refund(at, store.code, receipt, None)
            return
        line_no = self.rng.choice(returnable)
        quantity = self.rng.randint(1, lines[line_no].quantity)
        yield Refund(at, store.code, receipt, (ReturnLine(line_no, quantity),))
