"""Evaluating compiled flags against a context: no allocation on the common paths, never an exception."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flags.engine.model import _EMPTY, ErrorCode, Flag, Reason, Resolution, Snapshot

# --------------------------------------------------------------------------- evaluating


def _error(flag: Flag | None, code: str, details: str) -> Resolution:
    if flag is None:
        return Resolution(
            value=None, variant=None, reason=Reason.ERROR, error_code=code, error_details=details
        )
    return Resolution(
        value=flag.variants[flag.default_variant],
        variant=flag.default_variant,
        reason=Reason.ERROR,
        error_code=code,
        error_details=details,
        metadata=flag.metadata or _EMPTY,
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
            return _error(
                flag, ErrorCode.TYPE_MISMATCH, f"flag {flag_key!r} is {flag.type}, not {expected_type}"
            )
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
    """Resolve every flag in the snapshot (OFREP bulk evaluation): what `evaluate` answers for each, calling the
    compiled evaluators directly (a flag whose evaluator raises gets `evaluate`'s error resolution)."""
    if context is None:
        context = _EMPTY
    results: dict[str, Resolution] = {}
    for key, evaluator in snapshot._evaluators.items():
        try:
            results[key] = evaluator(context)
        except Exception:
            results[key] = evaluate(snapshot, key, context)
    return results
