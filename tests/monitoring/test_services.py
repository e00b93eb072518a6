"""Ingestion services: groups, counts and bounded events; samples all or none; keys audited, errors not."""

from datetime import UTC, datetime, timedelta

import pytest

from config.errors import Forbidden, Invalid
from environments.jobs import Report, do_apply_reports
from environments.models import Target
from monitoring.models import ErrorCount, ErrorEvent, ErrorGroup, IngestKey, Sample
from monitoring.parsing import error_from_json, parse_samples
from monitoring.services import (
    Located,
    do_ingest_errors,
    do_push_samples,
    do_record_error,
    do_resolve_error_group,
    do_rotate_ingest_key,
)
from releases.models import ApiToken, AuditEvent, Release, Rollout, RolloutStep
from releases.permissions import Actor
from releases.services import do_create_application
from tests import factories


@pytest.fixture
def production(app):
    return factories.EnvironmentFactory(application=app, name="production")


def error(version="1.4.0", message="'user-1'", type="KeyError", **extra):
    return error_from_json(
        {
            "environment": "production",
            "type": type,
            "version": version,
            "message": message,
            "stacktrace": 'File "shop/cart.py", line 3, in total',
            **extra,
        }
    )


def test_errors_of_one_fingerprint_make_one_group_new_in_its_first_version(app, production):
    do_ingest_errors([Located(app.pk, production.pk, error(message=f"'user-{n}'")) for n in range(3)])
    do_ingest_errors(
        [
            Located(app.pk, production.pk, error(version="1.5.0")),
            Located(app.pk, production.pk, error(type="TypeError")),
        ]
    )
    key_error, type_error = ErrorGroup.objects.order_by("type")
    assert (key_error.count, key_error.first_seen_version, key_error.last_seen_version) == (
        4,
        "1.4.0",
        "1.5.0",
    )
    assert (type_error.count, type_error.first_seen_version) == (1, "1.4.0")
    assert dict(ErrorCount.objects.filter(group=key_error).values_list("version", "count")) == {
        "1.4.0": 3,
        "1.5.0": 1,
    }
    assert ErrorEvent.objects.count() == 5
    assert AuditEvent.objects.count() == 0  # no audit event per ingested error


def test_a_group_first_seen_without_a_version_is_new_in_the_first_version_it_shows_up_in(app, production):
    do_ingest_errors([Located(app.pk, production.pk, error(version=""))])
    do_ingest_errors([Located(app.pk, production.pk, error(version="2.0"))])
    assert ErrorGroup.objects.get().first_seen_version == "2.0"


def test_a_resolved_group_seen_again_is_regressed(app, production, user, django_capture_on_commit_callbacks):
    [group_id] = do_ingest_errors([Located(app.pk, production.pk, error())])
    resolved = do_resolve_error_group(
        Actor(user), ErrorGroup.objects.get(pk=group_id)
    )  # user: the app's admin
    assert resolved.status == ErrorGroup.Status.RESOLVED == ErrorGroup.objects.get().status
    event = AuditEvent.objects.get(kind="error_group.resolved")
    assert event.actor == user and event.before == {"status": "new"} and event.after == {"status": "resolved"}
    do_resolve_error_group(Actor(user), resolved)  # again: nothing changes, nothing more in the trail
    assert AuditEvent.objects.filter(kind="error_group.resolved").count() == 1
    do_ingest_errors([Located(app.pk, production.pk, error(version="1.5.0"))])
    assert ErrorGroup.objects.get().status == ErrorGroup.Status.REGRESSED


def test_resolving_needs_a_developer_or_more(app, production, user):
    [group_id] = do_ingest_errors([Located(app.pk, production.pk, error())])
    group = ErrorGroup.objects.get(pk=group_id)
    viewer, flags = factories.UserFactory(), factories.UserFactory()
    factories.MembershipFactory(user=viewer, application=app, role="viewer")
    factories.MembershipFactory(user=flags, application=app, role="flag_editor")
    for who in (viewer, flags):
        with pytest.raises(Forbidden):
            do_resolve_error_group(Actor(who), group)
    developer = factories.UserFactory()
    factories.MembershipFactory(user=developer, application=app, role="developer")
    assert do_resolve_error_group(Actor(developer), group).status == "resolved"


def test_only_the_newest_events_of_a_group_are_kept(app, production, monkeypatch):
    monkeypatch.setattr(ErrorEvent, "KEEP_PER_GROUP", 5)
    for batch in range(3):
        do_ingest_errors([Located(app.pk, production.pk, error(message=f"'m{batch}-{n}'")) for n in range(4)])
    assert ErrorGroup.objects.get().count == 12
    assert sorted(ErrorEvent.objects.values_list("message", flat=True)) == [
        "'m1-3'",
        "'m2-0'",
        "'m2-1'",
        "'m2-2'",
        "'m2-3'",
    ]


def test_event_times_from_the_future_are_not_believed(app, production):
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    do_ingest_errors([Located(app.pk, production.pk, error(timestamp=later))])
    assert ErrorGroup.objects.get().last_seen <= datetime.now(UTC)


def test_record_error_needs_metrics_write_and_a_known_environment(app, production, user):
    token_actor = Actor(user, _token(user, "releases:read"))
    with pytest.raises(Forbidden):
        do_record_error(token_actor, app, error())
    with pytest.raises(Invalid) as refused:
        do_record_error(Actor(user), app, error_from_json({"environment": "qa", "type": "E"}))
    assert refused.value.field == "environment"
    group = do_record_error(Actor(user, _token(user, "metrics:write")), app, error())
    assert group.count == 1


def _token(user, *scopes, environment=None):
    return ApiToken(user=user, name="t", key_hash="x", scopes=list(scopes), environment=environment)


def test_samples_are_stored_all_or_none(app, production, user):
    body = [
        {
            "name": "http_errors",
            "value": n,
            "labels": {"environment": "production", "version": "1.4.0", "target": "web-3", "route": "/"},
        }
        for n in range(3)
    ]
    assert do_push_samples(Actor(user), app, parse_samples(body)) == 3
    stored = Sample.objects.order_by("value")
    assert [(s.value, s.version, s.target, s.labels) for s in stored][0] == (
        0.0,
        "1.4.0",
        "web-3",
        {"route": "/"},
    )
    body.append({"name": "x", "value": 1, "labels": {"environment": "qa"}})
    with pytest.raises(Invalid) as refused:
        do_push_samples(Actor(user), app, parse_samples(body))
    assert refused.value.field == "samples[3].labels.environment" and refused.value.extra["index"] == 3
    assert Sample.objects.count() == 3


def test_a_token_pinned_to_another_environment_may_not_push_there(app, production, user):
    staging = factories.EnvironmentFactory(application=app, name="staging")
    actor = Actor(user, _token(user, "metrics:write", environment=staging))
    with pytest.raises(Forbidden):
        do_push_samples(
            actor, app, parse_samples([{"name": "x", "value": 1, "labels": {"environment": "production"}}])
        )


def test_keys_are_created_with_applications_and_rotated_with_audit(user):
    application = do_create_application(Actor.system(), slug="cart", name="Cart")
    first = IngestKey.objects.get(application=application)
    assert first.dsn == f"http://{first.public_key}@127.0.0.1:8000/{application.pk}"
    factories.MembershipFactory(user=user, application=application, role="developer")
    with pytest.raises(Forbidden):
        do_rotate_ingest_key(Actor(user), application)
    second = do_rotate_ingest_key(Actor.system(), application)
    first.refresh_from_db()
    assert (
        first.revoked_at is not None and second.revoked_at is None and second.public_key != first.public_key
    )
    assert list(
        AuditEvent.objects.filter(application=application).values_list("kind", flat=True).order_by("id")
    ) == ["application.created", "ingest_key.created", "ingest_key.rotated"]


def test_the_dsn_follows_the_base_url(settings):
    from monitoring.models import dsn_for

    settings.SLIPWAY_BASE_URL = "https://slipway.example.com/ops/"
    assert dsn_for("k", 7) == "https://k@slipway.example.com/ops/7"


def test_agents_health_checks_become_samples(app, production):
    artifact = factories.ArtifactFactory(application=app, version="2.0")
    target = Target.objects.create(environment=production, name="web-3", token_hash=ApiToken.hash_key("k"))
    release = Release.objects.create(
        application=app, environment=production, artifact=artifact, status="deploying"
    )
    rollout = Rollout.objects.create(release=release, targets=["web-3"], status="running")
    step = RolloutStep.objects.create(
        rollout=rollout,
        index=1,
        wave=0,
        target=target,
        target_name="web-3",
        action="deploy",
        version="2.0",
        status="running",
    )
    [(status, _)] = do_apply_reports(
        [
            Report(
                key="k",
                step_id=step.pk,
                succeeded=True,
                healthy=False,
                detail="503",
                version="2.0",
                output_tail="",
                health_seconds=0.25,
            )
        ]
    )
    assert status == 200
    samples = {s.name: s for s in Sample.objects.all()}
    assert samples["health_check_latency_ms"].value == 250.0 and samples["health_check_ok"].value == 0.0
    assert {(s.application_id, s.environment_id, s.version, s.target) for s in samples.values()} == {
        (app.pk, production.pk, "2.0", "web-3")
    }
