"""What happens once a release is `queued`.

`release_queued` is called after commit by every path that queues a release. An environment with deploy targets
gets a rollout (releases/rollouts/); one without completes the release at once: it is how Slipway tracks
environments whose deploys happen elsewhere. What follows a success (re-checks, auto-promotion) belongs to the
promotion layer, which listens for `releases.signals.release_succeeded`.
"""

from __future__ import annotations

from django.db import transaction

from releases.lifecycle import transition
from releases.models import Release
from releases.permissions import Actor
from releases.rollouts import start_rollout


def release_queued(release_id: int) -> None:
    actor = Actor.system()
    with transaction.atomic():
        release = (
            Release.objects.select_for_update(of=("self",))
            .select_related("application", "environment", "artifact", "previous_artifact")
            .get(pk=release_id)
        )
        if release.status != Release.Status.QUEUED:
            return  # someone else moved it on: reruns are harmless
        transition(actor, release, Release.Status.DEPLOYING)
        if start_rollout(release) is not None:
            return  # the rollout engine finishes it (releases/rollouts/)
        transition(actor, release, Release.Status.SUCCEEDED)
