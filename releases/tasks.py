"""Celery tasks: thin, taking ids and calling services."""

from __future__ import annotations

from celery import shared_task

from releases.notifications import DeliveryFailed, deliver
from releases.promotions import recheck_all
from releases.rollouts import check_running_rollouts, do_advance_rollout


@shared_task(acks_late=True)
def recheck_blocked_releases() -> None:
    recheck_all()


@shared_task(bind=True, acks_late=True, max_retries=6)
def deliver_notification(self, hook_id: int, payload: dict) -> None:
    """POST to a receiver; a failing one is retried with exponential backoff and never holds a release."""
    try:
        deliver(hook_id, payload)
    except DeliveryFailed as failure:
        raise self.retry(exc=failure, countdown=min(2**self.request.retries, 300)) from failure


@shared_task(acks_late=True)
def advance_rollout(rollout_id: int) -> None:
    do_advance_rollout(rollout_id)


@shared_task(acks_late=True)
def check_rollouts() -> None:
    check_running_rollouts()
