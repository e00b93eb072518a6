"""Celery tasks for monitoring: thin, taking ids and calling services."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def check_new_errors() -> None:
    """Periodic: new errors and error rates after recently finished releases (`monitoring.alerts`)."""
    from monitoring.alerts import check_recent_releases

    check_recent_releases()


@shared_task(acks_late=True)
def rollback_for_alert(alert_id: int) -> None:
    from monitoring.alerts import rollback_for_alert as roll_back

    roll_back(alert_id)
