"""The engine's vocabulary: reasons, error codes, the compiled flag model and Unleash-compatible buckets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import mmh3

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


def _weights_table(
    weights: Mapping[str, int], resolutions: Mapping[str, Resolution]
) -> tuple[Resolution, ...]:
    table: list[Resolution] = []
    for name in sorted(weights):
        table.extend([resolutions[name]] * weights[name])
    return tuple(table)
