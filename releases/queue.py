"""Work for the Celery workers, enqueued by task name after the caller's transaction commits.

Services enqueue through here instead of importing `releases.tasks` (which imports the services): the task
layer sits above the services, and this keeps the imports one-way. The task is looked up in the Celery app's
registry at call time, so eager mode and the in-process worker of the embedded runtime behave as before.
"""

from __future__ import annotations

import importlib

from config.celery import app
from config.effects import after_commit


def run_task(name: str, *args) -> None:
    if (
        name not in app.tasks
    ):  # the tasks module registers on import; web processes may not have loaded it yet
        importlib.import_module(name.rsplit(".", 1)[0])
    app.tasks[name].delay(*args)


def enqueue_on_commit(name: str, *args) -> None:
    """`releases.tasks.advance_rollout`, 12 → `advance_rollout.delay(12)` once the transaction commits."""
    after_commit(run_task, name, *args)
