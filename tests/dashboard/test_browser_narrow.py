"""At 390 px (a phone), the release, environment, audit and flags pages fit the screen: no sideways scrolling, and
table cells say which column they are — the release's steps and the environment's targets included, which the demo
(its fleet off, its newest release pending) does not show, so the test adds them. The release at 390 px is saved as
a picture (docs/img/release-390.png is taken by `make screenshots`)."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from environments.models import Environment, Lock, Target
from flags.models import ChangeRequest, Flag
from releases.models import ApiToken, Release, Rollout, RolloutStep
from tests.dashboard.test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDTH = 390
SHOTS = Path(
    os.environ.get("SLIPWAY_TEST_SHOTS", Path(__file__).resolve().parents[2] / "var" / "test" / "shots")
)


def release_with_steps(production: Environment) -> Release:
    """A finished canary rollout on eight hosts (as the demo's fleet would have it), with long host names and logs."""
    now = timezone.now()
    names = [f"web-{n}.eu-west-1.shop-production.internal" for n in range(1, 9)]
    for name in names:
        Target.objects.create(
            environment=production,
            name=name,
            token_hash=ApiToken.hash_key(name),
            status=Target.Status.ONLINE,
            version="1.1.0",
            hostname=f"ip-10-0-0-{len(name)}.eu-west-1.compute.internal",
            agent_version="0.1.0",
            last_seen=now - timedelta(seconds=12),
        )
    artifact = production.current_artifact
    release = Release.objects.create(
        application=production.application, environment=production, artifact=artifact, status="succeeded"
    )
    rollout = Rollout.objects.create(
        release=release, targets=names, status="succeeded", strategy={"kind": "canary", "steps": [25, 100]}
    )
    for index, name in enumerate(names):
        RolloutStep.objects.create(
            rollout=rollout,
            index=index,
            wave=0 if index < 2 else 1,
            target_name=name,
            action="deploy",
            version=artifact.version,
            status="succeeded",
            health={"ok": True, "detail": "GET http://127.0.0.1:8080/health answered 200 in 12 ms"},
            output="pulled registry.example.com/shop:" + artifact.version + " " + "x" * 300,
            started_at=now - timedelta(minutes=5),
            finished_at=now - timedelta(minutes=4, seconds=30),
        )
    return release


def fits(page, path: str) -> None:
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= WIDTH, f"{path} is {wide} px wide at {WIDTH} px"


def every_cell_labelled(page, table: str) -> int:
    cells = page.locator(f"{table} td")
    unlabelled = page.locator(f"{table} td:not([data-label])")
    assert cells.count(), f"no {table} on the page"
    assert unlabelled.count() == 0, [unlabelled.nth(i).inner_html()[:80] for i in range(unlabelled.count())]
    return cells.count()


def test_pages_fit_a_phone(live_slipway):
    from playwright.sync_api import sync_playwright

    call_command("load_demo")
    get_user_model().objects.create_superuser("phone", password="phone-password-1")
    pending = Release.objects.filter(application__slug="shop").order_by("-pk").first()
    production = Environment.objects.get(application__slug="shop", name="production")
    shipped = release_with_steps(production)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 844})
            page.goto(live_slipway.url + "/login/")
            page.get_by_label("Username").fill("phone")
            page.get_by_label("Password").fill("phone-password-1")
            page.keyboard.press("Enter")
            page.wait_for_url(live_slipway.url + "/")
            for path in (
                f"/releases/{pending.pk}/",
                f"/releases/{shipped.pk}/",
                "/apps/shop/env/production/",
                "/apps/shop/",
                "/audit/",
                "/apps/shop/flags/",
                "/approvals/",
            ):
                page.goto(live_slipway.url + path)
                page.wait_for_load_state("networkidle")
                fits(page, path)
            # The steps table: every cell labelled (the card layout of a phone), nothing wider than the screen.
            page.goto(live_slipway.url + f"/releases/{shipped.pk}/")
            page.wait_for_load_state("networkidle")
            assert every_cell_labelled(page, "#rollout table.steps") >= 8 * 9
            fits(page, f"/releases/{shipped.pk}/ (steps)")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "release-390.png"), full_page=True)
            # The targets table and the history of the environment.
            page.goto(live_slipway.url + "/apps/shop/env/production/")
            page.wait_for_load_state("networkidle")
            assert every_cell_labelled(page, "#targets table") == 8 * 6
            every_cell_labelled(page, "#history")
            fits(page, "/apps/shop/env/production/ (targets)")
            reason = (
                "A reason pasted without spaces " + "x" * 1900
            )  # long words wrap instead of widening the page
            Release.objects.filter(pk=pending.pk).update(reason=reason)
            page.goto(live_slipway.url + f"/releases/{pending.pk}/")
            fits(page, "a long reason")
            # A lock's reason (a <span> in a form's row) and a proposed flag change's line wrap the same way.
            admin = get_user_model().objects.get(username="phone")
            Lock.objects.create(environment=production, reason=reason, locked_by=admin)
            page.goto(live_slipway.url + "/apps/shop/env/production/")
            page.wait_for_load_state("networkidle")
            assert page.locator("#locks").get_by_text("A reason pasted without spaces").count()
            fits(page, "/apps/shop/env/production/ (a long lock reason)")
            Environment.objects.filter(pk=production.pk).update(flag_change_requests=True)
            long_value = "y" * 1900
            ChangeRequest.objects.create(
                flag=Flag.objects.get(application__slug="shop", key="new-checkout"),
                environment=production,
                changes={
                    "rules": [
                        {
                            "conditions": [{"attribute": "email", "operator": "in", "values": [long_value]}],
                            "variant": "on",
                        }
                    ]
                },
                proposed_by=admin,
            )
            page.goto(live_slipway.url + "/apps/shop/flags/new-checkout/")
            page.wait_for_load_state("networkidle")
            assert page.locator("#flag-changes").get_by_text("yyyyyyyyyy", exact=False).count()
            fits(page, "/apps/shop/flags/new-checkout/ (a long proposed change)")
        finally:
            browser.close()
