"""Controls a person may not use are shown disabled with the role they need (Force on a held release, Promote,
"Show what would ship"); destructive ones ask first (a production flag switched off from the list, declining an
identity request)."""

import re

import pytest

from environments.models import Environment
from flags.models import FlagState
from flags.services import do_create_flag, do_set_flag_state
from releases.models import AuthorIdentity, Release
from releases.permissions import Actor
from releases.promotions import do_lock, do_request_release
from tests import factories
from tests.dashboard.test_release_in_browser import shop  # noqa: F401

pytestmark = pytest.mark.django_db


def tag(page: str, pattern: str) -> str:
    """The first HTML tag matching `pattern`."""
    match = re.search(r"<(?:button|a)\b[^>]*>" + pattern, page)
    assert match, pattern
    return match.group(0)


@pytest.fixture
def held(shop):  # noqa: F811
    app, people = shop
    production = Environment.objects.get(application=app, name="production")
    artifact = app.artifacts.get(version="1.1.0")
    release = do_request_release(Actor(people["alice"]), app, environment=production, artifact=artifact)
    do_lock(Actor(people["boss"]), production, reason="incident")
    return release, people


def test_force_on_a_held_release_is_shown_disabled_with_the_role_it_needs(client, held):
    release, people = held
    client.force_login(people["alice"])
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Force this release past what holds it" in page
    force = tag(page, "Force</button>")
    assert "disabled" in force and 'title="You need the admin role on shop/production."' in force
    assert (
        '<p class="muted small" id="why-force">Forcing: You need the admin role on shop/production.</p>'
        in page
    )
    client.force_login(people["boss"])
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "disabled" not in tag(page, "Force</button>") and 'id="why-force"' not in page


def test_a_finished_release_offers_no_force_to_anyone(client, held):
    release, people = held
    Release.objects.filter(pk=release.pk).update(status="succeeded")
    client.force_login(people["alice"])
    assert "Force this release" not in client.get(f"/releases/{release.pk}/").content.decode()


def test_promote_and_show_what_would_ship_are_disabled_for_a_viewer_with_the_reason(client, shop):  # noqa: F811
    app, people = shop
    Environment.objects.filter(application=app, name="production").update(current_artifact=None)
    client.force_login(people["viewer"])
    page = client.get("/apps/shop/").content.decode()
    promote = tag(page, "Promote ")
    assert promote.startswith("<button") and "disabled" in promote
    assert 'title="You need the developer role on shop/production."' in promote
    assert 'id="why-promote-production">You need the developer role on shop/production.</span>' in page
    show = tag(page, "Show what would ship")
    assert "disabled" in show and 'title="You need the developer role on shop."' in show
    client.force_login(people["alice"])
    page = client.get("/apps/shop/").content.decode()
    assert tag(page, "Promote ").startswith('<a class="button"') and "disabled" not in tag(
        page, "Show what would ship"
    )


def test_switching_a_production_flag_off_from_the_list_asks_first(client, shop):  # noqa: F811
    app, people = shop
    boss = Actor(people["boss"])
    flag = do_create_flag(boss, app, key="new-checkout")
    for environment in Environment.objects.filter(application=app):
        do_set_flag_state(boss, flag, environment, enabled=True)
    client.force_login(people["boss"])
    page = client.get("/apps/shop/flags/").content.decode()
    switches = re.findall(r'<button type="submit" class="toggle on"[^>]*>', page)
    assert len(switches) == 2
    staging, production = switches  # in the pipeline's order
    assert "data-confirm" not in staging
    assert (
        'data-confirm="Turn new-checkout off in production? Everyone there gets off at once."' in production
    )
    # Off, switching on does not ask; the htmx answer to a switch keeps the question for the next switch-off.
    FlagState.objects.filter(flag=flag, environment__name="production").update(enabled=False)
    page = client.get("/apps/shop/flags/").content.decode()
    assert page.count('data-confirm="Turn new-checkout off') == 0
    answer = client.post(
        "/apps/shop/flags/new-checkout/env/production/toggle/", headers={"HX-Request": "true"}
    )
    assert 'data-confirm="Turn new-checkout off in production?' in answer.content.decode()


def test_declining_an_identity_request_asks_first(client, shop):  # noqa: F811
    app, people = shop
    AuthorIdentity.objects.create(
        user=people["bob"], identity="bob@users.noreply.github.com", status="pending"
    )
    client.force_login(factories.UserFactory(username="root", is_superuser=True))
    page = client.get("/approvals/").content.decode()
    decline = tag(page, "Decline</button>")
    assert "data-confirm=\"Decline bob's request for bob@users.noreply.github.com?" in decline
