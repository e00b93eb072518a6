"""Services tell the world after commit, never before: a watcher must not see a state that may still roll back."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from releases.models import Release, Rollout
from releases.permissions import Actor
from releases.rollouts import do_control_rollout
from tests import factories


def test_a_service_publishes_its_event_only_after_commit(db, django_capture_on_commit_callbacks):
    app = factories.ApplicationFactory(slug="shop")
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    release = Release.objects.create(
        application=app,
        environment=env,
        status="deploying",
        artifact=factories.ArtifactFactory(application=app, version="2.0.0"),
    )
    rollout = Rollout.objects.create(
        release=release, targets=["web-1"], status="running", strategy={"kind": "cautious"}
    )
    group = f"rollout.{rollout.pk}"

    def pause():
        with django_capture_on_commit_callbacks() as callbacks:
            do_control_rollout(Actor.system(), release, "pause")
        return callbacks

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            callbacks = await sync_to_async(pause)()
            with pytest.raises(TimeoutError):  # nothing before the commit
                await asyncio.wait_for(layer.receive(channel), 0.5)
            for callback in callbacks:
                await sync_to_async(callback)()
            return await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard(group, channel)

    message = async_to_sync(scenario)()
    event = message.pop("event")  # names the publication: consumers of one process render it once
    assert message == {"type": "rollout.changed", "rollout_id": rollout.pk} and len(event) == 32


pytestmark = pytest.mark.django_db
