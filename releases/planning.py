"""Rollout planning: which targets go in which wave, and what to do next.

Pure: no Django, no I/O. The rollout reconciler converts its rows into a `Plan` and a
`Progress`, asks `next_action`, performs the action through a driver, records the outcome
(`record`) and asks again. The same `Progress` always yields the same action, so a task
that dies half-way and runs again continues where it was.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

__all__ = [
    "Action",
    "Analysis",
    "AnalysisSpec",
    "BlueGreen",
    "Canary",
    "Cautious",
    "Deploy",
    "Done",
    "Gate",
    "HealthCheck",
    "ManualGate",
    "Pause",
    "Plan",
    "PlanError",
    "PreDeploy",
    "Progress",
    "Revert",
    "Rollback",
    "Retry",
    "Rolling",
    "Smoke",
    "Strategy",
    "StrategyError",
    "Switch",
    "Watch",
    "Wave",
    "current_wave",
    "defer",
    "next_action",
    "parse_strategy",
    "plan",
    "plan_revert",
    "record",
    "slots",
    "strategy_to_dict",
]


class StrategyError(ValueError):
    """A strategy's JSON (or constructor arguments) is invalid; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PlanError(ValueError):
    """The targets can't be planned with this strategy (duplicates, too few for blue/green)."""


# --- strategies -------------------------------------------------------------------------


def _positive_int(name: str, value: object) -> None:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise StrategyError(name, "must be a positive integer")


def _percent(name: str, value: object) -> None:
    if not _is_int(value) or not 1 <= value <= 100:  # type: ignore[operator]
        raise StrategyError(name, "must be an integer percentage from 1 to 100")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_ANALYSIS_SECONDS = 24 * 3600
MAX_ANALYSIS_INTERVAL = 3600  # as a template's interval_seconds
MAX_ANALYSIS_COUNT = 1000  # as a template's count
_TEMPLATE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisSpec:
    """Which analysis template judges the new version at a gate, and for how long it measures.

    `interval_seconds` and `count`, when given, replace the template's (one measurement every interval, `count`
    of them); `duration_seconds` None: `count × interval_seconds`. Whether the template exists is the caller's
    question (it needs the database); here only its name's shape is checked.
    """

    template: str
    duration_seconds: int | None = None
    interval_seconds: int | None = None
    count: int | None = None
    field: str = dataclasses.field(
        default="analysis", compare=False, repr=False
    )  # errors name it: analysis, watch

    def __post_init__(self) -> None:
        if (
            not isinstance(self.template, str)
            or not 1 <= len(self.template) <= 63
            or not set(self.template) <= _TEMPLATE_CHARS
            or self.template[0] in "_-"
        ):
            raise StrategyError(f"{self.field}.template", "must name an analysis template of the application")
        if self.duration_seconds is not None and (
            not _is_int(self.duration_seconds) or not 1 <= self.duration_seconds <= MAX_ANALYSIS_SECONDS
        ):
            raise StrategyError(
                f"{self.field}.duration_seconds",
                f"must be a whole number of seconds from 1 to {MAX_ANALYSIS_SECONDS}",
            )
        if self.interval_seconds is not None and (
            not _is_int(self.interval_seconds) or not 1 <= self.interval_seconds <= MAX_ANALYSIS_INTERVAL
        ):
            raise StrategyError(
                f"{self.field}.interval_seconds",
                f"must be a whole number of seconds from 1 to {MAX_ANALYSIS_INTERVAL}",
            )
        if self.count is not None and (not _is_int(self.count) or not 1 <= self.count <= MAX_ANALYSIS_COUNT):
            raise StrategyError(
                f"{self.field}.count",
                f"must be a whole number of measurements from 1 to {MAX_ANALYSIS_COUNT}",
            )
        if (
            self.interval_seconds is not None
            and self.count is not None
            and self.interval_seconds * self.count > MAX_ANALYSIS_SECONDS
        ):
            raise StrategyError(f"{self.field}.count", "count × interval_seconds is at most 24 hours")


_SPEC_KEYS = ("template", "duration_seconds", "interval_seconds", "count")


def _analysis_spec(field: str, value: object) -> AnalysisSpec:
    if not isinstance(value, Mapping):
        raise StrategyError(
            field, 'must be an object, e.g. {"template": "checkout", "duration_seconds": 300}'
        )
    unknown = sorted(set(value) - set(_SPEC_KEYS))
    if unknown:
        raise StrategyError(
            f"{field}.{unknown[0]}",
            "unknown key; an analysis has template, duration_seconds, interval_seconds and count",
        )
    if "template" not in value:
        raise StrategyError(f"{field}.template", "required")
    return AnalysisSpec(
        template=value["template"],
        duration_seconds=value.get("duration_seconds"),
        interval_seconds=value.get("interval_seconds"),
        count=value.get("count"),
        field=field,
    )


def _spec_dict(spec: AnalysisSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"template": spec.template}
    for key in _SPEC_KEYS[1:]:
        if getattr(spec, key) is not None:
            out[key] = getattr(spec, key)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Cautious:
    """Waves of 1, 2, 4, 8 … targets: slow while it's risky, fast once it has proved itself.

    `analysis` judges the new version after each wave but the last; `watch` after the last.
    """

    kind: ClassVar[str] = "cautious"
    analysis: AnalysisSpec | None = None
    watch: AnalysisSpec | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rolling:
    """Fixed batches; at most `max_unavailable` targets are between deploy and healthy at once."""

    kind: ClassVar[str] = "rolling"
    batch_size: int | None = None
    batch_percent: int | None = None
    max_unavailable: int = 1
    analysis: AnalysisSpec | None = None
    watch: AnalysisSpec | None = None

    def __post_init__(self) -> None:
        if (self.batch_size is None) == (self.batch_percent is None):
            raise StrategyError("batch_size", "give exactly one of batch_size and batch_percent")
        if self.batch_size is not None:
            _positive_int("batch_size", self.batch_size)
        if self.batch_percent is not None:
            _percent("batch_percent", self.batch_percent)
        _positive_int("max_unavailable", self.max_unavailable)

    def batch_for(self, count: int) -> int:
        if self.batch_size is not None:
            return self.batch_size
        assert self.batch_percent is not None
        return max(1, count * self.batch_percent // 100)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlueGreen:
    """Targets split into two slots; deploy the idle one, check it, then switch traffic.

    The first half of the targets (rounded up) is "blue", the rest "green"; `live` names
    the slot serving traffic now, which is left alone so switching back is instant.
    """

    kind: ClassVar[str] = "blue_green"
    live: Literal["blue", "green"] = "blue"
    # Switch back: the idle slot still runs the wanted version (the one before the last switch), so the plan
    # only moves traffic back to it: no deploys, no smoke tests — the instant way back.
    switch_back: bool = False
    watch: AnalysisSpec | None = None  # after the switch

    def __post_init__(self) -> None:
        if self.live not in ("blue", "green"):
            raise StrategyError("live", 'must be "blue" or "green"')
        if not isinstance(self.switch_back, bool):
            raise StrategyError("switch_back", "must be true or false")

    @property
    def idle(self) -> Literal["blue", "green"]:
        return "green" if self.live == "blue" else "blue"


def uses_blue_green(strategy: Mapping[str, Any] | None, target_count: int) -> bool:
    """Blue/green needs two slots: with fewer than two targets the environment deploys as usual."""
    return (strategy or {}).get("kind") == "blue_green" and target_count >= 2


def slots(targets: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Blue/green's slots: the first half of the targets (rounded up) is blue, the rest green."""
    half = math.ceil(len(targets) / 2)
    return {"blue": tuple(targets[:half]), "green": tuple(targets[half:])}


@dataclass(frozen=True, slots=True, kw_only=True)
class Canary:
    """Traffic steps in percent; after each step but the last: pause, then analysis.

    Without `analysis` the analysis gate asks the `SLIPWAY_CANARY_ANALYSIS` hook; `watch` runs after the last step.
    """

    kind: ClassVar[str] = "canary"
    steps: tuple[int, ...] = (5, 25, 50, 100)
    pause_seconds: int = 60
    analysis: AnalysisSpec | None = None
    watch: AnalysisSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.steps, tuple) or not self.steps:
            raise StrategyError("steps", "must be a non-empty list of percentages")
        for step in self.steps:
            _percent("steps", step)
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise StrategyError("steps", "must be strictly increasing")
        if self.steps[-1] != 100:
            raise StrategyError("steps", "must end in 100")
        if not _is_int(self.pause_seconds) or self.pause_seconds < 0:
            raise StrategyError("pause_seconds", "must be a non-negative integer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback:
    """The fast path back: every target at once (or in batches), health only, no pauses."""

    kind: ClassVar[str] = "rollback"
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None:
            _positive_int("batch_size", self.batch_size)


type Strategy = Cautious | Rolling | BlueGreen | Canary | Rollback

_FIELDS: dict[str, tuple[type, dict[str, Any]]] = {
    # kind -> (class, {key: expected JSON type})
    "cautious": (Cautious, {"analysis": dict, "watch": dict}),
    "rolling": (
        Rolling,
        {"batch_size": int, "batch_percent": int, "max_unavailable": int, "analysis": dict, "watch": dict},
    ),
    "blue_green": (BlueGreen, {"live": str, "switch_back": bool, "watch": dict}),
    "canary": (Canary, {"steps": list, "pause_seconds": int, "analysis": dict, "watch": dict}),
    "rollback": (Rollback, {"batch_size": int}),
}


# Keys Slipway itself sets on a rollout's strategy: the live slot is the environment's `live_slot`.
INTERNAL_STRATEGY_KEYS = ("live", "switch_back")


def requested_strategy(data: Any) -> dict[str, Any]:
    """A rollout strategy as people give it (an environment's or a release's), checked; `{}` or None mean "the
    default" (returned as `{}`). Slipway's own rollback kind and the keys it sets itself are refused, as is any shape
    `parse_strategy` refuses; raises StrategyError, whose message (`field: …`) names the strategy's culprit."""
    if data in ({}, None):
        return {}
    if not isinstance(data, Mapping):
        raise StrategyError("strategy", 'An object, e.g. {"kind": "cautious"}.')
    if data.get("kind") == "rollback":
        raise StrategyError("kind", "rollback is Slipway's own fast path; ask for a rollback instead.")
    for key in INTERNAL_STRATEGY_KEYS:
        if key in data:
            raise StrategyError(key, "set by Slipway (the environment's live_slot), not here.")
    parse_strategy(data)
    return dict(data)


def parse_strategy(data: Mapping[str, Any]) -> Strategy:
    """Validate a strategy's JSON shape and build it; raises StrategyError naming the field."""
    if not isinstance(data, Mapping):
        raise StrategyError("kind", "strategy must be a JSON object")
    kind = data.get("kind")
    if kind not in _FIELDS:
        raise StrategyError("kind", f"unknown kind {kind!r}; expected one of {', '.join(_FIELDS)}")
    cls, fields = _FIELDS[kind]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "kind":
            continue
        if key not in fields:
            raise StrategyError(key, f"unknown key for {kind} strategy")
        if value is None and key in ("batch_size", "batch_percent", "analysis", "watch"):
            continue
        expected = fields[key]
        if expected is dict:
            kwargs[key] = _analysis_spec(key, value)
            continue
        if expected is int and not _is_int(value):
            raise StrategyError(key, "must be an integer")
        if expected is bool and not isinstance(value, bool):
            raise StrategyError(key, "must be true or false")
        if expected not in (int, bool) and not isinstance(value, expected):
            raise StrategyError(key, f"must be a {'list' if expected is list else 'string'}")
        if key == "steps":
            if not all(_is_int(step) for step in value):
                raise StrategyError("steps", "must be a list of integers")
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def strategy_to_dict(strategy: Strategy) -> dict[str, Any]:
    """The JSON shape `parse_strategy` reads, without defaults-only noise."""
    out: dict[str, Any] = {"kind": strategy.kind}
    match strategy:
        case Rolling():
            if strategy.batch_size is not None:
                out["batch_size"] = strategy.batch_size
            else:
                out["batch_percent"] = strategy.batch_percent
            out["max_unavailable"] = strategy.max_unavailable
        case BlueGreen():
            out["live"] = strategy.live
            if strategy.switch_back:
                out["switch_back"] = True
        case Canary():
            out["steps"] = list(strategy.steps)
            out["pause_seconds"] = strategy.pause_seconds
        case Rollback() if strategy.batch_size is not None:
            out["batch_size"] = strategy.batch_size
    for key in ("analysis", "watch"):
        spec = getattr(strategy, key, None)
        if spec is not None:
            out[key] = _spec_dict(spec)
    return out


# --- plan -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Wave:
    """Targets deployed together, and the gates that must pass before the next wave.

    Gates run in this order: health (always, per target), smoke, pause, analysis,
    manual gate, switch (blue/green only), watch (the last wave only).
    """

    index: int
    targets: tuple[str, ...]
    health: bool = True
    smoke: bool = False
    pause_seconds: int = 0
    analysis: bool = False
    manual_gate: bool = False
    traffic_percent: int | None = None
    switch: bool = False
    serving: tuple[str, ...] = ()  # blue/green: the slot the switch sends traffic to
    # At most this many targets between "deploy started" and "healthy" (rolling's max_unavailable).
    max_parallel: int | None = None
    analysis_spec: AnalysisSpec | None = None  # the template the analysis gate runs (None: canary's hook)
    watch: AnalysisSpec | None = None  # the post-deploy watch, after everything else of the last wave


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    strategy: Strategy
    targets: tuple[str, ...]  # every target given, in the order given
    waves: tuple[Wave, ...]
    pre_deploy: bool = False
    untouched: tuple[str, ...] = ()  # blue/green's live slot: never deployed by this plan

    @property
    def deploy_order(self) -> tuple[str, ...]:
        return tuple(t for wave in self.waves for t in wave.targets)


def plan(
    targets: Sequence[str],
    strategy: Strategy,
    *,
    pre_deploy: bool = False,
    smoke: bool = False,
    manual_gates: bool = False,
) -> Plan:
    """Split targets into waves for the strategy; target order is kept exactly as given.

    `smoke` adds a smoke test after every wave (blue/green always smoke-tests the idle slot);
    `manual_gates` asks a human before continuing past each wave but the last (blue/green:
    before the switch). A rollback ignores all three: health only, no pauses.
    """
    targets = tuple(targets)
    if len(set(targets)) != len(targets):
        duplicates = sorted({t for t in targets if targets.count(t) > 1})
        raise PlanError(f"duplicate targets: {', '.join(duplicates)}")
    untouched: tuple[str, ...] = ()
    match strategy:
        case Cautious():
            sizes = _doubling(len(targets))
            waves = _waves(targets, sizes, smoke=smoke, manual_gates=manual_gates, analysis=strategy.analysis)
        case Rolling():
            batch = strategy.batch_for(len(targets))
            waves = _waves(
                targets,
                _chunks(len(targets), batch),
                smoke=smoke,
                manual_gates=manual_gates,
                max_parallel=min(strategy.max_unavailable, batch),
                analysis=strategy.analysis,
            )
        case BlueGreen():
            if len(targets) < 2:
                raise PlanError("blue/green needs at least two targets, one per slot")
            by_slot = slots(targets)
            idle, untouched = by_slot[strategy.idle], by_slot[strategy.live]
            if strategy.switch_back:
                waves = (Wave(index=0, targets=(), smoke=False, switch=True, serving=idle),)
                pre_deploy, untouched = False, targets
            else:
                waves = (
                    Wave(
                        index=0, targets=idle, smoke=True, manual_gate=manual_gates, switch=True, serving=idle
                    ),
                )
        case Canary():
            waves = _canary_waves(targets, strategy, smoke=smoke, manual_gates=manual_gates)
        case Rollback():
            batch = strategy.batch_size or max(len(targets), 1)
            waves = _waves(targets, _chunks(len(targets), batch), smoke=False, manual_gates=False)
            pre_deploy = False
        case _:
            raise TypeError(f"not a strategy: {strategy!r}")
    watch = getattr(strategy, "watch", None)
    if watch is not None and waves and not (isinstance(strategy, BlueGreen) and strategy.switch_back):
        waves = (*waves[:-1], _with_watch(waves[-1], watch))
    return Plan(strategy=strategy, targets=targets, waves=waves, pre_deploy=pre_deploy, untouched=untouched)


def _with_watch(wave: Wave, watch: AnalysisSpec) -> Wave:
    values = {name: getattr(wave, name) for name in Wave.__dataclass_fields__}
    return Wave(**(values | {"watch": watch}))


def _doubling(count: int) -> list[int]:
    sizes, size = [], 1
    while count > 0:
        sizes.append(min(size, count))
        count -= size
        size *= 2
    return sizes


def _chunks(count: int, size: int) -> list[int]:
    return [min(size, count - start) for start in range(0, count, size)]


def _waves(
    targets: tuple[str, ...],
    sizes: Iterable[int],
    *,
    smoke: bool,
    manual_gates: bool,
    max_parallel: int | None = None,
    analysis: AnalysisSpec | None = None,
) -> tuple[Wave, ...]:
    sizes = list(sizes)
    waves, start = [], 0
    for index, size in enumerate(sizes):
        last = index == len(sizes) - 1
        waves.append(
            Wave(
                index=index,
                targets=targets[start : start + size],
                smoke=smoke,
                manual_gate=manual_gates and not last,
                max_parallel=max_parallel,
                analysis=analysis is not None and not last,
                analysis_spec=analysis if not last else None,
            )
        )
        start += size
    return tuple(waves)


def _canary_waves(
    targets: tuple[str, ...], strategy: Canary, *, smoke: bool, manual_gates: bool
) -> tuple[Wave, ...]:
    # Steps that add no target (few targets, small percentages) merge into the next step that
    # does: its traffic percentage is the largest one that target count really represents.
    count = len(targets)
    cumulative: dict[int, int] = {}  # target count -> highest step percent reaching it
    for pct in strategy.steps:
        cumulative[math.ceil(pct * count / 100)] = pct
    counts = [n for n in cumulative if n > 0]
    waves, start = [], 0
    for index, reach in enumerate(counts):
        last = index == len(counts) - 1
        waves.append(
            Wave(
                index=index,
                targets=targets[start:reach],
                smoke=smoke,
                pause_seconds=0 if last else strategy.pause_seconds,
                analysis=not last,
                manual_gate=manual_gates and not last,
                traffic_percent=cumulative[reach],
                analysis_spec=strategy.analysis if not last else None,
            )
        )
        start = reach
    return tuple(waves)


# --- progress and actions -----------------------------------------------------------------

type Gate = tuple[int, str]  # (wave index, gate name); pre-deploy is (-1, "pre_deploy")

PRE_DEPLOY_GATE: Gate = (-1, "pre_deploy")


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """What has happened so far; `record` returns the next one."""

    deployed: frozenset[str] = frozenset()  # deploy command succeeded
    healthy: frozenset[str] = frozenset()  # health check passed after deploy
    failed: frozenset[str] = frozenset()  # deploy or health failed: the rollout reverts
    gates: frozenset[Gate] = frozenset()  # wave gates passed, e.g. (2, "smoke")
    reverting: bool = False  # a gate failed or someone aborted
    reverted: frozenset[str] = frozenset()
    # A rollback never reverts: its targets not reached (deploy failed, unhealthy, agent offline) wait here while
    # the others go on, and are retried (`Retry`) — never put back on the version being rolled back from.
    waiting: frozenset[str] = frozenset()
    held: frozenset[str] = frozenset()  # of those, the ones waiting for a person (failed while reachable)
    retry: frozenset[str] = frozenset()  # held ones a person asked to try again (resume)

    @property
    def touched(self) -> frozenset[str]:
        return self.deployed | self.failed

    def abort(self) -> Progress:
        return _replace(self, reverting=True)


def _replace(progress: Progress, **changes: Any) -> Progress:
    values = {name: getattr(progress, name) for name in Progress.__dataclass_fields__}
    return Progress(**(values | changes))


@dataclass(frozen=True, slots=True, kw_only=True)
class PreDeploy:
    gate: ClassVar[Gate] = PRE_DEPLOY_GATE


@dataclass(frozen=True, slots=True, kw_only=True)
class Deploy:
    wave: int
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    wave: int
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _WaveGate:
    wave: int
    name: ClassVar[str]

    @property
    def gate(self) -> Gate:
        return (self.wave, self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Smoke(_WaveGate):
    name: ClassVar[str] = "smoke"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause(_WaveGate):
    name: ClassVar[str] = "pause"
    seconds: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis(_WaveGate):
    name: ClassVar[str] = "analysis"
    traffic_percent: int | None = None
    template: str | None = None  # None: the canary hook (SLIPWAY_CANARY_ANALYSIS) decides
    duration_seconds: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch(_WaveGate):
    """The post-deploy watch: after the last wave, judge the new version for a soak time."""

    name: ClassVar[str] = "watch"
    template: str
    duration_seconds: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualGate(_WaveGate):
    name: ClassVar[str] = "manual_gate"


@dataclass(frozen=True, slots=True, kw_only=True)
class Switch(_WaveGate):
    name: ClassVar[str] = "switch"
    targets: tuple[str, ...]  # the slot that starts serving


@dataclass(frozen=True, slots=True, kw_only=True)
class Revert:
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """A rollback's targets not reached yet: try them again when they can be (never revert the others)."""

    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    outcome: Literal["succeeded", "reverted"]


type Action = (
    PreDeploy
    | Deploy
    | HealthCheck
    | Smoke
    | Pause
    | Analysis
    | ManualGate
    | Switch
    | Watch
    | Revert
    | Retry
    | Done
)


def plan_revert(touched: Sequence[str]) -> tuple[str, ...]:
    """Targets to revert, most recently touched first, each once."""
    return tuple(dict.fromkeys(reversed(touched)))


def current_wave(plan: Plan, progress: Progress) -> int | None:
    """Index of the first wave not yet complete (None once every wave is)."""
    for wave in plan.waves:
        if _wave_step(wave, progress) is not None:
            return wave.index
    return None


def next_action(plan: Plan, progress: Progress) -> Action:
    """The one thing to do next. Pure and idempotent: same plan and progress, same action."""
    if progress.reverting or progress.failed & set(plan.targets):
        touched = [t for t in plan.deploy_order if t in progress.touched]
        pending = [t for t in touched if t not in progress.reverted]
        return Revert(targets=plan_revert(pending)) if pending else Done(outcome="reverted")
    if plan.pre_deploy and PRE_DEPLOY_GATE not in progress.gates:
        return PreDeploy()
    for wave in plan.waves:
        step = _wave_step(wave, progress)
        if step is not None:
            return step
    if progress.waiting:
        return Retry(targets=tuple(t for t in plan.deploy_order if t in progress.waiting))
    return Done(outcome="succeeded")


def _wave_step(wave: Wave, progress: Progress) -> Action | None:
    unverified = tuple(t for t in wave.targets if t in progress.deployed and t not in progress.healthy)
    if unverified:
        return HealthCheck(wave=wave.index, targets=unverified)
    pending = tuple(t for t in wave.targets if t not in progress.deployed and t not in progress.waiting)
    if pending:
        return Deploy(wave=wave.index, targets=pending[: wave.max_parallel or len(pending)])
    gates: list[Action] = []
    if wave.smoke:
        gates.append(Smoke(wave=wave.index))
    if wave.pause_seconds:
        gates.append(Pause(wave=wave.index, seconds=wave.pause_seconds))
    if wave.analysis:
        spec = wave.analysis_spec
        gates.append(
            Analysis(
                wave=wave.index,
                traffic_percent=wave.traffic_percent,
                template=spec.template if spec else None,
                duration_seconds=spec.duration_seconds if spec else None,
            )
        )
    if wave.manual_gate:
        gates.append(ManualGate(wave=wave.index))
    if wave.switch:
        gates.append(Switch(wave=wave.index, targets=wave.serving or wave.targets))
    if wave.watch is not None:
        gates.append(
            Watch(wave=wave.index, template=wave.watch.template, duration_seconds=wave.watch.duration_seconds)
        )
    for gate in gates:
        if gate.gate not in progress.gates:  # type: ignore[union-attr]
            return gate
    return None


def defer(progress: Progress, targets: Collection[str], *, hold: Collection[str] = ()) -> Progress:
    """A rollback goes on without `targets` (not reached): they wait for `Retry`; `hold` ones for a person."""
    return _replace(
        progress,
        waiting=progress.waiting | frozenset(targets),
        held=progress.held | frozenset(hold),
        retry=progress.retry - frozenset(hold),
    )


def record(progress: Progress, action: Action, *, ok: bool = True, failed: Collection[str] = ()) -> Progress:
    """Fold an action's outcome into progress.

    For Deploy / HealthCheck / Revert, `failed` lists the targets that failed (the rest
    succeeded); `ok=False` with no `failed` means all of them failed. For gates, `ok=False`
    starts the revert.
    """
    match action:
        case Deploy() | HealthCheck() | Revert():
            bad = frozenset(action.targets) if not ok and not failed else frozenset(failed)
            good = frozenset(action.targets) - bad
            if isinstance(action, Deploy):
                return _replace(progress, deployed=progress.deployed | good, failed=progress.failed | bad)
            if isinstance(action, HealthCheck):
                return _replace(progress, healthy=progress.healthy | good, failed=progress.failed | bad)
            # A target whose revert failed stays pending: the next tick tries it again.
            return _replace(progress, reverted=progress.reverted | good)
        case Retry():
            # Reached at last: deployed and healthy, no longer waiting; the rest keep waiting.
            bad = frozenset(action.targets) if not ok and not failed else frozenset(failed)
            good = frozenset(action.targets) - bad
            return _replace(
                progress,
                deployed=progress.deployed | good,
                healthy=progress.healthy | good,
                waiting=progress.waiting - good,
                held=progress.held - good,
                retry=progress.retry - good,
            )
        case PreDeploy() | Smoke() | Pause() | Analysis() | ManualGate() | Switch() | Watch():
            if not ok:
                return _replace(progress, reverting=True)
            return _replace(progress, gates=progress.gates | {action.gate})
        case Done():
            return progress
    raise TypeError(f"not an action: {action!r}")
