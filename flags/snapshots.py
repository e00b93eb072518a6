"""An environment's flags as the engine's config, compiled once per change and cached per process.

Evaluations never query the database: a request compares the environment's `flags_version` at most once a
second (one tiny query) and reuses the compiled snapshot while it is unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from environments.models import Environment
from flags.engine import Snapshot, compile_snapshot
from flags.models import Flag, FlagState, Segment

CHECK_EVERY = 1.0


def default_state(flag: Flag) -> dict[str, Any]:
    """A new flag is off everywhere; switched on with no rules it serves `on` (or its first variant)."""
    names = list(flag.variants)
    on = "on" if "on" in flag.variants else names[0]
    off = "off" if "off" in flag.variants else names[-1]
    return {
        "enabled": False,
        "off_variant": off,
        "default_variant": on,
        "rules": [],
        "rollout": None,
        "prerequisites": [],
    }


def state_dict(state: FlagState) -> dict[str, Any]:
    return {
        "enabled": state.enabled,
        "off_variant": state.off_variant,
        "default_variant": state.default_variant,
        "rules": state.rules,
        "rollout": state.rollout,
        "prerequisites": state.prerequisites,
    }


def flag_config(flag: Flag, state: dict[str, Any]) -> dict[str, Any]:
    config = {
        "key": flag.key,
        "type": flag.type,
        "variants": flag.variants,
        "enabled": state["enabled"],
        "off_variant": state["off_variant"],
        "default_variant": state["default_variant"],
        "rules": state["rules"] or [],
        "prerequisites": state["prerequisites"] or [],
    }
    if state.get("rollout"):
        config["rollout"] = state["rollout"]
    if flag.owner:
        config["metadata"] = {"owner": flag.owner}
    return config


def environment_config(
    environment: Environment, *, override: tuple[Flag, dict] | None = None, segments: dict | None = None
) -> dict[str, Any]:
    """The engine config for an environment; `override` swaps in a candidate state to validate before saving."""
    flags = list(Flag.objects.filter(application_id=environment.application_id, archived_at__isnull=True))
    states = {s.flag_id: state_dict(s) for s in FlagState.objects.filter(environment=environment)}
    configs = []
    for flag in flags:
        if override is not None and flag.pk == override[0].pk:
            configs.append(flag_config(override[0], override[1]))
        else:
            configs.append(flag_config(flag, states.get(flag.pk) or default_state(flag)))
    if segments is None:
        segments = {
            s.name: {"conditions": s.conditions}
            for s in Segment.objects.filter(application_id=environment.application_id)
        }
    return {"segments": segments, "flags": configs}


class SnapshotCache:
    """Per-process compiled snapshots keyed by environment, refreshed when `flags_version` moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[int, float, Snapshot]] = {}

    def get(self, environment_id: int) -> Snapshot:
        now = time.monotonic()
        entry = self._entries.get(environment_id)
        if entry is not None and now - entry[1] < CHECK_EVERY:
            return entry[2]
        version = (
            Environment.objects.filter(pk=environment_id).values_list("flags_version", flat=True).first()
        )
        if entry is not None and entry[0] == version:
            self._entries[environment_id] = (version, now, entry[2])
            return entry[2]
        with self._lock:
            environment = Environment.objects.get(pk=environment_id)
            snapshot = compile_snapshot(environment_config(environment), strict=False)
            self._entries[environment_id] = (environment.flags_version, now, snapshot)
            return snapshot

    def clear(self) -> None:
        self._entries.clear()


snapshots = SnapshotCache()
