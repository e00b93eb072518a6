"""Celery tasks: thin, taking ids and calling services."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def recheck_blocked_releases() -> None:
    from releases.promotions import recheck_all

    recheck_all()


@shared_task(bind=True, acks_late=True, max_retries=6)
def deliver_notification(self, hook_id: int, payload: dict) -> None:
    """POST to a receiver; a failing one is retried with exponential backoff and never holds a release."""
    from releases.notifications import DeliveryFailed, deliver

    try:
        deliver(hook_id, payload)
    except DeliveryFailed as failure:
        raise self.retry(exc=failure, countdown=min(2**self.request.retries, 300)) from failure


@shared_task(acks_late=True)
def advance_rollout(rollout_id: int) -> None:
    from releases.rollouts import do_advance_rollout

    do_advance_rollout(rollout_id)


@shared_task(acks_late=True)
def check_rollouts() -> None:
    from releases.rollouts import check_running_rollouts

    check_running_rollouts()
