"""Folding a wave's finished steps into the planner's `Progress`, or dispatching the steps still missing; while
reverting, what finished meanwhile is folded too (so it is put back) and what never started is skipped."""

from __future__ import annotations

import logging

from django.utils import timezone

from releases.models import Rollout, RolloutStep
from releases.planning import Deploy, HealthCheck, Progress, Revert, defer, record
from releases.rollouts.common import OPEN_STEP, is_rollback
from releases.rollouts.dispatching import dispatch_steps
from releases.rollouts.retries import audit_not_reached, is_reached

log = logging.getLogger("releases.rollouts.reconciler")  # the name operators' log filters know


REVERT_ATTEMPTS = 3


def fold_or_dispatch(rollout: Rollout, action, progress: Progress) -> tuple[Progress, bool]:
    """Fold this action's finished steps into progress, or create the steps agents will run next."""
    kind = "revert" if isinstance(action, Revert) else "deploy"
    wanted = set(action.targets)
    newest: dict[str, RolloutStep] = {}
    attempts: dict[str, int] = {}
    # Only what folding needs: a step's output may be 64 KB, and a wave has hundreds of steps. A wave's deploys
    # are found by its number (sending its targets' names would cost more than the query); reverts by name.
    steps = rollout.steps.filter(action=kind)
    steps = steps.filter(wave=action.wave) if kind == "deploy" else steps.filter(target_name__in=wanted)
    for step in steps.order_by("index").only("pk", "target_name", "status", "health"):
        if step.target_name in wanted:
            newest[step.target_name] = step
            attempts[step.target_name] = attempts.get(step.target_name, 0) + 1
    if isinstance(action, HealthCheck):
        # The agent checks health right after its deploy; its report settles the health check.
        failed = {n for n in wanted if n not in newest or not (newest[n].health or {}).get("ok")}
        return record(progress, action, failed=failed), False
    if kind == "deploy":
        missing = wanted - set(newest)
        if not missing and is_rollback(rollout):
            # A rollback never reverts: the hosts it reached stay, the others wait to be retried (`retry_hosts`).
            bad = {n for n, s in newest.items() if not is_reached(s)}
            good = tuple(sorted(wanted - bad))
            progress = record(progress, Deploy(wave=action.wave, targets=good))
            progress = record(progress, HealthCheck(wave=action.wave, targets=good))
            if bad:
                progress = defer(progress, bad)
                audit_not_reached(rollout, {n: newest[n] for n in bad})
            return progress, False
        if not missing:
            failed = {n for n, s in newest.items() if s.status == RolloutStep.Status.FAILED}
            progress = record(progress, action, failed=failed)
            deployed = tuple(sorted(wanted - failed))
            if deployed:
                unhealthy = {n for n in deployed if not (newest[n].health or {}).get("ok")}
                progress = record(progress, HealthCheck(wave=action.wave, targets=deployed), failed=unhealthy)
            return progress, False
        to_dispatch = missing
    elif rollout.release.previous_artifact is None:
        # Nothing ran here before: there is no earlier version to put back.
        return record(progress, action), False
    else:
        # Reverts start while other steps still run: a host still deploying is reverted once it has reported.
        busy = set(
            rollout.steps.filter(status__in=OPEN_STEP, target_name__in=wanted).values_list(
                "target_name", flat=True
            )
        )
        succeeded = {
            n for n, s in newest.items() if s.status == RolloutStep.Status.SUCCEEDED and n not in busy
        }
        given_up = {
            n
            for n, s in newest.items()
            if s.status == RolloutStep.Status.FAILED and n not in busy and attempts[n] >= REVERT_ATTEMPTS
        }
        if succeeded | given_up:
            for name in sorted(given_up):
                log.error("giving up reverting %s after %d attempts", name, REVERT_ATTEMPTS)
            return record(progress, Revert(targets=tuple(sorted(succeeded | given_up)))), False
        # Never tried, or failed and worth another try.
        to_dispatch = wanted - busy
        if not to_dispatch:
            return progress, True  # waiting for the reports
    release = rollout.release
    version = (
        release.previous_artifact.version
        if kind == "revert" and release.previous_artifact
        else release.artifact.version
    )
    wave = getattr(action, "wave", None)
    dispatch_steps(rollout, kind, version, {name: wave for name in to_dispatch})
    return progress, True


def _unfolded_deploys(rollout: Rollout, progress: Progress):
    """Deploys that have finished but are not in `progress` yet (the reconciler waits for a whole wave)."""
    return rollout.steps.filter(
        action="deploy", status__in=(RolloutStep.Status.SUCCEEDED, RolloutStep.Status.FAILED)
    ).exclude(target_name__in=progress.touched)


def failed_meanwhile(rollout: Rollout, progress: Progress) -> bool:
    """Has a deploy of this rollout failed (or its health check) since the last reconciliation?"""
    return (
        _unfolded_deploys(rollout, progress)
        .exclude(status=RolloutStep.Status.SUCCEEDED, health__ok=True)
        .exists()
    )


def fold_stragglers(rollout: Rollout, progress: Progress) -> Progress:
    """While reverting: deploys not started yet are skipped; deploys that finished after the revert began count
    as touched, so they are put back too (none is left on the new version)."""
    rollout.steps.filter(action="deploy", status=RolloutStep.Status.PENDING).update(
        status=RolloutStep.Status.SKIPPED,
        output="[slipway] not started: the rollout is reverting",
        finished_at=timezone.now(),
    )
    finished = list(_unfolded_deploys(rollout, progress).values_list("target_name", "status", "health"))
    if not finished:
        return progress
    bad = [
        name
        for name, status, health in finished
        if status == RolloutStep.Status.FAILED or not (health or {}).get("ok")
    ]
    return record(progress, Deploy(wave=0, targets=tuple(name for name, _, _ in finished)), failed=bad)
