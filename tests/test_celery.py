"""Workers in production: their queue comes from the environment, each task's start and end is logged at INFO."""

import os
import subprocess
import sys
import time

import pytest
from celery import Celery
from django.conf import settings

from releases.models import Rollout
from tests.dashboard.test_live import rollout_fixture
from tests.live import ROOT, database_url


def _config_in_process(**env: str) -> list[str]:
    code = (
        "from config.celery import app; from django.conf import settings; "
        "print(app.amqp.router.route({}, 'releases.tasks.advance_rollout')['queue'].name); "
        "print(app.conf.beat_schedule_filename); print(settings.DATA_DIR)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def test_queue_and_beat_schedule_come_from_the_environment(tmp_path):
    queue, schedule, data_dir = _config_in_process(CELERY_QUEUE="slipway-b", SLIPWAY_DATA_DIR=str(tmp_path))
    assert queue == "slipway-b"
    assert schedule == str(tmp_path / "celerybeat-schedule") and data_dir == str(tmp_path)
    assert _config_in_process()[0] == "celery"  # unset: Celery's own default, so upgrades keep their queue


def test_the_rollout_tasks_may_have_a_queue_of_their_own():
    """CELERY_ROLLOUT_QUEUE sends the reconciler's tasks (whose analysis gates hold a slot for their window) to
    workers of their own; the rest stays on CELERY_QUEUE. The embedded runtime (memory://) keeps one queue."""
    code = (
        "from config.celery import app; "
        "print(*(app.amqp.router.route({}, t)['queue'].name for t in ("
        "'releases.tasks.advance_rollout', 'releases.tasks.check_rollouts', 'flags.tasks.apply_flag_schedules', "
        "'monitoring.tasks.check_new_errors')))"
    )

    def queues(**env: str) -> list[str]:
        run = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            text=True,
        )
        return run.stdout.split()

    broker = "redis://127.0.0.1:6379/15"
    assert queues(CELERY_BROKER_URL=broker, CELERY_ROLLOUT_QUEUE="slipway-rollouts") == [
        "slipway-rollouts",
        "slipway-rollouts",
        "celery",
        "celery",
    ]
    assert queues(CELERY_BROKER_URL=broker) == ["celery"] * 4
    assert queues(CELERY_BROKER_URL="memory://", CELERY_ROLLOUT_QUEUE="slipway-rollouts") == ["celery"] * 4


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_consumes_its_queue_and_logs_each_task(tmp_path):
    assert settings.REDIS_URL, "needs Redis (make test sets REDIS_URL)"
    _, rollout = rollout_fixture()
    Rollout.objects.filter(pk=rollout.pk).update(status="succeeded")  # advancing it is a no-op
    queue = "slipway-test-ops"  # not `celery`: this worker must find its tasks on the queue it was told
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "CELERY_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    producer = Celery(broker=settings.REDIS_URL, set_as_current=False)
    try:
        result = producer.send_task("releases.tasks.advance_rollout", args=[rollout.pk], queue=queue)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "succeeded in" not in log_path.read_text():
            time.sleep(0.2)
        log = log_path.read_text()
        assert f"INFO slipway.tasks: task releases.tasks.advance_rollout[{result.id}] started" in log, log[
            -3000:
        ]
        assert f"INFO slipway.tasks: task releases.tasks.advance_rollout[{result.id}] succeeded in" in log, (
            log[-3000:]
        )
    finally:
        producer.close()
        worker.terminate()
        worker.wait(timeout=15)
