"""The audit page: readable names that link to the object, filters, CSV export, constant queries."""

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from flags.services import do_create_flag
from releases.models import AuditEvent, Role
from releases.permissions import Actor
from releases.promotions import do_lock, do_request_release
from releases.services import do_grant_role
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db):
    app = factories.ApplicationFactory(slug="shop", name="Shop")
    staging = factories.EnvironmentFactory(application=app, name="staging", position=1)
    production = factories.EnvironmentFactory(application=app, name="production", position=2)
    boss = factories.UserFactory(username="boss")
    do_grant_role(Actor.system(), app, boss, Role.ADMIN)
    return app, staging, production, boss


def events(shop, n=1):
    app, staging, production, boss = shop
    actor = Actor(boss)
    for i in range(n):
        artifact = factories.ArtifactFactory(application=app, version=f"1.{i}.0")
        do_request_release(actor, app, environment=staging, artifact=artifact)
        do_lock(actor, production, reason=f"incident {i}")
        do_create_flag(actor, app, key=f"flag-{i}")


def test_objects_are_named_as_people_name_them_and_link_to_their_page(client, shop):
    app, staging, production, boss = shop
    events(shop)
    client.force_login(boss)
    page = client.get("/audit/").content.decode()
    release = AuditEvent.objects.filter(kind="release.requested").get()
    assert (
        f'<a href="/releases/{release.object_id}/">Release #{release.object_id}: 1.0.0 to staging</a>' in page
    )
    assert '<a href="/apps/shop/env/production/">shop/production</a>' in page  # "environment.locked"
    assert '<a href="/apps/shop/flags/flag-0/">flag flag-0</a>' in page
    assert f"#{release.object_id} 1.0.0 → " not in page  # not the internal "#8 1.0.0 → 2"


def test_filters_by_environment_actor_kind_and_date(client, shop):
    app, staging, production, boss = shop
    with time_machine.travel(timezone.now() - timedelta(days=3)):
        do_lock(Actor.system(), production, reason="old one")
    events(shop)
    client.force_login(boss)

    def kinds(query):
        response = client.get(f"/audit/?{query}")
        assert response.status_code == 200
        return {row["kind"] for row in _csv(client.get(f"/audit/?{query}&export=csv"))}

    assert kinds("app=shop&environment=production") == {"environment.locked"}
    staging_kinds = kinds("app=shop&environment=staging")
    assert "release.requested" in staging_kinds and all(k.startswith("release.") for k in staging_kinds)
    assert kinds("actor=boss&kind=flag.") == {"flag.created"}
    assert "system" not in {row["actor"] for row in _csv(client.get("/audit/?actor=boss&export=csv"))}
    today = timezone.localdate()
    recent = _csv(client.get(f"/audit/?environment=production&since={today.isoformat()}&export=csv"))
    assert [row["object"] for row in recent] and all(row["note"] != "old one" for row in recent)
    old = _csv(
        client.get(
            f"/audit/?environment=production&until={(today - timedelta(days=2)).isoformat()}&export=csv"
        )
    )
    assert [row["note"] for row in old] == ["old one"]


def test_a_bad_filter_is_shown_on_the_form_keeping_the_input(client, shop):
    app, staging, production, boss = shop
    events(shop)
    client.force_login(boss)
    response = client.get("/audit/?since=2026-12-05&until=2026-12-01&actor=boss")
    page = response.content.decode()
    assert response.status_code == 200
    assert "The end comes before the start." in page and 'value="boss"' in page
    assert client.get("/audit/?since=yesterday").status_code == 200  # not a date: said on the form, not a 500


def test_csv_export_has_every_column_and_only_what_the_user_may_see(client, shop):
    app, staging, production, boss = shop
    events(shop)
    other = factories.ApplicationFactory(slug="blog")
    do_lock(Actor.system(), factories.EnvironmentFactory(application=other, name="live"), reason="elsewhere")
    client.force_login(boss)
    response = client.get("/audit/?export=csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = _csv(response)
    assert rows and set(rows[0]) == {
        "time", "actor", "kind", "application", "environment", "object", "before", "after", "note",
    }  # fmt: skip
    assert {row["application"] for row in rows} == {"shop"}  # no role on blog: none of its events
    lock = next(row for row in rows if row["kind"] == "environment.locked")
    assert lock["environment"] == "production" and lock["note"] == "incident 0"
    assert timezone.datetime.fromisoformat(lock["time"]).tzinfo is not None


@pytest.mark.parametrize("n", [1, 20])
def test_the_page_reads_in_constant_queries(client, shop, n, django_assert_num_queries):
    app, staging, production, boss = shop
    events(shop, n)
    client.force_login(boss)
    client.get("/audit/")
    # session, user, the filter's applications, visible applications, count, page, releases, builds, flags; and
    # the memberships while the fixture's role.granted is on the first page
    with django_assert_num_queries(10 if n == 1 else 9):
        client.get("/audit/?app=shop")


def test_events_written_before_the_column_get_their_environment_from_the_migration(shop):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    app, staging, production, boss = shop
    do_lock(Actor(boss), production, reason="before the upgrade")
    AuditEvent.objects.update(environment=None)
    executor = MigrationExecutor(connection)
    backfill = executor.loader.get_migration("releases", "0013_audit_environment").operations[-1]
    backfill.code(executor.loader.project_state(("releases", "0013_audit_environment")).apps, None)
    assert AuditEvent.objects.get(kind="environment.locked").environment == production


def _csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_changes_read_as_json_and_registration_tokens_by_their_environment(client, shop):
    """No Python repr on the page: `true`/`null` as the API writes them, and the environment's name, not its id."""
    from environments.services import do_create_registration_token

    app, staging, production, boss = shop
    do_create_flag(Actor(boss), app, key="beta")
    do_create_registration_token(Actor(boss), production)
    client.force_login(boss)
    page = client.get("/audit/").content.decode()
    assert "True" not in page and "None" not in page and "{&#x27;" not in page  # no repr of a dict
    flag_created = AuditEvent.objects.get(kind="flag.created")
    assert flag_created.after and '<pre class="diff add">{\n  &quot;' in page
    assert '<a href="/apps/shop/env/production/">registration token for shop/production</a>' in page
    assert f"registration token for {production.pk}<" not in page


def test_segments_members_tokens_error_groups_rollouts_and_hooks_are_named_and_linked(client, shop):
    from django.db import transaction

    from flags.services import do_save_segment
    from monitoring.models import ErrorGroup
    from monitoring.services import do_resolve_error_group
    from releases import audit
    from releases.models import Release, Rollout
    from releases.services import do_create_api_token
    from releases.webhooks import do_configure_github

    app, staging, production, boss = shop
    actor = Actor(boss)
    do_save_segment(
        actor,
        app,
        name="staff",
        conditions=[{"attribute": "email", "operator": "ends_with", "values": ["@shop.example"]}],
    )
    dev = factories.UserFactory(username="dev")
    do_grant_role(actor, app, dev, Role.DEVELOPER)
    do_create_api_token(actor, boss, name="ci", scopes=["releases:read"])
    do_create_api_token(Actor(dev), dev, name="laptop", scopes=["releases:read"])
    now = timezone.now()
    group = ErrorGroup.objects.create(
        application=app, environment=production, fingerprint="f" * 32, type="KeyError", title="KeyError: 'cart'",
        first_seen=now, last_seen=now, count=3,
    )  # fmt: skip
    do_resolve_error_group(actor, group)
    release = Release.objects.create(
        application=app,
        environment=production,
        artifact=factories.ArtifactFactory(application=app, version="2.0.0"),
    )
    rollout = Rollout.objects.create(release=release, targets=["web-1"], strategy={"kind": "all"})
    with transaction.atomic():
        audit.record(Actor.system(), "rollout.noted", rollout, application=app)
    do_configure_github(actor, app, secret="s" * 32, blocker_label="deploy-blocker", blocker_environments=[])
    boss.is_superuser = True  # tokens without an environment belong to no application: a superuser's to read
    boss.save()
    client.force_login(boss)
    page = client.get("/audit/").content.decode()
    assert '<a href="/apps/shop/flags/#segments">segment staff</a>' in page
    assert '<a href="/apps/shop/members/">developer role of dev</a>' in page
    assert '<a href="/tokens/">API token ci of boss</a>' in page
    assert (
        "API token laptop of dev" in page and '<a href="/tokens/">API token laptop' not in page
    )  # not boss's
    assert (
        '<a href="/apps/shop/errors/?environment=production">error KeyError: &#x27;cart&#x27; in production</a>'
        in page
    )
    assert (
        f'<a href="/releases/{release.pk}/">rollout of release #{release.pk}: 2.0.0 to production</a>' in page
    )
    assert '<a href="/apps/shop/">GitHub hook for Shop</a>' in page
    assert f"GitHub hook for {app.pk}" not in page
