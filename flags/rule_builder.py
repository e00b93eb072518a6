"""The panel's rule builder: rules as rows of fields (attribute, operator, values, what to serve) and back.

Pure: no Django. The rows post as `rule-<n>-attribute`, `-operator`, `-values`, `-serve` (a variant name, or
`split`) and `-split` (`on=30, off=70`); `rules_from_rows` turns them into the rules JSON the engine validates, so
the builder, the JSON box and the API meet the same checks. A rule the builder cannot show as one row (several
conditions, a segment, targeting keys, `bucket_by`) keeps the panel in JSON mode for that environment.
"""

from __future__ import annotations

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
    """A row that cannot become a rule: `field` names the posted field (`rule-2-split`)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field, self.detail = field, detail


@dataclass(frozen=True, slots=True)
class Row:
    attribute: str = ""
    operator: str = "in"
    values: str = ""
    serve: str = ""
    split: str = ""


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
        split = ", ".join(f"{name}={weight}" for name, weight in (rule.get("split") or {}).items())
        rows.append(
            Row(
                attribute=str(condition.get("attribute", "")),
                operator=str(condition.get("operator", "")),
                values=values,
                serve="split" if "split" in rule else str(rule.get("variant", "")),
                split=split,
            )
        )
    return rows


def rules_from_rows(data: Mapping[str, Any]) -> list[dict]:
    """Rules from the posted rows, in their order; a row without an attribute, or marked removed, is skipped."""
    rules = []
    for n in range(MAX_ROWS):
        prefix = f"rule-{n}-"
        attribute = str(data.get(prefix + "attribute") or "").strip()
        if not attribute or data.get(prefix + "remove"):
            continue
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
            rule["split"] = _weights(str(data.get(prefix + "split") or ""), prefix + "split", n)
        elif serve:
            rule["variant"] = serve
        else:
            raise RowError(prefix + "serve", f"Rule {n + 1}: choose what it serves.")
        rules.append(rule)
    return rules


def _weights(text: str, field: str, n: int) -> dict[str, int]:
    weights: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, weight = part.partition("=")
        try:
            weights[name.strip()] = int(weight)
        except ValueError:
            raise RowError(
                field, f"Rule {n + 1}: write the split as variant=percent, e.g. on=30, off=70."
            ) from None
    if sum(weights.values()) != 100:
        raise RowError(
            field, f"Rule {n + 1}: the split's percentages add up to {sum(weights.values())}, not 100."
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
