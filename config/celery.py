"""The Celery app. Production: workers on RabbitMQ or Redis (`CELERY_BROKER_URL`).

Embedded default (no broker set): the `memory://` transport with a worker thread
inside the web process (`config.worker.start_in_process_worker`), so each task
still runs as its own task, off the request.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("slipway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
