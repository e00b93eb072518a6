"""The rollout page's live view: a Channels consumer on the Redis channel layer pushes the progress partial."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from config.routing import websocket_urlpatterns
from releases.models import Release, Rollout, RolloutStep
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def rollout_fixture():
    app = factories.ApplicationFactory(slug="shop")
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    artifact = factories.ArtifactFactory(application=app, version="2.0.0")
    release = Release.objects.create(application=app, environment=env, artifact=artifact, status="deploying")
    rollout = Rollout.objects.create(
        release=release, targets=["web-1"], status="running", strategy={"kind": "cautious"}
    )
    return app, rollout


def test_watcher_sees_each_host_change(settings):
    from django.conf import settings as django_settings

    assert "Redis" in django_settings.CHANNEL_LAYERS["default"]["BACKEND"]
    _, rollout = rollout_fixture()
    admin = factories.UserFactory(username="watcher", is_superuser=True)

    async def scenario():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/rollouts/{rollout.pk}/")
        communicator.scope["user"] = admin
        connected, _ = await communicator.connect()
        assert connected
        from channels.db import database_sync_to_async

        await database_sync_to_async(RolloutStep.objects.create)(
            rollout=rollout,
            index=1,
            wave=0,
            target_name="web-1",
            action="deploy",
            version="2.0.0",
            status="running",
        )
        await get_channel_layer().group_send(
            f"rollout.{rollout.pk}", {"type": "rollout.changed", "rollout_id": rollout.pk}
        )
        html = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return html

    html = async_to_sync(scenario)()
    assert (
        html.lstrip().startswith('<div id="progress"') and 'data-target="web-1"' in html and "running" in html
    )
    assert (
        "0 of 1 target on 2.0.0 · wave 1</label>" in html and 'max="1" value="0"' in html
    )  # the summary too


def test_strangers_are_refused():
    _, rollout = rollout_fixture()
    stranger = factories.UserFactory(username="stranger")

    async def scenario():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/rollouts/{rollout.pk}/")
        communicator.scope["user"] = stranger
        connected, _ = await communicator.connect()
        return connected

    assert async_to_sync(scenario)() is False


def test_release_page_shows_rollout_and_controls(client):
    app, rollout = rollout_fixture()
    client.force_login(factories.UserFactory(username="boss", is_superuser=True))
    page = client.get(f"/releases/{rollout.release_id}/").content.decode()
    assert f'ws-connect="/ws/releases/{rollout.release_id}/"' in page and "Revert now" in page
    response = client.post(f"/releases/{rollout.release_id}/rollout/", {"command": "pause"})
    assert response.status_code == 302
    rollout.refresh_from_db()
    assert rollout.status == "paused"
