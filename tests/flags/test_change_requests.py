"""Change requests (four eyes), scheduled changes on a frozen clock, and stale flags."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from flags.models import EvaluationCount, Flag, FlagState, ScheduledChange
from flags.selectors import flag_list
from flags.services import do_apply_due_schedules
from tests import factories
from tests.conftest import token_client

API = "/api/v1/applications/shop"


@pytest.fixture
def editors(app):
    production = factories.EnvironmentFactory(
        application=app, name="production", position=1, flag_change_requests=True
    )
    people = {}
    for name in ("ann", "ben"):
        people[name] = factories.UserFactory(username=name)
        factories.MembershipFactory(user=people[name], application=app, role="flag_editor")
    ann = token_client(people["ann"], "flags:write")
    assert ann.post(f"{API}/flags/", {"key": "new-checkout"}, format="json").status_code == 201
    return production, ann, token_client(people["ben"], "flags:write")


def test_change_request_needs_another_person(editors):
    production, ann, ben = editors
    proposed = ann.patch(
        f"{API}/flags/new-checkout/environments/production/", {"enabled": True}, format="json"
    )
    assert proposed.status_code == 202
    change = proposed.json()["change_request"]
    assert change["status"] == "open" and change["proposed_by"] == "ann"
    assert not FlagState.objects.filter(environment=production, enabled=True).exists()  # not applied yet
    own = ann.post(f"{API}/flags/new-checkout/change-requests/{change['id']}/approve/", {}, format="json")
    assert own.status_code == 403 and "own" in own.json()["detail"]
    approved = ben.post(
        f"{API}/flags/new-checkout/change-requests/{change['id']}/approve/", {"comment": "ok"}, format="json"
    )
    assert approved.status_code == 200 and approved.json()["status"] == "applied"
    assert FlagState.objects.get(environment=production).enabled
    again = ben.post(f"{API}/flags/new-checkout/change-requests/{change['id']}/reject/", {}, format="json")
    assert again.status_code == 409


def test_invalid_proposal_is_refused_at_once(editors):
    _, ann, _ = editors
    bad = ann.patch(
        f"{API}/flags/new-checkout/environments/production/", {"default_variant": "maybe"}, format="json"
    )
    assert bad.status_code == 400


def test_a_proposal_that_can_no_longer_apply_is_refused_when_approved_and_stays_open(editors):
    production, ann, ben = editors
    change = ann.patch(
        f"{API}/flags/new-checkout/environments/production/",
        {"enabled": True, "default_variant": "off"},
        format="json",
    ).json()["change_request"]
    edited = ann.patch(f"{API}/flags/new-checkout/", {"variants": {"on": True, "no": False}}, format="json")
    assert edited.status_code == 200, edited.json()
    approved = ben.post(
        f"{API}/flags/new-checkout/change-requests/{change['id']}/approve/", {"comment": "ok"}, format="json"
    )
    assert approved.status_code == 400
    assert approved.json()["code"] == "flag_config_invalid" and "default_variant" in approved.json()
    listed = ben.get(f"{API}/flags/new-checkout/change-requests/").json()
    assert [(c["id"], c["status"], c["comment"]) for c in listed["results"]] == [(change["id"], "open", "")]
    assert not FlagState.objects.filter(environment=production, enabled=True).exists()


def test_scheduled_change_applies_at_its_time(app, user):
    factories.MembershipFactory(user=user, application=app, role="flag_editor")
    factories.EnvironmentFactory(application=app, name="staging", position=1)
    client = token_client(user, "flags:write")
    client.post(f"{API}/flags/", {"key": "launch"}, format="json")
    with time_machine.travel(datetime(2026, 12, 1, 8, 0, tzinfo=UTC), tick=False):
        response = client.post(
            f"{API}/flags/launch/environments/staging/schedules/",
            {"at": "2026-12-01T09:00:00Z", "changes": {"enabled": True}},
            format="json",
        )
        assert response.status_code == 201
        past = client.post(
            f"{API}/flags/launch/environments/staging/schedules/",
            {"at": "2026-11-30T09:00:00Z", "changes": {"enabled": True}},
            format="json",
        )
        assert past.status_code == 400 and "at" in past.json()
        bad = client.post(
            f"{API}/flags/launch/environments/staging/schedules/",
            {"at": "2026-12-02T09:00:00Z", "changes": {"colour": "red"}},
            format="json",
        )
        assert bad.status_code == 400 and "colour" in bad.json()
        assert do_apply_due_schedules() == 0
    with time_machine.travel(datetime(2026, 12, 1, 8, 59, 59, tzinfo=UTC), tick=False):
        assert do_apply_due_schedules() == 0
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False):
        assert do_apply_due_schedules() == 1
        assert do_apply_due_schedules() == 0  # once
    assert FlagState.objects.get(flag__key="launch").enabled
    assert ScheduledChange.objects.get().applied_at is not None


def test_stale_flags(app):
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    old = datetime.now(UTC) - timedelta(days=30)
    flags = {
        key: Flag.objects.create(application=app, key=key, variants={"on": True, "off": False})
        for key in ("unused", "one-variant", "healthy")
    }
    Flag.objects.update(created_at=old)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    EvaluationCount.objects.create(
        environment=env, flag_key="one-variant", variant="on", hour=hour, count=500
    )
    EvaluationCount.objects.create(environment=env, flag_key="healthy", variant="on", hour=hour, count=5)
    EvaluationCount.objects.create(environment=env, flag_key="healthy", variant="off", hour=hour, count=5)
    stale = {f.key: f.stale_reason for f in flag_list(app, stale=True)}
    assert set(stale) == {"unused", "one-variant"}
    assert "one variant" in stale["one-variant"] and "not evaluated" in stale["unused"]
    assert flags
