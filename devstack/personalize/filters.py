"""Filter expressions (CreateFilter, ``filterArn`` + ``filterValues``): the subset the emulator supports.

Grammar (keywords in any case; ``|`` chains stages, applied left to right)::

    expression := stage ('|' stage)*
    stage      := ('EXCLUDE' | 'INCLUDE') 'ItemID' 'WHERE' condition (('AND' | 'OR') condition)*
    condition  := dataset '.' FIELD operator value
    dataset    := 'Items' | 'Interactions'
    operator   := 'IN' | 'NOT IN' | '=' | '!=' | '<' | '<=' | '>' | '>='
    value      := literal | '(' literal (',' literal)* ')'
    literal    := "double-quoted string" | number | $PLACEHOLDER

- ``Items.FIELD``: the item's value of that field in the dataset group's ITEMS dataset (imported or
  PutItems); ``Items.ITEM_ID`` is the item id itself. Categorical values (``a|b``) match if any category
  does. A missing value matches no condition. Booleans compare as ``"true"``/``"false"``.
- ``Interactions.EVENT_TYPE`` / ``Interactions.EVENT_VALUE``: true when the requesting user has an
  interaction with the item that satisfies the condition; ``IN ("*")`` matches every event type.
- ``AND`` binds tighter than ``OR``. ``<`` ``<=`` ``>`` ``>=`` compare numbers only.
- ``$NAME`` is bound per request by ``filterValues["NAME"]``: a comma-separated list of double-quoted
  strings (``"\\"g-1\\",\\"g-2\\""``) or numbers. As in the real service, a condition whose placeholder
  gets no value is left out, and a stage left without conditions does nothing.

Not supported (CreateFilter answers InvalidInputException): ``Users.*`` and ``CurrentUser``/``CurrentItem``
conditions, ``IF`` clauses, user-segment filters (``UserID``), parentheses around conditions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

#: A value of an item field: strings, numbers, booleans, or the categories of a categorical field.
FieldValue = str | float | bool | tuple[str, ...]
Action = Literal["EXCLUDE", "INCLUDE"]
DatasetName = Literal["ITEMS", "INTERACTIONS"]

OPERATORS: Final = ("IN", "NOT IN", "=", "!=", "<", "<=", ">", ">=")
INTERACTION_FIELDS: Final = ("EVENT_TYPE", "EVENT_VALUE")
MAX_FILTER_VALUES: Final = 100

_TOKEN: Final = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<placeholder>\$[A-Za-z_][A-Za-z0-9_]*)
      | (?P<operator><=|>=|!=|=|<|>|\(|\)|,|\|)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    )""",
    re.VERBOSE,
)


class FilterError(ValueError):
    """A filter expression or a filter value the emulator cannot use (``InvalidInputException``)."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``$NAME`` in an expression."""

    name: str


LiteralValue = str | float | Placeholder


@dataclass(frozen=True, slots=True)
class Condition:
    """``dataset.FIELD operator values``."""

    dataset: DatasetName
    field: str
    operator: str
    values: tuple[LiteralValue, ...]

    def placeholders(self) -> list[str]:
        """The names of the placeholders among the values."""
        return [value.name for value in self.values if isinstance(value, Placeholder)]


@dataclass(frozen=True, slots=True)
class Stage:
    """One ``EXCLUDE``/``INCLUDE`` stage: an OR of ANDs of conditions."""

    action: Action
    alternatives: tuple[tuple[Condition, ...], ...]


class ItemFacts:
    """What a filter may look at for one request: item fields and the requesting user's interactions."""

    def __init__(
        self,
        item_fields: Callable[[str], Mapping[str, FieldValue] | None],
        user_interactions: Mapping[str, Sequence[tuple[str, float | None]]] | None = None,
    ) -> None:
        self.item_fields = item_fields
        #: item id -> [(event type, event value), ...] of the requesting user.
        self.user_interactions = user_interactions or {}


@dataclass(frozen=True, slots=True)
class FilterExpression:
    """A parsed filter expression; :meth:`bind` gives the predicate for one request."""

    text: str
    stages: tuple[Stage, ...]
    placeholders: frozenset[str] = field(default_factory=frozenset)

    @property
    def uses_interactions(self) -> bool:
        """Whether the expression needs the requesting user's interactions."""
        return any(
            condition.dataset == "INTERACTIONS"
            for stage in self.stages
            for alternative in stage.alternatives
            for condition in alternative
        )

    def bind(self, filter_values: Mapping[str, str] | None) -> BoundFilter:
        """Substitute ``filterValues``; conditions left without a value are dropped (see the module)."""
        values = dict(filter_values or {})
        unknown = sorted(set(values) - self.placeholders)
        if unknown:
            raise FilterError(f"filterValues has keys the filter expression does not use: {unknown}")
        bound: dict[str, tuple[str | float, ...]] = {
            name: parse_filter_value(name, raw) for name, raw in values.items()
        }
        stages: list[tuple[Action, list[list[_Test]]]] = []
        for stage in self.stages:
            alternatives: list[list[_Test]] = []
            for alternative in stage.alternatives:
                tests = [test for test in (_compile(condition, bound) for condition in alternative) if test is not None]
                if tests:
                    alternatives.append(tests)
            if alternatives:
                stages.append((stage.action, alternatives))
        return BoundFilter(stages)


_Test = Callable[[str, ItemFacts], bool]


class BoundFilter:
    """A filter with its values: :meth:`allows` says whether an item may be recommended."""

    def __init__(self, stages: list[tuple[Action, list[list[_Test]]]]) -> None:
        self.stages = stages

    def allows(self, item_id: str, facts: ItemFacts) -> bool:
        """Whether ``item_id`` passes every stage."""
        for action, alternatives in self.stages:
            matched = any(all(test(item_id, facts) for test in tests) for tests in alternatives)
            if matched == (action == "EXCLUDE"):
                return False
        return True


def parse_filter_value(name: str, raw: str) -> tuple[str | float, ...]:
    """``filterValues[name]``: comma-separated double-quoted strings or numbers."""
    try:
        tokens = _tokenize(raw)
    except FilterError:
        raise FilterError(f"filterValues[{name!r}] must be comma-separated quoted strings, got {raw!r}") from None
    values: list[str | float] = []
    expect_value = True
    for kind, text in tokens:
        if expect_value and kind in ("string", "number"):
            values.append(_literal(kind, text))
        elif not expect_value and text == ",":
            pass
        else:
            raise FilterError(f"filterValues[{name!r}] must be comma-separated quoted strings, got {raw!r}")
        expect_value = not expect_value
    if not values or expect_value:
        raise FilterError(f"filterValues[{name!r}] must hold at least one value, got {raw!r}")
    if len(values) > MAX_FILTER_VALUES:
        raise FilterError(f"filterValues[{name!r}] holds {len(values)} values; the maximum is {MAX_FILTER_VALUES}")
    return tuple(values)


def parse_filter(text: str) -> FilterExpression:
    """Parse ``text``; raise :class:`FilterError` saying what is wrong or unsupported."""
    parser = _Parser(_tokenize(text), text)
    stages = [parser.stage()]
    while parser.peek_text() == "|":
        parser.take()
        stages.append(parser.stage())
    if parser.position < len(parser.tokens):
        raise FilterError(f"unexpected {parser.tokens[parser.position][1]!r} in filter expression")
    names = frozenset(
        name
        for stage in stages
        for alternative in stage.alternatives
        for condition in alternative
        for name in condition.placeholders()
    )
    return FilterExpression(text=text, stages=tuple(stages), placeholders=names)


# ------------------------------------------------------------------------------------------ parsing


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    length = len(text)
    while position < length:
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"cannot read the filter expression at {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _literal(kind: str, text: str) -> str | float:
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return float(text)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def peek_text(self) -> str:
        token = self.peek()
        return token[1] if token is not None else ""

    def peek_word(self) -> str:
        token = self.peek()
        return token[1].upper() if token is not None and token[0] == "word" else ""

    def take(self, expected: str = "more") -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError(f"the filter expression ends too early: expected {expected}")
        self.position += 1
        return token

    def expect_word(self, word: str) -> None:
        token = self.take(word)
        if token[0] != "word" or token[1].upper() != word:
            raise FilterError(f"expected {word} in the filter expression, got {token[1]!r}")

    def stage(self) -> Stage:
        token = self.take()
        action = token[1].upper()
        if token[0] != "word" or action not in ("EXCLUDE", "INCLUDE"):
            raise FilterError(f"a filter starts with EXCLUDE or INCLUDE, got {token[1]!r}")
        subject = self.take()
        if subject[1].upper() == "USERID":
            raise FilterError("user segment filters (UserID) are not supported by the emulator")
        if subject[0] != "word" or subject[1].upper() != "ITEMID":
            raise FilterError(f"expected ItemID after {action}, got {subject[1]!r}")
        self.expect_word("WHERE")
        alternatives: list[tuple[Condition, ...]] = []
        current = [self.condition()]
        while self.peek_word() in ("AND", "OR"):
            joiner = self.take()[1].upper()
            if joiner == "OR":
                alternatives.append(tuple(current))
                current = []
            current.append(self.condition())
        alternatives.append(tuple(current))
        if self.peek_word() == "IF":
            raise FilterError("IF clauses (CurrentUser conditions) are not supported by the emulator")
        return Stage("EXCLUDE" if action == "EXCLUDE" else "INCLUDE", tuple(alternatives))

    def condition(self) -> Condition:
        token = self.take()
        if token[0] != "word" or "." not in token[1]:
            raise FilterError(f"expected Items.FIELD or Interactions.FIELD, got {token[1]!r}")
        dataset_text, field_name = token[1].split(".", 1)
        dataset = dataset_text.upper()
        if dataset not in ("ITEMS", "INTERACTIONS"):
            raise FilterError(f"conditions on {dataset_text} are not supported by the emulator (Items, Interactions)")
        field_name = field_name.upper()
        if dataset == "INTERACTIONS" and field_name not in INTERACTION_FIELDS:
            raise FilterError(f"Interactions.{field_name} is not supported; use one of {list(INTERACTION_FIELDS)}")
        operator = self.operator()
        values = self.values(operator)
        if operator in ("<", "<=", ">", ">=") and any(isinstance(value, str) for value in values):
            raise FilterError(f"{operator} compares numbers, got a string in {token[1]} {operator} ...")
        return Condition("ITEMS" if dataset == "ITEMS" else "INTERACTIONS", field_name, operator, values)

    def operator(self) -> str:
        token = self.take()
        text = token[1].upper()
        if text == "NOT":
            self.expect_word("IN")
            return "NOT IN"
        if text in OPERATORS:
            return text
        raise FilterError(f"expected an operator ({', '.join(OPERATORS)}), got {token[1]!r}")

    def values(self, operator: str) -> tuple[LiteralValue, ...]:
        if self.peek_text() != "(":
            if operator in ("IN", "NOT IN"):
                raise FilterError(f"{operator} takes a parenthesised list of values")
            return (self.literal(),)
        self.take()
        values = [self.literal()]
        while self.peek_text() == ",":
            self.take()
            values.append(self.literal())
        if self.take()[1] != ")":
            raise FilterError("expected ) after the list of values")
        return tuple(values)

    def literal(self) -> LiteralValue:
        kind, text = self.take()
        if kind == "placeholder":
            return Placeholder(text[1:])
        if kind in ("string", "number"):
            return _literal(kind, text)
        raise FilterError(f"expected a quoted string, a number or a $PLACEHOLDER, got {text!r}")


# ------------------------------------------------------------------------------------- evaluation


def _text(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(operator: str, actual: FieldValue | float | None, wanted: Sequence[str | float]) -> bool:
    if actual is None:
        return False
    if operator in ("IN", "NOT IN", "=", "!="):
        accepted = {_text(value) for value in wanted}
        candidates = actual if isinstance(actual, tuple) else (actual,)
        hit = any(_text(candidate) in accepted for candidate in candidates)
        return hit if operator in ("IN", "=") else not hit
    number = _number(actual)
    if number is None:
        return False
    bound = float(wanted[0])
    if operator == "<":
        return number < bound
    if operator == "<=":
        return number <= bound
    if operator == ">":
        return number > bound
    return number >= bound


def _compile(condition: Condition, bound: Mapping[str, tuple[str | float, ...]]) -> _Test | None:
    values: list[str | float] = []
    for value in condition.values:
        if isinstance(value, Placeholder):
            if value.name not in bound:
                return None
            values.extend(bound[value.name])
        else:
            values.append(value)
    operator = condition.operator
    name = condition.field
    if condition.dataset == "INTERACTIONS":
        if name == "EVENT_TYPE" and operator == "IN" and "*" in values:
            return lambda item_id, facts: bool(facts.user_interactions.get(item_id))
        position = 0 if name == "EVENT_TYPE" else 1

        def interacted(item_id: str, facts: ItemFacts) -> bool:
            return any(
                _compare(operator, event[position], values) for event in facts.user_interactions.get(item_id, ())
            )

        return interacted
    if name == "ITEM_ID":
        return lambda item_id, facts: _compare(operator, item_id, values)

    def item_field(item_id: str, facts: ItemFacts) -> bool:
        fields = facts.item_fields(item_id)
        return _compare(operator, fields.get(name) if fields else None, values)

    return item_field
