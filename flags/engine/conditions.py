"""Conditions compiled into matchers: one small closure per condition, no interpretation at evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from flags.engine.model import Condition
from flags.engine.values import (
    _NUMBER_TYPES,
    _eq_key,
    _instant_of,
    _instant_of_text,
    _json_equal,
    _semver_key,
    _semver_of,
)

# --------------------------------------------------------------------------- conditions

Matcher = Callable[[Mapping[str, Any]], bool]


def _compile_in(attribute: str, operands: tuple[Any, ...]) -> Matcher:
    if all(operand.__class__ is str for operand in operands):
        strings = frozenset(operands)

        def match_in_strings(ctx: Mapping[str, Any]) -> bool:
            try:
                return ctx.get(attribute) in strings
            except TypeError:  # unhashable context value
                return False

        return match_in_strings

    keys = frozenset(_eq_key(operand) for operand in operands)

    def match_in(ctx: Mapping[str, Any]) -> bool:
        try:
            return _eq_key(ctx.get(attribute)) in keys
        except TypeError:
            return False

    return match_in


def _compile_equals(attribute: str, operand: Any) -> Matcher:
    if operand.__class__ is bool:
        return lambda ctx: ctx.get(attribute) is operand
    if operand.__class__ is str:
        return lambda ctx: ctx.get(attribute) == operand
    return lambda ctx: (v := ctx.get(attribute)).__class__ in _NUMBER_TYPES and v == operand


def _compile_contains(attribute: str, operands: tuple[Any, ...]) -> Matcher:
    substrings = tuple(operand for operand in operands if operand.__class__ is str)

    def match_contains(ctx: Mapping[str, Any]) -> bool:
        v = ctx.get(attribute)
        if isinstance(v, str):
            return any(sub in v for sub in substrings)
        if isinstance(v, list | tuple):
            return any(_json_equal(item, operand) for item in v for operand in operands)
        return False

    return match_contains


_COMPARE: Final[Mapping[str, Callable[[Any, Any], bool]]] = MappingProxyType(
    {
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "semver_lt": lambda a, b: a < b,
        "semver_eq": lambda a, b: a == b,
        "semver_gt": lambda a, b: a > b,
        "before": lambda a, b: a < b,
        "after": lambda a, b: a > b,
    }
)


def _compile_condition(condition: Condition) -> Matcher:
    attribute, operator = condition.attribute, condition.operator
    match operator:
        case "equals":
            return _compile_equals(attribute, condition.value)
        case "not_equals":
            equals = _compile_equals(attribute, condition.value)
            return lambda ctx: not equals(ctx)
        case "in":
            return _compile_in(attribute, condition.values)
        case "not_in":
            is_in = _compile_in(attribute, condition.values)
            return lambda ctx: not is_in(ctx)
        case "contains":
            return _compile_contains(attribute, condition.values)
        case "starts_with":
            prefixes = tuple(condition.values)
            return lambda ctx: isinstance(v := ctx.get(attribute), str) and v.startswith(prefixes)
        case "ends_with":
            suffixes = tuple(condition.values)
            return lambda ctx: isinstance(v := ctx.get(attribute), str) and v.endswith(suffixes)
        case "lt" | "lte" | "gt" | "gte":
            compare, bound = _COMPARE[operator], condition.value
            return lambda ctx: (v := ctx.get(attribute)).__class__ in _NUMBER_TYPES and compare(v, bound)
        case "semver_lt" | "semver_eq" | "semver_gt":
            compare, bound = _COMPARE[operator], _semver_key(condition.value)
            return lambda ctx: (v := _semver_of(ctx.get(attribute))) is not None and compare(v, bound)
        case "before" | "after":
            compare, bound = _COMPARE[operator], _instant_of_text(condition.value)
            return lambda ctx: (v := _instant_of(ctx.get(attribute))) is not None and compare(v, bound)
        case "exists":
            return lambda ctx: ctx.get(attribute) is not None
    raise ValueError(f"unknown operator {operator!r}")  # validation rejects these first


def _all_of(matchers: tuple[Matcher, ...]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        first, second = matchers
        return lambda ctx: first(ctx) and second(ctx)
    return lambda ctx: all(m(ctx) for m in matchers)
