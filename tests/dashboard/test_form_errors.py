"""The environment and release pages' forms refuse bad input on the form itself: the page again (or, over htmx, the
form's section in place), the error beside its field, everything typed and chosen kept, nothing written."""

import re

import pytest

from environments.models import Environment, Lock
from releases.models import Artifact, AuditEvent, Release
from releases.permissions import Actor
from releases.promotions import do_request_release
from tests import factories
from tests.dashboard.test_release_in_browser import shop  # noqa: F401
from tests.forms import error_beside

pytestmark = pytest.mark.django_db

LONG = "Because " * 300  # 2,400 characters: over the 2,000 a reason holds
HTMX = {"HX-Request": "true"}


@pytest.fixture
def rollback_ready(shop):  # noqa: F811
    """staging ran 1.0.0 and 1.1.0, now runs 1.2.0: two versions to roll back to, newest first."""
    app, people = shop
    staging = Environment.objects.get(application=app, name="staging")
    builds = factories.register_builds(app, {"1.2.0": (("alice", "Wishlist"),)})
    for artifact in (Artifact.objects.get(application=app, version="1.0.0"), builds["1.2.0"]):
        Release.objects.create(
            application=app, environment=staging, artifact=artifact, kind="recorded", status="succeeded"
        )
    Environment.objects.filter(pk=staging.pk).update(current_artifact=builds["1.2.0"])
    return app, people


def test_a_rollback_without_a_reason_keeps_the_chosen_version(client, rollback_ready):
    app, people = rollback_ready
    client.force_login(people["boss"])
    before = Release.objects.count()
    response = client.post("/apps/shop/env/staging/rollback/", {"version": "1.0.0", "reason": ""})
    html = response.content.decode()
    assert response.status_code == 400
    assert "Say why you roll back" in error_beside(html, "reason", "rollback-reason-error")
    assert re.search(r'name="version" value="1\.0\.0" checked', html)  # the older one, as chosen
    assert not re.search(r'name="version" value="1\.1\.0" checked', html)
    assert Release.objects.count() == before


def test_a_rollback_refused_over_htmx_comes_back_in_place_of_the_form(client, rollback_ready):
    app, people = rollback_ready
    client.force_login(people["boss"])
    before = Release.objects.count()
    response = client.post(
        "/apps/shop/env/staging/rollback/", {"version": "1.1.0", "reason": LONG}, headers=HTMX
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert response["HX-Retarget"] == "#rollback" and response["HX-Reswap"] == "outerHTML"  # not the flash
    assert html.lstrip().startswith('<section class="card" id="rollback">')
    assert "at most 2000 characters" in error_beside(html, "reason", "rollback-reason-error")
    assert f'value="{LONG}"' in html and re.search(r'name="version" value="1\.1\.0" checked', html)
    assert Release.objects.count() == before


def test_a_rollback_to_a_version_that_is_no_candidate_is_said_beside_the_versions(client, rollback_ready):
    app, people = rollback_ready
    client.force_login(people["boss"])
    response = client.post("/apps/shop/env/production/rollback/", {"version": "1.1.0", "reason": "Oops"})
    html = response.content.decode()
    assert (
        response.status_code == 409
    )  # the service's conflict, said on the form (shown though none is offered)
    error = re.search(r'<p class="field-error" id="rollback-version-error">(.*?)</p>', html, re.S)
    assert error and "1.1.0 is not an earlier version that succeeded in production" in error.group(1)
    assert 'value="Oops"' in html
    assert not Release.objects.filter(kind="rollback").exists()


def test_a_lock_without_a_reason_is_said_beside_it(client, shop):  # noqa: F811
    app, people = shop
    client.force_login(people["boss"])
    response = client.post("/apps/shop/env/production/lock/", {"reason": ""})
    html = response.content.decode()
    assert response.status_code == 400 and "<html" in html  # without JavaScript: the whole page again
    assert "Give a reason for the lock." in error_beside(html, "reason", "lock-reason-error")
    assert not Lock.objects.exists()
    over_htmx = client.post("/apps/shop/env/production/lock/", {"reason": LONG}, headers=HTMX)
    html = over_htmx.content.decode()
    assert over_htmx.status_code == 400 and over_htmx["HX-Retarget"] == "#locks"
    assert html.lstrip().startswith('<section class="card" id="locks">')
    assert "at most 2000 characters" in error_beside(html, "reason", "lock-reason-error")
    assert f'value="{LONG}"' in html
    assert not Lock.objects.exists()


def a_waiting_release(app, people):
    """alice asks for 1.1.0 in production: it waits for approvals."""
    return do_request_release(
        Actor(people["alice"]),
        app,
        environment=Environment.objects.get(application=app, name="production"),
        artifact=Artifact.objects.get(application=app, version="1.1.0"),
    )


def test_a_force_without_a_reason_reopens_the_force_form(client, shop):  # noqa: F811
    app, people = shop
    release = a_waiting_release(app, people)
    client.force_login(people["boss"])
    for reason, said in (("", "Say why it must ship"), (LONG, "at most 2000 characters")):
        response = client.post(f"/releases/{release.pk}/force/", {"reason": reason})
        html = response.content.decode()
        assert response.status_code == 400
        assert said in error_beside(html, "reason", "force-reason-error")
        assert '<details class="card force" id="force" open>' in html
        assert f'value="{reason}"' in html
    release.refresh_from_db()
    assert release.status == "pending_approval" and release.forced_by is None
    assert not AuditEvent.objects.filter(kind="release.forced").exists()


def test_a_rollout_command_nobody_typed_stays_a_400_in_the_flash(client, shop):  # noqa: F811
    app, people = shop
    release = Release.objects.filter(application=app).first()
    client.force_login(people["boss"])
    response = client.post(f"/releases/{release.pk}/rollout/", {"command": "explode"}, headers=HTMX)
    assert response.status_code == 400 and response["HX-Retarget"] == "#flash"
    assert "Choose pause, resume, cancel or revert." in response.content.decode()


def test_an_overlong_approval_comment_comes_back_on_the_card_as_typed(client, shop):  # noqa: F811
    app, people = shop
    release = a_waiting_release(app, people)
    client.force_login(people["alice"])
    data = {"decision": "approve", "comment": LONG, "partial": "card"}
    response = client.post(f"/releases/{release.pk}/decide/", data, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 400 and response["HX-Retarget"] == f"#release-{release.pk}"
    assert html.lstrip().startswith('<section class="card release-card')
    assert "at most 2000 characters" in error_beside(html, "comment", f"decision-comment-error-{release.pk}")
    assert f'value="{LONG}"' in html
    plain = client.post(f"/releases/{release.pk}/decide/", {"decision": "approve", "comment": LONG})
    assert plain.status_code == 400 and "<html" in plain.content.decode()
    assert not release.approvals.exists()
