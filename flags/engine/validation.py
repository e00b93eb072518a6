"""Validation of a snapshot config: every problem with its path (`flags[0].rules[1].operator`), nothing raised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from flags.engine.model import TYPES
from flags.engine.values import _TYPE_CHECKS, _instant_of_text, _is_number, _is_scalar, _semver_key

# --------------------------------------------------------------------------- validation

_SCALAR_ONE: Final = frozenset({"equals", "not_equals"})
_SCALAR_MANY: Final = frozenset({"in", "not_in", "contains"})
_STRING_MANY: Final = frozenset({"starts_with", "ends_with"})
_NUMERIC: Final = frozenset({"lt", "lte", "gt", "gte"})
_SEMVER: Final = frozenset({"semver_lt", "semver_eq", "semver_gt"})
_INSTANT: Final = frozenset({"before", "after"})
OPERATORS: Final = _SCALAR_ONE | _SCALAR_MANY | _STRING_MANY | _NUMERIC | _SEMVER | _INSTANT | {"exists"}

_FLAG_FIELDS: Final = frozenset(
    {
        "key",
        "type",
        "variants",
        "enabled",
        "off_variant",
        "default_variant",
        "bucket_by",
        "rules",
        "rollout",
        "prerequisites",
        "metadata",
    }
)
_RULE_FIELDS: Final = frozenset({"conditions", "segment", "targeting_keys", "variant", "split", "bucket_by"})
_CONDITION_FIELDS: Final = frozenset({"attribute", "operator", "value", "values"})
# Maxima of what people type into a flag (the API and the panel both pass here): a name is an attribute, a variant's
# name or a bucketing attribute (a variant name is stored as a default/off variant, a column of 100); a value is an
# operand or a targeting key.
MAX_NAME: Final = 100
MAX_VALUE: Final = 1000


def _too_long(text: Any, limit: int) -> bool:
    return isinstance(text, str) and len(text) > limit


def _at_most(limit: int, text: str) -> str:
    return f"at most {limit} characters (this one has {len(text):,})"


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
    elif _too_long(attribute, MAX_NAME):
        errors.add(f"{path}.attribute", _at_most(MAX_NAME, attribute))
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
            elif _too_long(item, MAX_VALUE):
                errors.add(f"{path}.values[{index}]", _at_most(MAX_VALUE, item))
        return
    if has_values:
        errors.add(f"{path}.values", f"{operator} takes a single 'value'")
    if not has_value:
        errors.add(f"{path}.value", "required")
    elif isinstance(value, str) and _too_long(value, MAX_VALUE):
        errors.add(f"{path}.value", _at_most(MAX_VALUE, value))
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
    if "bucket_by" in container and (
        not isinstance(container["bucket_by"], str) or not container["bucket_by"]
    ):
        errors.add(f"{path}.bucket_by" if path else "bucket_by", "must be a non-empty string")
    elif _too_long(container.get("bucket_by"), MAX_NAME):
        errors.add(f"{path}.bucket_by" if path else "bucket_by", _at_most(MAX_NAME, container["bucket_by"]))


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
        else:
            for index, key in enumerate(keys):
                if _too_long(key, MAX_VALUE):
                    errors.add(f"{path}.targeting_keys[{index}]", _at_most(MAX_VALUE, key))
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
        elif _too_long(name, MAX_NAME):
            errors.add(f"{path}.variants", "a variant's name: " + _at_most(MAX_NAME, name))
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
    by_key = {
        flag["key"]: (index, flag)
        for index, flag in enumerate(flags)
        if isinstance(flag, dict) and isinstance(flag.get("key"), str)
    }
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
                errors.add(
                    f"{item}.variant", f"unknown variant {prerequisite.get('variant')!r} of {target!r}"
                )
            edges[key].append(target)
    # Depth-first search; report each cycle once, on the edge that closes it.
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(key: str, trail: list[str]) -> None:
        state[key] = 1
        trail.append(key)
        for position, target in enumerate(edges.get(key, [])):
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target) :], target]
                errors.add(
                    f"flags[{by_key[key][0]}].prerequisites[{position}].flag",
                    "prerequisite cycle: " + " -> ".join(cycle),
                )
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
