from rest_framework.test import APIClient

from releases.models import Application, AuditEvent, Membership
from tests import factories
from tests.conftest import token_client


def test_create_application(admin_user):
    client = token_client(admin_user, "releases:write", "releases:read")
    body = {"slug": "shop", "name": "Shop", "repository_url": "https://github.com/acme/shop"}
    response = client.post("/api/v1/applications/", body, format="json")
    assert response.status_code == 201
    assert response.json()["slug"] == "shop"
    assert Membership.objects.get(application__slug="shop").role == "admin"
    assert AuditEvent.objects.filter(kind="application.created").count() == 1
    assert client.get("/api/v1/applications/shop/").json()["name"] == "Shop"
    assert [a["slug"] for a in client.get("/api/v1/applications/").json()["results"]] == ["shop"]


def test_create_needs_permission(user):
    response = token_client(user, "releases:write").post(
        "/api/v1/applications/", {"slug": "shop", "name": "Shop"}, format="json"
    )
    assert response.status_code == 403
    assert not Application.objects.exists()


def test_duplicate_slug_is_409_naming_slug(admin_user):
    client = token_client(admin_user, "releases:write")
    client.post("/api/v1/applications/", {"slug": "shop", "name": "Shop"}, format="json")
    response = client.post("/api/v1/applications/", {"slug": "shop", "name": "Again"}, format="json")
    assert response.status_code == 409 and "slug" in response.json()
    assert AuditEvent.objects.filter(kind="application.created").count() == 1


def test_bad_application_input(admin_user):
    client = token_client(admin_user, "releases:write")
    for body, field in [
        ({"slug": "Shop!", "name": "x"}, "slug"),
        ({"slug": "-x", "name": "x"}, "slug"),
        ({"slug": "a" * 64, "name": "x"}, "slug"),
        ({"slug": "ok"}, "name"),
        ({"slug": "ok", "name": "x", "repository_url": "ftp:/x"}, "repository_url"),
    ]:
        response = client.post("/api/v1/applications/", body, format="json")
        assert response.status_code == 400 and field in response.json(), body
    assert not Application.objects.exists()


def test_no_token_is_401_and_bad_token_is_401(app):
    assert APIClient().get("/api/v1/applications/").status_code == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer slw_nonsense")
    response = client.get("/api/v1/applications/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"


def test_revoked_token_is_401(user, app):
    from releases.models import ApiToken
    from releases.permissions import Actor
    from releases.services import do_revoke_api_token

    client = token_client(user, "releases:read")
    assert client.get("/api/v1/applications/").status_code == 200
    do_revoke_api_token(Actor.system(), ApiToken.objects.get())
    assert client.get("/api/v1/applications/").status_code == 401


def test_read_needs_read_scope(user, app):
    assert token_client(user, "flags:read").get("/api/v1/applications/").status_code == 403
    assert token_client(user, "admin").get("/api/v1/applications/").status_code == 200


def test_applications_hidden_from_non_members(app):
    stranger = factories.UserFactory(username="stranger")
    client = token_client(stranger, "releases:read")
    assert client.get("/api/v1/applications/").json()["results"] == []
    assert (
        client.get("/api/v1/applications/shop/").status_code == 404
    )  # no role there: as if it did not exist


def test_session_auth_works(client, user, app):
    client.force_login(user)
    assert client.get("/api/v1/applications/").json()["count"] == 1


def test_application_list_query_count_is_constant(admin_user, django_assert_num_queries):
    client = token_client(admin_user, "releases:read")
    factories.ApplicationFactory()
    client.get("/api/v1/applications/")
    with django_assert_num_queries(3):  # token, count, page
        client.get("/api/v1/applications/")
    for _ in range(15):
        factories.ApplicationFactory()
    with django_assert_num_queries(3):
        assert client.get("/api/v1/applications/").json()["count"] == 16


def test_identities_api(admin_user):
    alice = factories.UserFactory(username="alice")
    client = token_client(admin_user, "admin")
    response = client.post(
        "/api/v1/identities/", {"user": "alice", "identity": "alice@users.noreply.github.com"}, format="json"
    )
    assert response.status_code == 201
    assert alice.author_identities.get().identity == "alice@users.noreply.github.com"
    again = client.post(
        "/api/v1/identities/", {"user": "alice", "identity": "ALICE@users.noreply.github.com"}, format="json"
    )
    assert again.status_code == 409 and "identity" in again.json()
    assert (
        client.post("/api/v1/identities/", {"user": "nobody", "identity": "x"}, format="json").status_code
        == 404
    )
    assert (
        token_client(admin_user, "releases:write")
        .post("/api/v1/identities/", {"user": "alice", "identity": "a2"}, format="json")
        .status_code
        == 403
    )


def test_schema_and_docs(client, user):
    client.force_login(user)
    schema = client.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/applications/{slug}/artifacts/" in paths
    docs = client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower()
