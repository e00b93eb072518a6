"""A button the service refuses (what it sent no longer holds, a conflict) says why on the page it was pressed on —
a message after the redirect back — never on the bare error page; a bad filter on the Errors page is said on that
page and not applied."""

import pytest
from django.contrib.auth import get_user_model

from environments.models import Environment
from flags.models import Flag, FlagEvent
from flags.services import do_create_flag, do_set_flag_state, do_update_flag
from releases.models import Membership, Release, Rollout
from releases.permissions import Actor
from tests import factories

pytestmark = pytest.mark.django_db

BARE = "<title>400 · Slipway</title>"


def said(response) -> str:
    """The page a redirect led to, with its messages; it must not be the bare error page."""
    assert response.redirect_chain, response.status_code
    page = response.content.decode()
    assert response.status_code == 200 and "· Slipway</title>" in page and BARE not in page
    return page


@pytest.fixture
def admin(client, app, user):
    client.force_login(user)
    return client


def test_revert_to_before_a_state_that_no_longer_holds_is_said_on_the_flag_page(admin, app, user):
    production = factories.EnvironmentFactory(application=app, name="production")
    actor = Actor(user)
    flag = do_create_flag(
        actor, app, key="colour", type="string", variants={"green": "green", "red": "red", "blue": "blue"}
    )  # served green by default, blue when off
    do_set_flag_state(actor, flag, production, default_variant="red")
    do_update_flag(actor, Flag.objects.get(pk=flag.pk), variants={"red": "red", "blue": "blue"})  # green gone
    event = FlagEvent.objects.filter(flag=flag, environment=production).order_by("-pk").first()
    assert event.before["default_variant"] == "green"
    response = admin.post(f"/apps/shop/flags/colour/history/{event.pk}/revert/", follow=True)
    page = said(response)
    assert response.redirect_chain[-1][0] == "/apps/shop/flags/colour/"
    assert '<p class="flash error">' in page and "green" in page
    assert Flag.objects.get(pk=flag.pk).states.get(environment=production).default_variant == "red"


def test_revoking_the_last_admin_is_said_on_the_members_page(admin, app, user):
    only = Membership.objects.get(application=app, user=user)
    response = admin.post(f"/apps/shop/members/{only.pk}/revoke/", follow=True)
    page = said(response)
    assert response.redirect_chain[-1][0] == "/apps/shop/members/"
    assert (
        '<p class="flash error">' in page
        and "admin" in page.split('class="flash error">')[1].split("</p>")[0]
    )
    assert Membership.objects.filter(pk=only.pk).exists()


@pytest.fixture
def finished_release(app):
    production = factories.EnvironmentFactory(application=app, name="production")
    artifact = factories.ArtifactFactory(application=app)
    release = Release.objects.create(
        application=app, environment=production, artifact=artifact, status="succeeded"
    )
    Rollout.objects.create(release=release, targets=["web-1"], status="succeeded", strategy={"kind": "all"})
    return release


@pytest.mark.parametrize("command", ["pause", "resume", "revert", "sideways"])
def test_a_rollout_control_refused_is_said_on_the_release_page(admin, finished_release, command):
    response = admin.post(f"/releases/{finished_release.pk}/rollout/", {"command": command}, follow=True)
    page = said(response)
    assert response.redirect_chain[-1][0] == f"/releases/{finished_release.pk}/"
    message = page.split('<p class="flash error">')[1].split("</p>")[0]
    assert ("succeeded" in message) if command != "sideways" else ("Choose pause" in message)
    assert Rollout.objects.get(release=finished_release).status == "succeeded"


@pytest.mark.parametrize(
    "query,says",
    [
        ("?range=1y", "Range &#x27;1y&#x27; is not one of 24h, 7d"),
        ("?environment=nope", "no environment &#x27;nope&#x27;"),
    ],
)
def test_a_bad_filter_on_the_errors_page_is_said_there(client, app, query, says):
    factories.EnvironmentFactory(application=app, name="production")
    viewer = get_user_model().objects.create_user("vic", password="x")
    factories.MembershipFactory(user=viewer, application=app, role="viewer")
    client.force_login(viewer)
    response = client.get(f"/apps/shop/errors/{query}")
    page = response.content.decode()
    assert response.status_code == 400 and BARE not in page
    assert 'aria-label="Filter errors"' in page  # the Errors page, its filters there to fix
    assert '<p class="flash error">' in page and says in page
    assert Environment.objects.filter(application=app).count() == 1


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_in_chromium_revert_to_before_says_why_on_the_flag_page(live_slipway):
    from playwright.sync_api import sync_playwright

    from tests.dashboard.test_browser import ARGS, CHROMIUM

    app = factories.ApplicationFactory(slug="shop", name="Shop")
    production = factories.EnvironmentFactory(application=app, name="production")
    root = get_user_model().objects.create_superuser("root", password="root-password-1")
    actor = Actor(root)
    flag = do_create_flag(
        actor, app, key="colour", type="string", variants={"green": "green", "red": "red", "blue": "blue"}
    )
    do_set_flag_state(actor, flag, production, default_variant="red")
    do_update_flag(actor, Flag.objects.get(pk=flag.pk), variants={"red": "red", "blue": "blue"})
    event = FlagEvent.objects.filter(flag=flag, environment=production).order_by("-pk").first()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(live_slipway.url + "/login/?next=/apps/shop/flags/colour/")
            page.get_by_label("Username").fill("root")
            page.get_by_label("Password").fill("root-password-1")
            page.keyboard.press("Enter")
            page.wait_for_url(live_slipway.url + "/apps/shop/flags/colour/")
            page.on("dialog", lambda dialog: dialog.accept())
            page.locator(f'form[action$="/history/{event.pk}/revert/"] button').click()
            error = page.locator("#flash .flash.error")
            error.wait_for()
            assert "green" in error.inner_text()
            assert page.url == live_slipway.url + "/apps/shop/flags/colour/"
            assert page.get_by_role("heading", name="colour").count()  # the flag's page, not the error page
        finally:
            browser.close()
