"""The condition language: one JSON tree for campaigns, segments and scenarios.

A condition is `{"all": [...]}`, `{"any": [...]}`, `{"not": {...}}` or a comparison such as
`{"field": "event.amount", "op": "gte", "value": 3000}`; windowed behaviour fields take `"days"`
(`{"field": "member.spend", "days": 90, "op": "gte", "value": 10000}`). `parse` validates a tree
once (errors name the path of the bad node, `$.all[1].value`) and returns typed nodes;
`PythonSource` compiles a node to a Python expression (`predicate` makes it a function of `Facts`;
campaign books inline many into one function), and `kizuna.rules.sql` compiles the same node to
SQL. A comparison on a missing value (no birth date, no purchase yet) is false in both back ends;
`exists` asks whether the value is there. Weekday (1 = Monday … 7 = Sunday), hour, day of month and
holidays (`jpholiday`) are taken in the programme's time zone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from kizuna.rules.errors import ConditionError
from kizuna.rules.facts import FIELDS as FIELDS  # the language's fields, for its users (console)
from kizuna.rules.facts import MISSING, SET_TYPES, Facts, FieldSpec, ValueType, field_spec

OPS_BY_TYPE: dict[ValueType, frozenset[str]] = {
    ValueType.INT: frozenset({"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between"}),
    ValueType.STR: frozenset({"eq", "ne", "in", "not_in"}),
    ValueType.BOOL: frozenset({"eq", "ne"}),
    ValueType.STR_SET: frozenset({"contains", "in", "not_in"}),
    ValueType.INT_SET: frozenset({"contains", "in", "not_in"}),
    ValueType.SCALAR: frozenset({"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between"}),
}
ALL_OPS = frozenset().union(*OPS_BY_TYPE.values()) | {"exists"}
MAX_WINDOW_DAYS = 3660
MAX_DEPTH = 32


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class Compare:
    """`field op value`; `value` is a frozenset for in/not_in and a (lo, hi) pair for between."""

    field: str
    op: str
    value: Any
    days: int | None = None


Node = All | AnyOf | Not | Compare
TRUE = All(())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scalar_ok(value: Any, kind: ValueType) -> bool:
    if kind in (ValueType.INT, ValueType.INT_SET):
        return _is_int(value)
    if kind in (ValueType.STR, ValueType.STR_SET):
        return isinstance(value, str)
    if kind is ValueType.BOOL:
        return isinstance(value, bool)
    return isinstance(value, str | int | bool)


def _check_scalar(spec: FieldSpec, value: Any, path: str) -> Any:
    if not _scalar_ok(value, spec.type):
        element = {"int_set": "int", "str_set": "str", "scalar": "str, int or bool"}.get(
            spec.type, str(spec.type)
        )
        raise ConditionError(path, f"{spec.name} takes {element} values, got {value!r}")
    if _is_int(value) and (
        (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi)
    ):
        raise ConditionError(path, f"{spec.name} is between {spec.lo} and {spec.hi}")
    return value


def _parse_compare(tree: Mapping[str, Any], path: str) -> Compare:
    unknown = set(tree) - {"field", "op", "value", "days"}
    if unknown:
        raise ConditionError(path, f"unknown keys {sorted(unknown)}")
    name = tree.get("field")
    if not isinstance(name, str):
        raise ConditionError(f"{path}.field", "a comparison needs a field name")
    spec = field_spec(name)
    if spec is None:
        raise ConditionError(f"{path}.field", f"unknown field {name!r}", field=name)
    op = tree.get("op")
    if op not in ALL_OPS:
        raise ConditionError(f"{path}.op", f"unknown operator {op!r}")
    if op != "exists" and op not in OPS_BY_TYPE[spec.type]:
        raise ConditionError(f"{path}.op", f"{name} ({spec.type}) does not take {op!r}")
    days = tree.get("days")
    if days is not None:
        if spec.window == "none":
            raise ConditionError(f"{path}.days", f"{name} takes no days window")
        if not _is_int(days) or not 1 <= days <= MAX_WINDOW_DAYS:
            raise ConditionError(f"{path}.days", f"days is a whole number 1..{MAX_WINDOW_DAYS}")
    elif spec.window == "required":
        raise ConditionError(f"{path}.days", f"{name} needs a days window")
    value_path = f"{path}.value"
    raw = tree.get("value")
    value: Any
    if op == "exists":
        if raw is not None and not isinstance(raw, bool):
            raise ConditionError(value_path, "exists takes true, false or nothing")
        value = True if raw is None else raw
    elif op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw:
            raise ConditionError(value_path, f"{op} takes a non-empty list")
        value = frozenset(
            _check_scalar(spec, item, f"{value_path}[{i}]") for i, item in enumerate(raw)
        )
        if len({type(item) for item in value}) > 1:
            raise ConditionError(value_path, f"{op} takes values of one type")
    elif op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise ConditionError(value_path, "between takes [low, high]")
        low = _check_scalar(spec, raw[0], f"{value_path}[0]")
        high = _check_scalar(spec, raw[1], f"{value_path}[1]")
        if type(low) is not type(high) or low > high:
            raise ConditionError(value_path, "between needs low <= high of one type")
        value = (low, high)
    else:
        if raw is None:
            raise ConditionError(value_path, f"{op} needs a value")
        value = _check_scalar(spec, raw, value_path)
        if op in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
            raise ConditionError(value_path, f"{op} compares numbers or strings, not booleans")
    return Compare(name, op, value, days)


def parse(tree: Any, path: str = "$") -> Node:
    """The validated node of a JSON condition tree, or `ConditionError` naming the bad node."""
    return _parse(tree, path, 0)


def _parse(tree: Any, path: str, depth: int) -> Node:
    if not isinstance(tree, Mapping):
        raise ConditionError(path, "a condition is a JSON object")
    if "field" in tree or "op" in tree:
        return _parse_compare(tree, path)
    if len(tree) != 1:
        raise ConditionError(path, "use exactly one of all / any / not, or a comparison")
    if depth >= MAX_DEPTH:
        # Both back ends compile a tree into nested expressions, and those have a depth limit.
        raise ConditionError(path, f"conditions nest at most {MAX_DEPTH} levels deep")
    ((key, body),) = tree.items()
    if key in ("all", "any"):
        if not isinstance(body, list):
            raise ConditionError(f"{path}.{key}", f"{key} takes a list of conditions")
        children = tuple(
            _parse(child, f"{path}.{key}[{i}]", depth + 1) for i, child in enumerate(body)
        )
        return All(children) if key == "all" else AnyOf(children)
    if key == "not":
        return Not(_parse(body, f"{path}.not", depth + 1))
    raise ConditionError(path, f"unknown node {key!r} (all, any, not or a comparison)")


def to_json(node: Node) -> dict[str, Any]:
    """The JSON tree of a node (the inverse of `parse`)."""
    if isinstance(node, All):
        return {"all": [to_json(child) for child in node.children]}
    if isinstance(node, AnyOf):
        return {"any": [to_json(child) for child in node.children]}
    if isinstance(node, Not):
        return {"not": to_json(node.child)}
    tree: dict[str, Any] = {"field": node.field, "op": node.op}
    if isinstance(node.value, frozenset):
        tree["value"] = sorted(node.value, key=repr)
    elif isinstance(node.value, tuple):
        tree["value"] = list(node.value)
    else:
        tree["value"] = node.value
    if node.days is not None:
        tree["days"] = node.days
    return tree


def fields_of(node: Node) -> frozenset[str]:
    """Every field a node reads (to load only the facts it needs)."""
    if isinstance(node, All | AnyOf):
        return frozenset().union(*(fields_of(child) for child in node.children))
    if isinstance(node, Not):
        return fields_of(node.child)
    return frozenset({node.field})


# --- evaluation in Python: the tree compiled to Python source ---------------------------------

Predicate = Callable[[Facts], bool]


class PythonSource:
    """Python source of condition trees: one expression per tree over `facts`, `ev` (the event)
    and `mem` (the member). Every value of a tree is bound as a name in `namespace`, so nothing
    from a definition is ever pasted into code; `reads_member` says whether `mem` is needed.
    `event_given`: `ev` is always an `EventFacts` (never `MISSING`), whose sets are never None."""

    def __init__(self, namespace: dict[str, Any], *, event_given: bool = False) -> None:
        self.namespace = namespace
        self.event_given = event_given
        self.reads_member = False
        self._count = 0

    def bind(self, value: Any) -> str:
        """A fresh global name for `value` in the compiled code."""
        self._count += 1
        name = f"_k{self._count}"
        self.namespace[name] = value
        return name

    def expression(self, node: Node) -> str:
        """A Python expression true where `node` holds."""
        if isinstance(node, All | AnyOf):
            if not node.children:
                return "True" if isinstance(node, All) else "False"
            joiner = " and " if isinstance(node, All) else " or "
            return f"({joiner.join(self.expression(child) for child in node.children)})"
        if isinstance(node, Not):
            return f"(not {self.expression(node.child)})"
        return self._compare(node)

    def _read(self, spec: FieldSpec, days: int | None) -> str:
        if spec.attr is not None:
            if spec.scope == "event":
                return f"ev.{spec.attr}"
            self.reads_member = True
            return f"mem.{spec.attr}"
        return f"{self.bind(spec.get)}(facts, {self.bind(days)})"

    def _compare(self, node: Compare) -> str:
        spec = field_spec(node.field)
        assert spec is not None  # parse() accepted the field
        read, op, kind, value = self._read(spec, node.days), node.op, spec.type, node.value
        if op == "exists":
            if kind in SET_TYPES:
                return f"bool({read})" if value else f"(not {read})"
            return f"({read} is not None)" if value else f"({read} is None)"
        # A missing value (None) never equals a value nor is in a set of them, and the sets of a
        # given event are never missing: no guard needed. Otherwise the value is read once into
        # a local, and tested only when it is there.
        if kind in SET_TYPES:
            guarded = not (self.event_given and spec.scope == "event" and spec.attr is not None)
        else:
            guarded = op not in ("eq", "in") or kind is ValueType.SCALAR
        self._count += 1
        subject = f"_v{self._count}" if guarded else read
        if op == "between":
            test = f"{self.bind(value[0])} <= {subject} <= {self.bind(value[1])}"
        elif kind in SET_TYPES:
            test = {
                "contains": "{wanted} in {subject}",
                "in": "not {wanted}.isdisjoint({subject})",
                "not_in": "{wanted}.isdisjoint({subject})",
            }[op].format(wanted=self.bind(value), subject=subject)
        else:
            test = f"{subject} {_SYMBOLS[op]} {self.bind(value)}"
        if not guarded:
            return f"({test})"
        if kind is ValueType.SCALAR:
            # Custom attributes carry any scalar: a value of another type simply does not match.
            sample = next(iter(value)) if isinstance(value, frozenset | tuple) else value
            return f"(type({subject} := {read}) is {self.bind(type(sample))} and {test})"
        return f"(({subject} := {read}) is not None and {test})"


_SYMBOLS = {
    "eq": "==",
    "ne": "!=",
    "in": "in",
    "not_in": "not in",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
}


MEMBER_LINE = "    mem = facts.member if facts.member is not None else MISSING"


def compile_function(source: str, namespace: dict[str, Any], name: str) -> Any:
    """The function `name` defined by `source`, with `namespace` as its globals."""
    # The source is generated from validated trees whose values are all bound as names.
    exec(compile(source, f"<kizuna.rules {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


@lru_cache(maxsize=4096)
def predicate(node: Node) -> Predicate:
    """A Python function of `Facts` that is true where the condition holds (cached per node)."""
    source = PythonSource({"MISSING": MISSING})
    body = source.expression(node)
    lines = [
        "def condition(facts):",
        "    ev = facts.event if facts.event is not None else MISSING",
        MEMBER_LINE if source.reads_member else "",
        f"    return {body}",
    ]
    return cast(Predicate, compile_function("\n".join(lines), source.namespace, "condition"))


def evaluate(node: Node, facts: Facts) -> bool:
    """True when `node` holds for `facts`."""
    return predicate(node)(facts)
