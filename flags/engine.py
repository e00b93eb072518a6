"""Pure, OpenFeature-style feature-flag evaluation engine (no Django import).

The Django layer serialises one environment's flags into a plain JSON dict, calls
:func:`validate_snapshot_config` before saving, and :func:`compile_snapshot` to get
an immutable :class:`Snapshot`.  :func:`evaluate` / :func:`evaluate_all` resolve
flags against an evaluation context (a flat mapping with ``targetingKey``).

Config format
=============
::

    {
      "segments": {                                   # optional, name -> segment
        "staff": {"conditions": [
          {"attribute": "email", "operator": "ends_with", "values": ["@slipway.dev"]}
        ]}
      },
      "flags": [
        {
          "key": "new-checkout",                      # unique, non-empty
          "type": "boolean",                          # boolean | string | number | object
          "variants": {"on": true, "off": false},     # name -> value of `type`
          "enabled": true,
          "off_variant": "off",                       # served when disabled / prerequisite unmet
          "default_variant": "off",                   # served when on and nothing matched
          "bucket_by": "targetingKey",                # optional, attribute used for bucketing
          "prerequisites": [{"flag": "payments-v2", "variant": "on"}],   # optional
          "rules": [                                  # optional, first match wins
            {"conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}],
             "variant": "on"},
            {"segment": "staff", "split": {"on": 50, "off": 50}, "bucket_by": "companyId"},
            {"targeting_keys": ["user-1", "user-2"], "variant": "on"}
          ],
          "rollout": {"percentage": 50, "weights": {"on": 100}},         # optional
          "metadata": {"owner": "payments"}           # optional, str -> scalar, echoed back
        }
      ]
    }

Rules
-----
A rule has exactly one matcher: ``conditions`` (non-empty list, all must hold),
``segment`` (a name from ``segments``; all its conditions must hold) or
``targeting_keys`` (the context's ``targetingKey`` is one of them); and exactly one
outcome: ``variant`` (a variant name) or ``split`` (variant name -> integer weight,
weights sum to 100).  ``bucket_by`` on a rule overrides the flag's for its split.

Conditions
----------
``{"attribute": str, "operator": str, ...}`` with ``value`` (one operand) or
``values`` (non-empty list; the condition holds if any operand does):

====================  ========  ===================================================
operator              operand   holds when the context value ``v`` ...
====================  ========  ===================================================
equals / not_equals   value     equals the scalar (``not_equals``: negation)
in / not_in           values    equals one of the scalars (``not_in``: negation)
contains              values    is a string containing one of the (string) operands,
                                or a list with an element equal to one of them
starts_with           values    is a string starting with one of the strings
ends_with             values    is a string ending with one of the strings
lt / lte / gt / gte   value     is a number (int/float, not bool) and compares so
semver_lt/_eq/_gt     value     is a valid SemVer 2.0 string and compares by
                                precedence (build metadata ignored)
before / after        value     is an ISO-8601 date-time string (or ``datetime``)
                                strictly before / after the operand; values without
                                an offset are taken as UTC
exists                (none)    is present and not null
====================  ========  ===================================================

Equality is JSON equality: ``1 == 1.0`` but ``true != 1`` and ``"1" != 1``.
A missing (or null) attribute makes every condition false, except ``not_equals`` and
``not_in``, which are the exact negations of ``equals``/``in`` and so hold: "country
not_in [CN]" includes users with no country.  Add ``{"operator": "exists"}`` to the
same rule to exclude them.  A value of the wrong type is treated like a missing one
(``gt`` on a string is false).  There are no regular expressions (no ReDoS).

Evaluation order
----------------
1. ``enabled`` false -> ``off_variant``, reason ``DISABLED``.
2. Each prerequisite flag is evaluated with the same context; unless it serves the
   named variant (and is not in error) -> ``off_variant``, ``DISABLED``, with
   ``metadata["prerequisite"]`` naming it.
3. Rules in order; the first match serves its variant (``TARGETING_MATCH``) or its
   split (``SPLIT``).
4. ``rollout`` (a gradual rollout, as Unleash's and LaunchDarkly's percentage
   rollouts mean it): users whose bucket is within ``percentage`` get a variant by
   ``weights``; the others get ``off_variant``, exactly what they would get with the
   flag off.  Both sides are reason ``SPLIT`` (the hash decided), with
   ``metadata["rollout"]`` true inside and false outside.  A flag with a rollout
   never serves ``default_variant`` to users who fall through the rules.
5. Otherwise ``default_variant``: ``STATIC`` when the flag has no rules and no
   rollout, else ``DEFAULT``.

Bucketing (sticky and Unleash-compatible)
-----------------------------------------
The bucketing value is the context's ``targetingKey`` unless ``bucket_by`` names
another attribute (strings, or ints which are stringified; an empty string counts as
missing).  With ``s = f"{flag_key}:{value}"``:

* percentage: ``mmh3.hash(s, 0, signed=False) % 100 + 1 <= percentage``, exactly
  Unleash's ``normalized_hash`` for a ``flexibleRollout`` whose ``groupId`` is the
  flag key, so users keep their buckets when migrating.  Raising the percentage only
  adds users.
* variant weights (rollout and rule splits): an independent hash with Unleash's
  variant seed, ``mmh3.hash(s, 86028157, signed=False) % 100``, mapped onto the
  cumulative weights of the variants **sorted by name** (so JSONB key reordering
  never moves users).

A split or rollout that needs a missing bucketing value resolves to reason ``ERROR``,
``TARGETING_KEY_MISSING``, with the ``default_variant`` value (a rule's split) or the
``off_variant`` value (the rollout: an unknown user is outside it).

Results are precompiled :class:`Resolution` objects: evaluation allocates nothing on
the common paths.  Object variant values are shared between calls: treat as
read-only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

import mmh3
import orjson

__all__ = [
    "OPERATORS",
    "TYPES",
    "Condition",
    "ErrorCode",
    "Flag",
    "Prerequisite",
    "Reason",
    "Resolution",
    "Rollout",
    "Rule",
    "Snapshot",
    "SnapshotInvalid",
    "bucket",
    "compile_snapshot",
    "evaluate",
    "evaluate_all",
    "type_of_value",
    "validate_snapshot_config",
    "variant_bucket",
]

PERCENT_SEED: Final = 0
VARIANT_SEED: Final = 86028157  # Unleash's seed for variant selection
DEFAULT_BUCKET_BY: Final = "targetingKey"
TYPES: Final = frozenset({"boolean", "string", "number", "object"})


class Reason:
    STATIC: Final = "STATIC"
    TARGETING_MATCH: Final = "TARGETING_MATCH"
    SPLIT: Final = "SPLIT"
    DISABLED: Final = "DISABLED"
    DEFAULT: Final = "DEFAULT"
    ERROR: Final = "ERROR"


class ErrorCode:
    FLAG_NOT_FOUND: Final = "FLAG_NOT_FOUND"
    TYPE_MISMATCH: Final = "TYPE_MISMATCH"
    TARGETING_KEY_MISSING: Final = "TARGETING_KEY_MISSING"
    INVALID_CONTEXT: Final = "INVALID_CONTEXT"
    PARSE_ERROR: Final = "PARSE_ERROR"
    GENERAL: Final = "GENERAL"


_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    value: Any
    variant: str | None
    reason: str
    error_code: str | None = None
    error_details: str | None = None
    metadata: Mapping[str, Any] = _EMPTY


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    attribute: str
    operator: str
    value: Any = None
    values: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    conditions: tuple[Condition, ...] = ()
    segment: str | None = None
    targeting_keys: frozenset[str] | None = None
    variant: str | None = None
    split: Mapping[str, int] | None = None
    bucket_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    percentage: int
    weights: Mapping[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Prerequisite:
    flag: str
    variant: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Flag:
    key: str
    type: str
    variants: Mapping[str, Any]
    enabled: bool
    off_variant: str
    default_variant: str
    bucket_by: str = DEFAULT_BUCKET_BY
    rules: tuple[Rule, ...] = ()
    rollout: Rollout | None = None
    prerequisites: tuple[Prerequisite, ...] = ()
    metadata: Mapping[str, Any] = _EMPTY


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    version: str  # content hash of the canonical config: use as the HTTP ETag
    flags: Mapping[str, Flag]
    segments: Mapping[str, tuple[Condition, ...]]
    _evaluators: dict[str, Callable[[Mapping[str, Any]], Resolution]] = field(repr=False, compare=False)


class SnapshotInvalid(ValueError):
    """The config failed validation; ``errors`` holds ``(path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))


# --------------------------------------------------------------------------- bucketing


def bucket(flag_key: str, value: str) -> int:
    """Percentage bucket 1..100 of ``value`` for ``flag_key`` (Unleash ``normalized_hash``)."""
    return mmh3.hash(f"{flag_key}:{value}", PERCENT_SEED, False) % 100 + 1


def variant_bucket(flag_key: str, value: str) -> int:
    """Variant bucket 0..99, independent of :func:`bucket`."""
    return mmh3.hash(f"{flag_key}:{value}", VARIANT_SEED, False) % 100


def _weights_table(weights: Mapping[str, int], resolutions: Mapping[str, Resolution]) -> tuple[Resolution, ...]:
    table: list[Resolution] = []
    for name in sorted(weights):
        table.extend([resolutions[name]] * weights[name])
    return tuple(table)


# --------------------------------------------------------------------------- value helpers

_NUMBER_TYPES: Final = (int, float)
_ID_CHARS: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


class _Bool:
    """Tag so ``True``/``1`` stay distinct in sets (JSON equality)."""


def _eq_key(value: Any) -> Any:
    return (_Bool, value) if value.__class__ is bool else value


def _json_equal(a: Any, b: Any) -> bool:
    return (a.__class__ is bool) == (b.__class__ is bool) and a == b


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or (isinstance(value, int | float) and math.isfinite(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > 32:
        return False
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int | float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_json(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


_TYPE_CHECKS: Final[Mapping[str, Callable[[Any], bool]]] = MappingProxyType(
    {
        "boolean": lambda v: isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "number": _is_number,
        "object": lambda v: isinstance(v, dict) and _is_json(v),
    }
)


def type_of_value(value: Any) -> str | None:
    """The flag type a Python value belongs to (for OFREP typed requests), or None."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    return None


@lru_cache(maxsize=4096)
def _semver_key(text: str) -> tuple[Any, ...] | None:
    """SemVer 2.0 precedence key, or None if ``text`` is not a valid version."""
    core, plus, build = text.partition("+")
    if plus and not all(ident and _ID_CHARS.issuperset(ident) for ident in build.split(".")):
        return None
    core, dash, pre = core.partition("-")
    parts = core.split(".")
    if len(parts) != 3:
        return None
    numbers = []
    for part in parts:
        if not (part.isascii() and part.isdigit()) or (len(part) > 1 and part[0] == "0"):
            return None
        numbers.append(int(part))
    if not dash:
        return (*numbers, 1, ())  # a release outranks all its pre-releases
    identifiers = []
    for ident in pre.split("."):
        if not ident or not _ID_CHARS.issuperset(ident):
            return None
        if ident.isdigit():
            if len(ident) > 1 and ident[0] == "0":
                return None
            identifiers.append((0, int(ident), ""))  # numeric sorts before alphanumeric
        else:
            identifiers.append((1, 0, ident))
    return (*numbers, 0, tuple(identifiers))


def _semver_of(value: Any) -> tuple[Any, ...] | None:
    return _semver_key(value) if value.__class__ is str else None


@lru_cache(maxsize=4096)
def _instant_of_text(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _instant_of(value: Any) -> float | None:
    if value.__class__ is str:
        return _instant_of_text(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return None


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


# --------------------------------------------------------------------------- validation

_SCALAR_ONE: Final = frozenset({"equals", "not_equals"})
_SCALAR_MANY: Final = frozenset({"in", "not_in", "contains"})
_STRING_MANY: Final = frozenset({"starts_with", "ends_with"})
_NUMERIC: Final = frozenset({"lt", "lte", "gt", "gte"})
_SEMVER: Final = frozenset({"semver_lt", "semver_eq", "semver_gt"})
_INSTANT: Final = frozenset({"before", "after"})
OPERATORS: Final = _SCALAR_ONE | _SCALAR_MANY | _STRING_MANY | _NUMERIC | _SEMVER | _INSTANT | {"exists"}

_FLAG_FIELDS: Final = frozenset(
    {"key", "type", "variants", "enabled", "off_variant", "default_variant", "bucket_by",
     "rules", "rollout", "prerequisites", "metadata"}
)
_RULE_FIELDS: Final = frozenset({"conditions", "segment", "targeting_keys", "variant", "split", "bucket_by"})
_CONDITION_FIELDS: Final = frozenset({"attribute", "operator", "value", "values"})


class _Errors(list[tuple[str, str]]):
    def add(self, path: str, message: str) -> None:
        self.append((path, message))


def _check_unknown(errors: _Errors, path: str, obj: dict, allowed: frozenset[str]) -> None:
    for name in obj:
        if name not in allowed:
            errors.add(f"{path}.{name}" if path else str(name), "unknown field")


def _check_condition(errors: _Errors, path: str, condition: Any) -> None:
    if not isinstance(condition, dict):
        errors.add(path, "must be an object")
        return
    _check_unknown(errors, path, condition, _CONDITION_FIELDS)
    attribute = condition.get("attribute")
    if not isinstance(attribute, str) or not attribute:
        errors.add(f"{path}.attribute", "must be a non-empty string")
    operator = condition.get("operator")
    if operator not in OPERATORS:
        errors.add(f"{path}.operator", f"unknown operator {operator!r}")
        return
    has_value, has_values = "value" in condition, "values" in condition
    value, values = condition.get("value"), condition.get("values")
    if operator == "exists":
        if has_value or has_values:
            errors.add(f"{path}.value", "exists takes no operand")
        return
    if operator in _SCALAR_MANY or operator in _STRING_MANY:
        if has_value:
            errors.add(f"{path}.value", f"{operator} takes 'values' (a list)")
        if not isinstance(values, list) or not values:
            errors.add(f"{path}.values", "must be a non-empty list")
            return
        check = _is_scalar if operator in _SCALAR_MANY else (lambda v: isinstance(v, str))
        kind = "a string, number or boolean" if operator in _SCALAR_MANY else "a string"
        for index, item in enumerate(values):
            if not check(item):
                errors.add(f"{path}.values[{index}]", f"must be {kind}")
        return
    if has_values:
        errors.add(f"{path}.values", f"{operator} takes a single 'value'")
    if not has_value:
        errors.add(f"{path}.value", "required")
    elif operator in _SCALAR_ONE and not _is_scalar(value):
        errors.add(f"{path}.value", "must be a string, number or boolean")
    elif operator in _NUMERIC and not _is_number(value):
        errors.add(f"{path}.value", "must be a finite number")
    elif operator in _SEMVER and not (isinstance(value, str) and _semver_key(value) is not None):
        errors.add(f"{path}.value", "must be a SemVer 2.0 version like '1.2.3'")
    elif operator in _INSTANT and not (isinstance(value, str) and _instant_of_text(value) is not None):
        errors.add(f"{path}.value", "must be an ISO-8601 date-time")


def _check_conditions(errors: _Errors, path: str, conditions: Any) -> None:
    if not isinstance(conditions, list) or not conditions:
        errors.add(path, "must be a non-empty list")
        return
    for index, condition in enumerate(conditions):
        _check_condition(errors, f"{path}[{index}]", condition)


def _check_weights(errors: _Errors, path: str, weights: Any, variants: dict) -> None:
    if not isinstance(weights, dict) or not weights:
        errors.add(path, "must be a non-empty object of variant -> weight")
        return
    total = 0
    for name, weight in weights.items():
        if name not in variants:
            errors.add(f"{path}.{name}", f"unknown variant {name!r}")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            errors.add(f"{path}.{name}", "weight must be an integer from 0 to 100")
        else:
            total += weight
    if total != 100 and not any(p.startswith(path + ".") for p, _ in errors):
        errors.add(path, f"weights must sum to 100, not {total}")


def _check_bucket_by(errors: _Errors, path: str, container: dict) -> None:
    if "bucket_by" in container and (not isinstance(container["bucket_by"], str) or not container["bucket_by"]):
        errors.add(f"{path}.bucket_by" if path else "bucket_by", "must be a non-empty string")


def _check_variant_name(errors: _Errors, path: str, name: Any, variants: dict) -> None:
    if not isinstance(name, str) or name not in variants:
        errors.add(path, f"unknown variant {name!r}")


def _check_rule(errors: _Errors, path: str, rule: Any, variants: dict, segments: Mapping) -> None:
    if not isinstance(rule, dict):
        errors.add(path, "must be an object")
        return
    _check_unknown(errors, path, rule, _RULE_FIELDS)
    matchers = [name for name in ("conditions", "segment", "targeting_keys") if name in rule]
    if len(matchers) != 1:
        errors.add(path, "needs exactly one of 'conditions', 'segment', 'targeting_keys'")
    if "conditions" in rule:
        _check_conditions(errors, f"{path}.conditions", rule["conditions"])
    if "segment" in rule and (not isinstance(rule["segment"], str) or rule["segment"] not in segments):
        errors.add(f"{path}.segment", f"unknown segment {rule['segment']!r}")
    if "targeting_keys" in rule:
        keys = rule["targeting_keys"]
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            errors.add(f"{path}.targeting_keys", "must be a non-empty list of non-empty strings")
    outcomes = [name for name in ("variant", "split") if name in rule]
    if len(outcomes) != 1:
        errors.add(path, "needs exactly one of 'variant', 'split'")
    if "variant" in rule:
        _check_variant_name(errors, f"{path}.variant", rule["variant"], variants)
    if "split" in rule:
        _check_weights(errors, f"{path}.split", rule["split"], variants)
    _check_bucket_by(errors, path, rule)


def _check_flag(errors: _Errors, path: str, flag: dict, segments: Mapping) -> None:
    _check_unknown(errors, path, flag, _FLAG_FIELDS)
    flag_type = flag.get("type")
    if flag_type not in TYPES:
        errors.add(f"{path}.type", f"must be one of {', '.join(sorted(TYPES))}")
    variants = flag.get("variants")
    if not isinstance(variants, dict) or not variants:
        errors.add(f"{path}.variants", "must be a non-empty object of name -> value")
        variants = {}
    for name, value in variants.items():
        if not isinstance(name, str) or not name:
            errors.add(f"{path}.variants", f"variant name {name!r} must be a non-empty string")
        elif flag_type in TYPES and not _TYPE_CHECKS[flag_type](value):
            errors.add(f"{path}.variants.{name}", f"value {value!r} is not a {flag_type}")
    if not isinstance(flag.get("enabled"), bool):
        errors.add(f"{path}.enabled", "must be true or false")
    for name in ("off_variant", "default_variant"):
        _check_variant_name(errors, f"{path}.{name}", flag.get(name), variants)
    _check_bucket_by(errors, path, flag)
    rules = flag.get("rules", [])
    if not isinstance(rules, list):
        errors.add(f"{path}.rules", "must be a list")
        rules = []
    for index, rule in enumerate(rules):
        _check_rule(errors, f"{path}.rules[{index}]", rule, variants, segments)
    rollout = flag.get("rollout")
    if rollout is not None:
        if not isinstance(rollout, dict):
            errors.add(f"{path}.rollout", "must be an object")
        else:
            _check_unknown(errors, f"{path}.rollout", rollout, frozenset({"percentage", "weights"}))
            percentage = rollout.get("percentage")
            if not isinstance(percentage, int) or isinstance(percentage, bool) or not 0 <= percentage <= 100:
                errors.add(f"{path}.rollout.percentage", "must be an integer from 0 to 100")
            _check_weights(errors, f"{path}.rollout.weights", rollout.get("weights"), variants)
    metadata = flag.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and _is_scalar(v) for k, v in metadata.items()
    ):
        errors.add(f"{path}.metadata", "must be an object of string -> string, number or boolean")


def _check_prerequisites(errors: _Errors, flags: list[Any]) -> None:
    by_key = {flag["key"]: (index, flag) for index, flag in enumerate(flags)
              if isinstance(flag, dict) and isinstance(flag.get("key"), str)}
    edges: dict[str, list[str]] = {}
    for key, (index, flag) in by_key.items():
        prerequisites = flag.get("prerequisites", [])
        path = f"flags[{index}].prerequisites"
        if not isinstance(prerequisites, list):
            errors.add(path, "must be a list")
            continue
        edges[key] = []
        for position, prerequisite in enumerate(prerequisites):
            item = f"{path}[{position}]"
            if not isinstance(prerequisite, dict):
                errors.add(item, "must be an object")
                continue
            _check_unknown(errors, item, prerequisite, frozenset({"flag", "variant"}))
            target = prerequisite.get("flag")
            if not isinstance(target, str) or target not in by_key:
                errors.add(f"{item}.flag", f"unknown flag {target!r}")
                continue
            if target == key:
                errors.add(f"{item}.flag", "a flag cannot be its own prerequisite")
                continue
            target_variants = by_key[target][1].get("variants")
            if not isinstance(target_variants, dict) or prerequisite.get("variant") not in target_variants:
                errors.add(f"{item}.variant", f"unknown variant {prerequisite.get('variant')!r} of {target!r}")
            edges[key].append(target)
    # Depth-first search; report each cycle once, on the edge that closes it.
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(key: str, trail: list[str]) -> None:
        state[key] = 1
        trail.append(key)
        for position, target in enumerate(edges.get(key, [])):
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target):], target]
                errors.add(f"flags[{by_key[key][0]}].prerequisites[{position}].flag",
                           "prerequisite cycle: " + " -> ".join(cycle))
            elif target not in state:
                visit(target, trail)
        trail.pop()
        state[key] = 2

    for key in edges:
        if key not in state:
            visit(key, [])


def validate_snapshot_config(config: Any) -> list[tuple[str, str]]:
    """Every problem in ``config`` as ``(path, message)``, e.g. ``("flags[0].rules[1].variant", ...)``."""
    errors = _Errors()
    if not isinstance(config, dict):
        errors.add("", "config must be an object")
        return list(errors)
    _check_unknown(errors, "", config, frozenset({"flags", "segments"}))
    segments = config.get("segments", {})
    if not isinstance(segments, dict):
        errors.add("segments", "must be an object of name -> segment")
        segments = {}
    for name, segment in segments.items():
        path = f"segments.{name}"
        if not isinstance(segment, dict):
            errors.add(path, "must be an object with 'conditions'")
            continue
        _check_unknown(errors, path, segment, frozenset({"conditions"}))
        _check_conditions(errors, f"{path}.conditions", segment.get("conditions"))
    flags = config.get("flags", [])
    if not isinstance(flags, list):
        errors.add("flags", "must be a list")
        return list(errors)
    seen: set[str] = set()
    for index, flag in enumerate(flags):
        path = f"flags[{index}]"
        if not isinstance(flag, dict):
            errors.add(path, "must be an object")
            continue
        key = flag.get("key")
        if not isinstance(key, str) or not key:
            errors.add(f"{path}.key", "must be a non-empty string")
        elif key in seen:
            errors.add(f"{path}.key", f"duplicate flag key {key!r}")
        else:
            seen.add(key)
        _check_flag(errors, path, flag, segments)
    _check_prerequisites(errors, flags)
    if not errors:
        try:
            orjson.dumps(config)
        except orjson.JSONEncodeError as exc:
            errors.add("", f"not JSON-serialisable: {exc}")
    return list(errors)


# --------------------------------------------------------------------------- parsing


def _parse_conditions(raw: list[dict]) -> tuple[Condition, ...]:
    return tuple(
        Condition(attribute=c["attribute"], operator=c["operator"], value=c.get("value"),
                  values=tuple(c.get("values", ())))
        for c in raw
    )


def _parse_flag(raw: dict) -> Flag:
    rules = tuple(
        Rule(
            conditions=_parse_conditions(r.get("conditions", [])),
            segment=r.get("segment"),
            targeting_keys=frozenset(r["targeting_keys"]) if "targeting_keys" in r else None,
            variant=r.get("variant"),
            split=MappingProxyType(dict(r["split"])) if "split" in r else None,
            bucket_by=r.get("bucket_by"),
        )
        for r in raw.get("rules", [])
    )
    rollout = raw.get("rollout")
    return Flag(
        key=raw["key"],
        type=raw["type"],
        variants=MappingProxyType(dict(raw["variants"])),
        enabled=raw["enabled"],
        off_variant=raw["off_variant"],
        default_variant=raw["default_variant"],
        bucket_by=raw.get("bucket_by", DEFAULT_BUCKET_BY),
        rules=rules,
        rollout=None if rollout is None else Rollout(
            percentage=rollout["percentage"], weights=MappingProxyType(dict(rollout["weights"]))
        ),
        prerequisites=tuple(Prerequisite(flag=p["flag"], variant=p["variant"]) for p in raw.get("prerequisites", [])),
        metadata=MappingProxyType(dict(raw.get("metadata", {}))),
    )


# --------------------------------------------------------------------------- compiling


def _resolution(flag: Flag, variant: str, reason: str, **extra: Any) -> Resolution:
    metadata = MappingProxyType({**flag.metadata, **extra}) if extra or flag.metadata else _EMPTY
    return Resolution(value=flag.variants[variant], variant=variant, reason=reason, metadata=metadata)


def _bucketing_value(value: Any) -> str | None:
    """Slow path for a non-str bucketing value: ints are stringified, the rest count as missing."""
    if value.__class__ is int:
        return str(value)
    return None


def _compile_split(
    flag: Flag, weights: Mapping[str, int], bucket_by: str, reason: str, missing: Resolution, **extra: Any
) -> Callable[[Mapping[str, Any]], Resolution]:
    resolutions = {name: _resolution(flag, name, reason, **extra) for name in weights}
    table = _weights_table(weights, resolutions)
    prefix = flag.key + ":"
    hash32 = mmh3.hash

    def split(ctx: Mapping[str, Any]) -> Resolution:
        value = ctx.get(bucket_by)
        if value.__class__ is not str or not value:
            value = _bucketing_value(value)
            if value is None:
                return missing
        return table[hash32(prefix + value, VARIANT_SEED, False) % 100]

    return split


def _missing_key(flag: Flag, attribute: str, variant: str | None = None) -> Resolution:
    variant = variant or flag.default_variant
    return Resolution(
        value=flag.variants[variant], variant=variant, reason=Reason.ERROR,
        error_code=ErrorCode.TARGETING_KEY_MISSING,
        error_details=f"flag {flag.key!r} buckets by {attribute!r}, which the context lacks",
        metadata=flag.metadata or _EMPTY,
    )


def _compile_flag(
    flag: Flag,
    segments: Mapping[str, tuple[Condition, ...]],
    evaluators: Mapping[str, Callable[[Mapping[str, Any]], Resolution]],
) -> Callable[[Mapping[str, Any]], Resolution]:
    off = _resolution(flag, flag.off_variant, Reason.DISABLED)
    if not flag.enabled:
        return lambda ctx: off

    static = not flag.rules and flag.rollout is None
    default = _resolution(flag, flag.default_variant, Reason.STATIC if static else Reason.DEFAULT)

    # (matcher, constant resolution or None, split function or None)
    rules: list[tuple[Matcher, Resolution | None, Callable | None]] = []
    for index, rule in enumerate(flag.rules):
        if rule.targeting_keys is not None:
            keys = rule.targeting_keys

            def matcher(ctx: Mapping[str, Any], keys: frozenset[str] = keys) -> bool:
                try:
                    return ctx.get(DEFAULT_BUCKET_BY) in keys
                except TypeError:
                    return False
        else:
            conditions = segments[rule.segment] if rule.segment is not None else rule.conditions
            matcher = _all_of(tuple(_compile_condition(c) for c in conditions))
        if rule.variant is not None:
            rules.append((matcher, _resolution(flag, rule.variant, Reason.TARGETING_MATCH, rule=index), None))
        else:
            bucket_by = rule.bucket_by or flag.bucket_by
            split = _compile_split(flag, rule.split, bucket_by, Reason.SPLIT, _missing_key(flag, bucket_by), rule=index)
            rules.append((matcher, None, split))
    rule_table = tuple(rules)

    if flag.rollout is not None:
        prefix = flag.key + ":"
        bucket_by = flag.bucket_by
        missing = _missing_key(flag, bucket_by, flag.off_variant)
        percentage = flag.rollout.percentage
        inside = tuple(b + 1 <= percentage for b in range(100))  # index = hash % 100
        weights = {name: w for name, w in flag.rollout.weights.items() if w}
        outside = _resolution(flag, flag.off_variant, Reason.SPLIT, rollout=False)
        hash32 = mmh3.hash
        if len(weights) == 1:
            (only,) = weights
            served = _resolution(flag, only, Reason.SPLIT, rollout=True)

            def fallthrough(ctx: Mapping[str, Any]) -> Resolution:
                value = ctx.get(bucket_by)
                if value.__class__ is not str or not value:
                    value = _bucketing_value(value)
                    if value is None:
                        return missing
                return served if inside[hash32(prefix + value, PERCENT_SEED, False) % 100] else outside
        else:
            table = _weights_table(weights, {n: _resolution(flag, n, Reason.SPLIT, rollout=True) for n in weights})

            def fallthrough(ctx: Mapping[str, Any]) -> Resolution:
                value = ctx.get(bucket_by)
                if value.__class__ is not str or not value:
                    value = _bucketing_value(value)
                    if value is None:
                        return missing
                key = prefix + value
                if inside[hash32(key, PERCENT_SEED, False) % 100]:
                    return table[hash32(key, VARIANT_SEED, False) % 100]
                return outside
    else:
        def fallthrough(ctx: Mapping[str, Any]) -> Resolution:
            return default

    prerequisites = tuple(
        (p.flag, p.variant, _resolution(flag, flag.off_variant, Reason.DISABLED, prerequisite=p.flag))
        for p in flag.prerequisites
    )

    if len(rule_table) == 1 and not prerequisites:  # the common shape, one call less
        ((only_match, only_res, only_split),) = rule_table
        if only_res is not None:
            return lambda ctx: only_res if only_match(ctx) else fallthrough(ctx)

    def evaluate_flag(ctx: Mapping[str, Any]) -> Resolution:
        for key, variant, failed in prerequisites:
            result = evaluators[key](ctx)
            if result.variant != variant or result.reason == Reason.ERROR:
                return failed
        for match, resolution, split in rule_table:
            if match(ctx):
                return resolution if resolution is not None else split(ctx)
        return fallthrough(ctx)

    return evaluate_flag


def compile_snapshot(config: Mapping[str, Any], *, strict: bool = True) -> Snapshot:
    """Validate and compile ``config``; raises :class:`SnapshotInvalid` listing every problem.

    With ``strict=False`` a broken flag doesn't take the others down: it resolves to
    ``ERROR``/``PARSE_ERROR`` (and so fails any prerequisite naming it); problems outside
    a flag (segments, top level) still raise.
    """
    errors = validate_snapshot_config(config)
    broken: dict[int, str] = {}
    for path, message in errors:
        index = _flag_index(path)
        if index is None or strict:
            raise SnapshotInvalid(errors)
        broken.setdefault(index, f"{path}: {message}")
    try:
        canonical = orjson.dumps(config, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise SnapshotInvalid([("", f"not JSON-serialisable: {exc}")]) from exc
    version = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    raw = orjson.loads(canonical)  # a private deep copy: later edits to ``config`` can't leak in
    segments = MappingProxyType(
        {name: _parse_conditions(segment["conditions"]) for name, segment in raw.get("segments", {}).items()}
    )
    flags: dict[str, Flag] = {}
    evaluators: dict[str, Callable[[Mapping[str, Any]], Resolution]] = {}
    for index, item in enumerate(raw.get("flags", [])):
        if index in broken:
            key = item.get("key") if isinstance(item, dict) else None
            if isinstance(key, str) and key and key not in evaluators:
                evaluators[key] = _parse_error(key, broken[index])
            continue
        flags[item["key"]] = _parse_flag(item)
    for key, flag in flags.items():
        evaluators[key] = _compile_flag(flag, segments, evaluators)
    return Snapshot(version=version, flags=MappingProxyType(flags), segments=segments, _evaluators=evaluators)


def _flag_index(path: str) -> int | None:
    if not path.startswith("flags["):
        return None
    index = path[6:path.find("]")]
    return int(index) if index.isdigit() else None


def _parse_error(key: str, details: str) -> Callable[[Mapping[str, Any]], Resolution]:
    failed = Resolution(value=None, variant=None, reason=Reason.ERROR, error_code=ErrorCode.PARSE_ERROR,
                        error_details=f"flag {key!r} is invalid: {details}")
    return lambda ctx: failed


# --------------------------------------------------------------------------- evaluating


def _error(flag: Flag | None, code: str, details: str) -> Resolution:
    if flag is None:
        return Resolution(value=None, variant=None, reason=Reason.ERROR, error_code=code, error_details=details)
    return Resolution(
        value=flag.variants[flag.default_variant], variant=flag.default_variant, reason=Reason.ERROR,
        error_code=code, error_details=details, metadata=flag.metadata or _EMPTY,
    )


def evaluate(
    snapshot: Snapshot,
    flag_key: str,
    context: Mapping[str, Any] | None = None,
    expected_type: str | None = None,
) -> Resolution:
    """Resolve ``flag_key``; never raises.  ``expected_type`` (e.g. from an OFREP typed
    request) turns a flag of another type into a ``TYPE_MISMATCH`` error."""
    evaluator = snapshot._evaluators.get(flag_key)
    if evaluator is None:
        return _error(None, ErrorCode.FLAG_NOT_FOUND, f"flag {flag_key!r} not found")
    if expected_type is not None:
        flag = snapshot.flags.get(flag_key)
        if flag is not None and flag.type != expected_type:
            return _error(flag, ErrorCode.TYPE_MISMATCH, f"flag {flag_key!r} is {flag.type}, not {expected_type}")
    if context is None:
        context = _EMPTY
    try:
        return evaluator(context)
    except Exception as exc:  # a bad context must not take the caller down
        flag = snapshot.flags.get(flag_key)
        if not isinstance(context, Mapping):
            return _error(flag, ErrorCode.INVALID_CONTEXT, "context must be a mapping")
        return _error(flag, ErrorCode.GENERAL, f"{type(exc).__name__}: {exc}")


def evaluate_all(snapshot: Snapshot, context: Mapping[str, Any] | None = None) -> dict[str, Resolution]:
    """Resolve every flag in the snapshot (OFREP bulk evaluation)."""
    return {key: evaluate(snapshot, key, context) for key in snapshot._evaluators}
