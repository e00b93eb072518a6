"""The release page's analysis section and the application's Errors page: runs judged by `do_run_analysis` on pushed
samples of known truth, errors ingested as the API stores them, pages read through the served views."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import AnalysisMeasurement, AnalysisRun, ErrorGroup
from monitoring.services import do_resolve_error_group
from releases.models import Release, Rollout
from releases.permissions import Actor
from tests import factories
from tests.conftest import token_client
from tests.monitoring.test_alerts import errors
from tests.monitoring.test_analysis import error_ratios, push, run, source, template


@pytest.fixture
def production(app):
    return factories.EnvironmentFactory(application=app, name="production")


@pytest.fixture
def reverted(app, production):
    """1.5.0's canary failed its analysis (five times the error rate of 1.4.0) and the rollout reverted it."""
    v14 = factories.ArtifactFactory(application=app, version="1.4.0")
    v15 = factories.ArtifactFactory(application=app, version="1.5.0")
    release = Release.objects.create(
        application=app, environment=production, artifact=v15, previous_artifact=v14, status="failed"
    )
    Rollout.objects.create(release=release, targets=["web-1", "web-2"], status="reverted")
    source(app)
    push(app, production, "error_rate", "1.4.0", error_ratios(0.01, 1), target="web-2")
    push(app, production, "error_rate", "1.5.0", error_ratios(0.05, 2), target="web-1")
    push(app, production, "latency_ms", "1.4.0", [50 + i % 7 for i in range(60)], target="web-2")
    push(app, production, "latency_ms", "1.5.0", [50 + i % 5 for i in range(60)], target="web-1")
    tpl = template(
        app,
        [
            {"name": "error_rate", "source": "pushed", "query": "error_rate", "unit": "%"},
            {"name": "latency", "source": "pushed", "query": "latency_ms", "unit": "ms"},
        ],
    )
    judged = run(tpl, production, release=release)
    assert judged.verdict == "fail"
    now = timezone.now()
    errors(production, "1.4.0", "KeyError", 3, start=now - timedelta(hours=2), message="old 1")
    errors(production, "1.5.0", "KeyError", 4, start=now - timedelta(minutes=20), message="old 2")
    errors(production, "1.5.0", "CartTotalError", 9, start=now - timedelta(minutes=20), message="cart 42")
    return release


def more_runs(release, n):
    """Copies of the release's run, measurements and all (the charts draw each)."""
    first = AnalysisRun.objects.filter(release=release).first()
    measurements = list(first.measurements.all())
    for _ in range(n):
        copy = AnalysisRun.objects.get(pk=first.pk)
        copy.pk = None
        copy.save()
        for m in measurements:
            m.pk, m.run = None, copy
        AnalysisMeasurement.objects.bulk_create(measurements)


def more_groups(environment, version, n):
    for i in range(n):
        errors(environment, version, f"Error{i}", 2, start=timezone.now() - timedelta(minutes=30))


def login(client, user):
    client.force_login(user)
    return client


def test_the_release_page_shows_why_analysis_failed_with_a_chart_per_metric(client, user, reverted):
    page = login(client, user).get(f"/releases/{reverted.pk}/").content.decode()
    summary = page[page.index('id="analysis-summary"') : page.index('id="approvals"')]
    assert "Why this release was reverted" in summary
    assert 'against <span class="version">1.4.0</span> → fail: canary judge: score 50' in summary
    assert re.search(
        r"error_rate: canary \d[\d.]* % vs baseline \d[\d.]* % \([\d.]+×\).*→ too high: fail", summary
    )
    assert "latency" not in summary  # only the failing metric is summarised
    section = page[page.index('id="analysis"') : page.index('id="timeline"')]
    assert section.count('<figure class="metric-chart') == 2
    assert '<figure class="metric-chart failed" data-metric="error_rate" data-outcome="high">' in section
    assert 'data-metric="latency" data-outcome="pass"' in section
    charts = re.findall(
        r'<polyline class="chart-line (canary|baseline)" fill="none" points="([^"]+)"', section
    )
    assert [side for side, _ in charts] == ["baseline", "canary"] * 2
    for _, points in charts:  # 60 values a side, drawn inside the view box
        pairs = [tuple(map(float, p.split(","))) for p in points.split()]
        assert len(pairs) == 60 and all(0 <= x <= 320 and 0 <= y <= 96 for x, y in pairs)
    canary, baseline = (
        re.search(rf'chart-mean {side}"[^>]*y1="([\d.]+)"', section).group(1)
        for side in ("canary", "baseline")
    )
    assert float(canary) < float(baseline)  # the canary's mean error rate is drawn higher (smaller y)
    assert "style=" not in section  # the CSP refuses inline styles
    groups = section[section.index('class="table error-groups"') :]
    assert groups.count("<tr data-group=") == 2  # KeyError (seen before) and CartTotalError (new in 1.5.0)
    new = groups[groups.index('class="new-error"') :]
    assert (
        '<span class="badge bad">new</span> <code>CartTotalError: cart &lt;n&gt;</code>'
        in new[: new.index("</tr>")]
    )
    key_error = groups[groups.index("<code>KeyError:") - 200 : groups.index("<code>KeyError:")]
    assert "new-error" not in key_error


def test_a_release_that_succeeded_has_no_failure_summary(client, user, reverted):
    Release.objects.filter(pk=reverted.pk).update(status="succeeded")
    Rollout.objects.filter(release=reverted).update(status="succeeded")
    page = login(client, user).get(f"/releases/{reverted.pk}/").content.decode()
    assert "Why this release" not in page and 'data-verdict="fail"' in page


def test_release_page_queries_do_not_grow_with_runs_and_error_groups(
    client, user, reverted, django_assert_num_queries
):
    login(client, user)
    url = f"/releases/{reverted.pk}/"

    def count():
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    client.get(url)
    one = count()
    more_runs(reverted, 19)
    more_groups(reverted.environment, "1.5.0", 18)
    assert AnalysisRun.objects.filter(release=reverted).count() == 20
    with django_assert_num_queries(one):
        page = client.get(url).content.decode()
    assert page.count('<article class="analysis-run"') == 20 and page.count("<tr data-group=") == 20


def test_the_errors_page_lists_groups_with_sparklines_and_filters_by_environment(client, user, app, reverted):
    staging = factories.EnvironmentFactory(application=app, name="staging", position=0)
    errors(staging, "1.5.0", "StagingOnly", 5, start=timezone.now() - timedelta(hours=3))
    do_resolve_error_group(Actor(user), ErrorGroup.objects.get(type="KeyError"))
    errors(
        reverted.environment,
        "1.5.0",
        "KeyError",
        1,
        start=timezone.now() - timedelta(minutes=5),
        message="old 3",
    )
    login(client, user)
    home = client.get("/apps/shop/").content.decode()
    assert 'href="/apps/shop/errors/"' in home
    page = client.get("/apps/shop/errors/").content.decode()
    rows = re.findall(r'<tr data-group="\d+" data-status="(\w+)">', page)
    assert sorted(rows) == ["new", "new", "regressed"]
    cart = page[page.index("CartTotalError") : page.index("</tr>", page.index("CartTotalError"))]
    # 9 events in the last 20 minutes: one bar, or two when an hour began meanwhile
    peak = int(re.search(r'aria-label="9 events, at most (\d) in 1 h"', cart).group(1))
    assert (peak, cart.count("<rect ")) == (9, 1) or (peak >= 5 and cart.count("<rect ") == 2)
    assert '<td data-label="First seen in" class="version">1.5.0</td>' in cart
    key = page[page.index("<code>KeyError:") : page.index("</tr>", page.index("<code>KeyError:"))]
    assert (
        'aria-label="8 events' in key and '<td data-label="First seen in" class="version">1.4.0</td>' in key
    )
    assert "Regressed" in key and "style=" not in page
    only = client.get("/apps/shop/errors/?environment=staging").content.decode()
    assert "StagingOnly" in only and "CartTotalError" not in only
    week = client.get("/apps/shop/errors/?range=7d").content.decode()
    key = week[week.index("<code>KeyError:") : week.index("</tr>", week.index("<code>KeyError:"))]
    assert re.search(r'aria-label="8 events, at most [5-8] in 6 h"', key)  # 3 two hours ago, 5 lately
    bad = client.get("/apps/shop/errors/?environment=nope")
    assert bad.status_code == 400 and "nope" in bad.content.decode()
    assert client.get("/apps/shop/errors/?range=1y").status_code == 400


def row_of(page: str, title: str) -> str:
    start = page.index(title)
    return page[page.rindex("<tr data-group=", 0, start) : page.index("</tr>", start)]


def test_a_group_resolved_on_the_errors_page_regresses_on_its_next_event(client, user, app, reverted):
    cart = ErrorGroup.objects.get(type="CartTotalError")
    url = f"/apps/shop/errors/{cart.pk}/resolve/"
    viewer = factories.MembershipFactory(application=app, role="viewer").user
    page = login(client, viewer).get("/apps/shop/errors/").content.decode()
    reason = "You need the developer or release manager role on shop/production."
    assert page.count(f'<button type="submit" class="small" disabled title="{reason}">Resolve</button>') == 2
    assert client.post(url).status_code == 403
    assert ErrorGroup.objects.get(pk=cart.pk).status == "new"

    login(client, factories.MembershipFactory(application=app, role="developer").user)
    row = row_of(client.get("/apps/shop/errors/").content.decode(), "<code>CartTotalError")
    assert f'action="{url}"' in row and "disabled" not in row
    response = client.post(url, {"environment": "production", "range": "7d"}, follow=True)
    assert response.redirect_chain == [("/apps/shop/errors/?environment=production&range=7d", 302)]
    page = response.content.decode()
    row = row_of(page, "<code>CartTotalError")
    assert (
        'data-status="resolved"' in row
        and "Resolve</button>" not in row
        and "Resolved CartTotalError" in page
    )

    # The next event, as an application reports it, reopens it.
    sent = token_client(user, "metrics:write").post(
        "/api/v1/applications/shop/errors/",
        {"environment": "production", "version": "1.5.1", "type": "CartTotalError", "message": "cart 43"},
        format="json",
    )
    assert sent.status_code == 201 and sent.json()["group"]["id"] == cart.pk
    row = row_of(client.get("/apps/shop/errors/").content.decode(), "<code>CartTotalError")
    assert 'data-status="regressed"' in row and "Regressed" in row and f'action="{url}"' in row


def test_the_errors_page_is_for_members_only(client, reverted):
    outsider = factories.UserFactory()
    assert login(client, outsider).get("/apps/shop/errors/").status_code == 404


def test_errors_page_queries_do_not_grow_with_groups(client, user, reverted, django_assert_num_queries):
    login(client, user)
    client.get("/apps/shop/errors/")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        client.get("/apps/shop/errors/")
    more_groups(reverted.environment, "1.5.0", 18)
    assert ErrorGroup.objects.count() == 20
    with django_assert_num_queries(len(ctx.captured_queries)):
        page = client.get("/apps/shop/errors/").content.decode()
    assert page.count("<tr data-group=") == 20


@pytest.mark.browser
def test_the_analysis_section_and_errors_page_render_clean_in_chromium(live_slipway, reverted, user):
    """In Chromium: charts drawn, no console error (a CSP violation is one), no failed request. (docs/img's
    pictures of these pages are taken by `make screenshots`.)"""
    from playwright.sync_api import sync_playwright

    from tests.dashboard.test_browser import ARGS, CHROMIUM

    user.set_password("watch-the-canary-1")
    user.save()
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on(
            "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on(
            "response", lambda r: problems.append(f"{r.url} answered {r.status}") if r.status >= 400 else None
        )
        page.goto(live_slipway.url + "/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill("watch-the-canary-1")
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login/" not in url)

        page.goto(f"{live_slipway.url}/releases/{reverted.pk}/")
        page.wait_for_load_state("networkidle")
        summary = page.locator(".analysis-failure")
        assert summary.is_visible() and "error_rate" in summary.inner_text()
        line = page.locator('figure[data-metric="error_rate"] polyline.chart-line.canary')
        box = line.bounding_box()
        assert box is not None and box["width"] > 100  # drawn across the chart
        stroke = line.evaluate("el => getComputedStyle(el).stroke")
        assert stroke == "rgb(217, 45, 32)"  # styled by the stylesheet's class, not inline
        assert page.get_by_text("CartTotalError").first.is_visible()

        page.goto(f"{live_slipway.url}/apps/shop/")
        page.get_by_role("link", name="errors →").click()
        page.wait_for_url("**/apps/shop/errors/")
        page.wait_for_load_state("networkidle")
        assert page.get_by_role("heading", name="Errors of Shop").is_visible()
        assert page.locator("svg.sparkline rect").count() >= 3
        page.get_by_label("Environment").select_option("production")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**/errors/?environment=production*")
        assert page.locator("tr[data-group]").count() == 2
        browser.close()
    assert problems == []


@pytest.mark.django_db(transaction=True)
def test_the_live_release_view_sends_the_analysis_partials(reverted, user):
    """The release page's socket catches up with the same partials the page renders (a reverted canary's why)."""
    from asgiref.sync import async_to_sync

    from tests.dashboard.test_live_release import communicator

    async def scenario():
        c = communicator(f"/ws/releases/{reverted.pk}/", user)
        connected, _ = await c.connect()
        assert connected
        html = await c.receive_from(timeout=5)
        await c.disconnect()
        return html

    html = async_to_sync(scenario)()
    assert '<div id="analysis-summary">' in html and "Why this release was reverted" in html
    assert '<section class="card" id="analysis">' in html and 'data-metric="error_rate"' in html


def test_the_errors_page_resolves_a_group_and_a_new_event_makes_it_regressed(client, user, app, reverted):
    login(client, user)  # the application's admin
    cart = ErrorGroup.objects.get(type="CartTotalError")
    page = client.get("/apps/shop/errors/?range=7d").content.decode()
    row = page[page.index(f'<tr data-group="{cart.pk}"') : page.index("</tr>", page.index("CartTotalError"))]
    assert f'action="/apps/shop/errors/{cart.pk}/resolve/"' in row and "disabled" not in row
    answer = client.post(
        f"/apps/shop/errors/{cart.pk}/resolve/", {"environment": "production", "range": "7d"}
    )
    assert (
        answer.status_code == 302
        and answer["Location"] == "/apps/shop/errors/?environment=production&range=7d"
    )
    page = client.get(answer["Location"]).content.decode()
    assert f'<tr data-group="{cart.pk}" data-status="resolved">' in page
    errors(reverted.environment, "1.5.1", "CartTotalError", 1, start=timezone.now(), message="cart 7")
    assert ErrorGroup.objects.get(pk=cart.pk).status == "regressed"


def test_a_viewer_sees_the_resolve_button_disabled_with_the_reason(client, app, reverted):
    viewer = factories.UserFactory()
    factories.MembershipFactory(user=viewer, application=app, role="viewer")
    page = login(client, viewer).get("/apps/shop/errors/").content.decode()
    button = re.search(r'<button type="submit" class="small" disabled title="([^"]+)">Resolve</button>', page)
    assert button and "developer or release manager" in button.group(1)
    cart = ErrorGroup.objects.get(type="CartTotalError")
    assert client.post(f"/apps/shop/errors/{cart.pk}/resolve/").status_code == 403
    assert ErrorGroup.objects.get(pk=cart.pk).status == "new"


@pytest.mark.parametrize(("on_missing_data", "verdict"), [("inconclusive", "inconclusive"), ("fail", "fail")])
def test_the_release_page_says_a_source_had_no_data_and_what_on_missing_data_decided(
    client, user, app, production, on_missing_data, verdict
):
    """A Prometheus nobody answers at: the run has no data, and the page says so, why, and what it made of it."""
    from tests.live import free_port

    unreachable = f"http://127.0.0.1:{free_port()}"
    v14 = factories.ArtifactFactory(application=app, version="1.4.0")
    v15 = factories.ArtifactFactory(application=app, version="1.5.0")
    release = Release.objects.create(
        application=app, environment=production, artifact=v15, previous_artifact=v14, status="deploying"
    )
    Rollout.objects.create(release=release, targets=["web-1", "web-2"], status="paused")
    source(
        app,
        name="prom",
        kind="prometheus",
        url=unreachable,
        timeout_seconds=1,
        on_missing_data=on_missing_data,
    )
    query = 'sum(rate(shop_requests_total{status="500", version="{{version}}", target=~"{{target}}"}[1m]))'
    judged = run(
        template(app, [{"name": "error_rate", "source": "prom", "query": query}]), production, release=release
    )
    assert (judged.status, judged.verdict) == ("no_data", verdict)
    page = login(client, user).get(f"/releases/{release.pk}/").content.decode()
    section = page[page.index('id="analysis"') : page.index('id="timeline"')]
    assert f'data-verdict="{verdict}"' in section and '<span class="badge warn">No Data</span>' in section
    assert f'<p class="verdict">{verdict}: error_rate has no data</p>' in section
    said = re.sub(r"\s+", " ", section)
    assert (
        f"error_rate: no data (canary: prometheus at {unreachable}: connection refused; "
        f"baseline: prometheus at {unreachable}: connection refused) → {verdict} "
        f"(the source&#x27;s on_missing_data is {on_missing_data})"
    ) in said
    assert 'data-metric="error_rate" data-outcome="missing"' in section and "No values to draw." in section


def test_analysis_runs_and_the_timeline_say_their_times_in_the_configured_zone(
    client, user, reverted, settings
):
    from releases.models import AuditEvent

    settings.TIME_ZONE = "America/New_York"
    AuditEvent.objects.create(
        kind="release.failed",
        actor_label="system",
        object_type="releases.release",
        object_id=str(reverted.pk),
        object_repr="1.5.0",
    )
    page = login(client, user).get(f"/releases/{reverted.pk}/").content.decode()
    section = page[page.index('id="analysis"') : page.index('id="timeline"')]
    run = section[section.index('class="analysis-run"') : section.index('class="verdict"')]
    assert re.search(r'<time datetime="[^"]+" title="[\d-]+ [\d:]+ E[SD]T">', run) and " UTC" not in run
    timeline = page[page.index('id="timeline"') :]
    assert re.search(
        r"(ago|just now) <span class=\"muted\">\([\d-]+ [\d:]+ E[SD]T\)</span></time> <code>release.failed",
        timeline,
    )
