"""Rollouts with real deploy agents: subprocesses speaking HTTP to a live Slipway with its in-process worker."""

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from environments.models import RegistrationToken, Target
from ops.common import call_json
from releases.models import ApiToken, Release, RolloutStep
from releases.permissions import Actor
from releases.rollouts import do_advance_rollout
from releases.services import do_create_api_token
from tests import factories
from tests.live import ROOT, LiveSlipway, database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEPLOY = "echo deploying $SLIPWAY_VERSION to $SLIPWAY_TARGET; echo $SLIPWAY_VERSION > current_version"
HEALTH = "! grep -q broken current_version"


@pytest.fixture
def slipway():
    server = LiveSlipway.start(embedded=True)
    yield server
    server.stop()


def shop_running_v1(registration_token="slr_test_token"):
    """Application `shop` whose production runs 1.0.0, a registration token for its agents, and an admin's API
    key: what every live-agent test starts from. Returns (app, env, key)."""
    app = factories.ApplicationFactory(slug="shop")
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    Release.objects.create(application=app, environment=env, artifact=v1, kind="recorded", status="succeeded")
    env.current_artifact = v1
    env.save()
    RegistrationToken.objects.create(environment=env, token_hash=ApiToken.hash_key(registration_token))
    admin = factories.UserFactory(username="boss", is_superuser=True)
    _, key = do_create_api_token(Actor.system(), admin, name="ci", scopes=["admin"])
    return app, env, key


@pytest.fixture
def fleet(slipway, tmp_path):
    app, env, key = shop_running_v1()
    agents = []

    def start(name, deploy=DEPLOY, health=HEALTH, extra=()):
        workdir = tmp_path / name
        log = (tmp_path / f"{name}.log").open("wb")
        agents.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "environments.agent",
                    "--url",
                    slipway.url,
                    "--registration-token",
                    "slr_test_token",
                    "--name",
                    name,
                    "--workdir",
                    str(workdir),
                    "--deploy-command",
                    deploy,
                    "--health-command",
                    health,
                    "--heartbeat-seconds",
                    "1",
                    "--poll-wait",
                    "2",
                    *extra,
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        return agents[-1]

    yield {
        "app": app,
        "env": env,
        "key": key,
        "start": start,
        "url": slipway.url,
        "dir": tmp_path,
        "server_log": slipway.log_path,
    }
    for agent in agents:
        agent.terminate()
    for agent in agents:
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()


def api(fleet, method, path, body=None):
    return call_json(fleet["url"] + "/api/v1" + path, fleet["key"], method, body)


def served(fleet, method, path, body=None, token=None):
    """A request to the live server, where config.asgi routes agents' work and results to the lean app."""
    return call_json(fleet["url"] + path, token, method, body)


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def release_and_wait(fleet, version, final=("succeeded", "failed")):
    factories.ArtifactFactory(application=fleet["app"], version=version)
    status, body = api(
        fleet, "POST", "/applications/shop/releases/", {"environment": "production", "version": version}
    )
    assert status == 201, body
    release_id = body["id"]
    return wait_for(
        lambda: (
            (r := api(fleet, "GET", f"/applications/shop/releases/{release_id}/")[1])["status"] in final and r
        ),
        what=f"release of {version}",
    )


def test_cautious_rollout_then_automatic_revert(fleet):
    for n in range(1, 5):
        fleet["start"](f"web-{n}")
    wait_for(lambda: Target.objects.filter(environment=fleet["env"]).count() == 4, what="4 agents registered")
    release = release_and_wait(fleet, "2.0.0")
    assert release["status"] == "succeeded", release
    status, rollout = api(fleet, "GET", f"/applications/shop/releases/{release['id']}/rollout/")
    deploys = [s for s in rollout["steps"] if s["action"] == "deploy"]
    assert sorted(s["target"] for s in deploys) == ["web-1", "web-2", "web-3", "web-4"]  # each once
    assert [s["wave"] for s in deploys] == [1, 2, 2, 3]  # waves of 1, 2, then the rest
    assert all("deploying 2.0.0" in s["output"] for s in deploys)
    checks = [s for s in rollout["steps"] if s["action"] == "health"]
    assert sorted(s["target"] for s in checks) == [
        "web-1",
        "web-2",
        "web-3",
        "web-4",
    ]  # one after each deploy
    assert all(
        s["status"] == "succeeded" and s["health"]["ok"] and s["started_at"] <= s["finished_at"]
        for s in checks
    )
    by_target = {s["target"]: s["index"] for s in deploys}
    assert all(s["index"] > by_target[s["target"]] for s in checks)
    targets = api(fleet, "GET", "/applications/shop/environments/production/targets/")[1]
    assert {t["version"] for t in targets} == {"2.0.0"}
    assert all(
        (fleet["dir"] / f"web-{n}" / "current_version").read_text().strip() == "2.0.0" for n in range(1, 5)
    )

    broken = release_and_wait(fleet, "2.1.0-broken")
    assert broken["status"] == "failed"
    rollout = api(fleet, "GET", f"/applications/shop/releases/{broken['id']}/rollout/")[1]
    assert rollout["status"] == "reverted"
    deploys = [s for s in rollout["steps"] if s["action"] == "deploy"]
    reverts = [s for s in rollout["steps"] if s["action"] == "revert"]
    assert len(deploys) == 1 and deploys[0]["health"]["ok"] is False  # the first wave stopped it
    failed_check = next(s for s in rollout["steps"] if s["action"] == "health" and s["status"] == "failed")
    assert (
        failed_check["target"] == deploys[0]["target"] and "health command exit 1" in failed_check["output"]
    )
    assert [s["target"] for s in reverts] == [deploys[0]["target"]]  # exactly the touched target
    assert reverts[0]["version"] == "2.0.0"
    wait_for(
        lambda: {t.version for t in Target.objects.filter(environment=fleet["env"])} == {"2.0.0"},
        what="every target back on 2.0.0",
    )


def test_hanging_deploy_times_out_and_offline_agent_fails_its_step(fleet):
    fleet["env"].step_timeout_seconds = 3
    fleet["env"].heartbeat_timeout_seconds = 4
    fleet["env"].save()
    fleet["start"]("slow-1", deploy="sleep 60", extra=["--deploy-timeout", "2"])
    wait_for(lambda: Target.objects.filter(name="slow-1").exists(), what="agent registered")
    release = release_and_wait(fleet, "3.0.0")
    assert release["status"] == "failed"
    step = RolloutStep.objects.get(action="deploy", target_name="slow-1")
    assert "killed after 2 s" in step.output
    # An agent that disappears mid-step: its step fails once heartbeats stop.
    agent = fleet["start"]("gone-1", deploy="sleep 30")
    wait_for(lambda: Target.objects.filter(name="gone-1").exists(), what="second agent registered")
    Target.objects.filter(name="slow-1").delete()
    fleet["env"].step_timeout_seconds = 120  # only the missed heartbeats can fail this one
    fleet["env"].save()
    factories.ArtifactFactory(application=fleet["app"], version="3.1.0")
    status, body = api(
        fleet, "POST", "/applications/shop/releases/", {"environment": "production", "version": "3.1.0"}
    )
    assert status == 201
    wait_for(
        lambda: RolloutStep.objects.filter(target_name="gone-1", status="running").exists(), what="job taken"
    )
    agent.kill()
    final = wait_for(
        lambda: (
            (r := api(fleet, "GET", f"/applications/shop/releases/{body['id']}/")[1])["status"]
            in ("failed", "succeeded")
            and r
        ),
        timeout=40,
        what="offline detection",
    )
    assert final["status"] == "failed"
    assert "offline" in RolloutStep.objects.get(target_name="gone-1", action="deploy").health["detail"]


def test_agent_api_refuses_bad_input(fleet, client, caplog):
    caplog.set_level("WARNING", logger="slipway.agent")
    assert (
        client.post(
            "/api/v1/agent/register",
            {"registration_token": "nope", "name": "x"},
            content_type="application/json",
        ).status_code
        == 401
    )
    assert (
        client.post(
            "/api/v1/agent/register",
            {"registration_token": "slr_test_token", "name": "bad name!"},
            content_type="application/json",
        ).status_code
        == 400
    )
    assert client.post("/api/v1/agent/register", "[]", content_type="application/json").status_code == 400
    ok = client.post(
        "/api/v1/agent/register",
        {"registration_token": "slr_test_token", "name": "web-9"},
        content_type="application/json",
    )
    assert ok.status_code == 201
    token = ok.json()["agent_token"]
    assert served(fleet, "GET", "/api/v1/agent/work?wait=0", token="wrong")[0] == 401
    assert (
        client.post(
            "/api/v1/agent/heartbeat",
            {},
            content_type="application/json",
            headers={"Authorization": "Bearer wrong"},
        ).status_code
        == 401
    )
    other = factories.EnvironmentFactory(application=fleet["app"], name="staging", position=0)
    from releases.models import Rollout

    artifact = factories.ArtifactFactory(application=fleet["app"], version="9.0.0")
    release = Release.objects.create(
        application=fleet["app"], environment=other, artifact=artifact, status="deploying"
    )
    foreign_target = Target.objects.create(environment=other, name="stg-1", token_hash="x" * 64)
    rollout = Rollout.objects.create(release=release, targets=["stg-1"], status="running")
    step = RolloutStep.objects.create(
        rollout=rollout, index=1, target=foreign_target, target_name="stg-1", action="deploy", version="9.0.0"
    )
    auth = {"Authorization": f"Bearer {token}"}
    assert (
        served(fleet, "POST", f"/api/v1/agent/jobs/{step.pk}/result", {"status": "succeeded"}, token)[0]
        == 403
    )
    assert client.post(
        f"/api/v1/agent/jobs/{step.pk}/output", {"chunk": 5}, content_type="application/json", headers=auth
    ).status_code in (400, 403)
    assert served(fleet, "GET", "/api/v1/agent/work?wait=abc", token=token)[0] == 400
    status, bad_report = served(
        fleet, "POST", f"/api/v1/agent/jobs/{step.pk}/result", {"status": "done"}, token
    )
    assert status == 400 and bad_report["field"] == "status"
    status, bad_seconds = served(
        fleet,
        "POST",
        f"/api/v1/agent/jobs/{step.pk}/result",
        {"status": "succeeded", "health": {"ok": True, "seconds": "slow"}},
        token,
    )
    assert status == 400 and bad_seconds["field"] == "health.seconds"
    refusals = [r.getMessage() for r in caplog.records if r.name == "slipway.agent"]
    assert any("(401)" in m and "registration token" in m for m in refusals)  # every refusal is logged
    served_log = fleet["server_log"].read_text()  # work and results are served by the lean route only
    assert "(403)" in served_log and "another target" in served_log
    assert "(400)" in served_log and "status" in served_log
    step.refresh_from_db()
    assert step.status == "pending"  # nothing was written for any refused report


def test_a_late_heartbeat_does_not_undo_a_newer_result(fleet, client):
    """A heartbeat sent after a deploy but stored after the revert that followed must not put the new version
    back on the target: the version it carries stands only if no later job of the target was handed out."""
    from releases.models import Rollout

    registered = client.post(
        "/api/v1/agent/register",
        {"registration_token": "slr_test_token", "name": "web-7"},
        content_type="application/json",
    )
    auth = {"Authorization": f"Bearer {registered.json()['agent_token']}"}
    target = Target.objects.get(environment=fleet["env"], name="web-7")
    artifact = factories.ArtifactFactory(application=fleet["app"], version="6.0.0")
    release = Release.objects.create(
        application=fleet["app"], environment=fleet["env"], artifact=artifact, status="failed"
    )
    rollout = Rollout.objects.create(release=release, targets=["web-7"], status="reverted")
    deploy, revert = (
        RolloutStep.objects.create(
            rollout=rollout,
            index=n,
            target=target,
            target_name="web-7",
            action=action,
            version=version,
            status="succeeded",
        )
        for n, (action, version) in enumerate([("deploy", "6.0.0"), ("revert", "1.0.0")])
    )
    Target.objects.filter(pk=target.pk).update(version="1.0.0")  # as the revert's result left it

    def beat(body):
        return client.post("/api/v1/agent/heartbeat", body, content_type="application/json", headers=auth)

    assert beat({"version": "6.0.0", "job": deploy.pk}).status_code == 200  # sent between deploy and revert
    assert Target.objects.get(pk=target.pk).version == "1.0.0"
    assert (
        beat({"version": "6.0.0"}).status_code == 200
    )  # an agent that does not say which job: only fills a gap
    assert Target.objects.get(pk=target.pk).version == "1.0.0"
    assert (
        beat({"version": "1.0.1", "job": revert.pk}).status_code == 200
    )  # changed on the host since: drift shows
    assert Target.objects.get(pk=target.pk).version == "1.0.1"
    for body, field in [
        ({"version": 5}, "version"),
        ({"version": "1.0.0", "job": "7"}, "job"),
        ({"version": "1.0.0", "job": True}, "job"),
    ]:
        refused = beat(body)
        assert refused.status_code == 400 and refused.json()["field"] == field
    assert Target.objects.get(pk=target.pk).version == "1.0.1"


@pytest.mark.parametrize(
    "strategy,waves,deployed",
    [
        ({"kind": "rolling", "batch_size": 2}, [1, 1, 2, 2], 4),
        ({"kind": "canary", "steps": [25, 50, 100], "pause_seconds": 1}, [1, 2, 3, 3], 4),
        ({"kind": "blue_green"}, [1, 1], 2),
    ],
)
def test_other_strategies_with_real_agents(fleet, strategy, waves, deployed):
    fleet["env"].strategy = strategy
    fleet["env"].save()
    for n in range(1, 5):
        fleet["start"](f"web-{n}")
    wait_for(lambda: Target.objects.filter(environment=fleet["env"]).count() == 4, what="4 agents registered")
    release = release_and_wait(fleet, "2.0.0")
    assert release["status"] == "succeeded", release
    rollout = api(fleet, "GET", f"/applications/shop/releases/{release['id']}/rollout/")[1]
    steps = [s for s in rollout["steps"] if s["action"] == "deploy"]
    assert [s["wave"] for s in steps] == waves
    assert len({s["target"] for s in steps}) == deployed
    if strategy["kind"] == "canary":
        assert [
            s["action"] for s in rollout["steps"] if s["action"] == "analysis"
        ]  # the hook ran between steps


@pytest.mark.postgres
def test_worker_killed_mid_rollout_resumes_on_rabbitmq(tmp_path):
    """SIGKILL the Celery worker (RabbitMQ broker, PostgreSQL) in the middle of a rollout: a new worker finishes
    it, deploying no target twice and skipping none."""
    import signal

    import kombu

    broker = "amqp://guest:guest@127.0.0.1:5672//"
    try:
        with kombu.Connection(broker, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
            connection.default_channel.queue_purge("celery")
    except Exception as error:  # a missing queue is fine; an unreachable broker is not
        if "NOT_FOUND" not in str(error):
            pytest.fail(f"RabbitMQ unreachable at 127.0.0.1:5672: {error}")
    extra = {"CELERY_BROKER_URL": broker}
    server = LiveSlipway.start(extra_env=extra, embedded=True)  # a broker is set: no in-process worker
    worker_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker,
        "SLIPWAY_DEMO_FLEET": "0",
    }

    def start_worker():
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-B",
                "--pool",
                "solo",
                "--loglevel",
                "WARNING",
                "-s",
                str(tmp_path / "beat-schedule"),
            ],
            cwd=ROOT,
            env=worker_env,
            stdout=(tmp_path / "worker.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(process):
        """SIGKILL the worker and its embedded beat (its child): the whole worker host dies at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    agents = []
    worker = start_worker()
    try:
        app, env, _ = shop_running_v1("slr_crash")
        v1 = env.current_artifact
        for n in range(1, 9):
            agents.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "environments.agent",
                        "--url",
                        server.url,
                        "--registration-token",
                        "slr_crash",
                        "--name",
                        f"web-{n}",
                        "--workdir",
                        str(tmp_path / f"web-{n}"),
                        "--deploy-command",
                        "sleep 0.5; echo $SLIPWAY_VERSION > current_version",
                        "--heartbeat-seconds",
                        "1",
                        "--poll-wait",
                        "2",
                    ],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        wait_for(lambda: Target.objects.filter(environment=env).count() == 8, what="8 agents registered")
        v2 = factories.ArtifactFactory(application=app, version="2.0.0")
        release = Release.objects.create(
            application=app, environment=env, artifact=v2, previous_artifact=v1, status="queued"
        )
        from releases.dispatch import release_queued

        release_queued(release.pk)  # enqueues advance_rollout on RabbitMQ after commit
        deployed = RolloutStep.objects.filter(rollout__release=release, action="deploy", status="succeeded")
        wait_for(lambda: deployed.count() >= 2, what="the rollout under way")
        kill(worker)
        assert deployed.count() < 8
        worker = start_worker()
        wait_for(
            lambda: Release.objects.get(pk=release.pk).status in ("succeeded", "failed"),
            timeout=90,
            what="the rollout to finish after the crash",
        )
        assert Release.objects.get(pk=release.pk).status == "succeeded"
        deploys = list(
            RolloutStep.objects.filter(rollout__release=release, action="deploy").values_list(
                "target_name", flat=True
            )
        )
        assert sorted(deploys) == [f"web-{n}" for n in range(1, 9)]  # each exactly once
    finally:
        for process in agents:
            process.kill()
        kill(worker)
        server.stop()


@contextlib.contextmanager
def logged_in_page(fleet, username):
    """Debian's Chromium, logged in to the live Slipway as a new superuser."""
    from django.contrib.auth import get_user_model
    from playwright.sync_api import sync_playwright

    from tests.dashboard.test_browser import ARGS, CHROMIUM

    get_user_model().objects.create_superuser(username, password=f"{username}-password-1")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(fleet["url"] + "/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(f"{username}-password-1")
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login/" not in url)
        try:
            yield page
        finally:
            browser.close()


@pytest.mark.browser
def test_watching_a_rollout_live_in_the_browser(fleet):
    """A person on the release page sees each host's step change without reloading (Channels + htmx ws)."""
    for n in range(1, 3):
        fleet["start"](f"web-{n}", deploy="sleep 2; " + DEPLOY)
    wait_for(lambda: Target.objects.filter(environment=fleet["env"]).count() == 2, what="2 agents registered")
    factories.ArtifactFactory(application=fleet["app"], version="5.0.0")
    with logged_in_page(fleet, "watcher") as page:
        status, body = api(
            fleet, "POST", "/applications/shop/releases/", {"environment": "production", "version": "5.0.0"}
        )
        assert status == 201
        page.goto(fleet["url"] + f"/releases/{body['id']}/")
        assert (
            page.locator('#progress[data-rollout-status="succeeded"]').count() == 0
        )  # still under way at load
        # No reload from here on: the rows arrive and change over the WebSocket.
        page.locator(
            '#progress tr[data-target="web-2"][data-action="deploy"][data-status="succeeded"]'
        ).wait_for(timeout=30_000)
        page.locator('#progress[data-rollout-status="succeeded"]').wait_for(timeout=30_000)


@pytest.mark.browser
def test_pause_resume_and_revert_from_the_browser(fleet):
    """The release page's buttons drive a real rollout: pause holds the next wave, resume goes on, revert now puts
    every touched host back."""
    for n in range(1, 4):
        fleet["start"](f"web-{n}", deploy="sleep 1.5; " + DEPLOY)
    wait_for(lambda: Target.objects.filter(environment=fleet["env"]).count() == 3, what="3 agents registered")
    factories.ArtifactFactory(application=fleet["app"], version="6.0.0")
    with logged_in_page(fleet, "driver") as page:
        page.on("dialog", lambda dialog: dialog.accept())  # "Revert every target touched so far?"
        status, body = api(
            fleet, "POST", "/applications/shop/releases/", {"environment": "production", "version": "6.0.0"}
        )
        assert status == 201
        page.goto(fleet["url"] + f"/releases/{body['id']}/")
        page.get_by_role("button", name="Pause").click()
        page.locator('#progress[data-rollout-status="paused"]').wait_for(timeout=15_000)
        # The first wave finishes; the second is not dispatched while paused.
        wait_for(
            lambda: RolloutStep.objects.filter(rollout__release_id=body["id"], action="health").count() == 1,
            what="the first wave to finish",
        )
        # A reconcile after the wave finished (run here, so it surely ran) dispatches nothing while paused.
        do_advance_rollout(RolloutStep.objects.filter(rollout__release_id=body["id"]).first().rollout_id)
        assert RolloutStep.objects.filter(rollout__release_id=body["id"], action="deploy").count() == 1
        page.get_by_role("button", name="Resume").click()
        wait_for(
            lambda: RolloutStep.objects.filter(rollout__release_id=body["id"], action="deploy").count() == 3,
            what="the second wave dispatched after resuming",
        )
        page.get_by_role("button", name="Revert now").click()
        page.locator('#progress[data-rollout-status="reverted"]').wait_for(timeout=30_000)
        assert page.locator('#progress tr[data-action="revert"][data-status="succeeded"]').count() == 3
    release = api(fleet, "GET", f"/applications/shop/releases/{body['id']}/")[1]
    assert release["status"] == "failed"
    assert {t.version for t in Target.objects.filter(environment=fleet["env"])} == {"1.0.0"}


def test_failing_health_check_mid_rollout_reverts_exactly_the_touched_hosts(fleet):
    """Waves of 1, 2, 1: web-3 fails its health check in the second wave. web-1, web-2 and web-3 go back to the
    previous version; web-4 is never touched."""
    for n in (1, 2, 4):
        fleet["start"](f"web-{n}")
    fleet["start"]("web-3", health="echo checkout returns 500; exit 1")
    wait_for(lambda: Target.objects.filter(environment=fleet["env"]).count() == 4, what="4 agents registered")
    release = release_and_wait(fleet, "2.0.0")
    assert release["status"] == "failed"
    rollout = api(fleet, "GET", f"/applications/shop/releases/{release['id']}/rollout/")[1]
    assert rollout["status"] == "reverted"
    deploys = {s["target"]: s for s in rollout["steps"] if s["action"] == "deploy"}
    assert sorted(deploys) == ["web-1", "web-2", "web-3"] and deploys["web-3"]["wave"] == 2
    assert (
        deploys["web-3"]["health"]["ok"] is False
        and "checkout returns 500" in deploys["web-3"]["health"]["detail"]
    )
    reverts = [s for s in rollout["steps"] if s["action"] == "revert"]
    assert sorted(s["target"] for s in reverts) == ["web-1", "web-2", "web-3"]
    assert all(s["status"] == "succeeded" and s["version"] == "1.0.0" for s in reverts)
    versions = {
        n: (fleet["dir"] / n / "current_version").read_text().strip() for n in ("web-1", "web-2", "web-3")
    }
    assert versions == {"web-1": "1.0.0", "web-2": "1.0.0", "web-3": "1.0.0"}
    assert not (fleet["dir"] / "web-4" / "current_version").exists()


def test_analysis_reverts_a_canary_whose_health_checks_pass_but_whose_errors_are_five_times_higher(fleet):
    """Canary 25 % → 100 % with an analysis template: web-1 deploys 2.0.0 and passes its health check, but the
    error ratios pushed for it through the metrics API while it runs are 5× the baseline's (web-2…4 on 1.0.0).
    The analysis fails, the rollout reverts exactly web-1, and the API shows the failed run with its reason."""
    import threading

    import numpy as np

    from monitoring.models import AnalysisTemplate, MetricSource

    app, env = fleet["app"], fleet["env"]
    MetricSource.objects.create(application=app, name="pushed", kind="pushed")
    AnalysisTemplate.objects.create(
        application=app,
        name="checkout",
        interval_seconds=1,
        count=10,
        metrics=[
            {
                "name": "error_rate",
                "source": "pushed",
                "query": "http_error_ratio",
                "direction": "increase",
                "critical": True,
                "weight": 1.0,
                "unit": "%",
                "allowed_increase": 1.0,
                "allowed_decrease": 1.0,
                "success_condition": "",
                "failure_condition": "",
                "failure_limit": 0,
                "inconclusive_limit": 0,
                "consecutive_error_limit": 4,
            }
        ],
    )
    status, body = api(
        fleet,
        "PATCH",
        "/applications/shop/environments/production/",
        {
            "strategy": {
                "kind": "canary",
                "steps": [25, 100],
                "pause_seconds": 0,
                "analysis": {"template": "checkout", "duration_seconds": 10},
            }
        },
    )
    assert status == 200, body
    _, metrics_key = do_create_api_token(
        Actor.system(), factories.UserFactory(is_superuser=True), name="metrics", scopes=["metrics:write"]
    )
    for n in range(1, 5):
        fleet["start"](f"web-{n}")
    wait_for(lambda: Target.objects.filter(environment=env).count() == 4, what="4 agents registered")

    stop = threading.Event()

    def push_samples():  # what the service's own metrics would say, twice a second per host
        rng = np.random.default_rng(11)
        while not stop.wait(0.5):
            now = time.time()
            samples = [
                {
                    "name": "http_error_ratio",
                    "timestamp": now,
                    "value": float(rng.binomial(400, 0.05 if n == 1 else 0.01) / 400),
                    "labels": {
                        "environment": "production",
                        "target": f"web-{n}",
                        "version": "2.0.0" if n == 1 else "1.0.0",
                    },
                }
                for n in range(1, 5)
            ]
            request = urllib.request.Request(
                fleet["url"] + "/api/v1/applications/shop/metrics/",
                method="POST",
                data=json.dumps(samples).encode(),
                headers={"Authorization": f"Bearer {metrics_key}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 201

    pusher = threading.Thread(target=push_samples, daemon=True)
    pusher.start()
    try:
        release = release_and_wait(fleet, "2.0.0")
    finally:
        stop.set()
        pusher.join(timeout=15)
    assert release["status"] == "failed"
    rollout = api(fleet, "GET", f"/applications/shop/releases/{release['id']}/rollout/")[1]
    assert rollout["status"] == "reverted"
    deploys = [s for s in rollout["steps"] if s["action"] == "deploy"]
    assert [(s["target"], s["health"]["ok"]) for s in deploys] == [("web-1", True)]  # healthy, yet judged bad
    analysis = next(s for s in rollout["steps"] if s["action"] == "analysis")
    assert analysis["status"] == "failed" and "critical metric error_rate failed" in analysis["output"]
    reverts = [s for s in rollout["steps"] if s["action"] == "revert"]
    assert [(s["target"], s["version"], s["status"]) for s in reverts] == [("web-1", "1.0.0", "succeeded")]
    [run] = rollout["analysis_runs"]
    assert run["verdict"] == "fail" and run["canary_targets"] == ["web-1"]
    assert run["baseline_targets"] == ["web-2", "web-3", "web-4"]
    assert run["reasons"][0].startswith("fail: canary judge: critical metric error_rate failed")
    runs = api(fleet, "GET", f"/applications/shop/analysis-runs/?release={release['id']}")[1]
    assert [r["id"] for r in runs["results"]] == [run["id"]]
    measured = runs["results"][0]["measurements"][0]
    assert measured["canary"]["count"] >= 10 and measured["baseline"]["count"] >= 30
    assert measured["outcome"] == "high" and "too high" in measured["reason"]
    assert (fleet["dir"] / "web-1" / "current_version").read_text().strip() == "1.0.0"
    assert not (fleet["dir"] / "web-2" / "current_version").exists()  # never touched
