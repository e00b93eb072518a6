"""The rollout engine wakes the agent broker through `releases.signals.agent_work_available`, after commit, and a
waiting long-poll gets the job at once — not at the broker's next periodic re-check (`agent_asgi.TICK`)."""

import asyncio
import time

import pytest
from django.db import connection, transaction

from config.effects import after_commit
from environments import agent_asgi
from environments.models import Target
from releases.models import Release, Rollout, RolloutStep
from releases.rollouts import do_advance_rollout, notify_agents, start_rollout
from releases.signals import agent_work_available
from tests import factories
from tests.environments.test_agent_batching import fleet_with_rollout


@pytest.fixture
def signals():
    """Every `agent_work_available` sent, in order."""
    sent = []

    def receiver(sender, **kwargs):
        sent.append(sender)

    agent_work_available.connect(receiver, dispatch_uid="test_broker_wakeup")
    yield sent
    agent_work_available.disconnect(dispatch_uid="test_broker_wakeup")


def test_dispatching_agent_steps_sends_the_signal_after_commit(
    app, signals, django_capture_on_commit_callbacks
):
    env = factories.EnvironmentFactory(application=app, name="production", position=1)  # the agent driver
    for name in ("a", "b"):
        Target.objects.create(environment=env, name=name, token_hash=name * 64)
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    release = Release.objects.create(
        application=app, environment=env, artifact=v2, previous_artifact=v1, status="deploying"
    )
    rollout = start_rollout(release)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert do_advance_rollout(rollout.pk) == "running"
        assert RolloutStep.objects.filter(rollout=rollout, action="deploy", status="pending").exists()
    assert signals == []  # not before the steps are committed: an agent woken early would find nothing
    for callback in callbacks:
        callback()
    assert signals == [Rollout]


@pytest.mark.django_db(transaction=True)
def test_the_signal_wakes_a_waiting_long_poll_at_once(monkeypatch):
    """The broker's re-check is made a minute long: only the signal can hand the job out before the poll's
    20 s are over."""
    monkeypatch.setattr(agent_asgi, "TICK", 60.0)
    app = factories.ApplicationFactory(slug="shop")
    _, rollout, targets, steps = fleet_with_rollout(app, 1, rollout_status="paused")  # nothing to claim yet
    broker = agent_asgi.BROKER  # the one the signal reaches

    def dispatch() -> None:
        """As the engine does, on another thread: steps become claimable, agents are told after commit."""
        try:
            with transaction.atomic():
                Rollout.objects.filter(pk=rollout.pk).update(status="running")
                after_commit(notify_agents)
        finally:
            connection.close()

    async def scenario():
        poll = asyncio.ensure_future(broker.next_job("tkey0", 20))
        for _ in range(250):  # until the broker holds the long-poll
            if broker._waiting:
                break
            await asyncio.sleep(0.02)
        assert broker._waiting and not poll.done()
        await asyncio.sleep(0.3)  # the broker is idle, waiting on its (minute-long) re-check
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, dispatch)
        answer = await asyncio.wait_for(poll, 10)
        return answer, time.monotonic() - started

    try:
        (status, body), elapsed = asyncio.run(scenario())
    finally:
        broker._executor.submit(lambda: connection.close()).result()
    assert status == 200 and body["job"]["id"] == steps[0].pk
    assert elapsed < 5  # woken, not timed out
