"""The embedded runtime's worker: a Celery worker thread on the memory broker runs tasks off the request."""

import threading

import pytest
from celery import shared_task

from environments.models import Target

ran = threading.Event()


@shared_task
def mark_ran(value):
    ran.value = value
    ran.set()


def test_in_process_worker_runs_enqueued_tasks(settings):
    from config.worker import start_in_process_worker

    stop = start_in_process_worker(port=0)
    ran.clear()
    try:
        mark_ran.delay(42)
        assert ran.wait(timeout=15)
        assert ran.value == 42
    finally:
        stop()


@pytest.mark.django_db(transaction=True)
def test_a_waiting_analysis_gate_does_not_stall_the_embedded_workers_other_tasks(tmp_path, user):
    """An analysis gate waits out its window inside its task (60 s here). With one worker thread every other task
    queued behind it; the embedded worker's threads run them meanwhile."""
    import time

    from config.worker import start_in_process_worker
    from monitoring.models import AnalysisTemplate, MetricSource
    from releases.models import Release, RolloutStep
    from releases.permissions import Actor
    from releases.rollouts import do_control_rollout, start_rollout
    from releases.tasks import advance_rollout
    from tests import factories
    from tests.releases.test_rollouts_analysis import METRIC

    app = factories.ApplicationFactory(slug="shop")
    env = factories.EnvironmentFactory(
        application=app,
        name="production",
        driver="command",
        deploy_command=f"echo $SLIPWAY_TARGET=$SLIPWAY_VERSION >> {tmp_path}/deployed",
        strategy={
            "kind": "canary",
            "steps": [50, 100],
            "pause_seconds": 0,
            "analysis": {"template": "checkout", "duration_seconds": 60},
        },
    )
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    for name in ("a", "b"):
        Target.objects.create(environment=env, name=name, token_hash=name * 64, version="1.0.0")
    MetricSource.objects.create(application=app, name="pushed", kind="pushed")
    AnalysisTemplate.objects.create(
        application=app,
        name="checkout",
        metrics=[{**METRIC, "name": "error_rate", "source": "pushed", "query": "http_error_ratio"}],
    )
    release = Release.objects.create(
        application=app, environment=env, artifact=v2, previous_artifact=v1, status="deploying"
    )
    stop = start_in_process_worker(port=0)
    try:
        rollout = start_rollout(release)
        advance_rollout.delay(rollout.pk)
        gate = RolloutStep.objects.filter(rollout=rollout, action="analysis")
        deadline = time.monotonic() + 30
        while not gate.filter(status="running").exists():
            assert time.monotonic() < deadline, "the analysis gate never started"
            time.sleep(0.1)
        ran.clear()
        began = time.monotonic()
        mark_ran.delay("while the gate waits")
        assert ran.wait(timeout=10), "another task waited behind the analysis gate"
        assert ran.value == "while the gate waits" and time.monotonic() - began < 10
        assert gate.get().status == "running"  # still waiting out its window
    finally:
        do_control_rollout(Actor.system(), release, "revert")  # the gate sees it within 2 s and stops
        stop()
        ran.clear()
