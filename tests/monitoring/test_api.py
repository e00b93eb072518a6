"""The monitoring API: JSON errors, error groups, pushed samples, the DSN."""

import pytest

from monitoring.models import ErrorGroup, IngestKey, Sample
from monitoring.services import create_ingest_key
from releases.models import AuditEvent
from releases.permissions import Actor
from tests import factories
from tests.conftest import token_client


@pytest.fixture
def production(app):
    factories.ArtifactFactory(application=app, version="1.4.0")
    return factories.EnvironmentFactory(application=app, name="production")


@pytest.fixture
def writer(user, app):
    return token_client(user, "metrics:write")


def report(client, **fields):
    body = {
        "environment": "production",
        "version": "1.4.0",
        "type": "KeyError",
        "message": "'user-1'",
        "stacktrace": 'File "shop/cart.py", line 3, in total',
        "target": "web-3",
        **fields,
    }
    return client.post("/api/v1/applications/shop/errors/", body, format="json")


def test_json_errors_are_grouped_and_listed_with_new_in_version(
    writer, user, production, django_assert_num_queries
):
    assert report(writer).status_code == 201
    response = report(writer, message="'user-2'", stacktrace='File "shop/cart.py", line 9, in total')
    assert response.status_code == 201 and response.json()["group"]["count"] == 2
    assert report(writer, version="1.5.0", type="TypeError").status_code == 201
    assert report(writer, version="1.5.0").status_code == 201
    reader = token_client(user, "releases:read")
    with django_assert_num_queries(7):  # token (+ its last use), application, roles, environment, count, page
        groups = reader.get(
            "/api/v1/applications/shop/error-groups/?environment=production&version=1.5.0"
        ).json()
    by_type = {g["type"]: g for g in groups["results"]}
    assert by_type["TypeError"]["new_in_version"] is True and by_type["TypeError"]["version_count"] == 1
    assert by_type["KeyError"]["new_in_version"] is False and by_type["KeyError"]["version_count"] == 1
    assert by_type["KeyError"]["count"] == 3 and by_type["KeyError"]["first_seen_version"] == "1.4.0"
    in_first = reader.get("/api/v1/applications/shop/error-groups/?version=1.4.0").json()["results"]
    assert [(g["type"], g["new_in_version"], g["version_count"]) for g in in_first] == [("KeyError", True, 2)]


def test_without_a_version_new_means_new_in_what_the_environment_runs(writer, user, production):
    from releases.models import Artifact

    report(writer)
    production.current_artifact = Artifact.objects.get(version="1.4.0")
    production.save()
    [group] = (
        token_client(user, "releases:read").get("/api/v1/applications/shop/error-groups/").json()["results"]
    )
    assert group["new_in_version"] is True and group["version_count"] is None


def test_bad_errors_are_400_naming_the_field(writer, production):
    assert "type" in report(writer, type="").json()
    response = report(writer, environment="qa")
    assert response.status_code == 400 and "environment" in response.json()
    response = writer.post("/api/v1/applications/shop/errors/", b"{nope", content_type="application/json")
    assert response.status_code == 400
    assert ErrorGroup.objects.count() == 0


def test_errors_and_samples_need_metrics_write(user, production):
    reader = token_client(user, "releases:read")
    assert report(reader).status_code == 403
    assert reader.post("/api/v1/applications/shop/metrics/", [], format="json").status_code == 403
    from rest_framework.test import APIClient

    assert report(APIClient()).status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer slw_nope")
    assert report(bad).status_code == 401
    assert (
        report(
            token_client(user, "metrics:write"),
        ).status_code
        == 201
    )
    assert (
        token_client(user, "metrics:write")
        .post("/api/v1/applications/nope/errors/", {}, format="json")
        .status_code
        == 404
    )


def samples(n, **labels):
    return [
        {
            "name": "http_errors",
            "value": i,
            "timestamp": "2026-05-01T10:00:00Z",
            "labels": {"environment": "production", "version": "1.4.0", "target": f"web-{i % 3}", **labels},
        }
        for i in range(n)
    ]


def test_samples_are_pushed_in_batches(writer, production):
    response = writer.post("/api/v1/applications/shop/metrics/", samples(500, route="/cart"), format="json")
    assert response.status_code == 201 and response.json() == {"stored": 500}
    assert Sample.objects.filter(environment=production, name="http_errors", version="1.4.0").count() == 500
    assert Sample.objects.first().labels == {"route": "/cart"}


def test_a_bad_sample_is_400_naming_index_and_field_and_nothing_is_stored(writer, production):
    batch = samples(10)
    batch[7]["value"] = "many"
    response = writer.post("/api/v1/applications/shop/metrics/", batch, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "detail": "A finite number.",
        "field": "samples[7].value",
        "samples[7].value": ["A finite number."],
        "index": 7,
    }
    batch = samples(10)
    batch[4]["labels"]["environment"] = "qa"
    body = writer.post("/api/v1/applications/shop/metrics/", batch, format="json").json()
    assert (body["index"], body["field"]) == (4, "samples[4].labels.environment")
    assert Sample.objects.count() == 0


def test_big_pushes_are_413(writer, production):
    response = writer.post("/api/v1/applications/shop/metrics/", samples(10_001), format="json")
    assert response.status_code == 413
    huge = [{"name": "x", "value": 1, "labels": {"environment": "production", "pad": "p" * 200}}] * 6000
    assert writer.post("/api/v1/applications/shop/metrics/", huge, format="json").status_code == 413
    assert Sample.objects.count() == 0


def test_the_application_api_gives_the_dsn_and_admins_rotate_it(ci, user, app, admin_user):
    from django.db import transaction

    with transaction.atomic():
        key = create_ingest_key(Actor.system(), app)
    body = ci.get("/api/v1/applications/shop/").json()
    assert body["sentry_dsn"] == f"http://{key.public_key}@127.0.0.1:8000/{app.pk}"
    rotated = token_client(user, "admin").post("/api/v1/applications/shop/ingest-key/").json()["sentry_dsn"]
    assert (
        rotated != body["sentry_dsn"] and ci.get("/api/v1/applications/shop/").json()["sentry_dsn"] == rotated
    )
    assert IngestKey.objects.filter(application=app, revoked_at__isnull=True).count() == 1
    assert AuditEvent.objects.filter(kind="ingest_key.rotated").count() == 1
    creator = token_client(admin_user, "releases:write", "releases:read")
    created = creator.post("/api/v1/applications/", {"slug": "cart", "name": "Cart"}, format="json").json()
    assert created["sentry_dsn"].startswith("http://") and created["sentry_dsn"].endswith(
        f"/{IngestKey.objects.get(application__slug='cart').application_id}"
    )


def test_the_application_page_shows_the_dsn(admin_client, app):
    from django.db import transaction

    with transaction.atomic():
        key = create_ingest_key(Actor.system(), app)
    page = admin_client.get("/apps/shop/").content.decode()
    assert "Error reporting" in page and key.dsn in page


def test_an_unknown_environment_is_400_naming_the_field(writer, user, production):
    response = token_client(user, "releases:read").get(
        "/api/v1/applications/shop/error-groups/?environment=qa"
    )
    assert response.status_code == 400 and "qa" in response.json()["environment"][0]


def test_resolve_an_error_group_then_a_new_event_makes_it_regressed(writer, user, production):
    group = report(writer).json()["group"]
    assert group["status"] == "new"
    url = f"/api/v1/applications/shop/error-groups/{group['id']}/resolve/"
    assert token_client(user, "releases:read").post(url).status_code == 403  # the scope is releases:write
    resolver = token_client(user, "releases:read", "releases:write")
    response = resolver.post(url)
    assert response.status_code == 200 and response.json()["status"] == "resolved"
    assert AuditEvent.objects.filter(kind="error_group.resolved").count() == 1
    listed = resolver.get("/api/v1/applications/shop/error-groups/").json()["results"]
    assert [g["status"] for g in listed] == ["resolved"]
    assert report(writer, version="1.5.0").status_code == 201  # the JSON endpoint: the real ingestion path
    assert ErrorGroup.objects.get(pk=group["id"]).status == "regressed"
    assert resolver.post("/api/v1/applications/shop/error-groups/999999/resolve/").status_code == 404


def test_an_error_group_is_resolved_over_the_api_and_regresses_on_its_next_event(writer, user, production):
    group_id = report(writer).json()["group"]["id"]
    url = f"/api/v1/applications/shop/error-groups/{group_id}/resolve/"
    assert token_client(user, "releases:read").post(url).status_code == 403  # resolving writes
    viewer = factories.MembershipFactory(application=production.application, role="viewer").user
    refused = token_client(viewer, "releases:read", "releases:write").post(url)
    assert refused.status_code == 403 and "developer or release manager" in refused.json()["detail"]
    developer = factories.MembershipFactory(application=production.application, role="developer").user
    response = token_client(developer, "releases:read", "releases:write").post(url)
    assert response.status_code == 200 and response.json()["status"] == "resolved"
    assert AuditEvent.objects.filter(kind="error_group.resolved").count() == 1
    missing = token_client(developer, "releases:read", "releases:write").post(
        "/api/v1/applications/shop/error-groups/999999/resolve/"
    )
    assert missing.status_code == 404
    assert report(writer, message="'user-9'").json()["group"]["status"] == "regressed"
    assert ErrorGroup.objects.get().status == "regressed"


def test_listing_error_groups_of_an_unknown_environment_is_400_naming_it(user, production):
    response = token_client(user, "releases:read").get(
        "/api/v1/applications/shop/error-groups/?environment=qa"
    )
    assert response.status_code == 400 and "qa" in response.json()["environment"][0]
