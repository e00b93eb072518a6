import time

import pytest
from django.core.management import call_command

from releases.models import Release
from tests import factories
from tests.dashboard.test_browser import ARGS, CHROMIUM


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")
    return Release.objects.get(status="pending_approval")


def login(client, name):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username=name))
    return client


def test_inbox_shows_my_batch_first_with_my_changes(client, demo):
    page = login(client, "alice").get("/approvals/").content.decode()
    assert "Faster checkout" in page and "Approve my changes" in page
    assert 'class="author-group mine"' in page


def test_approve_in_place_with_htmx(client, demo, django_capture_on_commit_callbacks):
    login(client, "alice")
    response = client.post(
        f"/releases/{demo.pk}/decide/",
        {"decision": "approve", "comment": "lgtm", "partial": "card"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card release-card') and "alice approved" in html
    again = client.post(
        f"/releases/{demo.pk}/decide/", {"decision": "approve"}, headers={"HX-Request": "true"}
    )
    assert again.status_code == 409 and "decided" in again.content.decode()


def _grow(release, authors, changes_each):
    app = release.application
    changes = [
        factories.ChangeFactory(application=app, author=f"dev{a}")
        for a in range(authors)
        for _ in range(changes_each)
    ]
    for change in changes:
        release.artifact.changes.add(change)


def test_inbox_and_release_page_query_counts_are_constant(client, demo, django_assert_num_queries):
    login(client, "alice")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(url):
        client.get(url)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    before = count("/approvals/"), count(f"/releases/{demo.pk}/")
    _grow(demo, authors=15, changes_each=4)
    assert (count("/approvals/"), count(f"/releases/{demo.pk}/")) == before


def test_environment_page_rolls_back_with_confirmation(client, demo, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", password="x-long-password")
    client.force_login(admin)
    page = client.get("/apps/shop/env/production/").content.decode()
    assert (
        'name="version" value="1.0.0" checked' in page
        and 'data-confirm="Roll production back to {version}?"' in page
    )
    form = page[page.index('class="stack rollback"') :]
    assert form[: form.index("</form>")].count('name="reason"') == 1  # one reason field for the list
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/apps/shop/env/production/rollback/", {"version": "1.0.0", "reason": "errors"}
        )
    assert response.status_code == 302
    assert Release.objects.filter(kind="rollback", status="succeeded").exists()
    assert (
        client.post("/apps/shop/env/production/rollback/", {"version": "1.1.0", "reason": ""}).status_code
        == 400
    )


def test_developer_cannot_roll_back_in_browser(client, demo):
    login(client, "bob")
    assert (
        client.post("/apps/shop/env/production/rollback/", {"version": "1.0.0", "reason": "x"}).status_code
        == 403
    )


@pytest.mark.browser
def test_two_authors_approve_in_the_browser_and_the_release_moves_on(live_slipway):
    from django.contrib.auth import get_user_model
    from playwright.sync_api import sync_playwright

    from environments.models import Environment
    from releases.permissions import Actor
    from releases.promotions import do_request_release
    from releases.services import do_grant_role

    User = get_user_model()
    app = factories.ApplicationFactory(slug="shop", name="Shop")
    staging = factories.EnvironmentFactory(application=app, name="staging", position=1)
    production = factories.EnvironmentFactory(
        application=app, name="production", position=2, requires_approval=True
    )
    for name in ("ann", "ben"):
        do_grant_role(
            Actor.system(), app, User.objects.create_user(name, password=f"{name}-password-1"), "developer"
        )
    changes = [factories.ChangeFactory(application=app, author=a) for a in ("ann", "ben")]
    artifact = factories.ArtifactFactory(application=app, version="2.0.0", changes=changes)
    Release.objects.create(
        application=app, environment=staging, artifact=artifact, kind="recorded", status="succeeded"
    )
    release = do_request_release(
        Actor.system(), app, environment=Environment.objects.get(pk=production.pk), artifact=artifact
    )

    def hold_answer(route):
        answer = route.fetch()  # the approval is made and committed, and its push sent
        time.sleep(1.5)
        route.fulfill(response=answer)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for name in ("ann", "ben"):
            page = browser.new_context().new_page()
            page.goto(live_slipway.url + "/approvals/")
            page.get_by_label("Username").fill(name)
            page.get_by_label("Password").fill(f"{name}-password-1")
            page.keyboard.press("Enter")
            page.wait_for_url(lambda url: "/login/" not in url)
            card = page.locator(f"#release-{release.pk}")
            card.locator(".author-group.mine").get_by_text(name).wait_for()
            card.get_by_label("Comment").fill(f"{name} is happy")
            if name == "ben":
                # The push that takes the batch out of the inbox arrives while ben's answer is still on its way
                # (held back here): the section it replaces holds the form being sent, so it waits for the answer
                # and is applied then, instead of being lost (it was, now and then, in CI).
                page.route(f"**/releases/{release.pk}/decide/", hold_answer)
            card.get_by_role("button", name="Approve my changes").click()
            if name == "ann":
                page.locator(f"#release-{release.pk} .badge", has_text=f"{name} approved").wait_for()
            else:  # the last approval: the batch no longer waits, and the live inbox lets it go
                card.wait_for(state="detached")
        page.goto(live_slipway.url + f"/releases/{release.pk}/")
        page.locator("#release-head[data-status=succeeded]").wait_for(timeout=10_000)
        browser.close()
    production.refresh_from_db()
    assert production.current_artifact == artifact


def test_rollback_offers_only_earlier_good_versions_newest_first(
    client, demo, django_capture_on_commit_callbacks
):
    """A version newer than what runs is a roll forward, not a rollback: not offered, and refused if posted."""
    from django.contrib.auth import get_user_model

    from environments.models import Environment
    from releases.selectors import rollback_candidates

    client.force_login(get_user_model().objects.create_superuser("root", password="x-long-password"))
    production = Environment.objects.get(application__slug="shop", name="production")
    offered = [a.version for a in rollback_candidates(production)]
    assert offered == ["1.0.0"] and production.current_artifact.version == "1.1.0"
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/apps/shop/env/production/rollback/", {"version": "1.0.0", "reason": "errors"})
    production.refresh_from_db()
    assert production.current_artifact.version == "1.0.0"
    assert list(rollback_candidates(production)) == []  # 1.1.0 is newer than what runs now
    page = client.get("/apps/shop/env/production/").content.decode()
    assert 'name="version" value="1.1.0"' not in page
    refused = client.post("/apps/shop/env/production/rollback/", {"version": "1.1.0", "reason": "go forward"})
    assert refused.status_code == 409 and "newer version" in refused.content.decode()


@pytest.mark.browser
def test_a_stale_push_delivered_while_an_approval_is_sent_does_not_undo_its_answer(live_slipway):
    """The release page's catch-up (rendered before ann approved) reaches her page while her approval is on its way
    back: held back, it is not replayed over the answer; the page asks for its state again instead."""
    from django.contrib.auth import get_user_model
    from playwright.sync_api import sync_playwright

    from releases.permissions import Actor
    from releases.promotions import do_request_release
    from releases.services import do_grant_role

    app = factories.ApplicationFactory(slug="shop", name="Shop")
    production = factories.EnvironmentFactory(application=app, name="production", requires_approval=True)
    for name in ("ann", "ben"):
        user = get_user_model().objects.create_user(name, password=f"{name}-password-1")
        do_grant_role(Actor.system(), app, user, "developer")
    changes = [factories.ChangeFactory(application=app, author=a) for a in ("ann", "ben")]
    artifact = factories.ArtifactFactory(application=app, version="2.0.0", changes=changes)
    release = do_request_release(Actor.system(), app, environment=production, artifact=artifact)
    pushes: dict = {"first": None, "socket": None}

    def relay(ws):
        server = ws.connect_to_server()
        pushes["socket"] = ws

        def from_server(message):
            pushes["first"] = pushes["first"] or message  # the catch-up: the page before ann approved
            ws.send(message)

        server.on_message(from_server)

    def hold_answer(route):
        pushes["answer"] = (route, route.fetch())  # approved and committed; its own push is on its way

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_context().new_page()
        page.route_web_socket(f"**/ws/releases/{release.pk}/", relay)
        page.goto(live_slipway.url + f"/releases/{release.pk}/")
        page.get_by_label("Username").fill("ann")
        page.get_by_label("Password").fill("ann-password-1")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/releases/{release.pk}/")
        page.locator(".author-group.mine").get_by_text("ann").wait_for()
        while pushes["first"] is None:
            page.wait_for_timeout(50)
        page.route(f"**/releases/{release.pk}/decide/", hold_answer)
        page.get_by_role("button", name="Approve my changes").click()
        while "answer" not in pushes:
            page.wait_for_timeout(50)
        page.wait_for_timeout(1000)  # the approval's own push reaches the page, the answer still held
        pushes["socket"].send(pushes["first"])  # then the old state
        page.wait_for_timeout(500)
        route, answer = pushes["answer"]
        route.fulfill(response=answer)
        approved = page.locator("#approvals .badge", has_text="ann approved")
        approved.wait_for()
        page.wait_for_timeout(1000)  # the held pushes' turn has come and gone
        assert approved.is_visible()
        browser.close()


def test_overview_lists_what_waits_for_my_approval_with_a_link(client, demo):
    """alice wrote changes in the pending 1.3.0: her overview says it waits for her, linked; a developer with no
    change in it (and the product manager) sees the application but not that section."""
    factories.MembershipFactory(user=factories.UserFactory(username="dana"), application=demo.application)
    page = login(client, "alice").get("/").content.decode()
    assert "Waiting for your approval" in page
    section = page[page.index("Waiting for your approval") : page.index("<h1>Applications</h1>")]
    assert (
        f'<a href="/releases/{demo.pk}/">shop <span class="version">{demo.artifact.version}</span>' in section
    )
    assert "your changes" in section
    for other in ("dana", "pm"):
        page = login(client, other).get("/").content.decode()
        assert "Waiting for your approval" not in page and "<h1>Applications</h1>" in page, other


def test_rollback_list_is_newest_first_without_failed_current_or_newer_versions(client, db):
    """Three earlier good versions, newest first by registration (not by id); not the failed one, not what runs,
    not a newer one, not one rolled away from (unless it was rolled back to later)."""
    from datetime import timedelta

    from django.utils import timezone

    from releases.models import Artifact
    from releases.selectors import rollback_candidates

    client.force_login(factories.UserFactory(username="root", is_superuser=True))
    app = factories.ApplicationFactory(slug="shop")
    production = factories.EnvironmentFactory(application=app, name="production")
    start = timezone.now() - timedelta(days=10)
    # Registered in this order in time; ids deliberately in another order.
    order = ["1.2.0", "1.0.0", "1.4.0", "1.1.0", "1.3.0-bad", "1.5.0", "0.9.0"]
    hours = {"0.9.0": 0, "1.0.0": 1, "1.1.0": 2, "1.2.0": 3, "1.3.0-bad": 4, "1.4.0": 5, "1.5.0": 6}
    artifacts = {}
    for version in order:
        artifacts[version] = factories.ArtifactFactory(application=app, version=version)
        Artifact.objects.filter(pk=artifacts[version].pk).update(
            created_at=start + timedelta(hours=hours[version])
        )
    statuses = {
        "1.0.0": Release.Status.SUCCEEDED,
        "1.1.0": Release.Status.SUCCEEDED,
        "1.2.0": Release.Status.ROLLED_BACK,  # it succeeded, then someone rolled away from it: not offered
        "0.9.0": Release.Status.ROLLED_BACK,  # rolled away from, then rolled back to and left: good again
        "1.3.0-bad": Release.Status.FAILED,
        "1.4.0": Release.Status.SUCCEEDED,
        "1.5.0": Release.Status.ROLLED_BACK,
    }
    for n, (version, status) in enumerate(statuses.items()):
        Release.objects.create(
            application=app,
            environment=production,
            artifact=artifacts[version],
            status=status,
            finished_at=start + timedelta(days=1, hours=n),
        )
    Release.objects.create(  # the rollback to 0.9.0, after it was rolled away from
        application=app,
        environment=production,
        artifact=artifacts["0.9.0"],
        kind=Release.Kind.ROLLBACK,
        status=Release.Status.SUCCEEDED,
        finished_at=start + timedelta(days=2),
    )
    production.current_artifact = artifacts["1.4.0"]
    production.save()
    production.refresh_from_db()  # its artifact with the registration time written above
    assert [a.version for a in rollback_candidates(production)] == ["1.1.0", "1.0.0", "0.9.0"]
    page = client.get("/apps/shop/env/production/").content.decode()
    rollback = page[page.index('id="rollback"') :]
    assert 'name="version" value="1.2.0"' not in rollback
    offered = [rollback.index(f'name="version" value="{v}"') for v in ("1.1.0", "1.0.0", "0.9.0")]
    assert offered == sorted(offered)
    for version in ("1.3.0-bad", "1.4.0", "1.5.0"):
        assert f'name="version" value="{version}"' not in rollback
