"""The embedded runtime's worker: a Celery worker thread on the memory broker runs tasks off the request."""

import threading

from celery import shared_task

ran = threading.Event()


@shared_task
def mark_ran(value):
    ran.value = value
    ran.set()


def test_in_process_worker_runs_enqueued_tasks(settings):
    from config.worker import start_in_process_worker

    stop = start_in_process_worker(port=0)
    try:
        mark_ran.delay(42)
        assert ran.wait(timeout=15)
        assert ran.value == 42
    finally:
        stop()
