"""Issue #17's split fleet, with real processes: two web processes, four agents, web B killed (`kill -9`) during a
rollback for longer than the offline threshold, then started again. The rollback keeps the hosts it reached, puts
none back on the version it rolls back from, retries the others when their agents are back, and in the end every
record says what its host really runs."""

import subprocess
import time

import pytest

from environments.models import Environment, Target
from releases.models import AuditEvent, Release, Rollout, RolloutStep
from tests.environments.test_rollout_agents import api, release_and_wait, shop_running_v1, wait_for
from tests.live import LiveSlipway, start_agent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Slow enough that web B can be killed while its hosts are deploying (their results then arrive late).
DEPLOY = "sleep 2; echo $SLIPWAY_VERSION > current_version"
OFFLINE_AFTER = 3  # the environment's heartbeat_timeout_seconds (30 by default)


def test_a_web_process_lost_during_a_rollback_ends_with_every_host_rolled_back_and_the_records_true(tmp_path):
    a, b = LiveSlipway.start(embedded=True), LiveSlipway.start(embedded=True)
    agents: dict[str, subprocess.Popen] = {}
    try:
        app, env, key = shop_running_v1()
        Environment.objects.filter(pk=env.pk).update(heartbeat_timeout_seconds=OFFLINE_AFTER)
        # web-1 and web-2 are given both processes (web-2 starts on B and moves to A when B dies); web-3 and web-4
        # reach only B — as hosts in a zone behind B without a load balancer would.
        urls = {
            "web-1": f"{a.url},{b.url}",
            "web-2": f"{b.url},{a.url}",
            "web-3": b.url,
            "web-4": b.url,
        }
        for name, url in urls.items():
            agents[name] = start_agent(url, name, tmp_path, "--deploy-command", DEPLOY)
        wait_for(lambda: Target.objects.filter(environment=env).count() == 4, what="4 agents registered")
        fleet = {"app": app, "url": a.url, "key": key}
        assert release_and_wait(fleet, "2.0.0", final=("succeeded", "failed"))["status"] == "succeeded"

        status, body = api(
            fleet,
            "POST",
            "/applications/shop/environments/production/rollback/",
            {"version": "1.0.0", "reason": "2.0.0 is bad"},
        )
        assert status == 201, body
        rollback = Release.objects.get(pk=body["id"])
        deploys = RolloutStep.objects.filter(rollout__release=rollback, action="deploy")
        wait_for(
            lambda: deploys.filter(target_name__in=("web-3", "web-4"), status="running").count() == 2,
            what="web-3 and web-4 deploying",
        )
        b.kill()  # web B is gone while its hosts deploy: they cannot report, nor heartbeat
        killed_at = time.monotonic()

        wait_for(
            lambda: (
                deploys.filter(
                    target_name__in=("web-3", "web-4"), status="failed", health__detail__icontains="offline"
                ).count()
                == 2
            ),
            what="web-3 and web-4 marked offline",
        )
        wait_for(
            lambda: deploys.filter(target_name__in=("web-1", "web-2"), status="succeeded").count() == 2,
            what="web-1 and web-2 rolled back (web-2 through A)",
        )
        time.sleep(OFFLINE_AFTER)  # time for a revert to start, if one were going to
        rollout = Rollout.objects.get(release=rollback)
        assert rollout.status == "running", rollout.progress  # not reverting: waiting for web-3 and web-4
        assert sorted(rollout.progress["waiting"]) == ["web-3", "web-4"]
        assert not RolloutStep.objects.filter(rollout=rollout, action="revert").exists()
        assert Release.objects.get(pk=rollback.pk).status == "deploying"
        note = AuditEvent.objects.get(kind="rollout.hosts_not_reached", object_id=str(rollback.pk)).note
        assert "web-3: agent offline" in note and "web-4: agent offline" in note
        assert time.monotonic() - killed_at > OFFLINE_AFTER

        b = LiveSlipway.start(embedded=True, port=b.port)  # web B is back where its agents look for it
        final = wait_for(
            lambda: (
                (r := api(fleet, "GET", f"/applications/shop/releases/{rollback.pk}/")[1])["status"]
                in ("succeeded", "failed", "cancelled")
                and r
            ),
            timeout=120,
            what="the rollback to finish once web B is back",
        )
        assert final["status"] == "succeeded", final

        # The records match the hosts: every target's version is what its agent really put in place.
        on_hosts = {n: (tmp_path / n / "current_version").read_text().strip() for n in urls}
        recorded = dict(Target.objects.filter(environment=env).values_list("name", "version"))
        assert on_hosts == dict.fromkeys(urls, "1.0.0")
        assert recorded == on_hosts
        listed = api(fleet, "GET", "/applications/shop/environments/production/targets/")[1]
        assert {t["name"]: t["version"] for t in listed} == on_hosts
        assert Environment.objects.get(pk=env.pk).current_artifact.version == "1.0.0"
        assert not RolloutStep.objects.filter(rollout=rollout, action="revert").exists()
        retried = deploys.filter(target_name__in=("web-3", "web-4"), status="succeeded")
        assert sorted(retried.values_list("target_name", flat=True)) == ["web-3", "web-4"]
        rollout_view = api(fleet, "GET", f"/applications/shop/releases/{rollback.pk}/rollout/")[1]
        assert rollout_view["status"] == "succeeded" and rollout_view["not_reached"] == []
    finally:
        for agent in agents.values():
            agent.terminate()
        for agent in agents.values():
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
        a.stop()
        if b.process.poll() is None:
            b.stop()
