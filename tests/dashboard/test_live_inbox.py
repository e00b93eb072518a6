"""The approvals inbox and the nav's count, live on `user.<id>`: batches waiting for me arrive and leave."""

import re

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from config.routing import websocket_urlpatterns
from releases.models import Release
from releases.permissions import Actor
from releases.promotions import do_decide, do_request_release
from tests import factories
from tests.dashboard.test_browser_live import shop_with_hosts

pytestmark = pytest.mark.django_db(transaction=True)


def count(message: str) -> str:
    match = re.search(r'<span id="approvals-count"[^>]*>([^<]*)</span>', message)
    assert match, message[:300]
    return match.group(1)


async def connect(path, user):
    c = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    c.scope["user"] = user
    c.scope["cookies"] = {"csrftoken": "a" * 32}
    connected, _ = await c.connect()
    return c if connected else None


def test_nav_count_follows_batches_waiting_for_me():
    app, env, users, artifacts = shop_with_hosts()
    alice, bob = users["alice"], users["bob"]
    outsider = factories.UserFactory(username="outsider")
    holder = {}

    def request():
        holder["release"] = do_request_release(
            Actor(alice), app, environment=env, artifact=artifacts["2.0.0"]
        )

    async def scenario():
        a = await connect("/ws/me/", alice)
        b = await connect("/ws/me/", bob)
        o = await connect("/ws/me/", outsider)
        assert count(await a.receive_from(timeout=5)) == ""  # catch-up: nothing waits
        assert count(await b.receive_from(timeout=5)) == ""
        await o.receive_from(timeout=5)
        await database_sync_to_async(request)()
        assert count(await a.receive_from(timeout=5)) == "1"  # a batch with alice's change arrives
        assert count(await b.receive_from(timeout=5)) == "1"
        assert await o.receive_nothing(timeout=0.5)  # not a member: never told
        release_id = holder["release"].pk
        await database_sync_to_async(do_decide)(Actor(alice), release_id, decision="approve")
        # Alice decided: it no longer waits for her, still for bob (drained to the last message of each).
        assert count(await a.receive_from(timeout=5)) == ""
        assert count(await b.receive_from(timeout=5)) == "1"
        await database_sync_to_async(do_decide)(Actor(bob), release_id, decision="approve")
        while not await b.receive_nothing(timeout=0.5):
            last = await b.receive_from(timeout=5)
        assert count(last) == ""
        for c in (a, b, o):
            await c.disconnect()

    async_to_sync(scenario)()
    assert Release.objects.get(pk=holder["release"].pk).status != "pending_approval"


def test_inbox_cards_arrive_and_leave_when_superseded():
    app, env, users, artifacts = shop_with_hosts()
    alice = users["alice"]
    first = do_request_release(Actor(alice), app, environment=env, artifact=artifacts["2.0.0"])
    v3 = factories.ArtifactFactory(application=app, version="3.0.0")

    def supersede():
        do_request_release(Actor(alice), app, environment=env, artifact=v3)

    async def scenario():
        c = await connect("/ws/inbox/", alice)
        catch_up = await c.receive_from(timeout=5)
        assert count(catch_up) == "1" and '<div id="inbox-cards">' in catch_up
        assert f"/releases/{first.pk}/" in catch_up and "3.0.0" not in catch_up
        await database_sync_to_async(supersede)()
        messages = [await c.receive_from(timeout=5)]
        while not await c.receive_nothing(timeout=0.5):
            messages.append(await c.receive_from(timeout=5))
        assert f"/releases/{first.pk}/" not in messages[-1] and "3.0.0" in messages[-1]
        await c.disconnect()

    async_to_sync(scenario)()


def test_inbox_sockets_refuse_anonymous_users():
    async def scenario():
        return [await connect(path, AnonymousUser()) for path in ("/ws/me/", "/ws/inbox/")]

    assert async_to_sync(scenario)() == [None, None]


def test_a_page_may_ask_for_its_state_again_and_nothing_else():
    """`{"resync": true}` (slipway.js, after a push held back while a form was being sent) gets the page's state
    again, rendered now; at most 10 in 10 s are honoured; any other message is ignored."""
    app, env, users, artifacts = shop_with_hosts()
    alice = users["alice"]

    def request():
        do_request_release(Actor(alice), app, environment=env, artifact=artifacts["2.0.0"])

    async def scenario():
        a = await connect("/ws/me/", alice)
        assert count(await a.receive_from(timeout=5)) == ""
        await a.send_to(text_data='{"hello": true}')
        assert await a.receive_nothing(timeout=0.3)
        await database_sync_to_async(request)()
        while not await a.receive_nothing(timeout=0.3):
            await a.receive_from(timeout=5)
        await a.send_to(text_data='{"resync":true}')
        assert count(await a.receive_from(timeout=5)) == "1"
        for _ in range(9):
            await a.send_to(text_data='{"resync":true}')
            await a.receive_from(timeout=5)
        await a.send_to(text_data='{"resync":true}')  # the eleventh within 10 s
        assert await a.receive_nothing(timeout=0.3)
        await a.disconnect()

    async_to_sync(scenario)()
