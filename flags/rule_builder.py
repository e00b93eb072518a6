"""The panel's rule builder: rules as rows of fields (attribute, operator, values, what to serve) and back.

Pure: no Django. The rows post as `rule-<n>-attribute`, `-operator`, `-values`, `-serve` (a variant name, or
`split`) and, for a split, one number per variant, `-weight-<variant>` (blank: not in the split); `rules_from_rows`
turns them into the rules JSON the engine validates, so the builder, the JSON box and the API meet the same checks.
A rule the builder cannot show as one row (several conditions, a segment, targeting keys, `bucket_by`) keeps the
panel in JSON mode for that environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flags.engine.validation import OPERATORS

ONE_VALUE = frozenset(
    {"equals", "not_equals", "lt", "lte", "gt", "gte", "semver_lt", "semver_eq", "semver_gt"}
)
ONE_VALUE |= {"before", "after"}
NUMERIC = frozenset({"lt", "lte", "gt", "gte"})
NO_VALUE = frozenset({"exists"})
OPERATOR_CHOICES = sorted(OPERATORS)
MAX_ROWS = 50


class RowError(ValueError):
    """A row that cannot become a rule: `field` names the posted field (`rule-2-values`, `rule-2-weight-on`, or
    `rule-2-split` for the split as a whole), `row` its index."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field, self.detail = field, detail
        self.row = int(field.split("-")[1])


@dataclass(frozen=True, slots=True)
class Row:
    attribute: str = ""
    operator: str = "in"
    values: str = ""
    serve: str = ""
    # A split's weights as typed, by variant name: {"on": "30", "off": "70"}.
    weights: Mapping[str, str] = dataclasses.field(default_factory=dict)


def rows_of(rules: list[dict] | None) -> list[Row] | None:
    """The rules as builder rows, or None when one of them does not fit a row (the JSON box edits those)."""
    rows = []
    for rule in rules or []:
        if set(rule) - {"conditions", "variant", "split"} or len(rule.get("conditions") or []) != 1:
            return None
        condition = rule["conditions"][0]
        if set(condition) - {"attribute", "operator", "value", "values"}:
            return None
        if "values" in condition:
            values = ", ".join(_text(v) for v in condition["values"])
        else:
            values = _text(condition["value"]) if "value" in condition else ""
        weights = {str(name): _text(weight) for name, weight in (rule.get("split") or {}).items()}
        rows.append(
            Row(
                attribute=str(condition.get("attribute", "")),
                operator=str(condition.get("operator", "")),
                values=values,
                serve="split" if "split" in rule else str(rule.get("variant", "")),
                weights=weights,
            )
        )
    return rows


def saved_rows(data: Mapping[str, Any]) -> list[int]:
    """The indexes of the posted rows that become rules, in order: rules[i] comes from row saved_rows(data)[i]."""
    return [
        n
        for n in range(MAX_ROWS)
        if str(data.get(f"rule-{n}-attribute") or "").strip() and not data.get(f"rule-{n}-remove")
    ]


def rules_from_rows(data: Mapping[str, Any]) -> list[dict]:
    """Rules from the posted rows, in their order; a row without an attribute, or marked removed, is skipped."""
    rules = []
    for n in saved_rows(data):
        prefix = f"rule-{n}-"
        attribute = str(data.get(prefix + "attribute") or "").strip()
        operator = str(data.get(prefix + "operator") or "")
        if operator not in OPERATORS:
            raise RowError(prefix + "operator", f"Rule {n + 1}: choose an operator.")
        condition: dict[str, Any] = {"attribute": attribute, "operator": operator}
        text = str(data.get(prefix + "values") or "")
        items = [item.strip() for item in text.split(",") if item.strip()]
        if operator in ONE_VALUE:
            if len(items) != 1:
                raise RowError(prefix + "values", f"Rule {n + 1}: {operator} compares with one value.")
            condition["value"] = _number(items[0], prefix + "values", n) if operator in NUMERIC else items[0]
        elif operator not in NO_VALUE:
            if not items:
                raise RowError(prefix + "values", f"Rule {n + 1}: give the values, separated by commas.")
            condition["values"] = items
        rule: dict[str, Any] = {"conditions": [condition]}
        serve = str(data.get(prefix + "serve") or "")
        if serve == "split":
            rule["split"] = _weights(data, prefix, n)
        elif serve:
            rule["variant"] = serve
        else:
            raise RowError(prefix + "serve", f"Rule {n + 1}: choose what it serves.")
        rules.append(rule)
    return rules


def weights_typed(data: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """A row's split as typed: variant name → its number box's text, in the order posted."""
    start = prefix + "weight-"
    return {key[len(start) :]: str(data.get(key) or "").strip() for key in data if key.startswith(start)}


def _weights(data: Mapping[str, Any], prefix: str, n: int) -> dict[str, int]:
    """The engine's checks on a split (flags/engine/validation.py), said of the row's number boxes."""
    weights: dict[str, int] = {}
    for name, text in weights_typed(data, prefix).items():
        if not text:
            continue  # a blank box: the variant is not in the split
        try:
            weight = int(text)
        except ValueError:
            weight = -1
        if not 0 <= weight <= 100:
            raise RowError(
                f"{prefix}weight-{name}",
                f"Rule {n + 1}: the weight of {name!r} is a whole number from 0 to 100, not {text[:20]!r}.",
            )
        weights[name] = weight
    if sum(weights.values()) != 100:
        raise RowError(
            prefix + "split",
            f"Rule {n + 1}: the split's percentages add up to {sum(weights.values())}, not 100.",
        )
    return weights


def _number(text: str, field: str, n: int) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise RowError(field, f"Rule {n + 1}: {text!r} is not a number.") from None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
