"""`kill -9` of the Celery worker while it runs a smoke test itself: another worker finishes the step within
seconds (its lease lapses), not after the 300 s step timeout."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from releases.dispatch import release_queued
from releases.models import Release, RolloutStep
from tests import factories
from tests.environments.test_rollout_agents import wait_for
from tests.live import ROOT, database_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def test_a_worker_killed_during_a_smoke_step_is_replaced_within_seconds(tmp_path):
    import kombu

    queue = f"takeover-{os.getpid()}"
    try:
        with kombu.Connection(BROKER, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        pytest.fail(f"RabbitMQ unreachable at 127.0.0.1:5672: {error}")
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": BROKER,
        "CELERY_QUEUE": queue,
        "SLIPWAY_STEP_LEASE_SECONDS": "2",
        "SLIPWAY_DEMO_FLEET": "0",
    }

    def start_worker(name):
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-B",
                "--pool",
                "solo",
                "-Q",
                queue,
                "--loglevel",
                "WARNING",
                "-s",
                str(tmp_path / f"beat-{name}"),
            ],
            cwd=ROOT,
            env=env,
            stdout=(tmp_path / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(process):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    app = factories.ApplicationFactory(slug="shop")
    production = factories.EnvironmentFactory(
        application=app,
        name="production",
        position=1,
        driver="command",
        deploy_command="true",
        smoke_test_command=f"echo started >> {tmp_path}/smoke; sleep 4; echo done >> {tmp_path}/smoke",
    )
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    release = Release.objects.create(
        application=app, environment=production, artifact=v2, previous_artifact=v1, status="queued"
    )
    workers = [start_worker("first")]
    try:
        release_queued(release.pk)  # the rollout exists; the worker's beat advances it (every 2 s)
        smoke = RolloutStep.objects.filter(rollout__release=release, action="smoke")
        wait_for(lambda: smoke.filter(status="running").exists(), timeout=60, what="the smoke step running")
        time.sleep(1)
        kill(workers[0])
        killed_at = time.monotonic()
        assert smoke.get().status == "running"  # the dead worker cannot say anything
        workers.append(start_worker("second"))
        wait_for(
            lambda: (
                smoke.get().status != "running"
                and smoke.get().status != "pending"
                and smoke.get().attempts >= 2
            ),
            timeout=30,
            what="another worker to finish the smoke step",
        )
        taken = time.monotonic() - killed_at
        step = smoke.get()
        assert step.status == "succeeded" and "another worker runs it again" in step.output, step.output
        assert taken < 10 + 4, (
            f"taken over and finished {taken:.1f} s after the kill"
        )  # 4 s: the smoke test itself
        wait_for(
            lambda: Release.objects.get(pk=release.pk).status == "succeeded", timeout=30, what="the release"
        )
    finally:
        for worker in workers:
            kill(worker)
