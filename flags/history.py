"""A flag change in words, field by field, as Unleash and LaunchDarkly show history (no Django import).

`describe_change(before, after)` turns two flag states (or flag definitions) into lines such as
"rollout: 10 % → 30 %" or "rule 1 added: country in FR, DE → on". `describe_state` says what a flag serves
in one short phrase ("on · 30 %"), for messages after a change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

LABELS = {
    "enabled": "enabled",
    "default_variant": "default variant",
    "off_variant": "off variant",
    "rollout": "rollout",
    "rules": "rules",
    "prerequisites": "prerequisites",
    "variants": "variants",
    "description": "description",
    "owner": "owner",
    "tags": "tags",
    "name": "name",
}
OPERATOR_WORDS = {
    "equals": "is",
    "not_equals": "is not",
    "in": "in",
    "not_in": "not in",
    "contains": "contains",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "lt": "<",
    "lte": "≤",
    "gt": ">",
    "gte": "≥",
    "semver_lt": "version <",
    "semver_eq": "version =",
    "semver_gt": "version >",
    "before": "before",
    "after": "after",
    "exists": "is set",
}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_condition(condition: Mapping[str, Any]) -> str:
    attribute = str(condition.get("attribute", "?"))
    operator = str(condition.get("operator", "?"))
    words = OPERATOR_WORDS.get(operator, operator)
    if operator == "exists":
        return f"{attribute} {words}"
    if "values" in condition and isinstance(condition["values"], list):
        operand = ", ".join(_value(v) for v in condition["values"])
    else:
        operand = _value(condition.get("value"))
    return f"{attribute} {words} {operand}"


def _split(weights: Any) -> str:
    if not isinstance(weights, Mapping):
        return _value(weights)
    return " / ".join(f"{name} {weight} %" for name, weight in sorted(weights.items()))


def describe_rule(rule: Any) -> str:
    if not isinstance(rule, Mapping):
        return _shorten(_value(rule))
    if "segment" in rule:
        match = f"segment {rule['segment']}"
    elif "targeting_keys" in rule:
        keys = list(rule.get("targeting_keys") or [])
        match = f"users {', '.join(map(str, keys[:5]))}{'…' if len(keys) > 5 else ''}"
    else:
        match = " and ".join(
            describe_condition(c) for c in rule.get("conditions") or [] if isinstance(c, Mapping)
        )
    serve = rule["variant"] if "variant" in rule else f"split {_split(rule.get('split'))}"
    return _shorten(f"{match or 'everyone'} → {serve}")


def describe_rollout(rollout: Any) -> str:
    if not rollout:
        return "none"
    if not isinstance(rollout, Mapping):
        return _value(rollout)
    weights = rollout.get("weights") or {}
    served = next(iter(weights)) if len(weights) == 1 else _split(weights)
    return f"{rollout.get('percentage')} % ({served})"


def _rules_lines(before: list, after: list) -> list[str]:
    lines = []
    for index in range(max(len(before), len(after))):
        old = before[index] if index < len(before) else None
        new = after[index] if index < len(after) else None
        if old == new:
            continue
        if old is None:
            lines.append(f"rule {index + 1} added: {describe_rule(new)}")
        elif new is None:
            lines.append(f"rule {index + 1} removed: {describe_rule(old)}")
        else:
            lines.append(f"rule {index + 1}: {describe_rule(old)} → {describe_rule(new)}")
    return lines


def _variants_lines(before: Mapping, after: Mapping) -> list[str]:
    lines = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            lines.append(f"variant {name} added: {_shorten(_value(after[name]))}")
        elif name not in after:
            lines.append(f"variant {name} removed")
        elif before[name] != after[name]:
            lines.append(
                f"variant {name}: {_shorten(_value(before[name]))} → {_shorten(_value(after[name]))}"
            )
    return lines


def describe_change(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """What changed, one line per field (rules and variants one line per item); [] when nothing did."""
    before, after = dict(before or {}), dict(after or {})
    lines: list[str] = []
    for key in sorted(
        set(before) | set(after), key=lambda k: (list(LABELS).index(k) if k in LABELS else 99, k)
    ):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        label = LABELS.get(key, key.replace("_", " "))
        if key == "enabled":
            lines.append(f"switched {'on' if new else 'off'}")
        elif key == "rollout":
            lines.append(f"rollout: {describe_rollout(old)} → {describe_rollout(new)}")
        elif key == "rules" and isinstance(old or [], list) and isinstance(new or [], list):
            lines += _rules_lines(list(old or []), list(new or []))
        elif key == "variants" and isinstance(old or {}, Mapping) and isinstance(new or {}, Mapping):
            lines += _variants_lines(old or {}, new or {})
        else:
            shown_old = "—" if old in (None, "", [], {}) else _shorten(_value(old))
            shown_new = "—" if new in (None, "", [], {}) else _shorten(_value(new))
            lines.append(f"{label}: {shown_old} → {shown_new}")
    return lines


def describe_state(state: Mapping[str, Any]) -> str:
    """'on', 'off', 'on · 30 %' — what a flag serves in an environment, in a phrase."""
    if not state.get("enabled"):
        return "off"
    rollout = state.get("rollout")
    if rollout:
        return f"on · {rollout.get('percentage')} %"
    return "on"
