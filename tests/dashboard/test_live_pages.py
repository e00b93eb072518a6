"""Live views of the environment page, the application pipeline and the overview: catch-up and events."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from config.routing import websocket_urlpatterns
from environments.models import Environment, Lock, Target
from releases.models import Release
from releases.permissions import Actor
from releases.promotions import do_lock, do_unlock
from releases.rollouts import do_mark_offline_agents
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop():
    app = factories.ApplicationFactory(slug="shop")
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    Release.objects.create(application=app, environment=env, artifact=v1, status="succeeded")
    Environment.objects.filter(pk=env.pk).update(current_artifact=v1)
    Target.objects.create(environment=env, name="web-1", token_hash="h1", version="1.0.0")
    return app, env


def watch(path, user, change):
    """Connect, take the catch-up, make `change` (sync, after commit), take what the change pushes."""

    async def scenario():
        c = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        c.scope["user"] = user
        assert (await c.connect())[0]
        first = await c.receive_from(timeout=5)
        await database_sync_to_async(change)()
        second = await c.receive_from(timeout=5)
        await c.disconnect()
        return first, second

    return async_to_sync(scenario)()


def test_environment_page_follows_locks_and_agents_going_offline(shop):
    app, env = shop
    boss = factories.UserFactory(username="boss", is_superuser=True)
    first, locked = watch(
        f"/ws/environments/{env.pk}/", boss, lambda: do_lock(Actor(boss), env, reason="Disk full on db-2")
    )
    for partial in (
        '<header id="env-head"',
        'id="targets"',
        '<section class="card" id="locks">',
        'id="history"',
    ):
        assert partial in first
    assert 'data-version="1.0.0"' in first and "Disk full on db-2" not in first
    assert "Disk full on db-2" in locked and "Unlock" in locked
    _, unlocked = watch(
        f"/ws/environments/{env.pk}/", boss, lambda: do_unlock(Actor(boss), Lock.objects.get())
    )
    assert "Disk full on db-2" not in unlocked
    _, offline = watch(f"/ws/environments/{env.pk}/", boss, do_mark_offline_agents)  # never seen: offline
    assert '<tr data-target="web-1" data-status="offline">' in offline
    stranger = factories.UserFactory(username="stranger")

    async def refused():
        c = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/environments/{env.pk}/")
        c.scope["user"] = stranger
        return (await c.connect())[0]

    assert async_to_sync(refused)() is False


def test_pipeline_and_overview_follow_releases(shop):
    app, env = shop
    boss = factories.UserFactory(username="boss", is_superuser=True)
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")

    def succeed():
        from releases.lifecycle import do_transition_release

        release = Release.objects.create(application=app, environment=env, artifact=v2, status="deploying")
        do_transition_release(Actor.system(), release.pk, "succeeded")

    first, second = watch(f"/ws/applications/{app.pk}/", boss, succeed)
    assert first.lstrip().startswith('<div id="pipeline">') and "1.0.0" in first and "2.0.0" not in first
    assert '<span class="version">2.0.0</span>' in second
    v3 = factories.ArtifactFactory(application=app, version="3.0.0")
    v2.pk, v2 = None, v3  # the next release ships 3.0.0
    first, second = watch("/ws/overview/", boss, succeed)
    assert first.lstrip().startswith('<div id="applications">') and "2.0.0" in first
    assert '<span class="version">3.0.0</span>' in second
