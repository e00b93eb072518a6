"""Starting, promoting and forcing a release from the pages, through the services the API uses."""

import pytest

from environments.models import Environment
from releases.models import AuditEvent, Release, Role
from releases.permissions import Actor
from releases.promotions import do_lock
from releases.services import do_grant_role
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db):
    """staging runs 1.1.0 (changes by alice and bob since 1.0.0), production 1.0.0; production needs approval."""
    system = Actor.system()
    app = factories.ApplicationFactory(slug="shop", name="Shop")
    staging = factories.EnvironmentFactory(application=app, name="staging", position=1)
    production = factories.EnvironmentFactory(
        application=app, name="production", position=2, requires_approval=True
    )
    people = {name: factories.UserFactory(username=name) for name in ("alice", "bob", "viewer", "boss")}
    for name, role in (("alice", Role.DEVELOPER), ("bob", Role.DEVELOPER), ("viewer", Role.VIEWER)):
        do_grant_role(system, app, people[name], role)
    do_grant_role(system, app, people["boss"], Role.ADMIN)
    builds = factories.register_builds(
        app, {"1.0.0": (), "1.1.0": (("alice", "Faster checkout"), ("bob", "Saved address"))}
    )
    Environment.objects.filter(pk=production.pk).update(current_artifact=builds["1.0.0"])
    Environment.objects.filter(pk=staging.pk).update(current_artifact=builds["1.1.0"])
    for environment, version in ((production, "1.0.0"), (staging, "1.1.0")):
        Release.objects.create(
            application=app,
            environment=environment,
            artifact=builds[version],
            kind="recorded",
            status="succeeded",
        )
    return app, people


def test_the_pipeline_offers_the_promotion_and_the_preview_says_who_must_approve_before_anything_exists(
    client, shop
):
    app, people = shop
    client.force_login(people["alice"])
    pipeline = client.get("/apps/shop/").content.decode()
    link = "/apps/shop/release/?environment=production&amp;version=1.1.0"
    assert f'href="{link}">Promote <span class="version">1.1.0</span> to production →</a>' in pipeline

    before = Release.objects.count()
    preview = client.get(link.replace("&amp;", "&"))
    page = preview.content.decode()
    assert preview.status_code == 200 and Release.objects.count() == before  # nothing created by looking
    assert "2 changes by 2 authors would ship" in page
    assert "Faster checkout" in page and "Saved address" in page
    assert (
        "Waiting for alice to approve their changes" in page
        and "Waiting for bob to approve their changes" in page
    )
    assert "Ask for this release" in page


def test_asking_creates_the_release_through_the_service_and_lands_on_its_page(client, shop):
    app, people = shop
    client.force_login(people["alice"])
    response = client.post(
        "/apps/shop/release/", {"environment": "production", "version": "1.1.0", "reason": "Checkout week"}
    )
    release = Release.objects.get(environment__name="production", status="pending_approval")
    assert response.status_code == 302 and response["Location"] == f"/releases/{release.pk}/"
    assert release.requested_by == people["alice"] and release.reason == "Checkout week"
    assert AuditEvent.objects.filter(kind="release.requested", object_id=str(release.pk)).exists()
    page = client.get(response["Location"]).content.decode()
    assert f"Release #{release.pk}: 1.1.0 to production — pending approval." in page


def test_what_may_not_be_asked_is_said_on_the_form_and_nothing_is_created(client, shop):
    app, people = shop
    client.force_login(people["viewer"])
    preview = client.get("/apps/shop/release/?environment=production&version=1.1.0").content.decode()
    assert 'id="refusal"' in preview and "developer" in preview
    refused = client.post("/apps/shop/release/", {"environment": "production", "version": "1.1.0"})
    assert refused.status_code == 403 and not Release.objects.filter(status="pending_approval").exists()
    assert 'value="1.1.0" selected' in refused.content.decode()  # the choice is kept

    client.force_login(people["alice"])
    same = client.get("/apps/shop/release/?environment=staging&version=1.1.0").content.decode()
    assert "1.1.0 runs in staging already." in same
    unknown = client.get("/apps/shop/release/?environment=production&version=9.9.9")
    assert unknown.status_code == 400 and "Select a valid choice" in unknown.content.decode()


def test_an_admin_forces_a_locked_release_with_a_reason(client, shop):
    app, people = shop
    production = Environment.objects.get(name="production")
    client.force_login(people["alice"])
    client.post("/apps/shop/release/", {"environment": "production", "version": "1.1.0"})
    release = Release.objects.get(status="pending_approval")
    do_lock(Actor(people["boss"]), production, reason="incident")

    held = client.get(f"/releases/{release.pk}/").content.decode()  # alice: shown, disabled, saying why
    assert 'id="why-force">Forcing: You need the admin role on shop/production.' in held
    assert client.post(f"/releases/{release.pk}/force/", {"reason": "Me too"}).status_code == 403
    client.force_login(people["boss"])
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Force this release past what holds it" in page
    assert client.post(f"/releases/{release.pk}/force/", {"reason": ""}).status_code == 400
    response = client.post(f"/releases/{release.pk}/force/", {"reason": "Hotfix for INC-42"})
    assert response.status_code == 302
    release.refresh_from_db()
    assert release.forced_by == people["boss"] and release.status != "pending_approval"
    forced = AuditEvent.objects.get(kind="release.forced")
    assert forced.note == "Hotfix for INC-42" and any(
        "Locked by boss" in r for r in forced.after["blocked_by"]
    ), forced.after
