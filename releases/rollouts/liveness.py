"""Steps that will not report and agents gone silent: a step whose agent went offline, whose worker went away or
that ran past the timeout fails (or, a worker's step, runs again elsewhere); agents that missed heartbeats are
marked offline."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from environments.models import Environment, Target
from releases import audit
from releases.models import Rollout, RolloutStep
from releases.permissions import Actor
from releases.rollouts.common import enqueue_advance, publish_environment_changed

log = logging.getLogger("releases.rollouts.reconciler")  # the name operators' log filters know


AGENT_OFFLINE = "agent offline (missed heartbeats)"


def fail_stuck(rollout: Rollout, open_steps) -> int:
    """A step whose agent went offline, or that ran past the step timeout, fails; the reconciler then reverts (a
    rollback retries instead). Returns how many failed."""
    environment = rollout.release.environment
    now = timezone.now()
    heartbeat_limit = now - timedelta(seconds=environment.heartbeat_timeout_seconds)
    timed_out = now - timedelta(seconds=environment.step_timeout_seconds)
    # Only suspects are read: a wave of a thousand healthy steps costs one query that returns nothing.
    suspects = open_steps.filter(
        Q(runs_on_server=True, lease_expires_at__lt=now)
        | Q(runs_on_server=True, lease_expires_at__isnull=True, started_at__lt=timed_out)
        | Q(runs_on_server=False)
        & (
            Q(target__isnull=True)
            | Q(target__last_seen__isnull=True)
            | Q(target__last_seen__lt=heartbeat_limit)
            | Q(started_at__lt=timed_out)
        )
    )
    failed = 0
    for step in suspects.select_related("target"):
        reason = None
        if step.runs_on_server and step.lease_expires_at is not None:
            reason = _take_over(step)  # its worker stopped renewing the lease: it went away
        elif step.runs_on_server:
            if (
                step.status == RolloutStep.Status.RUNNING
            ):  # handed to a webhook receiver that never called back
                reason = f"no callback within the step timeout ({environment.step_timeout_seconds} s)"
        elif step.target is None or step.target.last_seen is None or step.target.last_seen < heartbeat_limit:
            reason = AGENT_OFFLINE
            if step.target is not None:
                Target.objects.filter(pk=step.target.pk).update(status=Target.Status.OFFLINE)
                if step.target.status == Target.Status.ONLINE:
                    _audit_offline(
                        step.target, rollout.release.application, f"job #{step.pk} found it silent"
                    )
        elif step.started_at and now - step.started_at > timedelta(seconds=environment.step_timeout_seconds):
            reason = f"step timed out after {environment.step_timeout_seconds} s"
        if reason:
            step.status, step.finished_at = RolloutStep.Status.FAILED, now
            step.health = {"ok": False, "detail": reason}
            step.output = (step.output + f"\n[slipway] {reason}")[-RolloutStep.OUTPUT_LIMIT :]
            step.save(update_fields=["status", "finished_at", "health", "output"])
            enqueue_advance(rollout.pk)
            failed += 1
    return failed


STEP_ATTEMPTS = 3  # a server step whose worker died is run again, up to this many times in all


def _take_over(step: RolloutStep) -> str | None:
    """A step whose worker went away runs again on another worker (commands, gates and webhook calls are safe to
    repeat: a deploy puts the same version in place); after STEP_ATTEMPTS starts it fails, saying why."""
    if step.status != RolloutStep.Status.RUNNING:
        return None
    if step.attempts >= STEP_ATTEMPTS:
        return f"the worker running this step went away {step.attempts} times"
    note = f"\n[slipway] the worker running this step went away; another worker runs it again (start {step.attempts + 1})"
    RolloutStep.objects.filter(pk=step.pk, status=RolloutStep.Status.RUNNING).update(
        status=RolloutStep.Status.PENDING,
        lease_expires_at=None,
        started_at=None,
        output=(step.output + note)[-RolloutStep.OUTPUT_LIMIT :],
    )
    return None


def _audit_offline(target: Target, application, note: str) -> None:
    audit.record(
        Actor.system(),
        "target.offline",
        target,
        application=application,
        before={
            "status": Target.Status.ONLINE,
            "last_seen": target.last_seen.isoformat() if target.last_seen else None,
        },
        after={"status": Target.Status.OFFLINE},
        note=note,
    )


@transaction.atomic(durable=True)
def do_mark_offline_agents() -> int:
    """Targets whose agent missed its environment's heartbeat timeout are offline (a heartbeat brings them back),
    each with a `target.offline` audit event; returns how many went offline.

    The rows are locked while they are marked: a heartbeat arriving meanwhile waits and marks its agent online
    again after this commits. One locked by another writer is left for the next pass."""
    now, marked = timezone.now(), 0
    for seconds in sorted(
        set(
            Environment.objects.filter(targets__status=Target.Status.ONLINE)
            .order_by()
            .values_list("heartbeat_timeout_seconds", flat=True)
            .distinct()
        )
    ):
        silent = list(
            Target.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("environment__application")
            .filter(environment__heartbeat_timeout_seconds=seconds, status=Target.Status.ONLINE)
            .filter(Q(last_seen__lt=now - timedelta(seconds=seconds)) | Q(last_seen__isnull=True))
            .order_by("pk")
        )
        if not silent:
            continue
        Target.objects.filter(pk__any_of=[t.pk for t in silent]).update(status=Target.Status.OFFLINE)
        for target in silent:
            _audit_offline(target, target.environment.application, f"no heartbeat for {seconds} s")
        for environment_id in sorted({t.environment_id for t in silent}):  # open environment pages show it
            publish_environment_changed(environment_id)
        log.warning(
            "%d agent(s) missed heartbeats and are offline: %s",
            len(silent),
            ", ".join(t.name for t in silent[:20]),
        )
        marked += len(silent)
    return marked
