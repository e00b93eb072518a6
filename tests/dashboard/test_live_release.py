"""The release page's live view (`/ws/releases/<id>/`): who may connect, the catch-up on connect, each event."""

import logging

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from config.routing import websocket_urlpatterns
from releases.models import Release, Rollout, RolloutStep
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def release():
    app = factories.ApplicationFactory(slug="shop")
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    artifact = factories.ArtifactFactory(application=app, version="2.0.0")
    return Release.objects.create(
        application=app, environment=env, artifact=artifact, status="pending_approval"
    )


def communicator(path, user):
    c = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    c.scope["user"] = user
    return c


def connect(path, user):
    async def scenario():
        c = communicator(path, user)
        connected, _ = await c.connect()
        await c.disconnect()
        return connected

    return async_to_sync(scenario)()


def test_strangers_and_anonymous_are_refused(release):
    assert connect(f"/ws/releases/{release.pk}/", factories.UserFactory(username="stranger")) is False
    assert connect(f"/ws/releases/{release.pk}/", AnonymousUser()) is False
    admin = factories.UserFactory(username="boss", is_superuser=True)
    assert connect(f"/ws/releases/{release.pk + 1000}/", admin) is False  # no such release
    assert (
        connect("/ws/releases/99999999999999999999999/", admin) is False
    )  # out of range: refused, not a 500


@pytest.mark.parametrize("path", ["/ws/nothing/", "/ws/releases/abc/", "/ws/", "/elsewhere"])
def test_unknown_paths_are_closed_cleanly(path):
    assert connect(path, AnonymousUser()) is False
    assert connect(path, factories.UserFactory(is_superuser=True)) is False


def test_catch_up_on_connect_before_any_rollout_then_each_event(release):
    viewer = factories.UserFactory(username="viewer", is_superuser=True)

    async def scenario():
        c = communicator(f"/ws/releases/{release.pk}/", viewer)
        assert (await c.connect())[0]
        first = await c.receive_from(timeout=5)
        # The release is approved and its rollout starts: lifecycle publishes release.changed.
        rollout = await database_sync_to_async(start)(release)
        await get_channel_layer().group_send(
            f"release.{release.pk}", {"type": "release.changed", "release_id": release.pk}
        )
        second = await c.receive_from(timeout=5)
        # From now on the page follows the rollout's own group too.
        await database_sync_to_async(RolloutStep.objects.create)(
            rollout=rollout,
            index=0,
            wave=0,
            target_name="web-1",
            action="deploy",
            version="2.0.0",
            status="succeeded",
            health={"ok": True, "detail": "exit 0"},
        )
        await get_channel_layer().group_send(
            f"rollout.{rollout.pk}", {"type": "rollout.changed", "rollout_id": rollout.pk}
        )
        third = await c.receive_from(timeout=5)
        await c.send_to(text_data="not json")  # ignored: the socket stays, nothing is sent back
        assert await c.receive_nothing(timeout=0.3)
        await c.disconnect()
        return first, second, third

    def start(release):
        Release.objects.filter(pk=release.pk).update(status="deploying")
        return Rollout.objects.create(
            release=release,
            targets=["web-1", "web-2", "web-3"],
            status="running",
            strategy={"kind": "cautious"},
        )

    first, second, third = async_to_sync(scenario)()
    for partial in (
        '<header id="release-head"',
        '<div id="approvals">',
        '<section class="card" id="rollout">',
        '<section class="card" id="timeline">',
    ):
        assert partial in first and partial in second
    assert "No rollout yet" in first and 'data-status="pending_approval"' in first
    assert 'data-status="deploying"' in second and "Revert now" in second
    # Every target shows, those not reached yet too, in the planned waves (cautious: 1, then 2).
    assert second.count('class="tile waiting"') == 3 and 'data-wave="2"' in second
    # A step: the rollout section alone (rendered once for every viewer); the header stays, nothing in it moved.
    assert (
        third.lstrip().startswith('<section class="card" id="rollout">') and 'id="release-head"' not in third
    )
    assert 'data-target="web-1" data-state="healthy"' in third and third.count('data-state="waiting"') == 2


def test_pushed_forms_carry_the_sessions_csrf_token(release):
    Release.objects.filter(pk=release.pk).update(status="deploying")
    Rollout.objects.create(
        release=release, targets=["web-1"], status="running", strategy={"kind": "cautious"}
    )
    secret = "a" * 32

    async def scenario():
        c = communicator(f"/ws/releases/{release.pk}/", factories.UserFactory(is_superuser=True))
        c.scope["cookies"] = {"csrftoken": secret}
        assert (await c.connect())[0]
        html = await c.receive_from(timeout=5)
        await c.disconnect()
        return html

    from django.middleware.csrf import _unmask_cipher_token

    html = async_to_sync(scenario)()
    token = html.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    assert _unmask_cipher_token(token) == secret


def test_messages_from_the_browser_are_ignored_and_logged(release, caplog):
    async def scenario():
        c = communicator(f"/ws/releases/{release.pk}/", factories.UserFactory(is_superuser=True))
        assert (await c.connect())[0]
        await c.receive_from(timeout=5)
        await c.send_to(text_data='{"HEADERS": {}, "command": "cancel"}')
        await c.send_to(bytes_data=b"\x00\x01")
        assert await c.receive_nothing(timeout=0.3)
        await c.disconnect()

    with caplog.at_level(logging.WARNING, logger="dashboard.consumers"):
        async_to_sync(scenario)()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "ignored a 36-byte message" in messages[0] and "ignored a 2-byte message" in messages[1]
