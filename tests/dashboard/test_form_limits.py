"""Text typed into the pages has a maximum: beyond it, a 400 naming the field and nothing stored (never cut)."""

import json

import pytest

from environments.models import Lock
from releases.models import Release
from tests.dashboard.test_release_in_browser import shop  # noqa: F401

pytestmark = pytest.mark.django_db

LONG = "x" * 2001


def test_an_overlong_lock_reason_is_refused_naming_the_field(client, shop):  # noqa: F811
    app, people = shop
    client.force_login(people["boss"])
    refused = client.post("/apps/shop/env/production/lock/", {"reason": LONG}, headers={"HX-Request": "true"})
    assert refused.status_code == 400 and "reason" in refused.content.decode()
    assert (
        refused["HX-Retarget"] == "#locks"
    )  # the lock form again in place: the error beside it, the text kept
    html = refused.content.decode()
    assert html.lstrip().startswith('<section class="card" id="locks">')
    assert 'aria-describedby="lock-reason-error"' in html and f'value="{LONG}"' in html
    assert not Lock.objects.exists()
    locked = client.post(
        "/apps/shop/env/production/lock/", {"reason": "Investigating latency"}, headers={"HX-Request": "true"}
    )
    assert locked.status_code == 200 and locked.content.decode().lstrip().startswith(
        '<section class="card" id="locks">'
    )
    assert json.loads(locked["HX-Trigger"]) == {
        "slipway:said": "production is locked: releases wait until it is unlocked."
    }


def test_an_overlong_rollback_reason_is_refused_not_cut(client, shop):  # noqa: F811
    app, people = shop
    client.force_login(people["boss"])
    before = Release.objects.count()
    refused = client.post("/apps/shop/env/production/rollback/", {"version": "1.0.0", "reason": LONG})
    assert refused.status_code == 400 and "reason" in refused.content.decode()
    assert Release.objects.count() == before


def test_an_overlong_release_reason_stays_on_the_form(client, shop):  # noqa: F811
    app, people = shop
    client.force_login(people["alice"])
    refused = client.post(
        "/apps/shop/release/", {"environment": "production", "version": "1.1.0", "reason": LONG}
    )
    assert refused.status_code == 400
    assert "Ensure this value has at most 2000 characters" in refused.content.decode()
    assert not Release.objects.filter(status="pending_approval").exists()
