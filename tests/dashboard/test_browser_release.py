"""In Chromium: a build released from its card ships after its authors approve; the audit narrowed to one environment."""

from pathlib import Path

import pytest

from releases.models import Release
from releases.permissions import Actor
from releases.promotions import do_lock
from tests.dashboard.test_browser_live import HOSTS, browser, login, shop_with_hosts, slipway  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_build_released_from_its_card_ships_once_its_authors_approve(slipway, browser):  # noqa: F811
    shop_with_hosts(command="sleep 0.2")
    alice = login(browser, slipway, "alice", "/apps/shop/")
    card = alice.locator("details.artifact", has_text="2.0.0")
    card.get_by_label("Release this build to").select_option("production")
    card.get_by_role("button", name="Show what would ship").click()
    alice.locator("#preview").wait_for()
    assert alice.get_by_text("2 changes by 2 authors would ship").is_visible()
    assert alice.get_by_text("Waiting for bob to approve their changes").is_visible()
    assert not Release.objects.filter(status="pending_approval").exists()  # looking created nothing
    alice.get_by_label("Reason (optional)").fill("Checkout week")
    alice.get_by_role("button", name="Ask for this release").click()
    alice.wait_for_url("**/releases/*/")
    alice.get_by_text("to production — pending approval.").wait_for()
    alice.get_by_role("button", name="Approve my changes").click()
    alice.locator(".badge", has_text="alice approved").wait_for()

    release = Release.objects.get(status="pending_approval")
    bob = login(browser, slipway, "bob", f"/releases/{release.pk}/")
    bob.get_by_role("button", name="Approve my changes").click()
    alice.locator('#release-head[data-status="succeeded"]').wait_for(timeout=60_000)
    for host in HOSTS:
        alice.locator(f'.tile[data-target="{host}"][data-state="healthy"]').wait_for()


def test_the_audit_narrowed_to_one_environment(slipway, browser):  # noqa: F811
    app, env, users, artifacts = shop_with_hosts()
    staging = type(env).objects.create(application=app, name="staging", position=0)
    do_lock(Actor(users["alice"]), staging, reason="staging only")
    do_lock(Actor(users["alice"]), env, reason="production only")
    alice = login(browser, slipway, "alice", "/audit/")
    assert (
        alice.get_by_text("staging only").is_visible() and alice.get_by_text("production only").is_visible()
    )
    alice.get_by_label("Environment").fill("production")
    alice.get_by_label("Environment").press("Enter")  # the filter form submits from the keyboard
    alice.wait_for_url("**environment=production**")
    assert alice.get_by_text("production only").is_visible()
    assert alice.get_by_text("staging only").count() == 0
    assert (
        alice.get_by_role("link", name="shop/production").first.get_attribute("href")
        == "/apps/shop/env/production/"
    )
    with alice.expect_download() as download:
        alice.get_by_role("link", name="Download CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert "production only" in text and "staging only" not in text
