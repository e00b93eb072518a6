"""A real browser (Debian's Chromium driven by Playwright) logs in and sees the overview."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from ops.common import CHROMIUM
from ops.common import CHROMIUM_ARGS as ARGS

pytestmark = [pytest.mark.browser]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def test_login_and_see_overview(live_slipway, browser):
    call_command("load_demo")
    get_user_model().objects.create_superuser("pat", password="s3cret-pass-word")
    page = browser.new_page()
    page.goto(live_slipway.url + "/")
    assert "/login/" in page.url
    page.get_by_label("Username").fill("pat")
    page.get_by_label("Password").fill("s3cret-pass-word")
    page.keyboard.press("Enter")
    page.wait_for_url(live_slipway.url + "/")
    assert page.get_by_role("heading", name="Applications").is_visible()
    assert page.get_by_role("link", name="Shop", exact=True).is_visible()
    assert page.locator(".stage", has_text="production").get_by_text("1.1.0").is_visible()
    page.get_by_role("link", name="Shop", exact=True).click()
    page.wait_for_url("**/apps/shop/")
    assert page.get_by_text("Cache product pages").first.is_visible()
