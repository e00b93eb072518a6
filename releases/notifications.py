"""Outgoing notifications: Slack-compatible JSON to each application's hooks, after commit, from a worker.

A failing receiver is retried with backoff by the task and never holds a release.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from django.conf import settings
from django.urls import reverse

from config.effects import after_commit
from releases.batches import release_batch
from releases.models import NotificationHook, Release
from releases.queue import run_task

log = logging.getLogger(__name__)

STATUS_EVENTS: dict[str, str] = {
    Release.Status.PENDING_APPROVAL: "waiting",
    Release.Status.APPROVED: "approved",
    Release.Status.REJECTED: "rejected",
    Release.Status.DEPLOYING: "deploying",
    Release.Status.SUCCEEDED: "succeeded",
    Release.Status.FAILED: "failed",
    Release.Status.ROLLED_BACK: "rolled_back",
}


class DeliveryFailed(Exception):
    pass


def notify_on_commit(release: Release) -> None:
    event = STATUS_EVENTS.get(release.status)
    if event is None:
        return
    after_commit(_enqueue, release.pk, event)


def _enqueue(release_id: int, event: str) -> None:
    release = Release.objects.select_related("application", "environment", "artifact").get(pk=release_id)
    hooks = [
        h
        for h in NotificationHook.objects.filter(application_id=release.application_id, active=True)
        if not h.events or event in h.events
    ]
    if not hooks:
        return
    payload = message(release, event)
    for hook in hooks:
        run_task("releases.tasks.deliver_notification", hook.pk, payload)


def message(release: Release, event: str) -> dict:
    """Slack-compatible: `text` with mrkdwn links; a waiting batch links each author to their approval page."""
    base = settings.SLIPWAY_BASE_URL.rstrip("/")
    link = base + reverse("dashboard:release", args=[release.pk])
    what = f"{release.application.slug} {release.artifact.version} → {release.environment.name}"
    lines = {
        "waiting": f":hourglass: Batch waiting for your approval: <{link}|{what}>",
        "approved": f":white_check_mark: Approved: <{link}|{what}>",
        "rejected": f":no_entry: Rejected: <{link}|{what}>",
        "deploying": f":rocket: Deploying <{link}|{what}>",
        "succeeded": f":tada: Shipped <{link}|{what}>",
        "failed": f":x: Failed: <{link}|{what}>",
        "rolled_back": f":leftwards_arrow_with_hook: Rolled back: <{link}|{what}>",
    }
    text = lines[event]
    if event == "waiting":
        people = [g.username or g.author for g in release_batch(release).groups]
        # Approving from chat is one click: the link opens the release page, where each person's group waits.
        text += "\n" + "\n".join(f"• {person}: <{link}|approve your changes>" for person in people)
    return {
        "text": text,
        "slipway": {
            "event": event,
            "release": release.pk,
            "status": release.status,
            "application": release.application.slug,
            "environment": release.environment.name,
            "version": release.artifact.version,
            "url": link,
        },
    }


def deliver(hook_id: int, payload: dict) -> None:
    hook = NotificationHook.objects.filter(pk=hook_id, active=True).first()
    if hook is None:
        return
    request = urllib.request.Request(
        hook.url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "Slipway"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status = f"{response.status} delivered"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        NotificationHook.objects.filter(pk=hook_id).update(last_status=f"failed: {error}"[:200])
        raise DeliveryFailed(str(error)) from error
    NotificationHook.objects.filter(pk=hook_id).update(last_status=status)
