"""The release state machine's single writer, shared by approvals, promotion and the rollout engine."""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.utils import timezone

from config.effects import after_commit
from dashboard.live import publish_on_commit, publish_to_users_on_commit
from environments.models import Environment
from releases import audit
from releases.exceptions import IllegalTransition
from releases.models import TRANSITIONS, Release
from releases.notifications import notify_on_commit
from releases.permissions import Actor, viewers_of
from releases.signals import release_succeeded

STARTED = {Release.Status.DEPLOYING}


def publish_inbox_on_commit(release: Release) -> None:
    """What waits for people's approval changed: each inbox (and nav count) of those who see the application."""
    publish_to_users_on_commit(
        partial(viewers_of, release.application_id), "inbox.changed", release_id=release.pk
    )


def transition(actor: Actor, release: Release, to: str, *, note: str = "") -> Release:
    """Move a locked release one legal step, audited; success also moves the environment's current version.

    Call inside the caller's transaction with `release` re-read under `select_for_update`.
    """
    if to not in TRANSITIONS[release.status]:
        raise IllegalTransition(
            f"Release #{release.pk} is {release.status}; it cannot become {to}.",
            extra={"status": release.status, "requested": to},
        )
    before = release.status
    now = timezone.now()
    release.status = to
    fields = ["status", "updated_at"]
    if to in STARTED and release.started_at is None:
        release.started_at = now
        fields.append("started_at")
    if release.is_finished and release.finished_at is None:
        release.finished_at = now
        fields.append("finished_at")
    release.save(update_fields=fields)
    if to == Release.Status.SUCCEEDED:
        Environment.objects.filter(pk=release.environment_id).update(current_artifact_id=release.artifact_id)
    audit.record(
        actor,
        f"release.{to}",
        release,
        application=release.application,
        before={"status": before},
        after={"status": to},
        note=note,
    )
    if to == Release.Status.SUCCEEDED:
        if release.kind == Release.Kind.ROLLBACK:
            _mark_rolled_back(actor, release)
        # The layers above react (re-check blocked releases, auto-promote) without this module importing them.
        after_commit(release_succeeded.send, sender=Release, release=release)
    notify_on_commit(release)
    if Release.Status.PENDING_APPROVAL in (before, to):
        publish_inbox_on_commit(release)
    publish_on_commit(f"release.{release.pk}", "release.changed", release_id=release.pk)
    publish_on_commit(
        f"environment.{release.environment_id}", "environment.changed", environment_id=release.environment_id
    )
    publish_on_commit(
        f"application.{release.application_id}", "application.changed", application_id=release.application_id
    )
    return release


@transaction.atomic(durable=True)
def do_transition_release(actor: Actor, release_id: int, to: str, *, note: str = "") -> Release:
    """Lock the release and move it one legal step (see `transition`)."""
    release = Release.objects.select_for_update(of=("self",)).select_related("application").get(pk=release_id)
    return transition(actor, release, to, note=note)


def _mark_rolled_back(actor: Actor, rollback: Release) -> None:
    """The release a rollback replaced is `rolled_back` in the history."""
    if rollback.previous_artifact_id is None:
        return
    replaced = (
        Release.objects.select_for_update(of=("self",))
        .select_related("application")
        .filter(
            environment_id=rollback.environment_id,
            artifact_id=rollback.previous_artifact_id,
            status=Release.Status.SUCCEEDED,
        )
        .exclude(pk=rollback.pk)
        .order_by("-finished_at")
        .first()
    )
    if replaced is not None:
        transition(actor, replaced, Release.Status.ROLLED_BACK, note=f"Rolled back by #{rollback.pk}.")
