"""In Chromium: a refused form says why beside the field and keeps what was typed — a segment's conditions JSON
(plain POST, the page again) and an environment's lock reason (htmx, the locks section in place)."""

import pytest

from environments.models import Lock
from flags.models import Segment
from flags.services import do_save_segment
from releases.models import Role
from releases.permissions import Actor
from releases.services import do_grant_role
from tests import factories
from tests.dashboard.test_browser_live import PASSWORD, browser, login  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BETA = [{"attribute": "plan", "operator": "in", "values": ["beta"]}]


@pytest.fixture
def shop():
    app = factories.ApplicationFactory(slug="shop", name="Shop")
    factories.EnvironmentFactory(application=app, name="production", position=1)
    people = {name: factories.UserFactory(username=name, password=PASSWORD) for name in ("pm", "rm")}
    do_grant_role(Actor.system(), app, people["pm"], Role.FLAG_EDITOR)
    do_grant_role(Actor.system(), app, people["rm"], Role.RELEASE_MANAGER)
    do_save_segment(Actor.system(), app, name="beta", conditions=BETA)
    return app


def test_a_bad_segment_condition_is_said_beside_it_with_the_json_kept(live_slipway, browser, shop):  # noqa: F811
    pm = login(browser, live_slipway, "pm", "/apps/shop/flags/")
    pm.locator("summary", has_text="beta").click()
    beta = pm.locator("details", has=pm.locator("summary", has_text="beta"))
    conditions = beta.get_by_label("Conditions")
    typed = '[{"attribute": "plan", "operator": "in", "values": ["beta", "gamma"]'  # no closing "}]"
    conditions.fill(typed)
    pm.get_by_role("button", name="Save beta").click()
    error = pm.locator("#segment-beta-conditions-error")
    error.wait_for()
    assert "Conditions (a list) must be valid JSON" in error.inner_text()
    beta = pm.locator("details[open]", has=pm.locator("summary", has_text="beta"))  # open again, as it was
    conditions = beta.get_by_label("Conditions")
    assert conditions.input_value() == typed  # nothing typed is lost
    assert conditions.get_attribute("aria-invalid") == "true"
    assert conditions.get_attribute("aria-describedby") == "segment-beta-conditions-error"
    assert Segment.objects.get(name="beta").conditions == BETA

    conditions.fill(typed + "}]")
    pm.get_by_role("button", name="Save beta").click()
    pm.get_by_text("Segment beta saved.").wait_for()
    assert Segment.objects.get(name="beta").conditions[0]["values"] == ["beta", "gamma"]
    assert pm.locator(".field-error").count() == 0


def test_a_lock_refused_over_htmx_shows_beside_the_reason_in_place(live_slipway, browser, shop):  # noqa: F811
    rm = login(browser, live_slipway, "rm", "/apps/shop/env/production/")
    locks = rm.locator("#locks")
    locks.get_by_label("Reason").fill("   ")  # only blanks: the browser sends it, Slipway refuses it
    locks.get_by_role("button", name="Lock production").click()
    rm.locator("#locks #lock-reason-error", has_text="Give a reason for the lock.").wait_for()
    assert rm.locator("#locks").get_by_label("Reason").get_attribute("aria-invalid") == "true"
    assert not Lock.objects.exists()
    assert rm.evaluate("window.notReloaded")  # in place: the page was not reloaded

    rm.locator("#locks").get_by_label("Reason").fill("Investigating latency")
    rm.locator("#locks").get_by_role("button", name="Lock production").click()
    rm.locator("#locks", has_text="Investigating latency").get_by_role("button", name="Unlock").wait_for()
    assert rm.locator("#flash", has_text="production is locked").is_visible()
    assert rm.locator("#lock-reason-error").count() == 0
    assert Lock.objects.get().reason == "Investigating latency"
