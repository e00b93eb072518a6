import pytest
from django.core.management import call_command

from releases.models import ApiToken, AuditEvent, Release
from tests import factories


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_login_required(client, db):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_overview_shows_versions(admin_client, demo):
    page = admin_client.get("/").content.decode()
    assert "Shop" in page and "staging" in page and "production" in page
    assert "1.4.0-broken" in page and "1.1.0" in page  # running in staging / production
    assert "newest build" in page


def test_overview_query_count_is_constant(admin_client, demo, django_assert_num_queries):
    admin_client.get("/")
    # session, user, applications, environments(+artifact), and the releases waiting for this user's approval
    # (pending releases, their approvals, batches, changes, roles, environment facts): the same for 1 or 20
    with django_assert_num_queries(17) as ctx:
        admin_client.get("/")
    for _ in range(8):
        application = factories.ApplicationFactory()
        environments = [
            factories.EnvironmentFactory(
                application=application,
                position=position,
                requires_approval=True,
                current_artifact=factories.ArtifactFactory(application=application),
            )
            for position in range(3)
        ]
        Release.objects.create(
            application=application,
            environment=environments[1],
            artifact=factories.ArtifactFactory(application=application),
            status="pending_approval",
        )
    with django_assert_num_queries(len(ctx.captured_queries)):
        assert admin_client.get("/").status_code == 200


def test_application_page_groups_changes_by_author(admin_client, demo):
    page = admin_client.get("/apps/shop/").content.decode()
    assert "Faster checkout" in page and "dave@contractor.example" in page and "unlinked" in page


def test_application_page_query_count_is_constant(admin_client, demo, django_assert_num_queries):
    from releases.models import Application

    shop = Application.objects.get(slug="shop")
    admin_client.get("/apps/shop/")
    with django_assert_num_queries(
        11
    ) as ctx:  # + releases waiting between environments, their approvals, DSN key
        admin_client.get("/apps/shop/")
    for n in range(10):
        changes = [factories.ChangeFactory(application=shop, author=f"dev{n}-{i}") for i in range(5)]
        factories.ArtifactFactory(application=shop, changes=changes)
    with django_assert_num_queries(len(ctx.captured_queries)):
        admin_client.get("/apps/shop/")


def test_audit_page(admin_client, demo):
    page = admin_client.get("/audit/").content.decode()
    assert "artifact.registered" in page and "application.created" in page
    partial = admin_client.get("/audit/?page=2", headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="events"')


def test_audit_page_query_count(admin_client, demo, django_assert_num_queries):
    admin_client.get("/audit/")
    # session, user, applications (the filter's choices), count, page, and one per kind of object named on the page
    # (releases, builds, flags, the demo's segment, its team's roles): the same for 1 row or 50
    # (tests/dashboard/test_audit.py)
    with django_assert_num_queries(10):
        admin_client.get("/audit/")


def test_viewer_cannot_see_other_apps(client, demo):
    stranger = factories.UserFactory(username="stranger")
    client.force_login(stranger)
    assert "Shop" not in client.get("/").content.decode()
    assert client.get("/apps/shop/").status_code == 404  # no role there: as unknown as a missing application


def test_create_and_revoke_token_in_browser(client, user, demo):
    client.force_login(user)
    response = client.post("/tokens/", {"name": "laptop", "scopes": ["releases:read", "flags:read"]})
    key = response.context["created_key"]
    assert key.startswith("slw_") and key in response.content.decode()
    token = ApiToken.objects.get(name="laptop")
    assert token.key_hash == ApiToken.hash_key(key)
    revoked = client.post(f"/tokens/{token.pk}/revoke/", follow=True).content.decode()
    assert "Token laptop is revoked: it stops working at once." in revoked
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(kind__in=["token.created", "token.revoked"]).count() == 2


def test_flags_are_in_the_nav_everywhere(client, demo):
    from releases.models import Application, Role
    from releases.permissions import Actor
    from releases.services import do_grant_role

    person = factories.UserFactory(username="nav")
    client.force_login(person)
    assert 'href="/flags/" >Flags</a>' in client.get("/audit/").content.decode()
    assert "You hold no role" in client.get("/flags/").content.decode()
    do_grant_role(Actor.system(), Application.objects.get(slug="shop"), person, Role.VIEWER)
    assert client.get("/flags/")["Location"] == "/apps/shop/flags/"  # the only application: straight there
    blog = factories.ApplicationFactory(slug="blog", name="Blog")
    do_grant_role(Actor.system(), blog, person, Role.VIEWER)
    choice = client.get("/flags/").content.decode()
    assert 'href="/apps/blog/flags/"' in choice and 'href="/apps/shop/flags/"' in choice


def test_revoke_and_unlink_ask_first(client, user, demo):
    from releases.permissions import Actor
    from releases.services import do_link_identity

    client.force_login(user)
    client.post("/tokens/", {"name": "laptop", "scopes": ["releases:read"]})
    tokens = client.get("/tokens/").content.decode()
    assert 'data-confirm="Revoke the token laptop? Anything using it stops working at once' in tokens
    do_link_identity(Actor.system(), user, "someone@users.noreply.github.com")
    profile = client.get("/profile/").content.decode()
    assert (
        'data-confirm="Unlink someone@users.noreply.github.com? Its changes stop counting as yours' in profile
    )


def test_a_taken_identity_is_said_beside_the_field_with_what_was_typed(client, user, demo):
    client.force_login(user)
    response = client.post("/profile/", {"identity": "alice@users.noreply.github.com"})
    assert response.status_code == 409
    page = response.content.decode()
    assert (
        'value="alice@users.noreply.github.com" aria-invalid="true" aria-describedby="identity-error"' in page
    )
    assert '<p class="field-error" id="identity-error">The identity' in page and "is linked already." in page
    bad = client.post("/profile/", {"identity": "not an identity!"})
    assert bad.status_code == 400 and 'id="identity-error"' in bad.content.decode()
