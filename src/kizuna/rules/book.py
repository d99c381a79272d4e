"""The campaign book: the campaign versions in force, compiled to Python for fast earning.

Judging a receipt against fifty campaigns one tree at a time is slow in Python, so a book compiles
them. The instants at which a campaign window opens or closes cut time into segments; for each
event type, segment and channel one function is generated on first use. It visits only the
campaigns in force there and open to that channel, highest priority first, with their store and
partner scope and their condition inlined as Python expressions (`conditions.PythonSource`), and
computes each award with the campaign's action; a condition or a line count that several campaigns
share is worked out once per event. It finds what checking every campaign on its own would find.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from operator import attrgetter
from typing import cast

from kizuna.rules.actions import ActionType, Basket
from kizuna.rules.campaigns import Award, CampaignRule
from kizuna.rules.conditions import MEMBER_LINE, TRUE, PythonSource, compile_function, fields_of
from kizuna.rules.domain import EarnPolicy, PurchaseLine
from kizuna.rules.facts import MISSING, EventFacts, Facts

# (facts, event, receipt lines, yen paid with points, policy, base points) -> awards
Evaluation = Callable[
    [Facts, EventFacts, Sequence[PurchaseLine], int, EarnPolicy, int], list[Award]
]


class CampaignBook:
    """The campaign rules in force, indexed by event type, time window and channel."""

    def __init__(self, rules: Iterable[CampaignRule]) -> None:
        self.rules = list(rules)
        self._bounds = sorted(
            {rule.definition.starts_at for rule in self.rules}
            | {rule.definition.ends_at for rule in self.rules}
        )
        self._fields: dict[str, frozenset[str]] = defaultdict(frozenset)
        for rule in self.rules:
            for kind in rule.definition.event_types:
                self._fields[kind] |= fields_of(rule.definition.condition)
        self._compiled: dict[tuple[str, int, str | None], Evaluation] = {}

    def fields_for(self, event_type: str) -> frozenset[str]:
        """Every field the conditions of this event type's campaigns read."""
        return self._fields.get(event_type, frozenset())

    def candidates(
        self,
        facts: Facts,
        *,
        lines: Sequence[PurchaseLine] = (),
        points_used_yen: int = 0,
        policy: EarnPolicy,
        base_points: int = 0,
    ) -> list[Award]:
        """Every campaign whose window, scope and condition hold, with its points before limits,
        highest priority first."""
        event = facts.event
        assert event is not None
        key = (event.type, bisect_right(self._bounds, facts.as_of), event.channel)
        evaluation = self._compiled.get(key)
        if evaluation is None:
            evaluation = self._compiled[key] = _compile(self.in_force(*key))
        return evaluation(facts, event, lines, points_used_yen, policy, base_points)

    def in_force(self, event_type: str, segment: int, channel: str | None) -> list[CampaignRule]:
        """The rules of `event_type` open to `channel` and in force throughout time segment
        `segment` (from bound `segment - 1` to bound `segment`), highest priority first."""
        if not 0 < segment < len(self._bounds):
            return []
        opens, closes = self._bounds[segment - 1], self._bounds[segment]
        return sorted(
            (
                rule
                for rule in self.rules
                if event_type in rule.definition.event_types
                and rule.definition.starts_at <= opens
                and rule.definition.ends_at >= closes
                and (not rule.definition.channels or channel in rule.definition.channels)
            ),
            key=attrgetter("order"),
        )


def _compile(rules: Sequence[CampaignRule]) -> Evaluation:
    """One function that finds the awards of `rules` (in their order) for an event."""
    if not rules:
        return _nothing
    source = PythonSource(
        {"MISSING": MISSING, "Award": Award, "Basket": Basket, "new": tuple.__new__},
        event_given=True,
    )
    # A condition that several campaigns share is judged once per event, and an action that
    # counts lines and serves several campaigns is counted once per receipt: each keeps its
    # result in a local, None until first needed.
    verdicts = _shared(
        [r.definition.condition for r in rules if r.definition.condition != TRUE], "_c"
    )
    bonuses = _shared(
        [rule.definition.action for rule in rules if rule.definition.action.reads_lines], "_p"
    )
    body: list[str] = []
    for rule in rules:
        d = rule.definition
        tests = [
            f"{scope} in {source.bind(values)}"
            for scope, values in (("ev.store", d.stores), ("ev.partner", d.partners))
            if values
        ]
        if d.condition != TRUE:
            test = source.expression(d.condition)
            slot = verdicts.get(d.condition)
            tests.append(
                f"({slot} if {slot} is not None else ({slot} := {test}))" if slot else test
            )
        indent = "        " if tests else "    "
        if tests:
            body.append(f"    if {' and '.join(tests)}:")
        body += [indent + line for line in _award(source, rule, bonuses.get(d.action))]
    lines = [
        "def evaluate(facts, ev, lines, used, policy, base):",
        "    found = []",
        "    basket = None",
        *(f"    {name} = None" for name in [*verdicts.values(), *bonuses.values()]),
        MEMBER_LINE if source.reads_member else "",
        *body,
        "    return found",
    ]
    return cast(Evaluation, compile_function("\n".join(lines), source.namespace, "evaluate"))


def _shared(items: list[Hashable], prefix: str) -> dict[Hashable, str]:
    """A local name for each item that occurs more than once."""
    repeated = [item for item, count in Counter(items).items() if count > 1]
    return {item: f"{prefix}{n}" for n, item in enumerate(repeated)}


def _award(source: PythonSource, rule: CampaignRule, slot: str | None) -> list[str]:
    """Lines that add the rule's award, if any, to `found`; `slot` is the local that keeps the
    points of an action shared with other campaigns."""
    action = rule.definition.action
    if action.type is ActionType.FIXED:
        # A fixed bonus is the same award for every event: built once, here.
        if action.points <= 0:
            return ["pass"]
        return [f"found.append({source.bind(Award(rule, action.points))})"]
    if action.reads_lines:
        # One basket per receipt, made by the first campaign that counts its lines.
        count = [
            "if basket is None and lines:",
            "    basket = Basket(lines, used, policy)",
            f"points = {source.bind(action.points_for)}(basket, base)",
        ]
        if slot is not None:
            count = [
                f"if {slot} is None:",
                *(f"    {line}" for line in count),
                f"    {slot} = points",
            ]
            count.append(f"points = {slot}")
    else:
        numerator, denominator = action.extra
        count = [f"points = base * {source.bind(numerator)} // {source.bind(denominator)}"]
    # tuple.__new__ builds the named tuple without the Python-level __new__ of `Award`.
    return [
        *count,
        "if points > 0:",
        f"    found.append(new(Award, ({source.bind(rule)}, points)))",
    ]


def _nothing(*_args: object) -> list[Award]:
    return []
