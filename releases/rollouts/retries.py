"""A rollback's hosts it did not reach: tried again when their agent is back, or left for a person, each
audited with why."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from django.utils import timezone

from environments.models import Target
from releases import audit
from releases.models import Rollout, RolloutStep
from releases.permissions import Actor
from releases.planning import Progress, Retry, defer, record
from releases.rollouts.dispatching import dispatch_steps
from releases.rollouts.liveness import AGENT_OFFLINE


def is_reached(step: RolloutStep) -> bool:
    return step.status == RolloutStep.Status.SUCCEEDED and bool((step.health or {}).get("ok"))


def _why(step: RolloutStep | None) -> str:
    if step is None:
        return "not tried yet"
    detail = (step.health or {}).get("detail") or ""
    return detail or ("deploy failed" if step.status == RolloutStep.Status.FAILED else "unhealthy")


def retry_hosts(rollout: Rollout, the_plan, action: Retry, progress: Progress) -> tuple[Progress, bool]:
    """A rollback's hosts not reached yet. Those reached since count; a host that failed because its agent was
    offline is tried again as soon as its agent is back; one that failed while reachable waits for a person
    (resume tries it again, cancel stops the rollback where it is). When only such hosts are left, the rollout
    pauses, saying which and why. Returns (progress, stop): stop is False when another look may move further."""
    wanted = set(action.targets)
    newest: dict[str, RolloutStep] = {}
    for step in (
        rollout.steps.filter(action="deploy", target_name__in=wanted)
        .order_by("index")
        .only("pk", "target_name", "status", "health", "wave")
    ):
        newest[step.target_name] = step
    reached = {n for n, s in newest.items() if is_reached(s)}
    if reached:
        progress = record(progress, Retry(targets=tuple(sorted(reached))))
        _audit(
            rollout, "rollout.hosts_reached", reached, f"reached on a later try: {', '.join(sorted(reached))}"
        )
        return progress, False  # look again: maybe nothing is left
    environment = rollout.release.environment
    limit = timezone.now() - timedelta(seconds=environment.heartbeat_timeout_seconds)
    if environment.driver in ("command", "webhook"):
        online = wanted  # a worker performs these: nobody to wait for
    else:
        online = set(
            Target.objects.filter(
                environment=environment, name__in=wanted, status=Target.Status.ONLINE, last_seen__gte=limit
            ).values_list("name", flat=True)
        )
    to_dispatch: set[str] = set()
    hold: dict[str, RolloutStep | None] = {}
    for name in sorted(wanted):
        last = newest.get(name)
        agent_was_away = last is None or (last.health or {}).get("detail") == AGENT_OFFLINE
        if name in progress.retry or (agent_was_away and name not in progress.held):
            if name in online:
                to_dispatch.add(name)
        elif name not in progress.held:
            hold[name] = last
    if hold:
        progress = defer(progress, (), hold=set(hold))
    if to_dispatch:
        progress = dataclasses.replace(progress, retry=progress.retry - to_dispatch)
        wave_of = {t: w.index for w in the_plan.waves for t in w.targets}
        dispatch_steps(
            rollout,
            "deploy",
            rollout.release.artifact.version,
            {name: wave_of.get(name) for name in to_dispatch},
        )
        _audit(
            rollout, "rollout.hosts_retried", to_dispatch, f"tried again: {', '.join(sorted(to_dispatch))}"
        )
        return progress, True
    if hold or (wanted <= progress.held and rollout.status == Rollout.Status.RUNNING):
        needing = {name: newest.get(name) for name in sorted(progress.held & wanted)}
        away = sorted(wanted - progress.held)
        note = "; ".join(f"{name}: {_why(last)}" for name, last in needing.items())
        note += (
            f" — the rollback keeps the hosts it reached on {rollout.release.artifact.version} and puts none back; "
            "Resume tries these again, Cancel stops here"
        )
        if away:
            note += f"; still waiting for the agents of {', '.join(away)}"
        else:
            rollout.status = Rollout.Status.PAUSED
        _audit(rollout, "rollout.needs_attention", set(needing), note)
    return progress, True


def audit_not_reached(rollout: Rollout, steps: dict[str, RolloutStep]) -> None:
    reasons = "; ".join(f"{name}: {_why(step)}" for name, step in sorted(steps.items()))
    _audit(
        rollout,
        "rollout.hosts_not_reached",
        set(steps),
        f"{reasons} — the rollback goes on without them (nothing is put back on "
        f"{_from_version(rollout)}); a host whose agent was offline is retried when it is back",
    )


def _from_version(rollout: Rollout) -> str:
    previous = rollout.release.previous_artifact
    return previous.version if previous else "the version before"


def _audit(rollout: Rollout, kind: str, targets: set[str], note: str) -> None:
    release = rollout.release
    audit.record(
        Actor.system(),
        kind,
        release,
        application=release.application,
        after={"targets": sorted(targets)},
        note=note[:1000],
    )
