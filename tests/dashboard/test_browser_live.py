"""Live views in a real browser: pages opened by one person follow what others and the worker do, without a reload."""

import pytest

from environments.models import Target
from releases.models import Release, Role
from releases.permissions import Actor
from releases.promotions import do_request_release
from releases.services import do_grant_role
from tests import factories
from tests.dashboard.test_browser import ARGS, CHROMIUM
from tests.live import LiveSlipway

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
HOSTS = ["web-1", "web-2", "web-3"]


@pytest.fixture
def slipway():
    server = LiveSlipway.start(embedded=True)  # with its in-process worker: rollouts run
    yield server
    server.stop()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def login(browser, server, username, path):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url + path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login/" not in url)
    page.evaluate("window.notReloaded = true")
    return page


def shop_with_hosts(command="sleep 1"):
    """Production runs 1.0.0 on three hosts (the command driver); 2.0.0 carries a change by alice and one by bob."""
    system = Actor.system()
    app = factories.ApplicationFactory(slug="shop", name="Shop")
    env = factories.EnvironmentFactory(
        application=app,
        name="production",
        position=1,
        requires_approval=True,
        driver="command",
        deploy_command=command,
    )
    for name in HOSTS:
        Target.objects.create(environment=env, name=name, token_hash=f"hash-{name}", version="1.0.0")
    users = {name: factories.UserFactory(username=name, password=PASSWORD) for name in ("alice", "bob")}
    for user in users.values():
        do_grant_role(system, app, user, Role.RELEASE_MANAGER)
    artifacts = factories.register_builds(
        app, {"1.0.0": (), "2.0.0": (("alice", "Faster checkout"), ("bob", "Saved address"))}
    )
    factories.EnvironmentFactory._meta.model.objects.filter(pk=env.pk).update(
        current_artifact=artifacts["1.0.0"]
    )
    Release.objects.create(
        application=app, environment=env, artifact=artifacts["1.0.0"], kind="recorded", status="succeeded"
    )
    env.refresh_from_db()
    return app, env, users, artifacts


def test_release_page_opened_before_approval_follows_the_rollout_to_success(slipway, browser):
    app, env, users, artifacts = shop_with_hosts()
    release = do_request_release(Actor(users["alice"]), app, environment=env, artifact=artifacts["2.0.0"])
    assert release.status == "pending_approval"

    alice = login(browser, slipway, "alice", f"/releases/{release.pk}/")
    assert alice.locator("#release-head").get_attribute("data-status") == "pending_approval"
    assert alice.get_by_text("No rollout yet").is_visible()
    alice.get_by_role("button", name="Approve my changes").click()
    alice.locator(".badge", has_text="alice approved").wait_for()

    bob = login(browser, slipway, "bob", f"/releases/{release.pk}/")
    bob.get_by_role("button", name="Approve my changes").click()  # the last approval: the rollout starts

    # Alice's page, untouched since: the rollout appears with every host (those not reached yet too) …
    alice.locator("#rollout .tile").nth(len(HOSTS) - 1).wait_for()
    assert alice.locator("#rollout .wave").count() == 2  # cautious: 1, then 2
    alice.locator('#release-head[data-status="deploying"]').wait_for(timeout=20_000)
    assert alice.get_by_role("button", name="Pause").is_visible()
    # … each host goes healthy, the header reaches Succeeded and the controls go.
    alice.locator('#release-head[data-status="succeeded"]').wait_for(timeout=60_000)
    for host in HOSTS:
        alice.locator(f'.tile[data-target="{host}"][data-state="healthy"]').wait_for()
    assert alice.locator("#release-head .badge").inner_text() == "Succeeded"
    for control in ("Pause", "Revert now", "Cancel"):
        assert alice.get_by_role("button", name=control).count() == 0
    alice.locator('#timeline li[data-kind="release.succeeded"]').wait_for()
    assert alice.locator('#timeline li[data-kind="release.approval_given"]').count() == 2
    assert alice.evaluate("window.notReloaded") is True
    assert "live-down" not in (alice.locator("body").get_attribute("class") or "")


def test_rollback_from_the_environment_page_ends_with_the_page_saying_the_old_version(slipway, browser):
    app, env, users, artifacts = shop_with_hosts(command="sleep 0.5")
    Release.objects.create(
        application=app,
        environment=env,
        artifact=artifacts["2.0.0"],
        previous_artifact=artifacts["1.0.0"],
        status="succeeded",
    )
    type(env).objects.filter(pk=env.pk).update(current_artifact=artifacts["2.0.0"])
    Target.objects.filter(environment=env).update(version="2.0.0")

    alice = login(browser, slipway, "alice", "/apps/shop/env/production/")
    assert alice.locator("#env-head .version").inner_text() == "2.0.0"
    alice.on("dialog", lambda dialog: dialog.accept())
    alice.get_by_label("Why").fill("Errors since 2.0.0")
    alice.get_by_role("button", name="Roll back").click()
    alice.get_by_text("Rolling production back to 1.0.0").wait_for(timeout=60_000)  # a loaded CI machine
    alice.locator('#env-head .version[data-version="1.0.0"]').wait_for(timeout=60_000)
    alice.locator("#env-head .in-flight").wait_for(state="detached")
    for host in HOSTS:
        alice.locator(f'#targets tr[data-target="{host}"] .version', has_text="1.0.0").wait_for()
    assert alice.evaluate("window.notReloaded") is True


def test_a_colleagues_change_pushed_to_the_page_keeps_what_i_am_typing(slipway, browser):
    """A pushed partial replaces the form someone is filling: their words, their choice and their focus stay."""
    app, env, users, artifacts = shop_with_hosts()
    Release.objects.create(application=app, environment=env, artifact=artifacts["2.0.0"], status="succeeded")
    type(env).objects.filter(pk=env.pk).update(current_artifact=artifacts["2.0.0"])

    alice = login(browser, slipway, "alice", "/apps/shop/env/production/")
    alice.get_by_label("Why").fill("Errors since 2.0")
    bob = login(browser, slipway, "bob", "/apps/shop/env/production/")
    bob.get_by_label("Reason").fill("Investigating latency")
    bob.get_by_role("button", name="Lock production").click()

    alice.get_by_text("Locked by bob").wait_for()  # the locks and the rollback form were pushed again
    assert alice.get_by_label("Why").input_value() == "Errors since 2.0"
    assert alice.evaluate("document.activeElement.name") == "reason"
    assert alice.evaluate("window.notReloaded") is True


def test_a_lock_reason_being_typed_survives_a_colleague_locking_first(slipway, browser):
    """Alice is typing why she locks production when bob locks it: his lock is pushed to her page, her words stay
    in the form (locks stack, each released on its own), and sending them adds her lock beside his."""
    shop_with_hosts()
    alice = login(browser, slipway, "alice", "/apps/shop/env/production/")
    alice.locator("#locks").get_by_label("Reason").fill("Load test at 14:00")
    bob = login(browser, slipway, "bob", "/apps/shop/env/production/")
    bob.locator("#locks").get_by_label("Reason").fill("Investigating latency")
    bob.get_by_role("button", name="Lock production").click()

    alice.get_by_text("Locked by bob").wait_for()
    assert alice.locator("#locks").get_by_label("reason").input_value() == "Load test at 14:00"
    assert alice.evaluate("document.activeElement.name") == "reason"
    alice.get_by_role("button", name="Lock it too").click()
    alice.get_by_text("Locked by alice").wait_for()
    assert alice.locator("#locks").get_by_role("button", name="Unlock").count() == 2
    assert alice.locator("#locks").get_by_label("reason").input_value() == ""
    assert alice.evaluate("window.notReloaded") is True


def test_a_pms_flag_panel_shows_a_colleagues_toggle(slipway, browser):
    from flags.services import do_create_flag

    app = factories.ApplicationFactory(slug="shop", name="Shop")
    for position, name in enumerate(("staging", "production"), start=1):
        factories.EnvironmentFactory(
            application=app, name=name, position=position, flag_change_requests=False
        )
    for name in ("pm", "lead"):
        do_grant_role(
            Actor.system(), app, factories.UserFactory(username=name, password=PASSWORD), Role.FLAG_EDITOR
        )
    do_create_flag(Actor.system(), app, key="new-checkout")

    pm = login(browser, slipway, "pm", "/apps/shop/flags/")
    switch = pm.get_by_role("switch", name="new-checkout in production")
    assert switch.get_attribute("aria-checked") == "false"
    lead = login(browser, slipway, "lead", "/apps/shop/flags/")
    lead.get_by_role("switch", name="new-checkout in production").click()
    lead.get_by_text("new-checkout is now on in production").wait_for()

    # The PM's panel, untouched: the switch turns on, saying who did it.
    pm.locator('[role="switch"][aria-label="new-checkout in production"][aria-checked="true"]').wait_for()
    assert pm.locator("#flag-rows .changed", has_text="lead").count() == 1
    assert pm.get_by_role("switch", name="new-checkout in staging").get_attribute("aria-checked") == "false"
    assert pm.get_by_role("switch", name="new-checkout in production").is_enabled()  # rendered for the PM
    assert pm.evaluate("window.notReloaded") is True


def test_the_inbox_count_drops_when_a_batch_is_approved_elsewhere(slipway, browser):
    app, env, users, artifacts = shop_with_hosts()
    release = do_request_release(Actor(users["alice"]), app, environment=env, artifact=artifacts["2.0.0"])

    inbox = login(browser, slipway, "alice", "/approvals/")
    inbox.locator("#approvals-count", has_text="1").wait_for()
    assert inbox.locator("#inbox-cards .card").count() == 1
    elsewhere = inbox.context.new_page()  # alice's other tab
    elsewhere.goto(f"{slipway.url}/releases/{release.pk}/")
    elsewhere.get_by_role("button", name="Approve my changes").click()
    elsewhere.locator(".badge", has_text="alice approved").wait_for()

    # The inbox tab, untouched: the count is gone, the batch still listed (it waits for bob) with her approval.
    inbox.locator("#approvals-count").wait_for(state="hidden")
    assert inbox.locator("#approvals-count").inner_text() == ""
    inbox.locator("#inbox-cards", has_text="alice approved").wait_for()
    assert inbox.evaluate("window.notReloaded") is True


def test_a_step_log_being_read_stays_open_while_the_rollout_goes_on(slipway, browser):
    """The progress partial is pushed again at every step: an open log (someone reading it) must stay open."""
    app, env, users, artifacts = shop_with_hosts(command="echo deployed by the command driver; sleep 1.5")
    release = do_request_release(
        Actor(users["alice"]), app, environment=env, artifact=artifacts["2.0.0"], reason="logs"
    )
    alice = login(browser, slipway, "alice", f"/releases/{release.pk}/")
    alice.get_by_role("button", name="Approve my changes").click()
    bob = login(browser, slipway, "bob", f"/releases/{release.pk}/")
    bob.get_by_role("button", name="Approve my changes").click()
    first = alice.locator('#progress tr[data-target="web-1"][data-action="deploy"][data-status="succeeded"]')
    first.locator("summary").click(timeout=60_000)
    assert first.locator("details").get_attribute("open") is not None
    alice.locator(
        '#progress tr[data-target="web-2"][data-action="deploy"][data-status="succeeded"]'
    ).wait_for(timeout=60_000)  # several pushes later
    first = alice.locator('#progress tr[data-target="web-1"][data-action="deploy"]')
    assert first.locator("details").get_attribute("open") is not None
    assert "deployed by the command driver" in first.locator("pre").inner_text()
