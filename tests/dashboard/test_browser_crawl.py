"""Every page of the demo, as an admin and as a developer, in Chromium: no console error, no failed request."""

from urllib.parse import urljoin, urlparse

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.dashboard.test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "crawl-the-demo-2026"
SKIP = (
    "/logout",
    "/admin/",
    "/api/",
    "/ws/",
    "/static/",
    "export=csv",
)  # not pages of Slipway's own (or not GETs)
MAX_PAGES = 80


def crawl(browser, base: str, username: str) -> tuple[list[str], list[str]]:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    where = {"path": "/login/"}
    page.on(
        "console",
        lambda m: (
            problems.append(f"{where['path']}: console {m.type}: {m.text}") if m.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"{where['path']}: {error}"))
    page.on("requestfailed", lambda r: problems.append(f"{where['path']}: {r.url} failed ({r.failure})"))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{where['path']}: {r.url} answered {r.status}") if r.status >= 400 else None
        ),
    )
    page.goto(base + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login/" not in url)
    seen, queue = set(), ["/"]
    while queue and len(seen) < MAX_PAGES:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        where["path"] = path
        response = page.goto(base + path)
        assert response is not None and response.status == 200, (
            f"{username}: {path} answered {response.status}"
        )
        page.wait_for_load_state("networkidle")
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
            url = urlparse(urljoin(base + path, href))
            target = url.path + (f"?{url.query}" if url.query else "")
            if (
                url.netloc == urlparse(base).netloc
                and not any(s in target for s in SKIP)
                and target not in seen
            ):
                queue.append(target)
    context.close()
    return sorted(seen), problems


@pytest.mark.django_db(transaction=True)
def test_every_demo_page_loads_clean_for_an_admin_and_a_developer(live_slipway):
    from playwright.sync_api import sync_playwright

    call_command("load_demo")
    users = get_user_model()
    admin = users.objects.create_superuser("crawler", password=PASSWORD)
    assert admin.pk
    alice = users.objects.get(username="alice")
    alice.set_password(PASSWORD)
    alice.save()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            admin_pages, admin_problems = crawl(browser, live_slipway.url, "crawler")
            developer_pages, developer_problems = crawl(browser, live_slipway.url, "alice")
        finally:
            browser.close()
    assert len(admin_pages) >= 15, (
        admin_pages
    )  # the overview, the application, environments, releases, flags, …
    assert {"/", "/apps/shop/", "/apps/shop/flags/", "/audit/", "/approvals/"} <= set(admin_pages)
    assert any(p.startswith("/releases/") for p in developer_pages)
    assert not admin_problems, admin_problems
    assert not developer_problems, developer_problems
