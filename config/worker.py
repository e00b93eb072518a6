"""The embedded runtime's Celery worker: a thread inside the web process consuming the `memory://` broker.

Each task still runs as its own task, off the request that enqueued it, on a pool of `SLIPWAY_WORKER_THREADS`
threads (default 4): an analysis gate sleeps in its task for its whole window (a 30-minute watch, say), and with a
single thread every other task — other rollouts, flag schedules, the new-error check, notifications — waited
behind it. Production runs real workers (`celery -A config worker`) on RabbitMQ or Redis, and exactly one
`celery -A config beat` (docs/operations.md, "Sizing workers for analyses").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def start_in_process_worker(*, port: int) -> Callable[[], None]:
    from celery.contrib.testing.worker import start_worker
    from django.conf import settings

    from config.celery import app

    threads = max(1, int(getattr(settings, "SLIPWAY_WORKER_THREADS", 4)))

    ready = threading.Event()
    stop = threading.Event()

    def run() -> None:
        with start_worker(
            app,
            pool="threads",
            concurrency=threads,
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=10,
        ):
            ready.set()
            stop.wait()

    thread = threading.Thread(target=run, name="celery-in-process", daemon=True)
    thread.start()
    ready.wait(timeout=30)
    log.info("in-process Celery worker running (%d threads)", threads)
    periodic = _start_periodic(stop)

    def shutdown() -> None:
        stop.set()
        thread.join(timeout=15)
        periodic.join(timeout=5)

    return shutdown


def _start_periodic(stop: threading.Event) -> threading.Thread:
    """Celery beat's job in the embedded runtime: enqueue the periodic tasks on their schedule."""
    from django.conf import settings

    from config.celery import app

    def loop() -> None:
        schedule = {name: entry for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}
        ticks = 0
        while not stop.wait(1):
            ticks += 1
            for entry in schedule.values():
                if ticks % int(entry["schedule"]) == 0:
                    try:
                        app.send_task(entry["task"])
                    except Exception:  # a failed enqueue is retried on the next tick
                        log.exception("periodic task %s not enqueued", entry["task"])

    thread = threading.Thread(target=loop, name="slipway-periodic", daemon=True)
    thread.start()
    return thread
