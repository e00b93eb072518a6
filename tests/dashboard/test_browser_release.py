"""In Chromium: a build released from its card, and a promotion from the pipeline, ship after their authors approve;
the audit narrowed to one environment."""

from pathlib import Path

import pytest

from releases.models import Release
from releases.permissions import Actor
from releases.promotions import do_lock
from tests.dashboard.test_browser_live import HOSTS, browser, login, shop_with_hosts, slipway  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def ask_after_the_preview(page) -> Release:
    """On the release preview of 2.0.0 to production: the batch grouped by author and who must approve, with nothing
    created by looking; then ask for it, with a reason, and land on the new release's page."""
    page.locator("#preview").wait_for()
    assert page.get_by_text("2 changes by 2 authors would ship").is_visible()
    groups = page.locator("#preview .author-group")
    assert groups.count() == 2
    assert groups.filter(has_text="alice").get_by_text("Faster checkout").is_visible()
    assert groups.filter(has_text="bob").get_by_text("Saved address").is_visible()
    for author in ("alice", "bob"):
        assert page.get_by_text(f"Waiting for {author} to approve their changes").is_visible()
    assert not Release.objects.filter(status="pending_approval").exists()  # looking created nothing
    page.get_by_label("Reason (optional)").fill("Checkout week")
    page.get_by_role("button", name="Ask for this release").click()
    page.wait_for_url("**/releases/*/")
    page.get_by_text("to production — pending approval.").wait_for()
    page.evaluate("window.notReloaded = true")  # from here the release page follows by itself
    return Release.objects.get(status="pending_approval", environment__name="production")


def approve_as_each_author_and_watch_it_ship(chromium, server, alice, release) -> None:
    """Alice (on the release page) and bob (logged in now) approve their own changes; the in-process worker rolls
    it out to every host and alice's page, never reloaded, says Succeeded."""
    alice.get_by_role("button", name="Approve my changes").click()
    alice.locator(".badge", has_text="alice approved").wait_for()
    bob = login(chromium, server, "bob", f"/releases/{release.pk}/")
    bob.get_by_role("button", name="Approve my changes").click()
    alice.locator('#release-head[data-status="succeeded"]').wait_for(timeout=60_000)
    assert alice.locator("#release-head .badge").inner_text() == "Succeeded"
    for host in HOSTS:
        alice.locator(f'.tile[data-target="{host}"][data-state="healthy"]').wait_for()
    assert alice.evaluate("window.notReloaded") is True
    release.refresh_from_db()
    assert release.status == "succeeded" and release.environment.current_artifact.version == "2.0.0"


def test_a_build_released_from_its_card_ships_once_its_authors_approve(slipway, browser):  # noqa: F811
    shop_with_hosts(command="sleep 0.2")
    alice = login(browser, slipway, "alice", "/apps/shop/")
    card = alice.locator("details.artifact", has_text="2.0.0")
    card.get_by_label("Release this build to").select_option("production")
    card.get_by_role("button", name="Show what would ship").click()
    release = ask_after_the_preview(alice)
    approve_as_each_author_and_watch_it_ship(browser, slipway, alice, release)


def test_promoting_to_production_from_the_pipeline_ships_once_its_authors_approve(slipway, browser):  # noqa: F811
    app, production, users, artifacts = shop_with_hosts(command="sleep 0.2")
    staging = type(production).objects.create(
        application=app, name="staging", position=0, current_artifact=artifacts["2.0.0"]
    )
    Release.objects.create(
        application=app, environment=staging, artifact=artifacts["2.0.0"], kind="recorded", status="succeeded"
    )
    alice = login(browser, slipway, "alice", "/apps/shop/")
    pipeline = alice.locator("#pipeline")
    assert pipeline.locator(".stage", has_text="staging").get_by_text("2.0.0").is_visible()
    assert pipeline.locator(".stage", has_text="production").get_by_text("1.0.0").is_visible()
    pipeline.get_by_role("link", name="Promote 2.0.0 to production").click()
    alice.wait_for_url("**/apps/shop/release/?environment=production&version=2.0.0")
    assert alice.get_by_label("Build").input_value() == "2.0.0"  # the choice the link made
    assert alice.get_by_label("To").input_value() == "production"
    release = ask_after_the_preview(alice)
    assert release.artifact.version == "2.0.0" and release.requested_by == users["alice"]
    assert release.reason == "Checkout week"
    approve_as_each_author_and_watch_it_ship(browser, slipway, alice, release)


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
