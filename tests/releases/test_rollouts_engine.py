"""The reconciler without agents: the command driver, the pre-deploy hook, manual gates, controls."""

import pytest

from environments.models import Target
from releases.models import Release, RolloutStep
from releases.permissions import Actor
from releases.rollouts import do_advance_rollout, do_control_rollout, start_rollout
from tests import factories


@pytest.fixture
def setup(app, tmp_path):
    env = factories.EnvironmentFactory(application=app, name="production", position=1, driver="command",
                                       deploy_command=f"echo $SLIPWAY_TARGET=$SLIPWAY_VERSION >> {tmp_path}/deployed",
                                       pre_deploy_command=f"echo migrate $SLIPWAY_VERSION >> {tmp_path}/hooks")
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    for name in ("a", "b", "c"):
        Target.objects.create(environment=env, name=name, token_hash=name * 64)
    return env, v1, v2


def rollout_for(env, v1, v2):
    release = Release.objects.create(application=env.application, environment=env, artifact=v2, previous_artifact=v1,
                                     status="deploying")
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
    reverts = list(RolloutStep.objects.filter(rollout=rollout, action="revert").values_list("target_name", "version"))
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
        env = factories.EnvironmentFactory(application=app, name="production", position=1, driver="webhook",
                                           webhook_url=f"http://127.0.0.1:{server.server_address[1]}/deploy",
                                           webhook_secret="s3cret")
        v1, v2 = factories.ArtifactFactory(application=app), factories.ArtifactFactory(application=app)
        release, rollout = rollout_for(env, v1, v2)
        assert do_advance_rollout(rollout.pk) == "running"
        job, signature, raw = received[0]
        assert signature == sign("s3cret", raw) and job["version"] == v2.version and job["target"] == "default"
        url = f"/api/v1/webhooks/rollout/{job['job']}/"
        report = json.dumps({"status": "succeeded", "health": {"ok": True, "detail": "200"}}).encode()
        forged = client.post(url, report, content_type="application/json", headers={"X-Slipway-Signature": "sha256=0"})
        assert forged.status_code == 401
        ok = client.post(url, report, content_type="application/json",
                         headers={"X-Slipway-Signature": sign("s3cret", report)})
        assert ok.status_code == 200
        assert do_advance_rollout(rollout.pk) == "succeeded"
        assert not AuditEvent.objects.filter(after__webhook_secret="s3cret").exists()
    finally:
        server.shutdown()
