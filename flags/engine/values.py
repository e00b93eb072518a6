"""JSON value helpers: equality, types, SemVer and instants, as the operators compare them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

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
