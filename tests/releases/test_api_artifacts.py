import json

import pytest

from releases.models import Artifact, AuditEvent, Change
from tests import factories
from tests.conftest import token_client
from tests.factories import sha

URL = "/api/v1/applications/shop/artifacts/"


def artifact_body(version="1.4.0", changes=None, **overrides):
    body = {
        "version": version,
        "commit": sha(f"commit-{version}"),
        "image": "registry.example.com/shop@sha256:" + "a" * 64,
        "build_url": "https://ci.example.com/builds/812",
        "metadata": {"branch": "main"},
        "changes": changes
        if changes is not None
        else [
            {
                "sha": sha("c1"),
                "author": "alice",
                "title": "Faster checkout",
                "url": "https://github.com/acme/shop/pull/12",
            },
            {"sha": sha("c2"), "author": "bob", "title": "Order history"},
            {"sha": sha("c3"), "author": "alice@users.noreply.github.com", "title": "Typo"},
        ],
    }
    body.update(overrides)
    return body


def test_register_artifact(ci, app, user):
    alice = factories.UserFactory(username="alice")
    factories.UserFactory(username="robert", email="bob@example.com")  # unlinked: bob stays as is
    from releases.models import AuthorIdentity

    AuthorIdentity.objects.create(user=alice, identity="alice@users.noreply.github.com")
    response = ci.post(URL, artifact_body(), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["version"] == "1.4.0"
    assert data["created_by"] == user.username
    assert [c["sha"] for c in data["changes"]] == [sha("c1"), sha("c2"), sha("c3")]
    groups = data["changes_by_author"]
    assert [(g["author"], g["user"], len(g["changes"])) for g in groups] == [
        ("alice", "alice", 2),
        ("bob", None, 1),
    ]
    event = AuditEvent.objects.get(kind="artifact.registered")
    assert event.application == app and event.after["version"] == "1.4.0"


def test_identical_repeat_is_idempotent(ci, app):
    first = ci.post(URL, artifact_body(), format="json")
    again = ci.post(URL, artifact_body(), format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Artifact.objects.count() == 1
    assert AuditEvent.objects.filter(kind="artifact.registered").count() == 1


@pytest.mark.parametrize(
    "field,value",
    [
        ("commit", sha("other")),
        ("image", "registry.example.com/shop@sha256:" + "b" * 64),
        ("metadata", {"branch": "hotfix"}),
        ("changes", []),
    ],
)
def test_same_version_different_content_conflicts(ci, app, field, value):
    assert ci.post(URL, artifact_body(), format="json").status_code == 201
    response = ci.post(URL, artifact_body(**{field: value}), format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "artifact_conflict"
    assert field in response.json()["fields"]
    assert Artifact.objects.count() == 1


def test_changes_are_stored_once_across_artifacts(ci, app):
    ci.post(URL, artifact_body("1.4.0"), format="json")
    response = ci.post(URL, artifact_body("1.5.0", commit=sha("x")), format="json")
    assert response.status_code == 201
    assert Change.objects.count() == 3
    assert Artifact.objects.get(version="1.5.0").changes.count() == 3


def test_artifact_is_immutable(app):
    artifact = factories.ArtifactFactory(application=app)
    artifact.image = "something else"
    from releases.exceptions import ArtifactImmutable

    with pytest.raises(ArtifactImmutable):
        artifact.save()


@pytest.mark.parametrize(
    "body,field",
    [
        (artifact_body(version="has space"), "version"),
        (artifact_body(version="v" * 101), "version"),
        (artifact_body(commit="xyz"), "commit"),
        (artifact_body(commit="A" * 40), "commit"),
        (artifact_body(image=""), "image"),
        (artifact_body(image="i" * 501), "image"),
        (artifact_body(metadata=["not", "an", "object"]), "metadata"),
        (artifact_body(build_url="not a url"), "build_url"),
        (artifact_body(changes="nope"), "changes"),
        ({"commit": sha(1), "image": "x"}, "version"),
    ],
)
def test_bad_artifact_input_names_the_field(ci, app, body, field):
    response = ci.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Artifact.objects.count() == 0 and Change.objects.count() == 0
    assert not AuditEvent.objects.filter(kind="artifact.registered").exists()


def test_invalid_third_change_stores_nothing(ci, app):
    changes = artifact_body()["changes"]
    changes[2]["sha"] = "not-hex"
    response = ci.post(URL, artifact_body(changes=changes), format="json")
    assert response.status_code == 400
    assert response.json()["changes"]["2"]["sha"]
    assert Artifact.objects.count() == 0 and Change.objects.count() == 0


def test_duplicate_change_in_one_request(ci, app):
    changes = artifact_body()["changes"]
    response = ci.post(URL, artifact_body(changes=[changes[0], changes[0]]), format="json")
    assert response.status_code == 400 and "changes" in response.json()


def test_malformed_json(ci, app):
    response = ci.post(URL, '{"version": "1.0", ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json" and "not valid JSON" in response.json()["detail"]


def test_wrong_types(ci, app):
    response = ci.post(
        URL, artifact_body(version=["1.0"], changes=[{"sha": 5, "author": [], "title": {}}]), format="json"
    )
    assert response.status_code == 400
    assert {"version", "changes"} <= set(response.json())


def test_body_over_one_megabyte_is_413(ci, app):
    big = artifact_body(metadata={"blob": "x" * (1024 * 1024)})
    response = ci.post(URL, json.dumps(big), content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert Artifact.objects.count() == 0


def test_unknown_application_is_404(ci, app):
    response = ci.post("/api/v1/applications/nope/artifacts/", artifact_body(), format="json")
    assert response.status_code == 404 and "detail" in response.json()


def test_list_newest_first_and_paginated(ci, app):
    for n in range(30):
        ci.post(URL, artifact_body(f"1.{n}.0", changes=[], commit=sha(n)), format="json")
    page = ci.get(URL).json()
    assert page["count"] == 30 and len(page["results"]) == 25 and page["next"]
    assert page["results"][0]["version"] == "1.29.0"
    assert ci.get(URL + "?page=2").json()["results"][-1]["version"] == "1.0.0"


def test_artifact_detail(ci, app):
    ci.post(URL, artifact_body(), format="json")
    response = ci.get(URL + "1.4.0/")
    assert response.status_code == 200
    assert len(response.json()["changes"]) == 3
    assert ci.get(URL + "9.9.9/").status_code == 404


def test_list_query_count_is_constant(ci, app, django_assert_max_num_queries, django_assert_num_queries):
    changes = [factories.ChangeFactory(application=app) for _ in range(3)]
    factories.ArtifactFactory(application=app, changes=changes)
    ci.get(URL)  # warm: token last_used_at write happens once a minute
    with django_assert_num_queries(5) as few:  # token, application, role, count, page
        ci.get(URL)
    for _ in range(20):
        factories.ArtifactFactory(application=app, changes=changes)
    with django_assert_num_queries(len(few.captured_queries)):
        assert len(ci.get(URL).json()["results"]) == 21


def test_detail_query_count_is_constant_in_changes(ci, app, django_assert_num_queries):
    def detail_queries(version, n):
        changes = [factories.ChangeFactory(application=app, author=f"author{i}") for i in range(n)]
        factories.ArtifactFactory(application=app, version=version, changes=changes)
        ci.get(URL + f"{version}/")
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert ci.get(URL + f"{version}/").status_code == 200
        return len(ctx.captured_queries)

    assert detail_queries("2.0.0", 2) == detail_queries("3.0.0", 40)


def test_token_without_write_scope_is_403(app, user):
    client = token_client(user, "releases:read")
    response = client.post(URL, artifact_body(), format="json")
    assert response.status_code == 403 and "releases:write" in response.json()["detail"]
    assert Artifact.objects.count() == 0


def test_member_without_developer_role_is_403(app):
    viewer = factories.UserFactory(username="viewer")
    factories.MembershipFactory(user=viewer, application=app, role="viewer")
    response = token_client(viewer, "releases:write", "releases:read").post(
        URL, artifact_body(), format="json"
    )
    assert response.status_code == 403 and "developer role" in response.json()["detail"]
