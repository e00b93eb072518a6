"""Members: granting and revoking roles (service, API), and tokens respecting them on every API route."""

import pytest

from config.errors import Forbidden
from releases import access
from releases.exceptions import LastAdmin
from releases.models import Application, AuditEvent, AuthorIdentity, Membership
from releases.permissions import Actor
from releases.services import do_create_api_token, do_grant_role, do_revoke_role
from tests import factories
from tests.conftest import token_client

API = "/api/v1/applications/shop"


@pytest.fixture
def envs(app):
    return (
        factories.EnvironmentFactory(application=app, name="staging", position=1),
        factories.EnvironmentFactory(application=app, name="production", position=2),
    )


@pytest.fixture
def manager(app):
    person = factories.UserFactory(username="rm")
    factories.MembershipFactory(user=person, application=app, role="release_manager")
    return person


@pytest.fixture
def alice(db):
    return factories.UserFactory(username="alice")


# --- services ------------------------------------------------------------------------------


def test_grant_and_revoke_are_audited_and_move_the_access_version(
    app, manager, alice, envs, django_capture_on_commit_callbacks
):
    access.clear()
    with django_capture_on_commit_callbacks(execute=True):
        membership, created = do_grant_role(Actor(manager), app, alice, "flag_editor", envs[1])
    assert created and membership.environment == envs[1]
    assert AuditEvent.objects.get(kind="role.granted").after == {
        "user": "alice",
        "role": "flag_editor",
        "environment": "production",
    }
    assert do_grant_role(Actor(manager), app, alice, "flag_editor", envs[1]) == (membership, False)
    with django_capture_on_commit_callbacks(execute=True):
        do_revoke_role(Actor(manager), membership)
    assert not Membership.objects.filter(user=alice).exists()
    assert AuditEvent.objects.get(kind="role.revoked").before["role"] == "flag_editor"
    version = Application.objects.get(pk=app.pk).access_version
    assert version == 3
    assert access.known(app.pk)[0] == version  # this process knows at once


def test_release_manager_grants_all_but_admin(app, manager, alice):
    for role in ("viewer", "developer", "release_manager", "flag_editor"):
        do_grant_role(Actor(manager), app, alice, role)
    with pytest.raises(Forbidden, match="admin"):
        do_grant_role(Actor(manager), app, alice, "admin")
    admin_membership = Membership.objects.get(application=app, role="admin")
    with pytest.raises(Forbidden):
        do_revoke_role(Actor(manager), admin_membership)


def test_developer_cannot_grant(app, alice):
    developer = factories.UserFactory(username="dev")
    factories.MembershipFactory(user=developer, application=app, role="developer")
    with pytest.raises(Forbidden, match="admin or release manager"):
        do_grant_role(Actor(developer), app, alice, "viewer")
    assert not Membership.objects.filter(user=alice).exists()


def test_last_admin_stays(app, user, alice):
    only = Membership.objects.get(application=app, role="admin")
    with pytest.raises(LastAdmin):
        do_revoke_role(Actor(user), only)
    do_grant_role(Actor(user), app, alice, "admin")
    do_revoke_role(Actor(alice), only)  # another admin now: fine
    assert list(
        Membership.objects.filter(application=app, role="admin").values_list("user__username", flat=True)
    ) == ["alice"]


def test_pinned_token_needs_a_role_on_its_application(app, envs, alice):
    with pytest.raises(Forbidden) as refused:
        do_create_api_token(Actor(alice), alice, name="sdk", scopes=["flags:read"], environment=envs[1])
    assert refused.value.field == "environment"
    factories.MembershipFactory(user=alice, application=app, role="viewer")
    do_create_api_token(Actor(alice), alice, name="sdk", scopes=["flags:read"], environment=envs[1])


# --- API -----------------------------------------------------------------------------------


def test_members_api_grant_list_revoke(app, manager, alice, envs):
    client = token_client(manager, "admin")
    response = client.post(
        f"{API}/members/",
        {"user": "alice", "role": "flag_editor", "environment": "production"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    member = response.json()
    assert (
        member["user"] == "alice"
        and member["role"] == "flag_editor"
        and member["environment"] == "production"
    )
    again = client.post(
        f"{API}/members/",
        {"user": "alice", "role": "flag_editor", "environment": "production"},
        format="json",
    )
    assert again.status_code == 200 and again.json()["id"] == member["id"]
    listing = client.get(f"{API}/members/").json()
    assert listing["count"] == 3
    assert {(m["user"], m["role"], m["environment"]) for m in listing["results"]} >= {
        ("alice", "flag_editor", "production"),
        ("rm", "release_manager", None),
    }
    assert client.delete(f"{API}/members/{member['id']}/").status_code == 204
    assert client.delete(f"{API}/members/{member['id']}/").status_code == 404
    assert AuditEvent.objects.filter(kind__in=["role.granted", "role.revoked"]).count() == 2


@pytest.mark.parametrize(
    "body,status,field",
    [
        ({"user": "alice", "role": "owner"}, 400, "role"),
        ({"user": "alice"}, 400, "role"),
        ({"role": "viewer"}, 400, "user"),
        ({"user": "nobody", "role": "viewer"}, 404, "user"),
        ({"user": "alice", "role": "flag_editor", "environment": "moon"}, 404, "environment"),
        ({"user": "alice", "role": "developer", "environment": "production"}, 400, "environment"),
    ],
)
def test_members_api_bad_input_names_the_field(app, manager, alice, envs, body, status, field):
    response = token_client(manager, "admin").post(f"{API}/members/", body, format="json")
    assert response.status_code == status and field in response.json(), response.json()
    assert not Membership.objects.filter(user=alice).exists()


def test_members_api_needs_admin_scope_and_role(app, manager, alice, envs):
    assert (
        token_client(manager, "releases:write")
        .post(f"{API}/members/", {"user": "alice", "role": "viewer"}, format="json")
        .status_code
        == 403
    )
    assert (
        token_client(manager, "admin")
        .post(f"{API}/members/", {"user": "alice", "role": "admin"}, format="json")
        .status_code
        == 403
    )
    developer = factories.UserFactory(username="dev")
    factories.MembershipFactory(user=developer, application=app, role="developer")
    assert (
        token_client(developer, "admin")
        .post(f"{API}/members/", {"user": "alice", "role": "viewer"}, format="json")
        .status_code
        == 403
    )
    assert token_client(developer, "releases:read").get(f"{API}/members/").status_code == 200
    only_admin = Membership.objects.get(application=app, role="admin")
    response = token_client(app.memberships.get(role="admin").user, "admin").delete(
        f"{API}/members/{only_admin.pk}/"
    )
    assert response.status_code == 409 and response.json()["code"] == "last_admin"


def test_members_in_the_openapi_schema(admin_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin_user)
    schema = client.get("/api/v1/schema/?format=json").json()
    members = schema["paths"]["/api/v1/applications/{slug}/members/"]
    assert {"get", "post"} <= set(members)
    assert "delete" in schema["paths"]["/api/v1/applications/{slug}/members/{id}/"]
    assert {"user", "role", "environment"} <= set(
        schema["components"]["schemas"]["MemberInRequest"]["properties"]
    )


# --- every API route respects a revoked membership ---------------------------------------------------------

APP_ROUTES = [
    "",
    "environments/",
    "environments/production/",
    "artifacts/",
    "releases/",
    "members/",
    "environments/production/locks/",
    "environments/production/freezes/",
    "environments/production/targets/",
    "blockers/",
    "notification-hooks/",
    "flags/",
    "segments/",
]


@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_every_route_refuses_a_token_whose_user_lost_access(app, envs, manager, alice, pinned):
    membership = factories.MembershipFactory(user=alice, application=app, role="developer")
    client = token_client(alice, "releases:read", "flags:read", environment=envs[1] if pinned else None)
    for route in APP_ROUTES:
        assert client.get(f"{API}/{route}").status_code == 200, route
    # Revoked the way people do it: a release manager on the members API.
    assert token_client(manager, "admin").delete(f"{API}/members/{membership.pk}/").status_code == 204
    # A pinned token is refused as such (403); otherwise the application is as unknown as a missing one (404).
    for route in APP_ROUTES:
        assert client.get(f"{API}/{route}").status_code == (403 if pinned else 404), route
    listing = client.get("/api/v1/applications/")
    if pinned:
        assert listing.status_code == 403
        assert "no role on shop" in listing.json()["detail"]
    else:
        assert listing.json()["results"] == []


def test_pinned_token_lists_only_its_application(app, envs, alice):
    other = factories.ApplicationFactory(slug="blog")
    for application in (app, other):
        factories.MembershipFactory(user=alice, application=application, role="viewer")
    assert [
        a["slug"] for a in token_client(alice, "releases:read").get("/api/v1/applications/").json()["results"]
    ] == ["blog", "shop"]
    pinned = token_client(alice, "releases:read", environment=envs[0])
    assert [a["slug"] for a in pinned.get("/api/v1/applications/").json()["results"]] == ["shop"]
    assert pinned.get("/api/v1/applications/blog/").status_code == 403


# --- Django's admin reads; it is not a second way to grant roles or link identities -----------------------


def test_the_admin_cannot_grant_a_role_or_link_an_identity_behind_the_audit(client, admin_user, app, alice):
    client.force_login(admin_user)
    membership = factories.MembershipFactory(user=alice, application=app, role="viewer")
    assert client.get("/admin/releases/membership/").status_code == 200  # it reads
    refused = [
        client.post(
            "/admin/releases/membership/add/", {"user": alice.pk, "application": app.pk, "role": "admin"}
        ),
        client.post(f"/admin/releases/membership/{membership.pk}/change/", {"role": "admin"}),
        client.post(f"/admin/releases/membership/{membership.pk}/delete/", {"post": "yes"}),
        client.post("/admin/releases/authoridentity/add/", {"identity": "contractor", "user": alice.pk}),
    ]
    assert [response.status_code for response in refused] == [403, 403, 403, 403]
    assert Membership.objects.get(user=alice).role == "viewer"
    assert not AuthorIdentity.objects.exists()


def test_an_application_added_in_the_admin_is_made_by_the_service(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/releases/application/add/", {"slug": "blog", "name": "Blog", "repository_url": ""}
    )
    assert response.status_code == 302, response.content[:2000]
    blog = Application.objects.get(slug="blog")
    assert Membership.objects.get(application=blog).user == admin_user  # its creator is its admin
    assert AuditEvent.objects.get(kind="application.created").after["slug"] == "blog"
    assert blog.ingest_keys.exists()  # it can receive errors at once
