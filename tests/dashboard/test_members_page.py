"""The Members page, the tokens page's environments, and the demo's product manager."""

import pytest
from django.core.management import call_command

from releases.models import ApiToken, AuditEvent, Membership
from tests import factories


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def login(client, username, role=None, app_slug="shop"):
    from releases.models import Application

    person = factories.UserFactory(username=username)
    if role:
        factories.MembershipFactory(
            user=person, application=Application.objects.get(slug=app_slug), role=role
        )
    client.force_login(person)
    return person


def test_application_page_links_members(admin_client, demo):
    assert 'href="/apps/shop/members/"' in admin_client.get("/apps/shop/").content.decode()


def test_members_page_lists_roles_and_grants(admin_client, demo):
    page = admin_client.get("/apps/shop/members/").content.decode()
    assert "alice" in page and "Flag editor" in page and "Grant a role" in page
    assert '<option value="admin">' in page  # a superuser may grant the admin role
    response = admin_client.post(
        "/apps/shop/members/", {"user": "bob", "role": "flag_editor", "environment": "production"}
    )
    assert response.status_code == 302
    assert Membership.objects.filter(
        user__username="bob", role="flag_editor", environment__name="production"
    ).exists()
    page = admin_client.get("/apps/shop/members/").content.decode()
    assert "bob is flag editor now." in page and "production only" in page


@pytest.mark.parametrize(
    "data,field,message",
    [
        ({"user": "nobody", "role": "viewer"}, "user", "No user &#x27;nobody&#x27;."),
        (
            {"user": "bob", "role": "developer", "environment": "production"},
            "environment",
            "Only a flag editor&#x27;s role can be limited to one environment.",
        ),
        ({"user": "bob", "role": "owner"}, "role", "Select a valid choice."),
    ],
)
def test_grant_errors_sit_beside_their_field_keeping_the_input(admin_client, demo, data, field, message):
    before = Membership.objects.count()
    response = admin_client.post("/apps/shop/members/", data)
    assert response.status_code == 400
    page = response.content.decode()
    assert f'id="id_{field}_error"' in page and message in page
    assert f'value="{data["user"]}"' in page  # what was typed stays
    assert Membership.objects.count() == before


def test_release_manager_manages_but_cannot_grant_admin(client, demo):
    login(client, "rm", "release_manager")
    page = client.get("/apps/shop/members/").content.decode()
    assert "Grant a role" in page and '<option value="admin">' not in page
    response = client.post("/apps/shop/members/", {"user": "bob", "role": "admin"})
    assert response.status_code == 400 and 'id="id_role_error"' in response.content.decode()
    assert not Membership.objects.filter(user__username="bob", role="admin").exists()
    pm = Membership.objects.get(user__username="pm")
    assert client.post(f"/apps/shop/members/{pm.pk}/revoke/").status_code == 302
    assert not Membership.objects.filter(pk=pm.pk).exists()
    assert AuditEvent.objects.filter(kind="role.revoked").count() == 1


def test_viewer_sees_members_read_only(client, demo):
    login(client, "watcher", "viewer")
    page = client.get("/apps/shop/members/").content.decode()
    assert "alice" in page and "Grant a role" not in page and "Revoke" not in page
    alice = Membership.objects.get(user__username="alice")
    assert client.post("/apps/shop/members/", {"user": "watcher", "role": "developer"}).status_code == 403
    assert client.post(f"/apps/shop/members/{alice.pk}/revoke/").status_code == 403
    assert Membership.objects.filter(pk=alice.pk).exists()


def test_stranger_cannot_see_members(client, demo):
    login(client, "stranger")
    assert client.get("/apps/shop/members/").status_code == 404  # no role there: as unknown as a missing app


def test_members_page_query_count_is_constant(admin_client, demo, django_assert_num_queries):
    admin_client.get("/apps/shop/members/")
    with django_assert_num_queries(6) as ctx:  # session, user, application, members, usernames, environments
        admin_client.get("/apps/shop/members/")
    for n in range(5):
        factories.MembershipFactory(
            user=factories.UserFactory(username=f"extra{n}"),
            application=Membership.objects.first().application,
            role="viewer",
        )
    with django_assert_num_queries(len(ctx.captured_queries)):
        admin_client.get("/apps/shop/members/")


def test_tokens_page_offers_only_environments_the_user_may_see(client, demo):
    other = factories.ApplicationFactory(slug="secret")
    hidden = factories.EnvironmentFactory(application=other, name="vault")
    login(client, "outsider")
    page = client.get("/tokens/").content.decode()
    assert "secret/vault" not in page and "shop/production" not in page
    response = client.post("/tokens/", {"name": "sneaky", "scopes": ["flags:read"], "environment": hidden.pk})
    assert response.status_code == 400 and 'id="id_environment_error"' in response.content.decode()
    assert not ApiToken.objects.filter(name="sneaky").exists()
    empty = client.post(
        "/tokens/", {"name": "", "scopes": []}
    )  # refused like every form: 400, beside the fields
    assert empty.status_code == 400 and 'id="id_name_error"' in empty.content.decode()
    client.force_login(Membership.objects.get(user__username="pm").user)
    page = client.get("/tokens/").content.decode()
    assert "shop/production" in page and "secret/vault" not in page


def test_demo_has_a_product_manager_printed_with_the_others(db, capsys, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")
    out = capsys.readouterr().out
    assert "pm (flag editor) / " in out and "alice (developer) / " in out
    assert Membership.objects.get(user__username="pm").role == "flag_editor"
