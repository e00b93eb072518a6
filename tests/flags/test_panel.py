import pytest
from django.core.management import call_command

from flags.models import FlagEvent, FlagState
from flags.snapshots import snapshots
from tests.dashboard.test_browser import ARGS, CHROMIUM


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    snapshots.clear()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_list_search_and_toggle_in_place(admin_client, demo):
    page = admin_client.get("/apps/shop/flags/").content.decode()
    assert "new-checkout" in page and "search-v2" in page
    rows = admin_client.get(
        "/apps/shop/flags/?q=search", headers={"HX-Request": "true", "HX-Target": "flag-rows"}
    )
    html = rows.content.decode()
    assert (
        html.lstrip().startswith('<tbody id="flag-rows">')
        and "search-v2" in html
        and "new-checkout" not in html
    )
    toggled = admin_client.post(
        "/apps/shop/flags/search-v2/env/production/toggle/", headers={"HX-Request": "true"}
    )
    assert 'aria-checked="true"' in toggled.content.decode()
    assert FlagState.objects.get(flag__key="search-v2", environment__name="production").enabled


def test_list_query_count_is_constant(admin_client, demo, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flags.services import do_create_flag
    from releases.models import Application
    from releases.permissions import Actor

    def count():
        with CaptureQueriesContext(connection) as ctx:
            admin_client.get("/apps/shop/flags/")
        return len(ctx.captured_queries)

    before = count()
    for n in range(10):
        do_create_flag(Actor.system(), Application.objects.get(), key=f"extra-{n}")
    assert count() == before


def test_try_a_context_explains(admin_client, demo):
    response = admin_client.get(
        "/apps/shop/flags/new-checkout/try/",
        {"environment": "production", "context": "targetingKey=u1, country=FR"},
    )
    html = response.content.decode()
    assert "TARGETING_MATCH" in html and "by rule #1" in html
    bad = admin_client.get(
        "/apps/shop/flags/new-checkout/try/", {"environment": "production", "context": "oops"}
    )
    assert "name=value" in bad.content.decode()


def test_edit_state_bad_rules_and_revert(admin_client, demo):
    url = "/apps/shop/flags/search-v2/env/staging/"
    assert (
        admin_client.post(
            url, {"enabled": "on", "use_rollout": "on", "percentage": "25", "rules": "[]"}
        ).status_code
        == 302
    )
    state = FlagState.objects.get(flag__key="search-v2", environment__name="staging")
    assert state.enabled and state.rollout["percentage"] == 25
    bad = admin_client.post(
        url,
        {
            "enabled": "on",
            "rules": '[{"conditions": [{"attribute": "a", "operator": "regex", "values": ["x"]}], "variant": "on"}]',
        },
    )
    assert bad.status_code == 400 and "operator" in bad.content.decode()
    event = FlagEvent.objects.filter(flag__key="search-v2", environment__name="staging").first()
    reverted = admin_client.post(f"/apps/shop/flags/search-v2/history/{event.pk}/revert/", follow=True)
    assert "search-v2 in staging is back as it was before that change: off." in reverted.content.decode()
    state.refresh_from_db()
    assert state.enabled is False
    assert admin_client.post(url, {"action": "kill"}).status_code == 302


def test_developer_sees_but_cannot_edit(client, demo):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="bob"))
    assert client.get("/apps/shop/flags/new-checkout/").status_code == 200
    assert client.post("/apps/shop/flags/search-v2/env/production/toggle/").status_code == 403


@pytest.mark.browser
def test_pm_toggles_a_flag_and_tries_a_context(live_slipway):
    from django.contrib.auth import get_user_model
    from playwright.sync_api import sync_playwright

    call_command("load_demo")
    pm = get_user_model().objects.get(
        username="pm"
    )  # the demo's product manager: a flag editor, not a superuser
    pm.set_password("pm-password-1")
    pm.save()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(live_slipway.url + "/apps/shop/flags/")
        page.get_by_label("Username").fill("pm")
        page.get_by_label("Password").fill("pm-password-1")
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login/" not in url)
        switch = page.get_by_role("switch", name="search-v2 in production")
        assert switch.get_attribute("aria-checked") == "false"
        switch.focus()
        page.keyboard.press("Enter")  # keyboard works
        page.get_by_role("switch", name="search-v2 in production").and_(
            page.locator("[aria-checked=true]")
        ).wait_for()
        page.get_by_role("link", name="new-checkout").click()
        page.get_by_label("Context").fill("targetingKey=u7, country=DE")
        page.get_by_label("Environment").select_option("production")
        page.get_by_role("button", name="What would they get?").click()
        page.locator("#try-result", has_text="TARGETING_MATCH").wait_for()
        browser.close()
    assert FlagState.objects.get(flag__key="search-v2", environment__name="production").enabled


def test_edit_variants_and_segments_in_the_panel(admin_client, demo):
    bad = admin_client.post("/apps/shop/flags/banner-text/edit/", {"variants": '{"plain": 5}', "tags": "a"})
    assert bad.status_code == 400 and "is not a string" in bad.content.decode()
    ok = admin_client.post(
        "/apps/shop/flags/banner-text/edit/",
        {
            "variants": '{"plain": "Welcome", "sale": "Sale!", "xmas": "Merry"}',
            "tags": "home, copy",
            "owner": "bob",
        },
    )
    assert ok.status_code == 302
    from flags.models import Flag, Segment

    assert Flag.objects.get(key="banner-text").tags == ["home", "copy"]
    assert (
        admin_client.post(
            "/apps/shop/flags/segments/",
            {"name": "beta", "conditions": '[{"attribute": "plan", "operator": "in", "values": ["beta"]}]'},
        ).status_code
        == 302
    )
    assert Segment.objects.filter(name="beta").exists()
    unknown_op = admin_client.post(
        "/apps/shop/flags/segments/",
        {"name": "beta2", "conditions": '[{"attribute": "plan", "operator": "like", "values": ["b"]}]'},
    )
    assert unknown_op.status_code == 400 and not Segment.objects.filter(name="beta2").exists()


@pytest.mark.browser
@pytest.mark.slow
def test_pm_rolls_out_30_then_60_percent_with_the_slider(live_slipway):
    """The panel's slider serves what it says over the served OFREP route, read by the real SDK."""
    from django.contrib.auth import get_user_model
    from playwright.sync_api import sync_playwright

    from environments.models import Environment
    from releases.models import Application
    from releases.permissions import Actor
    from releases.services import do_create_api_token
    from tests.flags.test_rollout_percentage import KEYS, in_rollout, sdk_values, wait_until_served

    call_command("load_demo")
    shop = Application.objects.get(slug="shop")
    pm = get_user_model().objects.get(username="pm")  # the demo's product manager, a flag editor
    pm.set_password("pm-password-1")
    pm.save()
    production = Environment.objects.get(application=shop, name="production")
    _, token = do_create_api_token(
        Actor.system(), pm, name="sdk", scopes=["flags:read"], environment=production
    )

    def slide_to(page, percentage):
        page.goto(live_slipway.url + "/apps/shop/flags/search-v2/")
        card = page.locator("#env-production")
        card.get_by_label("Enabled").check()
        card.get_by_label("Roll out by percentage").check()
        slider = card.get_by_role("slider")
        slider.focus()
        page.keyboard.press("Home")
        for _ in range(percentage):
            page.keyboard.press("ArrowRight")
        assert card.locator("output").inner_text() == f"{percentage}%"
        card.get_by_role("button", name="Save production").click()
        page.wait_for_load_state()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(live_slipway.url + "/apps/shop/flags/")
        page.get_by_label("Username").fill("pm")
        page.get_by_label("Password").fill("pm-password-1")
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login/" not in url)
        slide_to(page, 30)
        page.goto(live_slipway.url + "/apps/shop/flags/")
        assert page.get_by_role("switch", name="search-v2 in production").inner_text() == "On · 30 %"
        wait_until_served(live_slipway.url, token, "search-v2", 30)
        served = sdk_values(live_slipway.url, token, "search-v2")
        slide_to(page, 60)
        browser.close()
    assert served == [in_rollout("search-v2", k, 30) for k in KEYS]
    assert 0.28 <= sum(served) / len(KEYS) <= 0.32
    wait_until_served(live_slipway.url, token, "search-v2", 60)
    raised = sdk_values(live_slipway.url, token, "search-v2")
    assert raised == [in_rollout("search-v2", k, 60) for k in KEYS]
    assert all(after for before, after in zip(served, raised, strict=True) if before)


def test_a_bad_rule_is_shown_next_to_the_field_and_what_was_typed_is_kept(admin_client, demo):
    url = "/apps/shop/flags/search-v2/env/staging/"
    typed = '[{"conditions": [{"attribute": "plan", "operator": "regex", "values": ["x"]}], "variant": "on"}]'
    response = admin_client.post(
        url, {"enabled": "on", "use_rollout": "on", "percentage": "40", "rules": typed}
    )
    html = response.content.decode()
    assert response.status_code == 400 and "<!doctype html>" in html  # the flag page, not a bare error page
    assert 'id="rules-error-staging"' in html and "rules[0].conditions[0].operator" in html
    from django.utils.html import escape

    assert escape(typed) in html and 'value="40"' in html  # nothing typed is lost
    assert not FlagState.objects.filter(
        flag__key="search-v2", environment__name="staging", enabled=True
    ).exists()
    broken = admin_client.post(url, {"enabled": "on", "rules": "[{oops"})
    assert (
        broken.status_code == 400
        and "valid JSON" in broken.content.decode()
        and "[{oops" in broken.content.decode()
    )
    bad_pct = admin_client.post(
        url, {"enabled": "on", "use_rollout": "on", "percentage": "abc", "rules": "[]"}
    )
    assert bad_pct.status_code == 400 and 'id="percentage-error-staging"' in bad_pct.content.decode()


def test_saving_says_what_happened(admin_client, demo):
    url = "/apps/shop/flags/search-v2/env/production/"
    response = admin_client.post(
        url, {"enabled": "on", "use_rollout": "on", "percentage": "30", "rules": "[]"}, follow=True
    )
    assert "search-v2 is now on · 30 % in production." in response.content.decode()
    killed = admin_client.post(url, {"action": "kill"}, follow=True).content.decode()
    assert "Kill switch: search-v2 is now off in production." in killed
    toggled = admin_client.post(
        "/apps/shop/flags/search-v2/env/production/toggle/", headers={"HX-Request": "true"}
    )
    assert (
        'hx-swap-oob="true"' in toggled.content.decode()
        and "search-v2 is now on · 30 % in production." in toggled.content.decode()
    )


def test_history_shows_field_level_changes(admin_client, demo):
    url = "/apps/shop/flags/search-v2/env/production/"
    admin_client.post(url, {"enabled": "on", "use_rollout": "on", "percentage": "10", "rules": "[]"})
    admin_client.post(
        url,
        {
            "enabled": "on",
            "use_rollout": "on",
            "percentage": "30",
            "rules": '[{"conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}],'
            ' "variant": "on"}]',
        },
    )
    page = admin_client.get("/apps/shop/flags/search-v2/").content.decode()
    assert "rollout: 10 % (on) → 30 % (on)" in page and "rule 1 added: country in FR, DE → on" in page
    assert "True" not in page.split("<h2>History</h2>")[1]  # no Python reprs


@pytest.mark.parametrize("target", ["nonsense", "https://evil.example/", "//evil.example/x"])
def test_toggle_next_only_goes_to_local_pages(admin_client, demo, target):
    response = admin_client.post("/apps/shop/flags/search-v2/env/staging/toggle/", {"next": target})
    assert response.status_code == 302 and response["Location"] == "/apps/shop/flags/"


def test_a_developer_sees_disabled_toggles_and_why(client, demo):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="bob"))
    page = client.get("/apps/shop/flags/").content.decode()
    assert page.count("disabled aria-describedby") >= 3 and "needs the flag editor role" in page
    detail = client.get("/apps/shop/flags/new-checkout/").content.decode()
    assert "Read-only: changing flags in production needs the flag editor role on shop/production." in detail


def test_the_evaluation_chart_stacks_variants_in_the_flags_order(admin_client, demo):
    """Each hour's variants are stacked (a taller bar used to hide the others at the same x), and a variant keeps
    its colour in every environment's chart: the flag's variant order, not the order rows come back in."""
    import re

    from django.utils import timezone

    from environments.models import Environment
    from flags.models import EvaluationCount, Flag

    flag = Flag.objects.get(key="new-checkout")
    first, second = list(flag.variants)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    EvaluationCount.objects.filter(flag_key=flag.key).delete()
    for name, counts in (("production", {second: 30, first: 10}), ("staging", {first: 5, second: 5})):
        env = Environment.objects.get(application=flag.application, name=name)
        for variant, n in counts.items():
            EvaluationCount.objects.create(
                environment=env, flag_key=flag.key, variant=variant, hour=hour, count=n
            )
    page = admin_client.get(f"/apps/shop/flags/{flag.key}/").content.decode()
    chart = page[page.index('id="chart-production"') :]
    chart = chart[: chart.index("</svg>")]
    bars = {
        m["variant"]: (m["cls"], float(m["y"]), float(m["h"]))
        for m in re.finditer(
            r'y="(?P<y>[\d.]+)" height="(?P<h>[\d.]+)" class="(?P<cls>v\d)"><title>(?P<variant>[^:]+): \d+</title>',
            chart,
        )
    }
    assert bars[first][0] == "v0" and bars[second][0] == "v1"
    # Stacked: first at the bottom, second on top of it; together the whole height (the busiest hour).
    assert (
        bars[first][1] + bars[first][2] == 58
        and round(bars[second][1] + bars[second][2], 1) == bars[first][1]
    )
    assert round(bars[first][2] + bars[second][2], 1) == 56
    staging = page[page.index('id="chart-staging"') :]
    assert f"<title>{first}: 5</title>" in staging and 'class="v0"><title>' + first in staging


def test_a_multivariant_percentage_in_the_panel_serves_what_the_api_and_docs_say(admin_client, demo):
    """Inside the percentage: the default variant; outside: the off variant — the panel, the API and the engine."""
    from environments.models import Environment
    from flags.engine import evaluate
    from flags.services import do_create_flag
    from releases.models import Application
    from releases.permissions import Actor
    from tests.flags.test_rollout_percentage import in_rollout

    shop = Application.objects.get(slug="shop")
    variants = {"blue": "#00f", "green": "#0f0", "grey": "#888"}
    do_create_flag(Actor.system(), shop, key="theme", type="string", variants=variants)
    url = "/apps/shop/flags/theme/env/production/"
    chosen = {"enabled": "on", "default_variant": "green", "off_variant": "grey", "rules": "[]"}
    saved = admin_client.post(url, {**chosen, "use_rollout": "on", "percentage": "25"}, follow=True)
    assert "theme is now on · 25 % in production." in saved.content.decode()
    state = FlagState.objects.get(flag__key="theme", environment__name="production")
    assert state.rollout == {"percentage": 25, "weights": {"green": 100}}  # what the API's shortcut writes

    production = Environment.objects.get(application=shop, name="production")
    snapshots.clear()
    snapshot = snapshots.get(production.pk)
    for key in (f"user-{i}" for i in range(2_000)):
        served = evaluate(snapshot, "theme", {"targetingKey": key}).variant
        assert served == ("green" if in_rollout("theme", key, 25) else "grey"), key

    # An existing rollout keeps its weights; without one, rolling out the off variant would serve it to everyone:
    # refused beside the percentage, nothing written.
    assert admin_client.post(url, {**chosen, "default_variant": "grey"}).status_code == 302
    refused = admin_client.post(
        url, {**chosen, "default_variant": "grey", "use_rollout": "on", "percentage": "40"}
    )
    html = refused.content.decode()
    assert refused.status_code == 400 and 'id="percentage-error-production"' in html
    state.refresh_from_db()
    assert state.rollout is None and state.default_variant == "grey"


def _disabled_with(page: str, label: str, reason: str) -> bool:
    """Some button labelled `label` is disabled with `reason` as its title (not an active button that 403s)."""
    import re

    pattern = (
        r"<button[^>]*\bdisabled title=\"" + re.escape(reason) + r"\"[^>]*>" + re.escape(label) + "</button>"
    )
    return re.search(pattern, page) is not None


def test_a_developer_sees_why_they_cannot_save_segments_create_flags_revert_or_decide(client, demo):
    """Every write on the flag pages a developer may not do is a disabled control saying which role it needs."""
    from django.contrib.auth import get_user_model

    from environments.models import Environment
    from flags.models import Flag, Segment
    from flags.services import do_change_flag_state, do_propose_change
    from releases.permissions import Actor

    users = get_user_model().objects
    flag = Flag.objects.get(key="new-checkout")
    production = Environment.objects.get(application=flag.application, name="production")
    Segment.objects.create(
        application=flag.application,
        name="beta",
        conditions=[{"attribute": "plan", "operator": "in", "values": ["beta"]}],
    )
    pm = Actor(users.get(username="pm"))
    do_change_flag_state(pm, flag, production, enabled=True)
    do_propose_change(pm, flag, production, enabled=False)
    client.force_login(users.get(username="bob"))
    app_wide = "You need the flag editor role on shop."
    listing = client.get("/apps/shop/flags/").content.decode()
    for label in ("Save beta", "Create segment", "Create boolean flag"):
        assert _disabled_with(listing, label, app_wide), label
    assert (
        'title="You need the flag editor role on shop/production."' in listing
    )  # the switch, from refusal()
    detail = client.get("/apps/shop/flags/new-checkout/").content.decode()
    here = "You need the flag editor role on shop/production."
    for label in ("Revert to before", "Approve and apply", "Reject"):
        assert _disabled_with(detail, label, here), label
    assert 'disabled aria-describedby="why-flag-edit"' in detail and f"Read-only: {app_wide}" in detail
    # A flag editor gets them active.
    client.force_login(users.get(username="pm"))
    listing = client.get("/apps/shop/flags/").content.decode()
    assert "Create boolean flag" in listing and not _disabled_with(listing, "Create boolean flag", app_wide)
    detail = client.get("/apps/shop/flags/new-checkout/").content.decode()
    assert "Revert to before" in detail and "disabled title" not in detail and "why-flag-edit" not in detail


def test_deciding_a_change_request_says_what_happened(client, demo):
    from django.contrib.auth import get_user_model

    from environments.models import Environment
    from flags.models import ChangeRequest, Flag
    from flags.services import do_propose_change
    from releases.models import Membership
    from releases.permissions import Actor

    users = get_user_model().objects
    flag = Flag.objects.get(key="search-v2")
    production = Environment.objects.get(application=flag.application, name="production")
    reviewer = users.create(username="rita")
    Membership.objects.create(user=reviewer, application=flag.application, role="flag_editor")
    pm = Actor(users.get(username="pm"))
    approve_me = do_propose_change(pm, flag, production, enabled=True)
    reject_me = do_propose_change(pm, flag, production, enabled=False)
    client.force_login(reviewer)
    page = client.get("/apps/shop/flags/search-v2/").content.decode()
    assert (
        'data-confirm="Reject this change to search-v2 in production? Nothing changes' in page
    )  # asks first
    url = "/apps/shop/flags/search-v2/changes/{}/"
    approved = client.post(url.format(approve_me.pk), {"decision": "approve"}, follow=True).content.decode()
    assert "Change approved and applied: search-v2 in production is now on." in approved
    rejected = client.post(url.format(reject_me.pk), {"decision": "reject"}, follow=True).content.decode()
    assert "Change rejected: search-v2 in production stays as it is." in rejected
    assert ChangeRequest.objects.get(pk=reject_me.pk).status == "rejected"


def test_the_flag_page_shows_variants_as_json(admin_client, demo):
    about = admin_client.get("/apps/shop/flags/search-v2/").content.decode()
    about = about[about.index('id="flag-about"') :]
    about = about[: about.index("</p>")]
    assert "<code>on: true</code>" in about and "<code>off: false</code>" in about and "=True" not in about


def test_a_multivariant_rollout_gets_its_weights_as_numbers_in_the_panel(admin_client, demo):
    """What the API's `rollout.weights` sets, the card sets with one number per variant; the engine's checks hold."""
    from flags.services import do_create_flag
    from releases.models import Application
    from releases.permissions import Actor

    shop = Application.objects.get(slug="shop")
    do_create_flag(
        Actor.system(),
        shop,
        key="theme",
        type="string",
        variants={"blue": "#00f", "green": "#0f0", "grey": "#888"},
    )
    page = admin_client.get("/apps/shop/flags/theme/").content.decode()
    assert 'name="rollout-weight-blue"' in page and 'name="rollout-weight-grey"' in page
    assert 'name="rollout-weight-on"' not in admin_client.get("/apps/shop/flags/search-v2/").content.decode()

    url = "/apps/shop/flags/theme/env/production/"
    base = {
        "enabled": "on",
        "default_variant": "blue",
        "off_variant": "grey",
        "rules": "[]",
        "use_rollout": "on",
    }
    saved = admin_client.post(
        url, {**base, "percentage": "40", "rollout-weight-blue": "50", "rollout-weight-green": "50"}
    )
    assert saved.status_code == 302
    state = FlagState.objects.get(flag__key="theme", environment__name="production")
    assert state.rollout == {"percentage": 40, "weights": {"blue": 50, "green": 50}}
    page = admin_client.get("/apps/shop/flags/theme/").content.decode()
    assert 'name="rollout-weight-blue" min="0" max="100" step="1" inputmode="numeric" value="50"' in page

    short = admin_client.post(
        url, {**base, "percentage": "40", "rollout-weight-blue": "50", "rollout-weight-green": "30"}
    )
    html = short.content.decode()
    assert short.status_code == 400 and 'id="percentage-error-production"' in html and "100" in html
    assert (
        'name="rollout-weight-green" min="0" max="100" step="1" inputmode="numeric" value="30"' in html
    )  # kept
    typo = admin_client.post(url, {**base, "percentage": "40", "rollout-weight-blue": "lots"})
    assert typo.status_code == 400 and 'id="weights-error-production"' in typo.content.decode()
    state.refresh_from_db()
    assert state.rollout == {"percentage": 40, "weights": {"blue": 50, "green": 50}}  # nothing half-written
