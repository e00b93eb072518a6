"""Live flag pages: the panel's rows and the flag page follow colleagues' changes, rendered for each viewer."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from config.routing import websocket_urlpatterns
from flags.engine import Resolution
from flags.services import do_change_flag_state, do_create_flag
from flags.usage import UsageCounter
from releases.models import Role
from releases.permissions import Actor
from releases.services import do_grant_role
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop():
    app = factories.ApplicationFactory(slug="shop")
    staging = factories.EnvironmentFactory(application=app, name="staging", position=1)
    production = factories.EnvironmentFactory(
        application=app, name="production", position=2, flag_change_requests=False
    )
    people = {}
    for name, role in (("pm", Role.FLAG_EDITOR), ("lead", Role.FLAG_EDITOR), ("dev", Role.DEVELOPER)):
        people[name] = factories.UserFactory(username=name)
        do_grant_role(Actor.system(), app, people[name], role)
    flag = do_create_flag(Actor(people["lead"]), app, key="new-checkout")
    other = do_create_flag(Actor(people["lead"]), app, key="search-v2")
    return app, {"staging": staging, "production": production}, people, flag, other


def run(path, user, *steps, quiet_after=False):
    """Connect as `user`, take the catch-up, then for each step run it (after commit) and take what it pushes."""

    async def scenario():
        c = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        c.scope["user"] = user
        c.scope["cookies"] = {"csrftoken": "a" * 32}  # the session's CSRF cookie: pushed forms post
        connected, _ = await c.connect()
        if not connected:
            return None
        messages = [await c.receive_from(timeout=5)]
        for step in steps:
            await database_sync_to_async(step)()
            messages.append(await c.receive_from(timeout=5))
        if quiet_after:
            assert await c.receive_nothing(timeout=0.5)
        await c.disconnect()
        return messages

    return async_to_sync(scenario)()


def test_panel_rows_follow_a_colleagues_toggle_rendered_for_each_viewer(shop):
    app, envs, people, flag, other = shop
    path = f"/ws/applications/{app.pk}/flags/"

    def toggle():
        do_change_flag_state(
            Actor(people["lead"]), flag, envs["production"], enabled=True, rollout_percentage=30
        )

    first, pushed = run(path, people["pm"], toggle)
    # Catch-up: a row per flag, each swapped by its id.
    assert f'<tr id="flag-{flag.pk}">' in first and f'<tr id="flag-{other.pk}">' in first
    assert 'aria-checked="true"' not in first
    # The toggle: that flag's row only, with the new state, who and when; the PM may toggle.
    assert pushed.lstrip().startswith(f'<tr id="flag-{flag.pk}">') and f"flag-{other.pk}" not in pushed
    assert "On · 30 %" in pushed and "lead · <time" in pushed and ">just now</time>" in pushed
    assert f'id="toggle-{flag.pk}-{envs["production"].pk}"' in pushed
    assert " disabled" not in pushed and 'name="csrfmiddlewaretoken"' in pushed
    # A developer sees the same state with the switches disabled.
    (dev_view,) = run(path, people["dev"])
    assert "On · 30 %" in dev_view and "disabled" in dev_view


def test_flag_page_follows_state_proposals_history_and_the_chart(shop):
    app, envs, people, flag, other = shop
    envs["staging"].flag_change_requests = True
    envs["staging"].save(update_fields=["flag_change_requests"])
    counter = UsageCounter()

    def set_percentage():
        do_change_flag_state(
            Actor(people["lead"]), flag, envs["production"], enabled=True, rollout_percentage=30
        )

    def propose():
        do_change_flag_state(Actor(people["lead"]), flag, envs["staging"], enabled=True)

    def evaluated():
        counter.add(
            envs["production"].pk, [("new-checkout", Resolution(value=True, variant="on", reason="x"))]
        )
        counter.flush()

    first, state, proposed, chart = run(
        f"/ws/flags/{flag.pk}/", people["pm"], set_percentage, propose, evaluated
    )
    for part in ('id="flag-about"', 'id="flag-changes"', 'id="state-staging"', 'id="chart-production"'):
        assert part in first
    assert '<table class="table" id="flag-history">' in first and "Changed by" not in first
    assert "on · 30 %" in state and "Changed by lead" in state and "state_changed" in state
    assert "Waiting for a second person" in proposed and "Approve and apply" in proposed  # pm may decide
    assert chart.lstrip().startswith('<div id="chart-staging">') and "on: 1" in chart
    # The proposer sees it waiting for another editor; a developer sees every card read-only.
    (lead_view,) = run(f"/ws/flags/{flag.pk}/", people["lead"])
    assert "another flag editor approves it" in lead_view
    (dev_view,) = run(f"/ws/flags/{flag.pk}/", people["dev"])
    assert dev_view.count("<fieldset disabled") == 2


def test_flag_page_ignores_other_flags(shop):
    app, envs, people, flag, other = shop

    def change_other():
        do_change_flag_state(Actor(people["lead"]), other, envs["production"], enabled=True)

    async def scenario():
        c = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/flags/{flag.pk}/")
        c.scope["user"] = people["pm"]
        assert (await c.connect())[0]
        await c.receive_from(timeout=5)
        await database_sync_to_async(change_other)()
        assert await c.receive_nothing(timeout=0.5)
        await c.disconnect()

    async_to_sync(scenario)()


def test_flag_sockets_refuse_strangers_and_unknown_ids(shop):
    from django.contrib.auth.models import AnonymousUser

    app, envs, people, flag, other = shop
    stranger = factories.UserFactory(username="stranger")
    for user, path in (
        (stranger, f"/ws/applications/{app.pk}/flags/"),
        (stranger, f"/ws/flags/{flag.pk}/"),
        (AnonymousUser(), f"/ws/flags/{flag.pk}/"),
        (people["pm"], "/ws/flags/999999/"),
        (people["pm"], "/ws/applications/999999/flags/"),
    ):
        assert run(path, user) is None, path


def test_a_filtered_panel_gets_only_the_rows_it_shows(shop):
    """The socket carries the page's filters: a row the page filtered out is never pushed (htmx would find no
    target and log an error in the browser)."""
    from flags.models import Flag

    app, envs, people, flag, other = shop
    Flag.objects.filter(pk=flag.pk).update(tags=["checkout"])

    async def scenario():
        c = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/applications/{app.pk}/flags/?tag=checkout"
        )
        c.scope["user"] = people["pm"]
        c.scope["cookies"] = {"csrftoken": "a" * 32}
        assert (await c.connect())[0]
        catch_up = await c.receive_from(timeout=5)
        await database_sync_to_async(
            lambda: do_change_flag_state(Actor(people["lead"]), other, envs["staging"], enabled=True)
        )()
        filtered_out = await c.receive_nothing(timeout=1)
        await database_sync_to_async(
            lambda: do_change_flag_state(Actor(people["lead"]), flag, envs["staging"], enabled=True)
        )()
        pushed = await c.receive_from(timeout=5)
        await c.disconnect()
        return catch_up, filtered_out, pushed

    catch_up, filtered_out, pushed = async_to_sync(scenario)()
    assert f'id="flag-{flag.pk}"' in catch_up and f'id="flag-{other.pk}"' not in catch_up
    assert filtered_out  # the other flag's change: nothing for this page
    assert f'id="flag-{flag.pk}"' in pushed
