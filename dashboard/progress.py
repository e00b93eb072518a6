"""The rollout summary the release page shows above its steps: how many targets are there yet, and each step's time.

Built from a rollout loaded by `selectors.rollout_page` (steps prefetched, release and artifact joined): no queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from releases.models import Rollout, RolloutStep
from releases.planning import PlanError, StrategyError
from releases.rollouts.common import is_rollback, plan_of

DONE = RolloutStep.Status.SUCCEEDED
# Reverting starts from these: a pending deploy no agent has claimed touched nothing.
TOUCHED = (RolloutStep.Status.RUNNING, RolloutStep.Status.SUCCEEDED, RolloutStep.Status.FAILED)
REVERT_STATUSES = (Rollout.Status.REVERTING, Rollout.Status.REVERTED)
FINISHED = (
    Rollout.Status.SUCCEEDED,
    Rollout.Status.FAILED,
    Rollout.Status.REVERTED,
    Rollout.Status.CANCELLED,
)


@dataclass(frozen=True, slots=True)
class StepRow:
    step: RolloutStep
    duration: timedelta | None  # finished_at − started_at, once both are known

    @property
    def wave_number(self) -> int | None:
        """Waves as people count them, from 1, as the API shows them."""
        return self.step.wave_number


@dataclass(frozen=True, slots=True)
class TargetTile:
    name: str
    state: str  # waiting, queued, deploying, deployed, healthy, failed, reverting, reverted


@dataclass(frozen=True, slots=True)
class PlannedWave:
    number: int  # from 1, as people count waves
    tiles: tuple[TargetTile, ...]
    current: bool


@dataclass(frozen=True, slots=True)
class NotReached:
    """A rollback's host it has not reached yet, why, and what it waits for."""

    name: str
    why: str
    waits_for: str  # "agent": retried when its agent is back; "person": resume retries it, cancel stops


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutProgress:
    done: int
    total: int
    version: str | None  # what `done` targets run: the new version, or the one put back when reverting
    reverting: bool
    wave: int | None  # the newest wave with deploys, counted from 1
    nothing_to_put_back: bool = False
    rows: tuple[StepRow, ...] = ()
    waves: tuple[PlannedWave, ...] = ()  # every target of the plan, those still to come too
    failures: tuple[StepRow, ...] = ()  # the failed steps, for the summary when a rollout fails
    not_reached: tuple[
        NotReached, ...
    ] = ()  # a rollback's hosts still to reach (it never reverts the others)
    rolled_back_from: str | None = None
    judging: RolloutStep | None = (
        None  # an analysis or post-deploy watch running now: its verdict is not stored yet
    )

    @property
    def max(self) -> int:
        """A <progress> element's max must be positive."""
        return max(self.total, 1)

    @property
    def text(self) -> str:
        if self.reverting:
            if not self.total:
                return "No target was touched: nothing to put back"
            if self.nothing_to_put_back:
                return f"{_targets(self.total)} touched · no earlier version to put back"
            back_on = f"back on {self.version}" if self.version else "put back"
            return f"{self.done} of {_targets(self.total, 'touched target')} {back_on}"
        text = f"{self.done} of {_targets(self.total)} on {self.version}"
        if self.not_reached:
            text += f" · {len(self.not_reached)} not reached yet"
        return f"{text} · wave {self.wave}" if self.wave is not None else text


def _targets(count: int, noun: str = "target") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


JUDGING = ("analysis", "watch")  # the gates whose verdict is an analysis run (releases/rollouts/gates.py)


def rollout_progress(rollout: Rollout) -> RolloutProgress:
    """Deploying: targets whose deploy succeeded out of the rollout's targets. Reverting: targets put back out of
    those touched."""
    steps = list(rollout.steps.all())
    rows = tuple(
        StepRow(s, s.finished_at - s.started_at if s.started_at and s.finished_at else None) for s in steps
    )
    deploys = [s for s in steps if s.action == "deploy"]
    reverts = [s for s in steps if s.action == "revert"]
    numbers = [s.wave for s in deploys if s.wave is not None]
    wave = max(numbers) + 1 if numbers else None
    waves = planned_waves(rollout, steps)
    failures = tuple(r for r in rows if r.step.status == RolloutStep.Status.FAILED)
    if rollout.status in REVERT_STATUSES or reverts:
        touched = _names(s for s in deploys if s.status in TOUCHED) | _names(reverts)
        version = reverts[-1].version if reverts else None
        return RolloutProgress(
            done=len(_names(s for s in reverts if s.status == DONE)),
            total=len(touched),
            version=version or None,
            reverting=True,
            wave=wave,
            rows=rows,
            waves=waves,
            failures=failures,
            nothing_to_put_back=rollout.release.previous_artifact_id is None,
        )
    targets = set(rollout.targets)
    done = _names(s for s in deploys if s.status == DONE) & targets
    previous = rollout.release.previous_artifact
    judging = [s for s in steps if s.action in JUDGING and s.status == RolloutStep.Status.RUNNING]
    return RolloutProgress(
        judging=judging[-1] if judging else None,
        not_reached=not_reached(rollout, deploys),
        rolled_back_from=previous.version if previous and is_rollback(rollout) else None,
        done=len(done),
        total=len(targets),
        version=rollout.release.artifact.version,
        reverting=False,
        wave=wave,
        rows=rows,
        waves=waves,
        failures=failures,
    )


def not_reached(rollout: Rollout, deploys: list[RolloutStep]) -> tuple[NotReached, ...]:
    """From the rollback's progress (`waiting`, `held`) and each host's newest deploy: no queries."""
    waiting = rollout.progress.get("waiting") or ()
    if not waiting or rollout.status in FINISHED:  # a stopped rollback waits for nothing: drift shows instead
        return ()
    held = set(rollout.progress.get("held") or ())
    newest = {s.target_name: s for s in deploys}
    rows = []
    for name in waiting:
        step = newest.get(name)
        if step is not None and step.status in (RolloutStep.Status.PENDING, RolloutStep.Status.RUNNING):
            why = "being tried again"
        else:
            why = ((step.health or {}).get("detail") if step else "") or "deploy failed"
        rows.append(NotReached(name, why, "person" if name in held else "agent"))
    return tuple(rows)


def _names(steps: Iterable[RolloutStep]) -> set[str]:
    return {s.target_name for s in steps}


def planned_waves(rollout: Rollout, steps: list[RolloutStep]) -> tuple[PlannedWave, ...]:
    """The plan's waves, each target with what its newest step says: hosts not yet reached show as waiting."""
    try:
        plan = plan_of(rollout)
    except (
        PlanError,
        StrategyError,
        TypeError,
        ValueError,
    ):  # a plan the engine could not make shows no waves
        return ()
    states = {name: _state(target_steps) for name, target_steps in _by_target(steps).items()}
    started = {s.wave for s in steps if s.action in ("deploy", "revert") and s.wave is not None}
    current = max(started) if started and rollout.status not in FINISHED else None
    return tuple(
        PlannedWave(
            number=w.index + 1,
            current=w.index == current,
            tiles=tuple(TargetTile(name, states.get(name, "waiting")) for name in w.targets),
        )
        for w in plan.waves
        if w.targets
    )


def _by_target(steps: list[RolloutStep]) -> dict[str, list[RolloutStep]]:
    grouped: dict[str, list[RolloutStep]] = {}
    for step in steps:
        grouped.setdefault(step.target_name, []).append(step)
    return grouped


def _state(steps: list[RolloutStep]) -> str:
    reverts = [s for s in steps if s.action == "revert"]
    if reverts:
        return "reverted" if reverts[-1].status == DONE else "reverting"
    deploys = [s for s in steps if s.action == "deploy"]
    if not deploys:
        return "waiting"
    deploy = deploys[-1]
    checks = [s for s in steps if s.action == "health" and s.index > deploy.index]
    if deploy.status == RolloutStep.Status.FAILED or (
        checks and checks[-1].status == RolloutStep.Status.FAILED
    ):
        return "failed"
    if deploy.status != DONE:
        return "queued" if deploy.status == RolloutStep.Status.PENDING else "deploying"
    healthy = (checks and checks[-1].status == DONE) or (deploy.health or {}).get("ok")
    return "healthy" if healthy else "deployed"
