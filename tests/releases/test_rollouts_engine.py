"""The reconciler without agents: the command driver, the pre-deploy hook, manual gates, controls."""

import contextlib

import pytest

from environments.models import Target
from releases.models import AuditEvent, Release, RolloutStep
from releases.permissions import Actor
from releases.rollouts import do_advance_rollout, do_control_rollout, start_rollout
from tests import factories


@pytest.fixture
def setup(app, tmp_path):
    env = factories.EnvironmentFactory(
        application=app,
        name="production",
        position=1,
        driver="command",
        deploy_command=f"echo $SLIPWAY_TARGET=$SLIPWAY_VERSION >> {tmp_path}/deployed",
        pre_deploy_command=f"echo migrate $SLIPWAY_VERSION >> {tmp_path}/hooks",
    )
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    for name in ("a", "b", "c"):
        Target.objects.create(environment=env, name=name, token_hash=name * 64)
    return env, v1, v2


def rollout_for(env, v1, v2):
    release = Release.objects.create(
        application=env.application, environment=env, artifact=v2, previous_artifact=v1, status="deploying"
    )
    return release, start_rollout(release)


def test_command_driver_with_pre_deploy_hook(setup, tmp_path):
    env, v1, v2 = setup
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    steps = list(RolloutStep.objects.filter(rollout=rollout).values_list("action", "target_name", "wave"))
    assert steps[0] == ("pre_deploy", "", None)
    assert [s[1] for s in steps if s[0] == "deploy"] == ["a", "b", "c"]
    assert (tmp_path / "hooks").read_text() == "migrate 2.0.0\n"  # once, before the first wave
    assert sorted((tmp_path / "deployed").read_text().split()) == ["a=2.0.0", "b=2.0.0", "c=2.0.0"]
    release.refresh_from_db()
    assert release.status == "succeeded"


def test_failing_pre_deploy_stops_before_any_target(setup, tmp_path):
    env, v1, v2 = setup
    env.pre_deploy_command = "exit 3"
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "reverted"
    assert not RolloutStep.objects.filter(rollout=rollout, action="deploy").exists()
    release.refresh_from_db()
    assert release.status == "failed"


def test_manual_gate_waits_for_a_person(setup, user):
    env, v1, v2 = setup
    env.manual_gates, env.pre_deploy_command = True, ""
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "paused"
    assert RolloutStep.objects.filter(rollout=rollout, action="deploy").count() == 1  # the first wave only
    do_control_rollout(Actor(user), release, "resume")
    assert do_advance_rollout(rollout.pk) == "succeeded"  # waves of 1 and 2: no gate after the last


def test_revert_now_puts_back_touched_targets(setup, user, tmp_path):
    env, v1, v2 = setup
    env.manual_gates, env.pre_deploy_command = True, ""
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    do_advance_rollout(rollout.pk)
    do_control_rollout(Actor(user), release, "revert")
    assert do_advance_rollout(rollout.pk) == "reverted"
    reverts = list(
        RolloutStep.objects.filter(rollout=rollout, action="revert").values_list("target_name", "version")
    )
    assert reverts == [("a", "1.0.0")]
    assert (tmp_path / "deployed").read_text().split() == ["a=2.0.0", "a=1.0.0"]


def test_webhook_driver_calls_out_and_waits_for_a_signed_callback(app, client):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from releases.models import AuditEvent
    from releases.rollouts import sign

    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((json.loads(body), self.headers["X-Slipway-Signature"], body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = factories.EnvironmentFactory(
            application=app,
            name="production",
            position=1,
            driver="webhook",
            webhook_url=f"http://127.0.0.1:{server.server_address[1]}/deploy",
            webhook_secret="s3cret",
        )
        v1, v2 = factories.ArtifactFactory(application=app), factories.ArtifactFactory(application=app)
        release, rollout = rollout_for(env, v1, v2)
        assert do_advance_rollout(rollout.pk) == "running"
        job, signature, raw = received[0]
        assert (
            signature == sign("s3cret", raw) and job["version"] == v2.version and job["target"] == "default"
        )
        url = f"/api/v1/webhooks/rollout/{job['job']}/"
        report = json.dumps({"status": "succeeded", "health": {"ok": True, "detail": "200"}}).encode()
        forged = client.post(
            url, report, content_type="application/json", headers={"X-Slipway-Signature": "sha256=0"}
        )
        assert forged.status_code == 401
        assert not AuditEvent.objects.filter(
            kind="rollout.step_reported"
        ).exists()  # a forgery records nothing
        ok = client.post(
            url,
            report,
            content_type="application/json",
            headers={"X-Slipway-Signature": sign("s3cret", report)},
        )
        assert ok.status_code == 200
        # The callback comes from outside: audited, in the step's transaction, with what it said.
        (event,) = AuditEvent.objects.filter(kind="rollout.step_reported")
        assert (event.object_type, event.object_id) == ("releases.release", str(release.pk))
        assert (event.application, event.environment_id, event.actor_label) == (app, env.pk, "system")
        assert event.after == {"step": job["job"], "target": "default", "status": "succeeded"}
        assert event.note == "reported by the webhook receiver"
        assert do_advance_rollout(rollout.pk) == "succeeded"
        assert not AuditEvent.objects.filter(after__webhook_secret="s3cret").exists()
    finally:
        server.shutdown()


# --- gates the worker runs: smoke tests, canary analysis, blue/green switches --------------------------------


def failing_analysis(rollout, wave, traffic_percent):
    return False, f"error rate 7% at {traffic_percent}% of traffic"


def exploding_analysis(rollout, wave, traffic_percent):
    raise RuntimeError("metrics store down")


def test_smoke_test_command_gates_every_wave(setup, tmp_path):
    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.smoke_test_command = f"echo smoke $SLIPWAY_WAVE $SLIPWAY_TARGETS >> {tmp_path}/smoke"
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    assert (tmp_path / "smoke").read_text().splitlines() == ["smoke 1 a", "smoke 2 b,c"]  # after each wave
    smoke = RolloutStep.objects.filter(rollout=rollout, action="smoke").order_by("index")
    assert [s.wave for s in smoke] == [0, 1] and all(s.status == "succeeded" for s in smoke)


def test_failing_smoke_test_stops_and_reverts_the_wave(setup, tmp_path):
    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.smoke_test_command = "echo checkout returns 500; exit 1"
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "reverted"
    smoke = RolloutStep.objects.get(rollout=rollout, action="smoke")
    assert smoke.status == "failed" and "checkout returns 500" in smoke.output
    assert list(
        RolloutStep.objects.filter(rollout=rollout, action="revert").values_list("target_name", flat=True)
    ) == ["a"]
    release.refresh_from_db()
    assert release.status == "failed"


def test_failing_smoke_url_names_the_url(setup, live_server):
    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.smoke_test_urls = [live_server.url + "/healthz", live_server.url + "/no-such-page/"]
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "reverted"
    output = RolloutStep.objects.get(rollout=rollout, action="smoke").output
    assert "/healthz: HTTP 200" in output and "/no-such-page/: HTTP 404" in output


def test_canary_analysis_hook_is_configurable_and_can_stop_a_canary(setup, settings):
    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.strategy = {"kind": "canary", "steps": [33, 100], "pause_seconds": 0}  # 1 of 3 targets, then all
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    passed = RolloutStep.objects.get(rollout=rollout, action="analysis")
    assert passed.status == "succeeded" and "33% of traffic" in passed.output  # the no-op default

    settings.SLIPWAY_CANARY_ANALYSIS = "tests.releases.test_rollouts_engine.failing_analysis"
    v3 = factories.ArtifactFactory(application=env.application, version="3.0.0")
    release, rollout = rollout_for(env, v2, v3)
    assert do_advance_rollout(rollout.pk) == "reverted"
    failed = RolloutStep.objects.get(rollout=rollout, action="analysis")
    assert failed.status == "failed" and failed.output == "error rate 7% at 33% of traffic"
    assert [s.target_name for s in RolloutStep.objects.filter(rollout=rollout, action="revert")] == ["a"]

    settings.SLIPWAY_CANARY_ANALYSIS = "tests.releases.test_rollouts_engine.exploding_analysis"
    v4 = factories.ArtifactFactory(application=env.application, version="4.0.0")
    release, rollout = rollout_for(env, v2, v4)
    assert do_advance_rollout(rollout.pk) == "reverted"
    assert "metrics store down" in RolloutStep.objects.get(rollout=rollout, action="analysis").output


def test_blue_green_switches_the_live_slot_and_switches_back_instantly(
    setup, tmp_path, user, django_capture_on_commit_callbacks
):
    from releases.models import AuditEvent
    from releases.promotions import do_rollback

    env, v1, v2 = setup
    Target.objects.create(environment=env, name="d", token_hash="d" * 64)
    Target.objects.filter(environment=env).update(version="1.0.0")
    env.pre_deploy_command = ""
    env.strategy = {"kind": "blue_green"}
    env.smoke_test_command = "true"
    env.switch_command = (
        f"echo $SLIPWAY_PREVIOUS_SLOT-to-$SLIPWAY_SLOT $SLIPWAY_TARGETS >> {tmp_path}/switches"
    )
    env.save()
    Release.objects.create(
        application=env.application, environment=env, artifact=v1, kind="recorded", status="succeeded"
    )
    env.current_artifact = v1
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    deploys = [s.target_name for s in RolloutStep.objects.filter(rollout=rollout, action="deploy")]
    assert deploys == ["c", "d"]  # blue (a, b) serves meanwhile and is left alone
    actions = [s.action for s in RolloutStep.objects.filter(rollout=rollout).order_by("index")]
    assert actions.index("smoke") < actions.index("switch") == len(actions) - 1
    env.refresh_from_db()
    assert env.live_slot == "green"
    assert (tmp_path / "switches").read_text() == "blue-to-green c,d\n"
    assert AuditEvent.objects.filter(kind="environment.switched").count() == 1
    assert dict(Target.objects.filter(environment=env).values_list("name", "version")) == {
        "a": "1.0.0",
        "b": "1.0.0",
        "c": "2.0.0",
        "d": "2.0.0",
    }

    # Back to 1.0.0: blue still runs it, so the rollback is a switch and nothing is deployed.
    release.refresh_from_db()
    assert release.status == "succeeded"
    with django_capture_on_commit_callbacks(execute=True):
        back = do_rollback(Actor(user), env, artifact=v1, reason="checkout errors")
    do_advance_rollout(back.rollout.pk)
    back.refresh_from_db()
    assert back.status == "succeeded", back.status
    steps = list(RolloutStep.objects.filter(rollout__release=back).values_list("action", flat=True))
    assert steps == ["switch"]
    assert back.rollout.strategy == {"kind": "blue_green", "live": "green", "switch_back": True}
    env.refresh_from_db()
    assert env.live_slot == "blue" and env.current_artifact == v1
    assert (tmp_path / "switches").read_text().splitlines()[-1] == "green-to-blue a,b"

    # The next release goes to the idle slot again: green.
    v3 = factories.ArtifactFactory(application=env.application, version="3.0.0")
    release, rollout = rollout_for(env, v1, v3)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    assert [s.target_name for s in RolloutStep.objects.filter(rollout=rollout, action="deploy")] == ["c", "d"]


def test_failed_switch_reverts_the_idle_slot_and_keeps_the_live_one(setup):
    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.strategy = {"kind": "blue_green"}
    env.switch_command = "echo load balancer unreachable; exit 1"
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "reverted"
    assert [s.target_name for s in RolloutStep.objects.filter(rollout=rollout, action="revert")] == ["c"]
    env.refresh_from_db()
    assert env.live_slot == "blue"


def test_cancel_puts_back_touched_targets_and_ends_cancelled(setup, user):
    env, v1, v2 = setup
    env.manual_gates, env.pre_deploy_command = True, ""
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "paused"
    do_control_rollout(Actor(user), release, "cancel")
    assert do_advance_rollout(rollout.pk) == "cancelled"
    assert list(
        RolloutStep.objects.filter(rollout=rollout, action="revert").values_list("target_name", flat=True)
    ) == ["a"]
    release.refresh_from_db()
    assert release.status == "cancelled"


def test_a_revert_that_keeps_failing_leaves_the_rollout_failed(setup):
    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.deploy_command = '[ "$SLIPWAY_ACTION" = revert ] && { echo cannot go back; exit 1; }; true'
    env.smoke_test_command = "exit 1"
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "failed"  # not "reverted": target a may still run 2.0.0
    assert RolloutStep.objects.filter(rollout=rollout, action="revert", status="failed").count() == 3
    release.refresh_from_db()
    assert release.status == "failed"


def test_release_can_override_the_environment_strategy(app, ci, django_capture_on_commit_callbacks):
    env = factories.EnvironmentFactory(
        application=app, name="production", position=1, driver="command", deploy_command="true"
    )
    for name in "abcd":
        Target.objects.create(environment=env, name=name, token_hash=name * 64)
    factories.ArtifactFactory(application=app, version="2.0.0")
    body = {"environment": "production", "version": "2.0.0", "strategy": {"kind": "rolling", "batch_size": 3}}
    for bad, field_message in [
        ({"kind": "sideways"}, "unknown kind"),
        ({"kind": "rolling"}, "batch_size"),
        ({"kind": "rollback"}, "rollback"),
        ({"kind": "blue_green", "live": "green"}, "live"),
        ("cautious", "An object"),
    ]:
        response = ci.post("/api/v1/applications/shop/releases/", {**body, "strategy": bad}, format="json")
        assert response.status_code == 400, response.json()
        assert field_message in str(response.json()["strategy"])
    assert not Release.objects.exists()  # nothing half-written
    with django_capture_on_commit_callbacks(execute=True):
        response = ci.post("/api/v1/applications/shop/releases/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["strategy"] == {"kind": "rolling", "batch_size": 3}
    release = Release.objects.get()
    do_advance_rollout(release.rollout.pk)
    release.refresh_from_db()
    assert release.status == "succeeded"
    assert [s.wave for s in RolloutStep.objects.filter(rollout__release=release, action="deploy")] == [
        0,
        0,
        0,
        1,
    ]


def test_silent_agents_are_marked_offline(setup):
    from datetime import timedelta

    from django.utils import timezone

    from releases.rollouts import check_running_rollouts

    env, _, _ = setup
    now = timezone.now()
    Target.objects.filter(name="a").update(
        last_seen=now - timedelta(seconds=env.heartbeat_timeout_seconds + 5)
    )
    Target.objects.filter(name__in=["b", "c"]).update(last_seen=now)
    check_running_rollouts()
    assert dict(Target.objects.values_list("name", "status")) == {
        "a": "offline",
        "b": "online",
        "c": "online",
    }
    # Each agent going offline is audited, once: a second pass finds nobody new.
    (event,) = AuditEvent.objects.filter(kind="target.offline")
    a = Target.objects.get(name="a")
    assert (event.object_type, event.object_id, event.actor_label) == (
        "environments.target",
        str(a.pk),
        "system",
    )
    assert (event.application, event.environment_id) == (env.application, env.pk)
    assert event.before["status"] == "online" and event.after == {"status": "offline"}
    check_running_rollouts()
    assert AuditEvent.objects.filter(kind="target.offline").count() == 1


def test_rollback_is_the_fast_path_past_locks_freezes_and_gates(
    setup, user, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from releases.models import AuditEvent
    from releases.promotions import do_create_freeze, do_lock, do_rollback

    env, v1, v2 = setup
    env.pre_deploy_command, env.manual_gates = "exit 1", True  # neither may run on the way back
    env.smoke_test_command, env.rollback_batch_size = "exit 1", 2
    env.strategy = {"kind": "canary", "steps": [10, 100], "pause_seconds": 3600}
    env.save()
    for artifact in (v1, v2):
        Release.objects.create(
            application=env.application,
            environment=env,
            artifact=artifact,
            kind="recorded",
            status="succeeded",
        )
    env.current_artifact = v2
    env.save()
    do_lock(Actor(user), env, reason="incident")
    now = timezone.now()
    do_create_freeze(
        Actor(user),
        env,
        reason="holidays",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        weekdays=[],
        start_time=None,
        end_time=None,
        timezone_name="UTC",
    )
    with django_capture_on_commit_callbacks(execute=True):
        back = do_rollback(Actor(user), env, artifact=v1, reason="errors since 2.0.0")
    assert do_advance_rollout(back.rollout.pk) == "succeeded"
    steps = list(
        RolloutStep.objects.filter(rollout__release=back).order_by("index").values_list("action", "wave")
    )
    assert steps == [("deploy", 0), ("deploy", 0), ("deploy", 1)]  # batches of rollback_batch_size, no gates
    env.refresh_from_db()
    assert env.current_artifact == v1
    assert AuditEvent.objects.filter(kind="release.rollback_requested", object_id=str(back.pk)).exists()


def test_command_driver_runs_a_waves_deploys_side_by_side(setup, tmp_path):
    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.deploy_command = f"echo start >> {tmp_path}/log; sleep 1; echo end >> {tmp_path}/log"
    env.strategy = {"kind": "rolling", "batch_size": 3, "max_unavailable": 3}
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    # All three started before any ended: one after another would read start, end, start, end, …
    assert (tmp_path / "log").read_text().split() == ["start"] * 3 + ["end"] * 3
    assert dict(Target.objects.values_list("name", "version")) == {"a": "2.0.0", "b": "2.0.0", "c": "2.0.0"}


@contextlib.contextmanager
def reconciler_only():
    """The reconciler records steps but no worker runs them: the test plays the hosts by writing their steps."""
    from releases.rollouts import reconciler

    original, reconciler.run_server_steps = reconciler.run_server_steps, lambda rollout_id: 0
    try:
        yield
    finally:
        reconciler.run_server_steps = original


def test_revert_during_a_wave_puts_back_hosts_that_finish_afterwards(setup, user):
    """A person presses revert while a wave is deploying: what has not started is skipped, what finishes later is
    reverted as soon as it has reported, and no host is left on the new version."""
    from releases.rollouts import run_server_steps

    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.strategy = {"kind": "rolling", "batch_size": 3, "max_unavailable": 1}
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    with reconciler_only():  # a's deploy dispatched, and nothing runs it yet
        assert do_advance_rollout(rollout.pk) == "running"
        step = RolloutStep.objects.get(rollout=rollout, action="deploy")
        RolloutStep.objects.filter(pk=step.pk).update(status="running")  # a's deploy under way
        do_control_rollout(Actor(user), release, "revert")
        assert do_advance_rollout(rollout.pk) == "reverting"  # waits for a, dispatches nothing for b and c
        assert not RolloutStep.objects.filter(rollout=rollout, action="revert").exists()
        RolloutStep.objects.filter(pk=step.pk).update(status="pending")  # let the worker run it
    assert run_server_steps(rollout.pk) == 1
    assert do_advance_rollout(rollout.pk) == "reverted"
    steps = list(RolloutStep.objects.filter(rollout=rollout).values_list("action", "target_name", "status"))
    assert steps == [("deploy", "a", "succeeded"), ("revert", "a", "succeeded")]
    assert dict(Target.objects.values_list("name", "version")) == {"a": "1.0.0", "b": "", "c": ""}


def test_one_failure_in_a_wave_reverts_it_without_waiting_for_the_rest(setup):
    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.strategy = {"kind": "rolling", "batch_size": 3, "max_unavailable": 3}
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    with reconciler_only():
        assert do_advance_rollout(rollout.pk) == "running"
        a, b, c = RolloutStep.objects.filter(rollout=rollout, action="deploy").order_by("target_name")
        RolloutStep.objects.filter(pk=a.pk).update(
            status="failed", health={"ok": False, "detail": "HTTP 500"}
        )
        RolloutStep.objects.filter(pk=b.pk).update(status="running")  # still deploying; c not started yet
        assert do_advance_rollout(rollout.pk) == "reverting"
        reverts = RolloutStep.objects.filter(rollout=rollout, action="revert")
        assert [r.target_name for r in reverts] == ["a"]  # at once, while b still deploys
        c.refresh_from_db()
        assert c.status == "skipped"  # never starts now
        RolloutStep.objects.filter(pk=b.pk).update(status="succeeded", health={"ok": True, "detail": "200"})
        RolloutStep.objects.filter(pk=reverts[0].pk).update(status="succeeded")
        assert do_advance_rollout(rollout.pk) == "reverting"
        assert sorted(
            RolloutStep.objects.filter(rollout=rollout, action="revert").values_list("target_name", flat=True)
        ) == ["a", "b"]  # b, finished after the revert began, goes back too
    assert do_advance_rollout(rollout.pk) == "reverted"
    assert dict(Target.objects.values_list("name", "version")) == {"a": "", "b": "1.0.0", "c": ""}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_rollout_never_run_a_step_twice(tmp_path):
    """Four reconcilers at once on the same rollout (as when a task is delivered twice): row locks let one
    dispatch each step and `SKIP LOCKED` lets one run it, so every target is deployed exactly once."""
    from django.db import connection

    from tests.concurrent import at_once

    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED: PostgreSQL")
    app = factories.ApplicationFactory(slug="race")
    env = factories.EnvironmentFactory(
        application=app,
        name="production",
        position=1,
        driver="command",
        deploy_command=f"echo $SLIPWAY_TARGET >> {tmp_path}/deployed; sleep 0.2",
        smoke_test_command=f"echo smoke >> {tmp_path}/smoke",
    )
    v1, v2 = factories.ArtifactFactory(application=app), factories.ArtifactFactory(application=app)
    for name in ("a", "b", "c", "d", "e", "f", "g"):
        Target.objects.create(environment=env, name=name, token_hash=name * 64)
    release, rollout = rollout_for(env, v1, v2)
    _, errors = at_once(lambda: do_advance_rollout(rollout.pk))
    assert errors == []
    do_advance_rollout(rollout.pk)  # whoever finished first may have left the last fold to a later run
    assert Release.objects.get(pk=release.pk).status == "succeeded"
    assert sorted((tmp_path / "deployed").read_text().split()) == [
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
    ]  # each once
    assert (tmp_path / "smoke").read_text().split() == ["smoke"] * 3  # one per wave (1, 2, 4)
    assert RolloutStep.objects.filter(rollout=rollout, action="deploy").count() == 7


def test_periodic_check_publishes_changed_rollouts_only(setup, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from releases import rollouts

    env, v1, v2 = setup
    env.driver = "agent"
    env.save()
    Target.objects.update(status="online", last_seen=timezone.now())
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "running"  # the first wave waits for its agent
    published = []
    monkeypatch.setattr(
        rollouts.common, "publish_on_commit", lambda group, type, **ids: published.append(group)
    )

    rollouts.check_running_rollouts()  # a tick while the agent works: nothing to tell watchers
    rollouts.check_running_rollouts()
    assert published == []

    Target.objects.filter(name="a").update(last_seen=timezone.now() - timedelta(hours=1))
    rollouts.check_running_rollouts()  # the agent went silent: its step fails and the rollout reverts
    assert published == [
        f"environment.{env.pk}",
        f"rollout.{rollout.pk}",
    ]  # its environment page shows it offline
    assert RolloutStep.objects.get(rollout=rollout, action="deploy").status == "failed"


def test_a_server_step_whose_worker_went_away_is_taken_over(setup, tmp_path):
    """The worker running a step stopped renewing its lease (killed): the next advance runs the step again."""
    from datetime import timedelta

    from django.utils import timezone

    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.smoke_test_command = f"echo smoke >> {tmp_path}/smoke"
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    with reconciler_only():
        do_advance_rollout(rollout.pk)  # the first wave's deploy, recorded; nobody runs it
    step = RolloutStep.objects.get(rollout=rollout, action="deploy")
    lapsed = timezone.now() - timedelta(seconds=1)
    RolloutStep.objects.filter(pk=step.pk).update(
        status="running", started_at=lapsed, lease_expires_at=lapsed, attempts=1
    )  # claimed by a worker that then died
    assert do_advance_rollout(rollout.pk) == "succeeded"
    step.refresh_from_db()
    assert step.status == "succeeded" and step.attempts == 2 and step.lease_expires_at is None
    assert "another worker runs it again (start 2)" in step.output
    assert sorted((tmp_path / "deployed").read_text().split()) == ["a=2.0.0", "b=2.0.0", "c=2.0.0"]


def test_a_step_whose_worker_keeps_dying_fails_saying_why(setup):
    from datetime import timedelta

    from django.utils import timezone

    env, v1, v2 = setup
    env.pre_deploy_command = ""
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    with reconciler_only():
        do_advance_rollout(rollout.pk)
        step = RolloutStep.objects.get(rollout=rollout, action="deploy")
        lapsed = timezone.now() - timedelta(seconds=1)
        RolloutStep.objects.filter(pk=step.pk).update(
            status="running", started_at=lapsed, lease_expires_at=lapsed, attempts=3
        )
        do_advance_rollout(rollout.pk)
    step.refresh_from_db()
    assert step.status == "failed" and "went away 3 times" in step.health["detail"]


def test_a_live_step_keeps_its_lease(setup, settings):
    """A slow step is not taken over while its worker lives: the lease is renewed as it runs."""
    settings.SLIPWAY_STEP_LEASE_SECONDS = 0.6
    env, v1, v2 = setup
    env.pre_deploy_command = "sleep 2"
    env.save()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    hook = RolloutStep.objects.get(rollout=rollout, action="pre_deploy")
    assert hook.attempts == 1 and "went away" not in hook.output
