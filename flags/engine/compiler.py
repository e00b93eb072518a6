"""Parsing a validated config into the model and compiling each flag into one evaluation closure."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import mmh3
import orjson

from flags.engine.conditions import Matcher, _all_of, _compile_condition
from flags.engine.model import (
    _EMPTY,
    DEFAULT_BUCKET_BY,
    PERCENT_SEED,
    VARIANT_SEED,
    Condition,
    ErrorCode,
    Flag,
    Prerequisite,
    Reason,
    Resolution,
    Rollout,
    Rule,
    Snapshot,
    SnapshotInvalid,
    _weights_table,
)
from flags.engine.validation import validate_snapshot_config

# --------------------------------------------------------------------------- parsing


def _parse_conditions(raw: list[dict]) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            attribute=c["attribute"],
            operator=c["operator"],
            value=c.get("value"),
            values=tuple(c.get("values", ())),
        )
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
        rollout=None
        if rollout is None
        else Rollout(percentage=rollout["percentage"], weights=MappingProxyType(dict(rollout["weights"]))),
        prerequisites=tuple(
            Prerequisite(flag=p["flag"], variant=p["variant"]) for p in raw.get("prerequisites", [])
        ),
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
        value=flag.variants[variant],
        variant=variant,
        reason=Reason.ERROR,
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
            matcher = _all_of(tuple(_compile_condition(c) for c in conditions))  # type: ignore[assignment]
        if rule.variant is not None:
            rules.append((matcher, _resolution(flag, rule.variant, Reason.TARGETING_MATCH, rule=index), None))
        else:
            bucket_by = rule.bucket_by or flag.bucket_by
            assert rule.split is not None  # validation: a rule serves a variant or a split
            split = _compile_split(
                flag, rule.split, bucket_by, Reason.SPLIT, _missing_key(flag, bucket_by), rule=index
            )
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
            table = _weights_table(
                weights, {n: _resolution(flag, n, Reason.SPLIT, rollout=True) for n in weights}
            )

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
                return resolution if resolution is not None else split(ctx)  # type: ignore[misc]
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
    index = path[6 : path.find("]")]
    return int(index) if index.isdigit() else None


def _parse_error(key: str, details: str) -> Callable[[Mapping[str, Any]], Resolution]:
    failed = Resolution(
        value=None,
        variant=None,
        reason=Reason.ERROR,
        error_code=ErrorCode.PARSE_ERROR,
        error_details=f"flag {key!r} is invalid: {details}",
    )
    return lambda ctx: failed
