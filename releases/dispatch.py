"""What happens once a release is `queued`, and auto-promotion.

`release_queued` is called after commit by every path that queues a release. An environment with deploy targets
gets a rollout (releases/rollouts.py); one without completes the release at once: it is how Slipway tracks
environments whose deploys happen elsewhere.
"""

from __future__ import annotations

import logging

from django.db import transaction

from config.errors import SlipwayError
from environments.models import Environment
from releases.lifecycle import transition
from releases.models import Artifact, Release
from releases.permissions import Actor
from releases.rollouts import start_rollout

log = logging.getLogger(__name__)


def release_queued(release_id: int) -> None:
    actor = Actor.system()
    with transaction.atomic():
        release = (Release.objects.select_for_update(of=("self",))
                   .select_related("application", "environment", "artifact", "previous_artifact").get(pk=release_id))
        if release.status != Release.Status.QUEUED:
            return  # someone else moved it on: reruns are harmless
        transition(actor, release, Release.Status.DEPLOYING)
        if start_rollout(release) is not None:
            return  # the rollout engine finishes it (releases/rollouts.py)
        transition(actor, release, Release.Status.SUCCEEDED)
        if release.kind == Release.Kind.ROLLBACK:
            _mark_rolled_back(actor, release)
    after_success(release)


def _mark_rolled_back(actor: Actor, rollback: Release) -> None:
    """The release a rollback replaced is `rolled_back` in the history."""
    replaced = (Release.objects.select_for_update(of=("self",)).select_related("application")
                .filter(environment_id=rollback.environment_id, artifact_id=rollback.previous_artifact_id,
                        status=Release.Status.SUCCEEDED).exclude(pk=rollback.pk).order_by("-finished_at").first())
    if replaced is not None:
        transition(actor, replaced, Release.Status.ROLLED_BACK, note=f"Rolled back by #{rollback.pk}.")


def after_success(release: Release) -> None:
    from releases.promotions import recheck_environment

    recheck_environment(Actor.system(), release.environment_id)
    if release.kind == Release.Kind.DEPLOY:
        auto_promote(release.artifact_id)


def auto_promote(artifact_id: int) -> None:
    """Environments with auto_promote take the artifact as soon as the pipeline allows it."""
    from releases.promotions import do_request_release

    artifact = Artifact.objects.select_related("application").get(pk=artifact_id)
    for environment in Environment.objects.filter(application_id=artifact.application_id, auto_promote=True):
        if environment.current_artifact_id == artifact.pk or Release.objects.filter(
                environment=environment, artifact=artifact).exists():
            continue
        try:
            do_request_release(Actor.system(), artifact.application, environment=environment, artifact=artifact)
        except SlipwayError as refusal:  # out of pipeline order: it will come when the previous stage succeeds
            log.info("auto-promotion of %s to %s waits: %s", artifact.version, environment.name, refusal.detail)
