"""The OpenAPI schema describes the rollout endpoints' JSON exactly as they return it (scripts depend on it)."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from environments.models import Target
from monitoring.models import AnalysisRun
from releases.models import ApiToken, Release, Rollout, RolloutStep
from tests import factories
from tests.conftest import token_client

ROLLOUT = "/api/v1/applications/{slug}/releases/{id}/rollout/"
COMMAND = "/api/v1/applications/{slug}/releases/{id}/rollout/{command}"
TARGETS = "/api/v1/applications/{slug}/environments/{name}/targets/"
TOKENS = "/api/v1/applications/{slug}/environments/{name}/registration-tokens/"
OPERATIONS = [
    (ROLLOUT, "get", "200"),
    (COMMAND, "post", "200"),
    (TARGETS, "get", "200"),
    (TOKENS, "post", "201"),
]
STEP_FIELDS = {
    "index",
    "wave",
    "target",
    "action",
    "version",
    "status",
    "health",
    "started_at",
    "finished_at",
    "output",
}
VIEWS = ("RolloutView", "RolloutControlView", "TargetListView", "RegistrationTokenView")


@pytest.fixture
def schema(client, user):
    client.force_login(user)
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def resolve(schema: dict, document: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def response_schema(document: dict, path: str, method: str, status: str) -> dict:
    response = document["paths"][path][method]["responses"][status]
    assert "content" in response, f"{method.upper()} {path}: {status} has no documented body"
    return response["content"]["application/json"]["schema"]


def nullable(schema: dict) -> bool:
    """OpenAPI 3.1: `type: [t, "null"]`, or `oneOf` a schema and `{type: null}`."""
    kinds = schema.get("type")
    return (isinstance(kinds, list) and "null" in kinds) or {"type": "null"} in schema.get("oneOf", ())


def check(value, schema: dict, document: dict, where: str = "$") -> None:
    """`value` has exactly the shape `schema` documents: same keys, types, nullability and enums."""
    schema = resolve(schema, document)
    if value is None:
        assert nullable(schema), f"{where} is null but not documented as nullable"
        return
    for part in schema.get("allOf", ()):
        check(value, part, document, where)
    for part in schema.get("oneOf", ()):
        if part != {"type": "null"}:
            check(value, part, document, where)
    if "enum" in schema:
        assert value in [e for e in schema["enum"] if e is not None], (
            f"{where}: {value!r} not in {schema['enum']}"
        )
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        assert isinstance(value, dict), where
        if schema.get("additionalProperties"):  # the shared Error: `code` always, `detail` or fields' errors
            assert set(schema.get("required", ())) <= set(value), where
        elif "properties" in schema:
            assert set(value) == set(schema["properties"]), (
                f"{where}: keys {sorted(value)} vs documented {sorted(schema['properties'])}"
            )
            assert set(schema.get("required", ())) == set(value), f"{where}: every key is always present"
            for key, item in value.items():
                check(item, schema["properties"][key], document, f"{where}.{key}")
    elif kind == "array":
        assert isinstance(value, list), where
        for n, item in enumerate(value):
            check(item, schema["items"], document, f"{where}[{n}]")
    elif kind == "string":
        assert isinstance(value, str), f"{where}: {value!r} is not a string"
        if schema.get("format") == "date-time":
            datetime.fromisoformat(value)
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind == "boolean":
        assert isinstance(value, bool), where


def test_rollout_endpoints_document_their_response_bodies(schema):
    for path, method, status in OPERATIONS:
        body = resolve(response_schema(schema, path, method, status), schema)
        assert body.get("properties") or body.get("items"), f"{method.upper()} {path}: an empty body schema"
    rollout = resolve(response_schema(schema, ROLLOUT, "get", "200"), schema)
    assert set(rollout["properties"]) == {
        "status",
        "strategy",
        "targets",
        "not_reached",
        "steps",
        "analysis_runs",
    }
    step = resolve(rollout["properties"]["steps"]["items"], schema)
    assert set(step["properties"]) == STEP_FIELDS == set(step["required"])
    assert response_schema(schema, COMMAND, "post", "200") == response_schema(schema, ROLLOUT, "get", "200")
    command = next(p for p in schema["paths"][COMMAND]["post"]["parameters"] if p["name"] == "command")
    assert sorted(command["schema"]["enum"]) == ["cancel", "pause", "resume", "revert"]
    target = resolve(response_schema(schema, TARGETS, "get", "200")["items"], schema)
    assert set(target["properties"]) == {"name", "status", "version", "last_seen", "hostname"}
    assert set(resolve(response_schema(schema, TOKENS, "post", "201"), schema)["properties"]) == {"token"}
    for path, method, _ in OPERATIONS:
        assert "requestBody" not in schema["paths"][path][method], f"{method.upper()} {path} takes no body"


def test_the_endpoints_return_exactly_the_documented_shapes(schema, user, app):
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    old, new = (factories.ArtifactFactory(application=app, version=v) for v in ("1.2.0", "1.3.0"))
    now = timezone.now()
    Target.objects.create(
        environment=env,
        name="web-1",
        token_hash=ApiToken.hash_key("a"),
        hostname="web-1.internal",
        version="1.3.0",
        last_seen=now,
    )
    Target.objects.create(
        environment=env, name="web-2", token_hash=ApiToken.hash_key("b")
    )  # never seen, no version
    release = Release.objects.create(
        application=app, environment=env, artifact=new, previous_artifact=old, status="deploying"
    )
    rollout = Rollout.objects.create(
        release=release, targets=["web-1", "web-2"], status="running", strategy={"kind": "cautious"}
    )
    started = now - timedelta(seconds=5)
    RolloutStep.objects.create(
        rollout=rollout,
        index=1,
        wave=None,
        action="pre_deploy",
        version="1.3.0",
        status="succeeded",
        started_at=started,
        finished_at=now,
        output="migrated",
        runs_on_server=True,
    )
    RolloutStep.objects.create(
        rollout=rollout,
        index=2,
        wave=0,
        target_name="web-1",
        action="deploy",
        version="1.3.0",
        status="succeeded",
        health={"ok": True, "detail": "HTTP 200"},
        started_at=started,
        finished_at=now,
        output="deployed\n",
    )
    RolloutStep.objects.create(
        rollout=rollout,
        index=3,
        wave=0,
        action="smoke",
        version="1.3.0",
        status="running",
        started_at=started,
    )
    RolloutStep.objects.create(
        rollout=rollout, index=4, wave=1, target_name="web-2", action="deploy", version="1.3.0"
    )
    for score in (None, 62.5):
        AnalysisRun.objects.create(
            application=app,
            template_name="checkout",
            environment=env,
            release=release,
            rollout_id=rollout.pk,
            canary_version="1.3.0",
            baseline_version="1.2.0",
            canary_targets=["web-1"],
            baseline_targets=["web-2"],
            started_at=started,
            ended_at=now,
            status="complete",
            verdict="marginal",
            score=score,
            reasons=["marginal: canary judge: score 62.5"],
        )
    client = token_client(user, "admin")

    got = client.get(f"/api/v1/applications/shop/releases/{release.pk}/rollout/")
    assert got.status_code == 200
    body = got.json()
    check(body, response_schema(schema, ROLLOUT, "get", "200"), schema)
    assert [s["target"] for s in body["steps"]] == [None, "web-1", None, "web-2"]
    assert [s["wave"] for s in body["steps"]] == [None, 1, 1, 2] and body["steps"][3]["health"] is None
    assert [r["score"] for r in body["analysis_runs"]] == [None, 62.5]

    targets = client.get("/api/v1/applications/shop/environments/production/targets/")
    assert targets.status_code == 200
    check(targets.json(), response_schema(schema, TARGETS, "get", "200"), schema)
    assert {t["version"] for t in targets.json()} == {"1.3.0", None}

    token = client.post(
        "/api/v1/applications/shop/environments/production/registration-tokens/", {}, format="json"
    )
    assert token.status_code == 201
    check(token.json(), response_schema(schema, TOKENS, "post", "201"), schema)
    assert token.json()["token"].startswith("slr_")

    paused = client.post(f"/api/v1/applications/shop/releases/{release.pk}/rollout/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    check(paused.json(), response_schema(schema, COMMAND, "post", "200"), schema)

    missing = client.get(f"/api/v1/applications/shop/releases/{release.pk + 1}/rollout/")
    assert missing.status_code == 404
    check(missing.json(), response_schema(schema, ROLLOUT, "get", "404"), schema)


def test_schema_generation_warns_about_nothing_in_the_rollout_views():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        SchemaGenerator().get_schema(request=None, public=True)
    messages = [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
    GENERATOR_STATS.reset()
    ours = [
        m
        for m in messages
        if "releases/api/rollout_views.py" in m
        or any(f"[{view}]" in m or f"[{view} >" in m for view in VIEWS)
    ]
    assert ours == []
    assert not [m for m in messages if "could not resolve authenticator" in m]  # bearer tokens are described


RELEASE = "/api/v1/applications/{slug}/releases/{id}/"
RELEASES = "/api/v1/applications/{slug}/releases/"


def test_a_release_names_its_rollout_and_live_view(schema, user, app):
    release_schema = resolve(response_schema(schema, RELEASE, "get", "200"), schema)
    documented = release_schema["properties"]["rollout"]
    assert nullable(documented)
    rollout_schema = resolve(documented["oneOf"][0], schema)
    assert (
        set(rollout_schema["properties"]) == {"id", "status", "websocket"} == set(rollout_schema["required"])
    )
    assert response_schema(schema, RELEASES, "post", "201") == response_schema(schema, RELEASE, "get", "200")
    page = resolve(response_schema(schema, RELEASES, "get", "200"), schema)
    assert resolve(page["properties"]["results"]["items"], schema) == release_schema

    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    old, new = (factories.ArtifactFactory(application=app, version=v) for v in ("1.2.0", "1.3.0"))
    waiting = Release.objects.create(
        application=app, environment=env, artifact=old, status="pending_approval"
    )
    release = Release.objects.create(
        application=app, environment=env, artifact=new, previous_artifact=old, status="deploying"
    )
    rollout = Rollout.objects.create(
        release=release, targets=["web-1"], status="running", strategy={"kind": "cautious"}
    )
    client = token_client(user, "admin")

    body = client.get(f"/api/v1/applications/shop/releases/{release.pk}/").json()
    assert body["rollout"] == {
        "id": rollout.pk,
        "status": "running",
        "websocket": f"/ws/rollouts/{rollout.pk}/",
    }
    check(body["rollout"], documented, schema)
    assert client.get(f"/api/v1/applications/shop/releases/{waiting.pk}/").json()["rollout"] is None

    listed = client.get("/api/v1/applications/shop/releases/").json()["results"]
    assert [r["rollout"] and r["rollout"]["id"] for r in listed] == [rollout.pk, None]
