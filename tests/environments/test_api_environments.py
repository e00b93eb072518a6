import pytest

from environments.models import Environment
from environments.services import do_create_environment, do_update_environment
from releases.models import AuditEvent, Release
from tests import factories
from tests.conftest import token_client

URL = "/api/v1/applications/shop/environments/"


def test_create_and_list_in_pipeline_order(ci, app):
    assert (
        ci.post(
            URL, {"name": "production", "position": 2, "requires_approval": True}, format="json"
        ).status_code
        == 201
    )
    response = ci.post(URL, {"name": "staging", "position": 1}, format="json")
    assert response.status_code == 201
    assert response.json() == {
        **response.json(),
        "name": "staging",
        "requires_approval": False,
        "current_version": None,
    }
    names = [e["name"] for e in ci.get(URL).json()["results"]]
    assert names == ["staging", "production"]
    assert AuditEvent.objects.filter(kind="environment.created").count() == 2


def test_duplicate_name_or_position_conflicts(ci, app):
    ci.post(URL, {"name": "staging", "position": 1}, format="json")
    dup_name = ci.post(URL, {"name": "staging", "position": 5}, format="json")
    dup_pos = ci.post(URL, {"name": "qa", "position": 1}, format="json")
    assert (dup_name.status_code, dup_pos.status_code) == (409, 409)
    assert "name" in dup_name.json() and "position" in dup_pos.json()
    assert Environment.objects.count() == 1


def test_bad_environment_input(ci, app):
    for body, field in [
        ({"name": "Prod", "position": 1}, "name"),
        ({"name": "prod"}, "position"),
        ({"name": "prod", "position": -1}, "position"),
        ({"name": "prod", "position": "x"}, "position"),
        ({"name": "prod", "position": 1, "requires_approval": "maybe"}, "requires_approval"),
    ]:
        response = ci.post(URL, body, format="json")
        assert response.status_code == 400 and field in response.json(), body
    assert not Environment.objects.exists()


def test_patch_environment(ci, app):
    ci.post(URL, {"name": "staging", "position": 1}, format="json")
    response = ci.patch(URL + "staging/", {"requires_approval": True}, format="json")
    assert response.status_code == 200 and response.json()["requires_approval"] is True
    event = AuditEvent.objects.get(kind="environment.updated")
    assert event.before["requires_approval"] is False and event.after["requires_approval"] is True


def test_developer_cannot_create_environments(app):
    dev = factories.UserFactory(username="dev")
    factories.MembershipFactory(user=dev, application=app, role="developer")
    response = token_client(dev, "releases:write").post(URL, {"name": "qa", "position": 3}, format="json")
    assert response.status_code == 403 and "admin role" in response.json()["detail"]


def test_environment_restricted_token(app, user):
    staging = factories.EnvironmentFactory(application=app, name="staging", position=1)
    production = factories.EnvironmentFactory(application=app, name="production", position=2)
    other_app = factories.ApplicationFactory(slug="other")
    factories.MembershipFactory(user=user, application=other_app, role="admin")
    client = token_client(user, "releases:read", "releases:write", environment=production)
    assert client.patch(URL + "production/", {"description": "customers"}, format="json").status_code == 200
    refused = client.patch(URL + "staging/", {"description": "x"}, format="json")
    assert refused.status_code == 403 and "shop/production only" in refused.json()["detail"]
    assert client.get(URL).status_code == 200  # reads of its own application are fine
    assert client.get("/api/v1/applications/other/").status_code == 403
    assert client.post(URL, {"name": "qa", "position": 3}, format="json").status_code == 403
    staging.refresh_from_db()
    assert staging.description == ""


def test_environment_list_query_count(ci, app, django_assert_num_queries):
    ci.post(URL, {"name": "e0", "position": 0}, format="json")
    ci.get(URL)
    with django_assert_num_queries(5) as ctx:  # token, application, role, count, page
        ci.get(URL)
    for n in range(1, 10):
        factories.EnvironmentFactory(
            application=app,
            name=f"e{n}",
            position=n,
            current_artifact=factories.ArtifactFactory(application=app),
        )
    with django_assert_num_queries(len(ctx.captured_queries)):
        ci.get(URL)


def test_webhook_secret_is_write_only_and_not_audited(ci, app):
    ci.post(URL, {"name": "production", "position": 2}, format="json")
    response = ci.patch(
        URL + "production/",
        {
            "driver": "webhook",
            "webhook_url": "https://deploy.example.com/hook",
            "webhook_secret": "top-secret-value",
        },
        format="json",
    )
    assert response.status_code == 200 and "webhook_secret" not in response.json()
    event = AuditEvent.objects.filter(kind="environment.updated").latest("id")
    assert event.after["webhook_secret"] == "set" and "top-secret-value" not in str(event.after)
    bad = ci.patch(URL + "production/", {"strategy": {"kind": "zigzag"}}, format="json")
    assert bad.status_code == 400 and "strategy" in bad.json()


def test_deploy_settings_gates_and_blue_green_slot(ci, app):
    from releases.models import AuditEvent

    ci.post(URL, {"name": "production", "position": 1}, format="json")
    settings = {
        "strategy": {"kind": "blue_green"},
        "smoke_test_command": "./smoke.sh",
        "switch_command": "./lb-switch.sh $SLIPWAY_SLOT",
        "smoke_test_urls": ["https://shop.example.com/health"],
        "step_timeout_seconds": 120,
    }
    response = ci.patch(URL + "production/", settings, format="json")
    assert response.status_code == 200, response.json()
    assert {k: response.json()[k] for k in settings} == settings
    assert response.json()["live_slot"] == "blue"
    assert AuditEvent.objects.filter(
        kind="environment.updated", after__switch_command=settings["switch_command"]
    ).exists()
    for bad, field in [
        ({"live_slot": "purple"}, "live_slot"),
        ({"smoke_test_command": "x" * 1001}, "smoke_test_command"),
        ({"strategy": {"kind": "blue_green", "live": "green"}}, "strategy"),
        ({"strategy": {"kind": "rollback"}}, "strategy"),
        ({"strategy": {"kind": "canary", "steps": [50, 20]}}, "strategy"),
        ({"step_timeout_seconds": 0}, "step_timeout_seconds"),
    ]:
        refused = ci.patch(URL + "production/", bad, format="json")
        assert refused.status_code == 400 and field in refused.json(), (bad, refused.json())
    assert ci.get(URL + "production/").json()["strategy"] == {"kind": "blue_green"}  # nothing half-written
    assert ci.patch(URL + "production/", {"live_slot": "green"}, format="json").json()["live_slot"] == "green"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"kind": "rollback"}, "kind: rollback is Slipway's own fast path"),
        ({"kind": "blue_green", "live": "green"}, "live: set by Slipway"),
        ({"kind": "blue_green", "switch_back": True}, "switch_back: set by Slipway"),
        ({"kind": "rolling"}, "batch_size"),
        ("cautious", "An object"),
    ],
)
def test_the_strategy_rule_holds_for_every_caller_of_the_services(app, bad, message):
    """Not only the API: a service's caller (a page, a task, the demo) cannot store Slipway's own rollback kind or
    the keys it sets itself, on an environment or a release."""
    from config.errors import Invalid
    from releases.permissions import Actor
    from releases.promotions import do_request_release

    system = Actor.system()
    with pytest.raises(Invalid) as refused:
        do_create_environment(system, app, name="staging", position=1, strategy=bad)
    assert refused.value.field == "strategy" and message in refused.value.detail
    environment = do_create_environment(system, app, name="production", position=2)
    with pytest.raises(Invalid) as refused:
        do_update_environment(system, environment, strategy=bad)
    assert refused.value.field == "strategy" and message in refused.value.detail
    artifact = factories.ArtifactFactory(application=app, version="2.0.0")
    with pytest.raises(Invalid) as refused:
        do_request_release(system, app, environment=environment, artifact=artifact, strategy=bad)
    assert refused.value.field == "strategy" and message in refused.value.detail
    environment.refresh_from_db()
    assert environment.strategy == {} and not Release.objects.exists()
    assert list(Environment.objects.values_list("name", flat=True)) == ["production"]


def test_the_default_strategy_is_stored_as_an_empty_object(app):
    from releases.permissions import Actor

    environment = do_create_environment(Actor.system(), app, name="production", position=1, strategy=None)
    assert environment.strategy == {}
    updated = do_update_environment(
        Actor.system(), environment, strategy={"kind": "rolling", "batch_size": 2}
    )
    assert updated.strategy == {"kind": "rolling", "batch_size": 2}
