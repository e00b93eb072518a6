"""The Celery app. Production: workers on RabbitMQ or Redis (`CELERY_BROKER_URL`), and one beat.

Embedded default (no broker set): the `memory://` transport with a worker thread
inside the web process (`config.worker.start_in_process_worker`), so each task
still runs as its own task, off the request.
"""

import logging
import logging.config
import os
import time
from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("slipway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _refuse_to_start_misconfigured(**_):
    from config.checks import refuse_to_start  # Celery runs no system checks: slipway.E001 stops it here

    refuse_to_start()


@worker_process_shutdown.connect
def _send_what_was_published(**_):
    # A prefork child ends with os._exit (no atexit): live events its last task published still go out.
    from dashboard.live import flush

    flush(2.0)


@setup_logging.connect
def _django_logging(**_):
    # Workers and beat log like the web processes (settings.LOGGING: root at LOG_LEVEL, INFO by default) instead
    # of Celery's own setup at `--loglevel` (WARNING unless given), which hid the task lines below.
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


log = logging.getLogger("slipway.tasks")
_started: dict[str, float] = {}


def _level(task) -> int:
    # The beat's checks run every few seconds: at INFO they would drown everything else (LOG_LEVEL=DEBUG shows them).
    periodic = {entry["task"] for entry in app.conf.beat_schedule.values()}
    return logging.DEBUG if task.name in periodic else logging.INFO


@task_prerun.connect
def _log_start(task_id=None, task=None, **_):
    _started[task_id] = time.monotonic()
    log.log(_level(task), "task %s[%s] started", task.name, task_id)


@task_postrun.connect
def _log_end(task_id=None, task=None, state=None, **_):
    started = _started.pop(task_id, None)
    took = f" in {time.monotonic() - started:.3f} s" if started is not None else ""
    level = logging.WARNING if state not in ("SUCCESS", "RETRY") else _level(task)
    outcome = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "will be retried"}.get(
        state, state or "ended"
    )
    log.log(level, "task %s[%s] %s%s", task.name, task_id, outcome, took)


class Scheduler(PersistentScheduler):
    """Celery beat's default scheduler, creating the schedule file's directory (SLIPWAY_DATA_DIR) if missing."""

    def setup_schedule(self):
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        super().setup_schedule()
