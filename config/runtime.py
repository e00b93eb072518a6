"""The embedded runtime's extra parts, started beside the web server by `manage.py serve`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings

log = logging.getLogger(__name__)

# Each later capability adds a starter here: fn(port) -> stop callable.
STARTERS: list[str] = ["config.worker.start_in_process_worker", "environments.demo.fleet.start_demo_fleet"]


def start_embedded_services(*, port: int) -> Callable[[], None]:
    from django.utils.module_loading import import_string

    stops = []
    if settings.CELERY_IN_PROCESS:
        for path in STARTERS:
            stops.append(import_string(path)(port=port))

    def stop_all() -> None:
        for stop in reversed(stops):
            try:
                stop()
            except Exception:  # one part failing to stop must not keep the others running
                log.exception("stopping an embedded service failed")

    return stop_all
