"""People's controls on a rollout: pause, resume, cancel, revert now."""

from __future__ import annotations

from django.db import transaction

from releases import audit
from releases.exceptions import NoRollout, RollbackNotRevertible, RolloutFinished
from releases.models import Release, Rollout
from releases.permissions import Actor, Permission, require
from releases.rollouts.common import enqueue_advance, is_rollback, publish_changed


@transaction.atomic(durable=True)
def do_control_rollout(actor: Actor, release: Release, command: str) -> Rollout:
    """Pause, resume, cancel, or revert now."""
    rollout = (
        Rollout.objects.select_for_update(of=("self",))
        .select_related("release__application", "release__environment")
        .filter(release=release)
        .first()
    )
    if rollout is None:
        raise NoRollout(f"Release #{release.pk} has no rollout.")
    require(
        actor,
        Permission.ROLLBACK if command == "revert" else Permission.REGISTER_ARTIFACT,
        release.application,
        release.environment,
    )
    finished = rollout.status in (
        Rollout.Status.SUCCEEDED,
        Rollout.Status.REVERTED,
        Rollout.Status.CANCELLED,
        Rollout.Status.FAILED,
    )
    if finished:
        raise RolloutFinished(f"The rollout is {rollout.status}.")
    rollback = is_rollback(rollout)
    if command == "revert" and rollback:
        raise RollbackNotRevertible(
            "A rollback is never reverted to the version it rolls back from; cancel stops it where it is."
        )
    if command == "pause":
        rollout.status = Rollout.Status.PAUSED
    elif command == "resume":
        rollout.status = (
            Rollout.Status.REVERTING if rollout.progress.get("reverting") else Rollout.Status.RUNNING
        )
        if rollback and rollout.progress.get("held"):
            # The hosts a rollback could not reach while they answered: try each of them again.
            held = rollout.progress["held"]
            retry = sorted({*rollout.progress.get("retry", ()), *held})
            rollout.progress = {**rollout.progress, "held": [], "retry": retry}
        enqueue_advance(rollout.pk)
    elif command in ("revert", "cancel"):
        # Both stop dispatching and put back every target touched, so no environment is left half-way; a
        # revert says the release is bad (it ends failed), a cancel only that it should not go on (cancelled).
        # A rollback is the exception: cancelling it stops it where it is (the reconciler puts nothing back).
        rollout.progress = {**rollout.progress, "reverting": True}
        rollout.status = Rollout.Status.REVERTING
        rollout.cancel_requested = command == "cancel"
        enqueue_advance(rollout.pk)
    rollout.save(update_fields=["status", "progress", "cancel_requested"])
    audit.record(actor, f"rollout.{command}", release, application=release.application)
    publish_changed(rollout.pk)
    return rollout
