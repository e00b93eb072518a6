"""At 390 px (a phone), the release, environment, audit and flags pages fit the screen: no sideways scrolling, and
table cells say which column they are. (docs/img/release-390.png is taken by `make screenshots`.)"""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from releases.models import Release
from tests.dashboard.test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_pages_fit_a_phone(live_slipway):
    from playwright.sync_api import sync_playwright

    call_command("load_demo")
    get_user_model().objects.create_superuser("phone", password="phone-password-1")
    release = Release.objects.filter(application__slug="shop").order_by("-pk").first()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(live_slipway.url + "/login/")
            page.get_by_label("Username").fill("phone")
            page.get_by_label("Password").fill("phone-password-1")
            page.keyboard.press("Enter")
            page.wait_for_url(live_slipway.url + "/")
            for path in (
                f"/releases/{release.pk}/",
                "/apps/shop/env/production/",
                "/apps/shop/",
                "/audit/",
                "/apps/shop/flags/",
                "/approvals/",
            ):
                page.goto(live_slipway.url + path)
                page.wait_for_load_state("networkidle")
                wide = page.evaluate("document.scrollingElement.scrollWidth")
                assert wide <= 390, f"{path} is {wide} px wide at 390 px"
            reason = (
                "A reason pasted without spaces " + "x" * 1900
            )  # long words wrap instead of widening the page
            Release.objects.filter(pk=release.pk).update(reason=reason)
            page.goto(live_slipway.url + f"/releases/{release.pk}/")
            assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
            page.goto(live_slipway.url + "/apps/shop/env/production/")
            cells = page.locator("#history td")
            assert cells.count() and cells.count() == page.locator("#history td[data-label]").count()
        finally:
            browser.close()
