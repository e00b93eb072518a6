"""Every page of the demo, as an admin and as a developer, in Chromium: no console error, no failed request, no
WebSocket that fails or is closed before it sent anything; the API docs page the menu links to (with its way back);
and every GET form the pages hold ("Show what would ship", the filters) submitted as it stands. The crawl ends when
nothing reachable is left unvisited — hitting the cap is a failure — with links of one pattern (a path with its ids
as N, the names of its query's parameters) opened at most PER_PATTERN times (the demo's nine releases all are; a
long list's 40th page would not be)."""

import re
from urllib.parse import parse_qsl, urljoin, urlparse

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
API_DOCS = "/api/v1/docs/"  # an /api/ page people open: every page's menu links to it
MAX_PAGES = 400  # a safety net: the demo's pages, deduplicated by pattern, are far fewer
PER_PATTERN = 12  # every release of the demo (each in another state), not the 40th page of a list
# Each GET form's URL as the browser would submit it now (its fields' current values), for the crawl to open.
GET_FORMS = """forms => forms
    .filter(f => (f.getAttribute('method') || 'get').toLowerCase() === 'get' && !f.closest('[hidden]'))
    .map(f => {
        const url = new URL(f.getAttribute('action') || location.href, location.href);
        url.search = new URLSearchParams(new FormData(f)).toString();
        return url.pathname + (url.search ? url.search : '');
    })"""


def watch_sockets(page, problems: list[str], where: dict, counts: dict) -> None:
    """A WebSocket error, or a socket closed (by the server) on the page that opened it before it got a frame — a
    refused handshake, a consumer raising — is a failure; sockets closed by leaving the page are not."""

    def opened(ws) -> None:
        path, frames = where["path"], []
        counts["opened"] += 1
        ws.on("framereceived", lambda _: frames.append(1))
        ws.on("socketerror", lambda error: problems.append(f"{path}: websocket {ws.url} error: {error}"))

        def closed(_) -> None:
            if where["path"] == path and not frames:
                problems.append(f"{path}: websocket {ws.url} closed before sending anything")

        ws.on("close", closed)
        ws.on("framereceived", lambda _: counts.__setitem__("frames", counts.get("frames", 0) + 1))

    page.on("websocket", opened)


def pattern(target: str) -> str:
    """/releases/12/?page=2 → /releases/N/?page: the page a link leads to, whatever the object or the value."""
    url = urlparse(target)
    keys = sorted({key for key, _ in parse_qsl(url.query, keep_blank_values=True)})
    return re.sub(r"/\d+(?=/|$)", "/N", url.path) + ("?" + "&".join(keys) if keys else "")


def crawl(browser, base: str, username: str) -> tuple[list[str], list[str], dict]:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    where = {"path": "/login/"}
    counts = {"opened": 0, "forms": 0}
    watch_sockets(page, problems, where, counts)
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
    seen, queue, forms = set(), ["/"], []
    opened: dict[str, int] = {}  # pages opened per pattern

    def wanted(target: str) -> bool:
        return target not in seen and opened.get(pattern(target), 0) < PER_PATTERN

    while queue or forms:
        path = forms.pop(0) if forms else queue.pop(0)  # a form's answer before more links
        if not wanted(path):
            continue
        assert len(seen) < MAX_PAGES, (
            f"{username}: the crawl hit its cap of {MAX_PAGES} pages with {len(queue) + len(forms)} links left; "
            f"the busiest patterns: {sorted(opened.items(), key=lambda kv: -kv[1])[:10]}"
        )
        seen.add(path)
        opened[pattern(path)] = opened.get(pattern(path), 0) + 1
        where["path"] = path
        response = page.goto(base + path)
        assert response is not None and response.status == 200, (
            f"{username}: {path} answered {response.status}"
        )
        page.wait_for_load_state("networkidle")
        if path == API_DOCS:  # Swagger UI: its links are the API's, not pages; it must lead back to Slipway
            page.get_by_role("link", name="← Back to Slipway").wait_for()
            assert page.get_by_role("link", name="← Back to Slipway").get_attribute("href") == "/"
            continue
        for action in page.eval_on_selector_all("form", GET_FORMS):
            if not any(s in action for s in SKIP) and action not in seen and action not in forms:
                forms.append(action)
                counts["forms"] += 1
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
            url = urlparse(urljoin(base + path, href))
            target = url.path + (f"?{url.query}" if url.query else "")
            if (
                url.netloc == urlparse(base).netloc
                and (target == API_DOCS or not any(s in target for s in SKIP))
                and target not in seen
            ):
                queue.append(target)
    where["path"] = "(done)"
    context.close()
    # The queue emptied: every reachable page was visited (or its pattern's share of them), none left for a cap.
    counts["patterns"], counts["pages"] = len(opened), len(seen)
    return sorted(seen), problems, counts


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
            admin_pages, admin_problems, admin_counts = crawl(browser, live_slipway.url, "crawler")
            developer_pages, developer_problems, _ = crawl(browser, live_slipway.url, "alice")
        finally:
            browser.close()
    assert not admin_problems, admin_problems
    assert not developer_problems, developer_problems
    assert len(admin_pages) >= 15, (
        admin_pages
    )  # the overview, the application, environments, releases, flags, …
    assert {"/", "/apps/shop/", "/apps/shop/flags/", "/audit/", "/approvals/"} <= set(admin_pages)
    assert any(p.startswith("/releases/") for p in developer_pages)
    assert API_DOCS in admin_pages and API_DOCS in developer_pages
    # "Show what would ship" from an artifact card, submitted as it stands.
    assert any(p.startswith("/apps/shop/release/?version=") for p in admin_pages), admin_pages
    assert admin_counts["patterns"] >= 20, admin_counts
    assert admin_counts["forms"] >= 3 and admin_counts["opened"] >= 10 and admin_counts.get("frames", 0) >= 10
