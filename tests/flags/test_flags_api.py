"""Flag management API, history and revert, OFREP by hand and through the real OpenFeature SDK."""

import pytest

from flags.models import EvaluationCount, Flag, FlagEvent, FlagState
from flags.snapshots import snapshots
from flags.usage import usage
from releases.models import AuditEvent
from tests import factories
from tests.conftest import token_client

API = "/api/v1/applications/shop"


@pytest.fixture(autouse=True)
def fresh_snapshots():
    snapshots.clear()
    yield
    snapshots.clear()


@pytest.fixture
def envs(app):
    return (
        factories.EnvironmentFactory(application=app, name="staging", position=1),
        factories.EnvironmentFactory(application=app, name="production", position=2),
    )


@pytest.fixture
def pm(app, envs):
    person = factories.UserFactory(username="pm")
    factories.MembershipFactory(user=person, application=app, role="flag_editor")
    return token_client(person, "flags:write")


def sdk_client(user, environment):
    return token_client(user, "flags:read", environment=environment)


def test_create_boolean_flag_gets_on_off(pm, envs):
    response = pm.post(f"{API}/flags/", {"key": "new-checkout", "type": "boolean"}, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["variants"] == {"on": True, "off": False}
    assert data["environments"]["production"]["enabled"] is False
    assert pm.post(f"{API}/flags/", {"key": "new-checkout"}, format="json").status_code == 409
    assert AuditEvent.objects.filter(kind="flag.created").count() == 1


@pytest.mark.parametrize(
    "body,field",
    [
        ({"key": "Bad Key"}, "key"),
        ({"key": "k", "type": "colour"}, "type"),
        ({"key": "k", "type": "string"}, "variants"),
        ({"key": "k", "type": "number", "variants": {"a": "one"}}, "variants.a"),
    ],
)
def test_bad_flag_input(pm, envs, body, field):
    response = pm.post(f"{API}/flags/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Flag.objects.exists()


def test_toggle_rollout_rules_and_bad_state(pm, envs):
    pm.post(f"{API}/flags/", {"key": "new-checkout"}, format="json")
    url = f"{API}/flags/new-checkout/environments/production/"
    response = pm.patch(url, {"enabled": True, "rollout_percentage": 30}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["rollout"] == {"weights": {"on": 100}, "percentage": 30}
    rules = [{"conditions": [{"attribute": "country", "operator": "in", "values": ["FR"]}], "variant": "on"}]
    assert pm.patch(url, {"rules": rules}, format="json").status_code == 200
    for body, field in [
        (
            {
                "rules": [
                    {
                        "conditions": [{"attribute": "c", "operator": "matches", "values": ["x"]}],
                        "variant": "on",
                    }
                ]
            },
            "rules[0].conditions[0].operator",
        ),
        (
            {
                "rules": [
                    {
                        "conditions": [{"attribute": "c", "operator": "in", "values": ["x"]}],
                        "split": {"on": 60, "off": 30},
                    }
                ]
            },
            "rules[0].split",
        ),
        ({"default_variant": "maybe"}, "default_variant"),
        ({"rollout_percentage": 101}, "rollout_percentage"),
    ]:
        bad = pm.patch(url, body, format="json")
        assert bad.status_code == 400, body
        assert any(key.startswith(field) for key in bad.json()), (field, bad.json())
    state = FlagState.objects.get(environment__name="production")
    assert state.rules == rules  # nothing of the bad writes landed


def test_prerequisite_cycle_rejected(pm, envs):
    pm.post(f"{API}/flags/", {"key": "a"}, format="json")
    pm.post(f"{API}/flags/", {"key": "b"}, format="json")
    assert (
        pm.patch(
            f"{API}/flags/a/environments/staging/",
            {"prerequisites": [{"flag": "b", "variant": "on"}]},
            format="json",
        ).status_code
        == 200
    )
    cycle = pm.patch(
        f"{API}/flags/b/environments/staging/",
        {"prerequisites": [{"flag": "a", "variant": "on"}]},
        format="json",
    )
    assert cycle.status_code == 400 and "cycle" in str(cycle.json()).lower()


def test_history_kill_switch_and_revert(pm, envs):
    pm.post(f"{API}/flags/", {"key": "new-checkout"}, format="json")
    url = f"{API}/flags/new-checkout/environments/production/"
    pm.patch(url, {"enabled": True, "rollout_percentage": 30}, format="json")
    pm.patch(url, {"rollout_percentage": 80}, format="json")
    killed = pm.post(url + "kill/")
    assert killed.status_code == 200 and killed.json()["enabled"] is False
    history = pm.get(f"{API}/flags/new-checkout/history/").json()["results"]  # paginated like every list
    assert [e["kind"] for e in history] == ["killed", "state_changed", "state_changed", "created"]
    raise_to_80 = history[1]
    reverted = pm.post(f"{API}/flags/new-checkout/history/{raise_to_80['id']}/revert/")
    assert reverted.status_code == 200
    assert reverted.json()["rollout"]["percentage"] == 30 and reverted.json()["enabled"] is True
    assert FlagEvent.objects.filter(kind="reverted").exists()


def test_developer_cannot_edit_flags_and_env_scoped_editor(app, envs, pm):
    pm.post(f"{API}/flags/", {"key": "x"}, format="json")
    dev = factories.UserFactory(username="dev")
    factories.MembershipFactory(user=dev, application=app, role="developer")
    assert (
        token_client(dev, "flags:write")
        .patch(f"{API}/flags/x/environments/staging/", {"enabled": True}, format="json")
        .status_code
        == 403
    )
    staging_only = factories.UserFactory(username="stager")
    factories.MembershipFactory(user=staging_only, application=app, role="flag_editor", environment=envs[0])
    client = token_client(staging_only, "flags:write")
    assert (
        client.patch(f"{API}/flags/x/environments/staging/", {"enabled": True}, format="json").status_code
        == 200
    )
    assert (
        client.patch(f"{API}/flags/x/environments/production/", {"enabled": True}, format="json").status_code
        == 403
    )


def sdk_key(user, environment):
    from releases.permissions import Actor
    from releases.services import do_create_api_token

    if environment is not None:
        factories.MembershipFactory(user=user, application=environment.application, role="viewer")
    return do_create_api_token(
        Actor.system(), user, name="sdk", scopes=["flags:read"], environment=environment
    )[1]


def test_ofrep_single_and_bulk_with_etag(pm, envs, user, served_ofrep):
    pm.post(f"{API}/flags/", {"key": "new-checkout"}, format="json")
    pm.patch(
        f"{API}/flags/new-checkout/environments/production/",
        {
            "enabled": True,
            "rules": [
                {
                    "conditions": [{"attribute": "country", "operator": "in", "values": ["FR"]}],
                    "variant": "on",
                }
            ],
            "default_variant": "off",
        },
        format="json",
    )
    key = sdk_key(factories.UserFactory(username="sdk"), envs[1])
    hit = served_ofrep(
        "/ofrep/v1/evaluate/flags/new-checkout", {"context": {"targetingKey": "u1", "country": "FR"}}, key=key
    )
    assert hit.status_code == 200
    assert hit.json() == {
        "key": "new-checkout",
        "value": True,
        "reason": "TARGETING_MATCH",
        "variant": "on",
        "metadata": {"rule": 0},
    }
    assert hit.headers["Access-Control-Allow-Origin"] == "*"
    miss = served_ofrep("/ofrep/v1/evaluate/flags/nope", {"context": {}}, key=key)
    assert miss.status_code == 404 and miss.json()["errorCode"] == "FLAG_NOT_FOUND"
    bad = served_ofrep("/ofrep/v1/evaluate/flags/new-checkout", {"context": ["not", "an", "object"]}, key=key)
    assert bad.status_code == 400 and bad.json()["errorCode"] == "INVALID_CONTEXT"
    empty = served_ofrep("/ofrep/v1/evaluate/flags", None, key=key)
    assert empty.status_code == 200  # no body is an empty context
    bulk = served_ofrep("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "u1"}}, key=key)
    assert bulk.status_code == 200 and bulk.json()["flags"][0]["value"] is False
    assert "ETag" in bulk.headers["Access-Control-Expose-Headers"]
    again = served_ofrep(
        "/ofrep/v1/evaluate/flags",
        {"context": {"targetingKey": "u1"}},
        key=key,
        headers={"If-None-Match": bulk.headers["ETag"]},
    )
    assert again.status_code == 304
    assert served_ofrep("/ofrep/v1/evaluate/flags", {"context": {}}).status_code == 401
    usage.flush()
    assert EvaluationCount.objects.filter(flag_key="new-checkout").exists()


def test_ofrep_bulk_counts_each_evaluation(pm, envs, user, served_ofrep):
    for key in ("a", "b"):
        pm.post(f"{API}/flags/", {"key": key}, format="json")
    pm.patch(
        f"{API}/flags/a/environments/production/",
        {"enabled": True, "rollout": {"percentage": 50, "weights": {"on": 100}}},
        format="json",
    )
    key = sdk_key(factories.UserFactory(username="sdk"), envs[1])
    usage.flush()
    served = {"a": [], "b": []}
    for n in range(6):
        bulk = served_ofrep("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": f"u{n}"}}, key=key)
        assert bulk.status_code == 200
        for answer in bulk.json()["flags"]:
            served[answer["key"]].append(answer["variant"])
    usage.flush()
    counted = {(c.flag_key, c.variant): c.count for c in EvaluationCount.objects.filter(environment=envs[1])}
    expected = {(k, v): variants.count(v) for k, variants in served.items() for v in set(variants)}
    assert counted == expected and sum(counted.values()) == 12


def test_ofrep_needs_an_environment_pinned_token(pm, envs, user, served_ofrep):
    response = served_ofrep("/ofrep/v1/evaluate/flags", {"context": {}}, key=sdk_key(user, None))
    assert response.status_code == 403 and "pinned" in response.json()["errorDetails"]


def test_archived_flag_is_not_served(pm, envs, user, served_ofrep):
    pm.post(f"{API}/flags/", {"key": "old"}, format="json")
    assert pm.delete(f"{API}/flags/old/").status_code == 204
    key = sdk_key(factories.UserFactory(username="sdk"), envs[1])
    assert served_ofrep("/ofrep/v1/evaluate/flags/old", {"context": {}}, key=key).status_code == 404


def test_ofrep_is_served_by_one_implementation():
    """The Django views are gone: nothing under /ofrep/ resolves in Django's URLconf."""
    from django.urls import Resolver404, resolve

    with pytest.raises(Resolver404):
        resolve("/ofrep/v1/evaluate/flags")


def test_openfeature_sdk_with_ofrep_provider(live_slipway, app):
    from openfeature import api
    from openfeature.contrib.provider.ofrep import OFREPProvider
    from openfeature.evaluation_context import EvaluationContext

    from flags.services import do_create_flag, do_set_flag_state
    from releases.permissions import Actor
    from releases.services import do_create_api_token

    production = factories.EnvironmentFactory(application=app, name="production", position=2)
    flag = do_create_flag(Actor.system(), app, key="new-checkout")
    do_set_flag_state(
        Actor.system(),
        flag,
        production,
        enabled=True,
        default_variant="off",
        rules=[
            {"conditions": [{"attribute": "country", "operator": "in", "values": ["FR"]}], "variant": "on"}
        ],
    )
    user = factories.UserFactory(username="sdk")
    factories.MembershipFactory(
        user=user, application=app, role="viewer"
    )  # a pinned token needs a role there
    _, key = do_create_api_token(
        Actor.system(), user, name="sdk", scopes=["flags:read"], environment=production
    )
    api.set_provider(
        OFREPProvider(base_url=live_slipway.url, headers_factory=lambda: {"Authorization": f"Bearer {key}"})
    )
    client = api.get_client()
    assert client.get_boolean_value("new-checkout", False, EvaluationContext("u1", {"country": "FR"})) is True
    assert client.get_boolean_value("new-checkout", True, EvaluationContext("u2", {"country": "US"})) is False
    details = client.get_boolean_details("missing-flag", True, EvaluationContext("u1"))
    assert details.value is True and details.error_code is not None


def test_lean_asgi_ofrep_path(live_slipway, app):
    """The production route (config/asgi.py → flags/ofrep_asgi.py) behaves exactly as documented."""
    import json
    import urllib.error
    import urllib.request

    from flags.services import do_create_flag, do_set_flag_state
    from releases.permissions import Actor
    from releases.services import do_create_api_token

    production = factories.EnvironmentFactory(application=app, name="production", position=2)
    flag = do_create_flag(Actor.system(), app, key="new-checkout")
    do_set_flag_state(Actor.system(), flag, production, enabled=True)
    sdk_user = factories.UserFactory(username="sdk2")
    factories.MembershipFactory(
        user=sdk_user, application=app, role="viewer"
    )  # a pinned token needs a role there
    _, key = do_create_api_token(
        Actor.system(), sdk_user, name="sdk", scopes=["flags:read"], environment=production
    )

    def call(path, body, token=key, headers=None, method="POST"):
        request = urllib.request.Request(
            live_slipway.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {token}"} if token else {}),
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    status, headers, body = call("/ofrep/v1/evaluate/flags/new-checkout", {"context": {"targetingKey": "u1"}})
    assert (
        status == 200
        and json.loads(body)["value"] is True
        and headers["access-control-expose-headers"] == "ETag, Retry-After"
    )
    assert call("/ofrep/v1/evaluate/flags/nope", {"context": {}})[0] == 404
    status, _, body = call("/ofrep/v1/evaluate/flags/new-checkout", {"context": "nope"})
    assert status == 400 and json.loads(body)["errorCode"] == "INVALID_CONTEXT"
    assert call("/ofrep/v1/evaluate/flags", {"context": {}}, token="slw_wrong")[0] == 401
    assert call("/ofrep/v1/evaluate/flags", {"context": {}}, token=None)[0] == 401
    status, headers, _ = call("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "u1"}})
    assert status == 200
    assert (
        call(
            "/ofrep/v1/evaluate/flags",
            {"context": {"targetingKey": "u1"}},
            headers={"If-None-Match": headers["etag"]},
        )[0]
        == 304
    )
    assert call("/ofrep/v1/evaluate/flags", None, method="OPTIONS")[0] == 204


def test_oversized_flag_payload_is_413(pm, envs):
    import json as _json

    big = {
        "rules": [
            {
                "conditions": [{"attribute": "id", "operator": "in", "values": ["x" * 1000] * 1100}],
                "variant": "on",
            }
        ]
    }
    pm.post(f"{API}/flags/", {"key": "big"}, format="json")
    response = pm.patch(
        f"{API}/flags/big/environments/production/", _json.dumps(big), content_type="application/json"
    )
    assert response.status_code == 413
    assert FlagState.objects.filter(flag__key="big").count() == 0


@pytest.mark.parametrize("n", [1, 20])
def test_flag_list_api_and_page_queries_do_not_grow_with_rows(
    pm, app, envs, n, client, django_assert_num_queries
):
    from flags.services import do_create_flag, do_set_flag_state
    from releases.permissions import Actor

    for i in range(n):
        flag = do_create_flag(Actor.system(), app, key=f"flag-{i:02}")
        do_set_flag_state(Actor.system(), flag, envs[1], enabled=True)
    with django_assert_num_queries(
        8
    ):  # token (+ last used), application, roles, count, flags, states, environments
        body = pm.get(f"{API}/flags/?page_size=50").json()
    assert body["count"] == n
    client.force_login(factories.UserFactory(username="root2", is_superuser=True))
    with django_assert_num_queries(9):
        assert client.get("/apps/shop/flags/").status_code == 200


def test_flag_errors_carry_stable_codes(pm, envs):
    pm.post(f"{API}/flags/", {"key": "dup"}, format="json")
    assert pm.post(f"{API}/flags/", {"key": "dup"}, format="json").json()["code"] == "flag_exists"
    assert pm.get(f"{API}/flags/nope/").json()["code"] == "flag_not_found"
    bad = pm.patch(
        f"{API}/flags/dup/environments/production/", {"rules": [{"variant": "nope"}]}, format="json"
    )
    assert bad.status_code == 400 and bad.json()["code"] == "flag_config_invalid"
    unknown = pm.post(f"{API}/flags/dup/history/999999/revert/", {}, format="json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "flag_event_not_found"
    no_request = pm.post(f"{API}/flags/dup/change-requests/999999/approve/", {}, format="json")
    assert no_request.status_code == 404 and no_request.json()["code"] == "change_request_not_found"
    maybe = pm.post(f"{API}/flags/dup/change-requests/999999/maybe/", {}, format="json")
    assert maybe.status_code == 404 and maybe.json()["code"] == "unknown_decision"
