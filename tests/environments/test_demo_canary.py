"""End to end, nothing made up: real agents deploy the real demo service (`environments.demo.service`, as `make run`'s
fleet does), whose `1.3.1-errors` build fails six times as many checkouts while its `/health` stays green. Its own
errors — sent by sentry-sdk to the envelope route, its error ratio pushed through the metrics API — get its canary
reverted by the analysis, and the release page says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.db import transaction

from environments.models import Target
from monitoring.models import ErrorGroup
from monitoring.services import (
    create_ingest_key,
    do_create_analysis_template,
    do_create_metric_source,
)
from ops.common import call_json
from releases.demo import ANALYSIS_TEMPLATE
from releases.models import Release
from releases.permissions import Actor
from releases.services import do_create_api_token
from tests import factories
from tests.environments.test_rollout_agents import shop_running_v1, wait_for
from tests.live import ROOT, LiveSlipway, free_port, start_agent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
HOSTS = 4
RPS = 100  # checkouts a second per host: about 1 failure a second at 1 %, 6 at 6 %


@pytest.fixture
def slipway():
    server = LiveSlipway.start(embedded=True)
    yield server
    server.stop()


def test_the_errors_build_is_reverted_by_its_own_errors_while_its_health_checks_pass(
    slipway, tmp_path, client
):
    app, env, key = shop_running_v1()
    system = Actor.system()
    with transaction.atomic():
        ingest = create_ingest_key(system, app)
    # The demo's own analysis (releases/demo.py): the pushed error ratio, critical, canary against the others.
    do_create_metric_source(system, app, {"name": "pushed", "kind": "pushed"})
    do_create_analysis_template(system, app, {**ANALYSIS_TEMPLATE, "interval_seconds": 1, "count": 15})
    status, body = call_json(
        slipway.url + "/api/v1/applications/shop/environments/production/",
        key,
        "PATCH",
        {
            "strategy": {
                "kind": "canary",
                "steps": [25, 100],
                "pause_seconds": 0,
                "analysis": {"template": "errors", "duration_seconds": 15},
            }
        },
    )
    assert status == 200, body
    pusher = factories.UserFactory(username="shop-fleet")
    factories.MembershipFactory(user=pusher, application=app, role="developer")
    _, push_token = do_create_api_token(
        system, pusher, name="fleet", scopes=["metrics:write"], environment=env
    )
    dsn = slipway.url.replace("http://", f"http://{ingest.public_key}@") + f"/{app.pk}"

    processes: list[subprocess.Popen] = []
    try:
        for n in range(1, HOSTS + 1):
            name, port = f"web-{n}", free_port()
            (tmp_path / name).mkdir()
            state = tmp_path / name / "state.json"
            state.write_text(json.dumps({"version": "1.0.0"}))
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "environments.demo.service",
                        *("--port", str(port), "--state-file", str(state), "--name", name),
                        *("--rps", str(RPS), "--dsn", dsn, "--push-seconds", "1"),
                        *("--push-url", slipway.url + "/api/v1/applications/shop/metrics/"),
                    ],
                    cwd=ROOT,
                    env={**os.environ, "SLIPWAY_PUSH_TOKEN": push_token},
                    stdout=(tmp_path / f"{name}-service.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            processes.append(
                start_agent(
                    slipway.url,
                    name,
                    tmp_path,
                    "--deploy-command",
                    f"{sys.executable} -m environments.demo.deploy --state-file {state}",
                    "--health-url",
                    f"http://127.0.0.1:{port}/health",
                    "--health-timeout",
                    "3",
                )
            )
        wait_for(lambda: Target.objects.filter(environment=env).count() == HOSTS, what="4 agents registered")

        factories.ArtifactFactory(application=app, version="1.3.1-errors")
        status, body = call_json(
            slipway.url + "/api/v1/applications/shop/releases/",
            key,
            "POST",
            {"environment": "production", "version": "1.3.1-errors"},
        )
        assert status == 201, body
        release = wait_for(
            lambda: (r := Release.objects.get(pk=body["id"])).status in ("succeeded", "failed") and r,
            timeout=90,
            what="the release to end",
        )
        assert release.status == "failed"
        rollout = call_json(slipway.url + f"/api/v1/applications/shop/releases/{release.pk}/rollout/", key)[1]
        assert rollout["status"] == "reverted"
        deploys = [s for s in rollout["steps"] if s["action"] == "deploy"]
        assert [(s["health"]["ok"], s["status"]) for s in deploys] == [
            (True, "succeeded")
        ]  # healthy: one canary
        canary = deploys[0]["target"]
        reverts = [s for s in rollout["steps"] if s["action"] == "revert"]
        assert [(s["target"], s["version"], s["status"]) for s in reverts] == [(canary, "1.0.0", "succeeded")]
        [run] = rollout["analysis_runs"]
        assert run["verdict"] == "fail" and run["canary_targets"] == [canary]
        assert run["reasons"][0].startswith("fail: canary judge: critical metric error_rate failed")
        # The canary's own errors, reported by sentry-sdk with the version it served: a group new in the build.
        basket = wait_for(
            lambda: ErrorGroup.objects.filter(type="BasketTotalError").first(), what="sentry-sdk's events"
        )
        assert basket.first_seen_version == "1.3.1-errors" and basket.events.filter(target=canary).exists()
        assert json.loads((tmp_path / canary / "state.json").read_text()) == {"version": "1.0.0"}  # put back

        client.force_login(factories.UserFactory(is_superuser=True))
        page = client.get(f"/releases/{release.pk}/").content.decode()
        why = page[page.index('id="analysis-summary"') : page.index('id="approvals"')]
        assert "Why this release was reverted" in why
        assert "critical metric error_rate failed" in why and "→ too high" in why
        errors = page[page.index('class="table error-groups"') :]
        assert '<span class="badge bad">new</span> <code>BasketTotalError:' in errors
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
