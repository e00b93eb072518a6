"""A percentage rollout serves its percentage: the documented API call, the served OFREP route, the real SDK.

`PATCH …/flags/<key>/environments/production/ {"enabled": true, "rollout_percentage": 30}` used to serve `true`
to everyone (outside the percentage users got the default variant, `on` for a new boolean flag).
"""

import importlib
import time
from concurrent.futures import ThreadPoolExecutor

import mmh3
import pytest

from flags.models import ChangeRequest, Flag, FlagEvent, FlagState
from flags.services import do_create_flag, do_set_flag_state
from flags.snapshots import snapshots
from releases.models import AuditEvent
from releases.permissions import Actor
from releases.services import do_create_api_token
from tests import factories
from tests.conftest import token_client

API = "/api/v1/applications/shop"
KEYS = [f"user-{i}" for i in range(10_000)]


def in_rollout(flag_key: str, key: str, percentage: int) -> bool:
    return mmh3.hash(f"{flag_key}:{key}", 0, signed=False) % 100 + 1 <= percentage


@pytest.fixture(autouse=True)
def fresh_snapshots():
    snapshots.clear()
    yield
    snapshots.clear()


@pytest.fixture
def production(app):
    return factories.EnvironmentFactory(application=app, name="production", position=2)


@pytest.fixture
def pm(app, production):
    person = factories.UserFactory(username="pm")
    factories.MembershipFactory(user=person, application=app, role="flag_editor")
    return token_client(person, "flags:write")


def sdk_values(base_url: str, token: str, flag_key: str) -> list[bool]:
    """Every key evaluated by the real OpenFeature SDK through the OFREP provider (one HTTP call each)."""
    from openfeature import api
    from openfeature.contrib.provider.ofrep import OFREPProvider
    from openfeature.evaluation_context import EvaluationContext

    api.set_provider(
        OFREPProvider(base_url=base_url, headers_factory=lambda: {"Authorization": f"Bearer {token}"})
    )
    client = api.get_client()

    def one(key: str) -> tuple[bool, str]:
        details = client.get_boolean_details(flag_key, False, EvaluationContext(key))
        assert details.error_code is None, details
        return details.value, details.reason

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, KEYS))
    assert {reason for _, reason in results} == {"SPLIT"}
    return [value for value, _ in results]


def wait_until_served(base_url: str, token: str, flag_key: str, percentage: int) -> None:
    """The server recompiles its snapshot about once a second after a change: wait for a key that moved."""
    import json
    import urllib.request

    probe = next(
        k for k in KEYS if in_rollout(flag_key, k, percentage) and not in_rollout(flag_key, k, percentage - 1)
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{base_url}/ofrep/v1/evaluate/flags/{flag_key}",
            method="POST",
            data=json.dumps({"context": {"targetingKey": probe}}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            if json.loads(response.read())["value"] is True:
                return
        time.sleep(0.2)
    raise AssertionError(f"the server never served {percentage} %")


@pytest.mark.slow
def test_documented_call_serves_30_percent_over_the_served_route_with_the_real_sdk(live_slipway, app, pm):
    assert pm.post(f"{API}/flags/", {"key": "new-checkout"}, format="json").status_code == 201
    url = f"{API}/flags/new-checkout/environments/production/"
    response = pm.patch(url, {"enabled": True, "rollout_percentage": 30}, format="json")
    assert response.status_code == 200, response.content
    sdk_user = factories.UserFactory(username="sdk")
    factories.MembershipFactory(
        user=sdk_user, application=app, role="viewer"
    )  # a pinned token needs a role there
    _, token = do_create_api_token(
        Actor.system(),
        sdk_user,
        name="sdk",
        scopes=["flags:read"],
        environment=app.environments.get(name="production"),
    )

    served = sdk_values(live_slipway.url, token, "new-checkout")
    assert served == [in_rollout("new-checkout", k, 30) for k in KEYS]  # Unleash's bucket, on every key
    assert 0.28 <= sum(served) / len(KEYS) <= 0.32

    assert pm.patch(url, {"rollout_percentage": 60}, format="json").status_code == 200
    wait_until_served(live_slipway.url, token, "new-checkout", 60)
    raised = sdk_values(live_slipway.url, token, "new-checkout")
    assert raised == [in_rollout("new-checkout", k, 60) for k in KEYS]
    assert 0.58 <= sum(raised) / len(KEYS) <= 0.62
    assert all(after for before, after in zip(served, raised, strict=True) if before)  # nobody loses it


def test_shortcut_keeps_weights_and_null_removes_the_rollout(pm, app, production):
    pm.post(f"{API}/flags/", {"key": "f"}, format="json")
    url = f"{API}/flags/f/environments/production/"
    body = pm.patch(url, {"enabled": True, "rollout_percentage": 30}, format="json").json()
    assert body["rollout"] == {"percentage": 30, "weights": {"on": 100}}
    pm.patch(url, {"rollout": {"percentage": 30, "weights": {"on": 80, "off": 20}}}, format="json")
    body = pm.patch(url, {"rollout_percentage": 50}, format="json").json()
    assert body["rollout"] == {"percentage": 50, "weights": {"on": 80, "off": 20}}
    body = pm.patch(url, {"rollout_percentage": None}, format="json").json()
    assert body["rollout"] is None and body["enabled"] is True


def test_shortcut_on_a_multivariant_flag_rolls_out_the_default_variant(pm, app, production):
    variants = {"blue": "#00f", "green": "#0f0", "grey": "#888"}
    pm.post(f"{API}/flags/", {"key": "theme", "type": "string", "variants": variants}, format="json")
    url = f"{API}/flags/theme/environments/production/"
    pm.patch(url, {"off_variant": "grey", "default_variant": "green"}, format="json")
    body = pm.patch(url, {"enabled": True, "rollout_percentage": 25}, format="json").json()
    assert body["rollout"] == {"percentage": 25, "weights": {"green": 100}}
    response = pm.patch(url, {"rollout_percentage": None, "default_variant": "grey"}, format="json")
    assert response.status_code == 200
    response = pm.patch(url, {"rollout_percentage": 25}, format="json")  # would roll out the off variant
    assert response.status_code == 400 and "rollout_percentage" in response.json()
    assert FlagState.objects.get(flag__key="theme").rollout is None  # nothing half-written
    both = pm.patch(url, {"rollout_percentage": 25, "rollout": None}, format="json")
    assert both.status_code == 400 and "rollout_percentage" in both.json()


def test_a_proposed_percentage_applies_on_approval(app, production):
    production.flag_change_requests = True
    production.save()
    proposer, approver = factories.UserFactory(username="p1"), factories.UserFactory(username="p2")
    for person in (proposer, approver):
        factories.MembershipFactory(user=person, application=app, role="flag_editor")
    flag = do_create_flag(Actor.system(), app, key="f")
    response = token_client(proposer, "flags:write").patch(
        f"{API}/flags/f/environments/production/", {"enabled": True, "rollout_percentage": 30}, format="json"
    )
    assert response.status_code == 202
    change = ChangeRequest.objects.get()
    assert not FlagState.objects.filter(flag=flag, enabled=True).exists()
    decided = token_client(approver, "flags:write").post(
        f"{API}/flags/f/change-requests/{change.pk}/approve/", {}, format="json"
    )
    assert decided.status_code in (200, 201), decided.content
    assert FlagState.objects.get(flag=flag).rollout == {"percentage": 30, "weights": {"on": 100}}


def test_flags_list_shows_the_percentage_beside_the_switch(admin_client, app, production):
    flag = do_create_flag(Actor.system(), app, key="new-checkout")
    do_set_flag_state(
        Actor.system(), flag, production, enabled=True, rollout={"percentage": 30, "weights": {"on": 100}}
    )
    page = admin_client.get("/apps/shop/flags/").content.decode()
    assert "On · 30 %" in page


def test_upgrade_migration_records_what_changed_meaning(app, production):
    """States written by the old shortcut keep their rollout (it now means its percentage) and say so."""
    from django.apps import apps

    migration = importlib.import_module("flags.migrations.0003_rollout_outside_serves_off")
    flag = do_create_flag(Actor.system(), app, key="old")
    other = do_create_flag(Actor.system(), app, key="fine")
    shortcut = {"percentage": 30, "weights": {"on": 100}}
    FlagState.objects.create(
        flag=flag,
        environment=production,
        enabled=True,
        off_variant="off",
        default_variant="on",
        rollout=shortcut,
    )
    FlagState.objects.create(
        flag=other,
        environment=production,
        enabled=True,
        off_variant="off",
        default_variant="off",
        rollout=shortcut,
    )  # served 30 % before and after
    production.refresh_from_db()
    version = production.flags_version
    FlagEvent.objects.all().delete()
    migration.forwards(apps, None)
    (event,) = FlagEvent.objects.all()
    assert (event.flag.key, event.kind) == ("old", "rollout_meaning_changed")
    assert (event.before["outside_rollout"], event.after["outside_rollout"]) == ("on", "off")
    assert AuditEvent.objects.filter(kind="flag.rollout_meaning_changed", object_repr="old").count() == 1
    production.refresh_from_db()
    assert production.flags_version == version + 1
    assert FlagState.objects.get(flag=flag).rollout == shortcut and Flag.objects.count() == 2
