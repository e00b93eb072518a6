"""A rollback that reaches only some hosts keeps them, never puts any back on the version it rolls back from, retries
the others (when their agent is back, or when a person resumes) and says so — in the rows, the audit and the page.

Agents are simulated through the services the agent routes call (`do_claim_jobs`, `do_apply_reports`); the live
version with real processes is tests/environments/test_split_fleet.py.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from environments.jobs import Report, do_apply_reports, do_claim_jobs, touch
from environments.models import Target
from releases.exceptions import RollbackNotRevertible
from releases.models import ApiToken, AuditEvent, Release, Rollout, RolloutStep
from releases.permissions import Actor
from releases.promotions import do_rollback
from releases.rollouts import do_advance_rollout, do_control_rollout
from tests import factories

NAMES = ("a", "b", "c")


@pytest.fixture
def fleet(app):
    """`shop`/production: three agents' hosts on 2.0.0, which is bad; 1.0.0 ran before."""
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    for artifact in (v1, v2):
        Release.objects.create(
            application=app, environment=env, artifact=artifact, kind="recorded", status="succeeded"
        )
    env.current_artifact = v2
    env.save()
    now = timezone.now()
    for name in NAMES:
        Target.objects.create(
            environment=env,
            name=name,
            token_hash=ApiToken.hash_key(f"key-{name}"),
            version="2.0.0",
            status="online",
            last_seen=now,
        )
    return env, v1, v2


def roll_back(env, v1, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        release = do_rollback(Actor(user), env, artifact=v1, reason="2.0.0 is bad")
    release.refresh_from_db()
    return release, Rollout.objects.get(release=release)


def report(name, job, *, ok=True, version="1.0.0"):
    target = Target.objects.get(name=name)
    answer = do_apply_reports(
        [
            Report(
                key=f"key-{name}",
                step_id=job,
                succeeded=ok,
                healthy=ok,
                detail="" if ok else "exit 1",
                version=version if ok else None,
                output_tail="",
            )
        ],
        {f"key-{name}": target},
    )
    return answer[0]


def claim(*names):
    jobs = do_claim_jobs(Target.objects.filter(name__in=names).values_list("pk", flat=True))
    return {Target.objects.get(pk=pk).name: job["id"] for pk, job in jobs.items()}


def go_silent(name):
    Target.objects.filter(name=name).update(last_seen=timezone.now() - timedelta(minutes=5))


def state(rollout):
    rollout.refresh_from_db()
    return rollout.status, rollout.progress.get("waiting", []), rollout.progress.get("held", [])


def test_a_host_whose_agent_went_away_is_retried_when_it_is_back_and_nothing_is_reverted(
    fleet, user, client, django_capture_on_commit_callbacks
):
    env, v1, _ = fleet
    release, rollout = roll_back(env, v1, user, django_capture_on_commit_callbacks)
    do_advance_rollout(rollout.pk)
    jobs = claim(*NAMES)
    assert report("a", jobs["a"]) == (200, {"ok": True})
    assert report("b", jobs["b"]) == (200, {"ok": True})
    go_silent("c")  # its web process went down mid-deploy: no heartbeat, no report
    assert do_advance_rollout(rollout.pk) == "running"  # not reverting
    assert state(rollout) == ("running", ["c"], [])
    assert not RolloutStep.objects.filter(rollout=rollout, action="revert").exists()
    versions = dict(Target.objects.values_list("name", "version"))
    assert versions == {"a": "1.0.0", "b": "1.0.0", "c": "2.0.0"}  # what each host runs
    event = AuditEvent.objects.get(kind="rollout.hosts_not_reached")
    assert "c: agent offline" in event.note and "nothing is put back on 2.0.0" in event.note

    # The release page says which host is not reached and what it waits for.
    client.force_login(user)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Not reached yet" in page and 'data-target="c" data-waits-for="agent"' in page
    assert "tried again as soon as its agent is back" in page and 'value="revert"' not in page

    # Still away: the periodic check looks again and does nothing.
    assert do_advance_rollout(rollout.pk) == "running"
    assert RolloutStep.objects.filter(rollout=rollout, action="deploy").count() == 3

    touch([Target.objects.get(name="c")])  # its agent is back (a heartbeat through the other web process)
    assert do_advance_rollout(rollout.pk) == "running"
    retry = claim("c")
    assert report("c", retry["c"]) == (200, {"ok": True})
    assert do_advance_rollout(rollout.pk) == "succeeded"
    release.refresh_from_db()
    env.refresh_from_db()
    assert release.status == "succeeded" and env.current_artifact == v1
    assert dict(Target.objects.values_list("name", "version")) == dict.fromkeys(NAMES, "1.0.0")
    assert AuditEvent.objects.filter(kind="rollout.hosts_retried").exists()
    assert not RolloutStep.objects.filter(rollout=rollout, action="revert").exists()


def test_a_host_failing_while_reachable_waits_for_a_person_and_resume_tries_it_again(
    fleet, user, client, django_capture_on_commit_callbacks
):
    env, v1, _ = fleet
    release, rollout = roll_back(env, v1, user, django_capture_on_commit_callbacks)
    do_advance_rollout(rollout.pk)
    jobs = claim(*NAMES)
    report("a", jobs["a"])
    report("b", jobs["b"])
    report("c", jobs["c"], ok=False)
    assert do_advance_rollout(rollout.pk) == "paused"
    assert state(rollout) == ("paused", ["c"], ["c"])
    assert not RolloutStep.objects.filter(rollout=rollout, action="revert").exists()
    note = AuditEvent.objects.get(kind="rollout.needs_attention").note
    assert note.startswith("c: exit 1") and "Resume tries these again" in note
    client.force_login(user)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'data-target="c" data-waits-for="person"' in page and "Resume tries it again" in page

    with pytest.raises(RollbackNotRevertible):
        do_control_rollout(Actor(user), release, "revert")
    do_control_rollout(Actor(user), release, "resume")
    assert do_advance_rollout(rollout.pk) == "running"
    retry = claim("c")
    report("c", retry["c"])
    assert do_advance_rollout(rollout.pk) == "succeeded"
    assert dict(Target.objects.values_list("name", "version")) == dict.fromkeys(NAMES, "1.0.0")


def test_cancelling_a_partial_rollback_leaves_each_host_on_what_it_runs(
    fleet, user, django_capture_on_commit_callbacks
):
    env, v1, v2 = fleet
    release, rollout = roll_back(env, v1, user, django_capture_on_commit_callbacks)
    do_advance_rollout(rollout.pk)
    jobs = claim("a", "b")
    report("a", jobs["a"])  # c has not taken its job yet
    do_control_rollout(Actor(user), release, "cancel")
    assert do_advance_rollout(rollout.pk) == "reverting"  # b is still deploying: wait for its report
    report("b", jobs["b"])
    assert do_advance_rollout(rollout.pk) == "cancelled"
    assert not RolloutStep.objects.filter(rollout=rollout, action="revert").exists()
    assert RolloutStep.objects.get(rollout=rollout, target_name="c").status == "skipped"
    release.refresh_from_db()
    env.refresh_from_db()
    assert release.status == "cancelled" and env.current_artifact == v2  # the record: drift shows on the page
    assert dict(Target.objects.values_list("name", "version")) == {"a": "1.0.0", "b": "1.0.0", "c": "2.0.0"}


def test_a_failed_ordinary_release_still_reverts(fleet, user, django_capture_on_commit_callbacks):
    env, v1, v2 = fleet
    Target.objects.update(version="1.0.0")
    v3 = factories.ArtifactFactory(application=env.application, version="3.0.0")
    release = Release.objects.create(
        application=env.application,
        environment=env,
        artifact=v3,
        previous_artifact=v2,
        status="deploying",
        strategy={"kind": "rolling", "batch_size": 3, "max_unavailable": 3},
    )
    from releases.rollouts import start_rollout

    with django_capture_on_commit_callbacks(execute=False):
        rollout = start_rollout(release)
    do_advance_rollout(rollout.pk)
    jobs = claim(*NAMES)
    report("a", jobs["a"], version="3.0.0")
    report("b", jobs["b"], ok=False)
    assert do_advance_rollout(rollout.pk) == "reverting"
    assert RolloutStep.objects.filter(rollout=rollout, action="revert").exists()


def test_a_rollback_by_the_command_driver_pauses_on_a_failing_host_and_resume_runs_it_again(
    fleet, user, tmp_path, django_capture_on_commit_callbacks
):
    env, v1, _ = fleet
    env.driver = "command"
    env.deploy_command = f'test "$SLIPWAY_TARGET" != c || test -f {tmp_path}/fixed'
    env.save()
    release, rollout = roll_back(env, v1, user, django_capture_on_commit_callbacks)
    assert do_advance_rollout(rollout.pk) == "paused"
    assert state(rollout) == ("paused", ["c"], ["c"])
    assert not RolloutStep.objects.filter(rollout=rollout, action="revert").exists()
    (tmp_path / "fixed").touch()  # a person fixed the host
    do_control_rollout(Actor(user), release, "resume")
    assert do_advance_rollout(rollout.pk) == "succeeded"
    deploys = RolloutStep.objects.filter(rollout=rollout, action="deploy", target_name="c")
    assert list(deploys.order_by("index").values_list("status", flat=True)) == ["failed", "succeeded"]
