"""New-error detection after a deploy (`monitoring.alerts`): errors of known truth stored as ingested, alerts raised
once per release and group, sent to a real HTTP receiver, and the rollback the environment's setting asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from monitoring.alerts import _counts, check_recent_releases, do_check_new_errors, new_error_findings
from monitoring.models import Alert
from monitoring.parsing import error_from_json
from monitoring.services import Located, do_ingest_errors
from releases.models import AuditEvent, NotificationHook, Release
from tests import factories
from tests.releases.test_webhooks import Receiver, receiver  # noqa: F401 (a fixture)


@pytest.fixture
def eager(settings):
    from config.celery import app as celery_app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def released(app):
    """1.0.0 ran production until 2.0.0's release finished ten minutes ago."""
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    now = timezone.now()
    Release.objects.create(
        application=app,
        environment=env,
        artifact=v1,
        kind="recorded",
        status="succeeded",
        finished_at=now - timedelta(days=1),
    )
    release = Release.objects.create(
        application=app,
        environment=env,
        artifact=v2,
        previous_artifact=v1,
        status="succeeded",
        started_at=now - timedelta(minutes=11),
        finished_at=now - timedelta(minutes=10),
    )
    env.current_artifact = v2
    env.save()
    return env, release, now


def errors(env, version, kind, count, *, start, seconds=600, message="boom"):
    """`count` errors of one kind spread evenly over `seconds` from `start`."""
    do_ingest_errors(
        [
            Located(
                env.application_id,
                env.pk,
                error_from_json(
                    {
                        "environment": env.name,
                        "version": version,
                        "type": kind,
                        "message": message,
                        "timestamp": (start + timedelta(seconds=seconds * (i + 0.5) / count)).isoformat(),
                    }
                ),
            )
            for i in range(count)
        ]
    )


def test_a_new_error_group_alerts_once_to_the_hooks(
    released,
    receiver,  # noqa: F811 (the fixture imported above)
    eager,
    django_capture_on_commit_callbacks,
):
    env, release, now = released
    NotificationHook.objects.create(application=env.application, url=receiver, events=["alert"])
    NotificationHook.objects.create(
        application=env.application, url=receiver + "/other", events=["succeeded"]
    )
    before = release.started_at - timedelta(minutes=10)
    errors(
        env, "1.0.0", "KeyError", 20, start=before
    )  # the old, known error, at the same rate in both versions
    errors(env, "2.0.0", "KeyError", 20, start=now - timedelta(minutes=10))
    errors(
        env, "2.0.0", "TypeError", 12, start=now - timedelta(minutes=10), message="checkout"
    )  # new in 2.0.0
    with django_capture_on_commit_callbacks(execute=True):
        [alert] = do_check_new_errors(release, now=now)
    assert (alert.kind, alert.release, alert.group.type, alert.rollback_requested) == (
        "new_error",
        release,
        "TypeError",
        False,
    )
    assert alert.reason.startswith(
        "TypeError: checkout: 12 in 600 s (0.02/s) vs previous version 0 in 600 s (0/s), new"
    )
    assert alert.reason.endswith(
        "→ alert: significantly higher (rates per second of exposure, not per request: no http_requests samples "
        "counted both versions' requests, so more traffic alone raises the rate)"
    )
    assert alert.details["errors"] == 12 and alert.details["previous_errors"] == 0
    event = AuditEvent.objects.get(kind="alert.raised")
    assert (
        event.actor_label == "system"
        and event.object_id == str(alert.pk)
        and event.after["kind"] == "new_error"
    )
    [sent] = Receiver.received  # the hook that asked for alerts, once
    assert sent["slipway"]["event"] == "alert" and sent["slipway"]["alert"] == alert.pk
    assert (
        sent["text"].startswith(":rotating_light: New error after <")
        and "TypeError: checkout" in sent["text"]
    )

    errors(env, "2.0.0", "TypeError", 3, start=now - timedelta(minutes=5), seconds=300, message="checkout")
    with django_capture_on_commit_callbacks(execute=True):
        assert do_check_new_errors(release, now=now) == []  # de-duplicated: the same release and group
    assert Alert.objects.count() == 1 and len(Receiver.received) == 1


def test_few_or_old_errors_raise_nothing(released):
    env, release, now = released
    errors(env, "2.0.0", "TypeError", 4, start=now - timedelta(minutes=10))  # new, but fewer than 5
    errors(env, "1.0.0", "KeyError", 30, start=release.started_at - timedelta(minutes=10))
    errors(env, "2.0.0", "KeyError", 34, start=now - timedelta(minutes=10))  # the same rate, give or take
    assert do_check_new_errors(release, now=now) == []


def test_an_error_rate_well_above_the_previous_versions_rolls_back_when_the_environment_says_so(
    released, eager, django_capture_on_commit_callbacks
):
    env, release, now = released
    env.rollback_on_new_errors = True
    env.save()
    errors(env, "1.0.0", "KeyError", 20, start=release.started_at - timedelta(minutes=10))
    errors(env, "2.0.0", "KeyError", 60, start=now - timedelta(minutes=10))  # 3× the old rate
    errors(env, "2.0.0", "TypeError", 12, start=now - timedelta(minutes=10))  # and a new error
    with django_capture_on_commit_callbacks(execute=True):
        alerts = check_recent_releases(now=now)
    assert sorted(a.kind for a in alerts) == ["error_rate", "new_error"]
    rate = next(a for a in alerts if a.kind == "error_rate")
    assert (
        rate.reason.startswith("all errors: 60 in 600 s") and "vs previous version 20 in 600 s" in rate.reason
    )
    assert [a.rollback_requested for a in sorted(alerts, key=lambda a: a.pk)] == [True, False]  # one rollback
    [rollback] = Release.objects.filter(kind="rollback")
    assert rollback.artifact.version == "1.0.0" and rollback.reason.startswith(f"alert #{alerts[0].pk}: ")
    assert AuditEvent.objects.get(kind="release.rollback_requested").actor_label == "system"
    env.refresh_from_db()
    assert env.current_artifact.version == "1.0.0"  # no targets here: the rollback completes at once
    with django_capture_on_commit_callbacks(execute=True):
        assert check_recent_releases(now=now) == []  # 2.0.0 no longer runs there


def test_without_the_setting_an_alert_rolls_nothing_back(released, eager, django_capture_on_commit_callbacks):
    env, release, now = released
    errors(env, "2.0.0", "TypeError", 12, start=now - timedelta(minutes=10))
    with django_capture_on_commit_callbacks(execute=True):
        [alert] = check_recent_releases(now=now)
    assert not alert.rollback_requested and not Release.objects.filter(kind="rollback").exists()


def test_only_recent_releases_still_running_are_checked(released, settings):
    env, release, now = released
    errors(env, "2.0.0", "TypeError", 12, start=now - timedelta(minutes=10))
    settings.SLIPWAY_NEW_ERROR_WATCH_SECONDS = 300  # finished ten minutes ago: no longer watched
    assert check_recent_releases(now=now) == []
    settings.SLIPWAY_NEW_ERROR_WATCH_SECONDS = 3600
    assert [a.kind for a in check_recent_releases(now=now)] == ["new_error"]


@pytest.fixture(params=[0, 5, 12, 40, 55, 59])
def minute(request):
    """The same story at several minutes of the hour: windows that straddle an hour boundary (:00, :05, :12, :55,
    :59: the ten minutes before the release began, or since it finished, span two hours) and one that does not (:40).
    """
    import time_machine

    with time_machine.travel(datetime(2026, 12, 4, 12, request.param, 30, tzinfo=UTC), tick=True):
        yield request.param


def test_a_busy_group_is_counted_from_its_hourly_counts(minute, released):
    """A group with more events than are kept: the old version's pruned events still count (no false alarm)."""
    env, release, now = released
    errors(
        env, "1.0.0", "KeyError", 400, start=release.started_at - timedelta(minutes=10)
    )  # pruned to 100–200
    errors(env, "2.0.0", "KeyError", 400, start=now - timedelta(minutes=10))
    assert do_check_new_errors(release, now=now) == []
    counted = _counts(env.pk, "1.0.0", release.started_at - timedelta(minutes=10), release.started_at)
    assert list(counted.values()) == [400]  # all of them, though none of 1.0.0's events is kept
    assert list(_counts(env.pk, "2.0.0", now - timedelta(minutes=10), now).values()) == [400]


def test_an_hourly_count_is_shared_over_its_own_span():
    from monitoring.alerts import _share

    hour = datetime(2026, 12, 4, 12, tzinfo=UTC)
    first, last = hour + timedelta(minutes=50), hour + timedelta(minutes=59)
    window = (hour + timedelta(minutes=45), hour + timedelta(minutes=65))
    assert (
        _share(*window, hour, first, last) == 1.0
    )  # all of it, though the window covers a third of the hour
    assert _share(
        hour + timedelta(minutes=53), hour + timedelta(minutes=56), hour, first, last
    ) == pytest.approx(3 / 9)
    assert _share(hour, hour + timedelta(minutes=50), hour, first, last) == 0.0
    assert _share(*window, hour, first, first) == 1.0  # a single event inside the window
    assert _share(hour + timedelta(minutes=51), hour + timedelta(minutes=52), hour, first, first) == 0.0
    assert _share(*window, hour, None, None) == pytest.approx(15 / 60)  # counted before spans were kept


def test_the_hourly_counts_keep_their_first_and_last_event(released):
    from monitoring.models import ErrorCount

    env, release, now = released
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    errors(env, "2.0.0", "KeyError", 3, start=start + timedelta(minutes=10), seconds=60)
    errors(env, "2.0.0", "KeyError", 2, start=start + timedelta(minutes=5), seconds=60)
    (count,) = ErrorCount.objects.filter(version="2.0.0")
    assert count.count == 5
    assert count.first_at == start + timedelta(minutes=5, seconds=15)
    assert count.last_at == start + timedelta(minutes=10, seconds=50)


def test_a_first_deploys_new_errors_alert_against_none_and_nothing_is_rolled_back(
    app, eager, django_capture_on_commit_callbacks
):
    """No previous version: each new group is compared with none in as long a window; no error-rate alert (nothing
    to compare with) and no rollback (nothing to go back to), even with rollback_on_new_errors."""
    env = factories.EnvironmentFactory(
        application=app, name="production", position=1, rollback_on_new_errors=True
    )
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    now = timezone.now()
    release = Release.objects.create(
        application=app,
        environment=env,
        artifact=v1,
        status="succeeded",
        started_at=now - timedelta(minutes=11),
        finished_at=now - timedelta(minutes=10),
    )
    env.current_artifact = v1
    env.save()
    errors(env, "1.0.0", "TypeError", 12, start=now - timedelta(minutes=10))
    errors(env, "1.0.0", "KeyError", 3, start=now - timedelta(minutes=10))  # new too, but only 3
    with django_capture_on_commit_callbacks(execute=True):
        [alert] = check_recent_releases(now=now)
    assert alert.kind == "new_error" and alert.group.type == "TypeError" and not alert.rollback_requested
    assert alert.reason.startswith(
        "TypeError: boom: 12 in 600 s (0.02/s) vs no previous version (first deploy) 0"
    )
    assert alert.reason.endswith("→ alert: significantly higher")
    assert alert.details["previous_version"] is None and alert.details["previous_window"] is None
    assert not Release.objects.filter(environment=env).exclude(pk=release.pk).exists()  # no rollback
    assert check_recent_releases(now=now + timedelta(seconds=30)) == []  # once


def requests(env, version, per_second, *, start, seconds=600):
    """What the service pushes: the requests it served each 10 seconds (`http_requests`)."""
    from monitoring.models import Sample

    Sample.objects.bulk_create(
        Sample(
            application_id=env.application_id,
            environment=env,
            name="http_requests",
            value=per_second * 10,
            version=version,
            target="web-1",
            timestamp=start + timedelta(seconds=10 * i + 5),
        )
        for i in range(seconds // 10)
    )


def test_traffic_growing_after_a_deploy_is_no_error_rate_rise_when_requests_are_counted(released):
    """2.0.0 serves three times 1.0.0's traffic with the same 1 % of requests failing: three times the errors per
    second. Counted per request (both versions pushed http_requests) nothing is raised; a real rise per request
    still is, and without request counts the reason says the rate is per second."""
    env, release, now = released
    before = release.started_at - timedelta(minutes=10)
    after = now - timedelta(minutes=10)
    errors(env, "1.0.0", "KeyError", 60, start=before)  # 10 requests/s, 1 %
    errors(env, "2.0.0", "KeyError", 180, start=after)  # 30 requests/s, 1 %
    [per_second] = new_error_findings(release, now=now)
    assert per_second.kind == "error_rate" and per_second.details["exposure"] == "seconds"
    assert (
        "rates per second of exposure, not per request" in per_second.reason
    )  # today's false alarm, explained

    requests(env, "1.0.0", 10, start=before)
    requests(env, "2.0.0", 30, start=after)
    assert new_error_findings(release, now=now) == []
    assert do_check_new_errors(release, now=now) == []

    errors(env, "2.0.0", "KeyError", 180, start=after)  # now 2 % of 2.0.0's requests fail
    [rate] = do_check_new_errors(release, now=now)
    assert rate.kind == "error_rate" and rate.details["exposure"] == "requests"
    assert (rate.details["requests"], rate.details["previous_requests"]) == (18_000, 6_000)
    assert rate.reason.startswith(
        "all errors: 360 in 18000 requests (2 %) vs previous version 60 in 6000 requests (1 %), 2.00×, "
        "p < 0.001"
    )
    assert rate.reason.endswith("→ alert: significantly higher")
