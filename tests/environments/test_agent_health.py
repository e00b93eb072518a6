"""Agents' health probes between jobs: what they send with their heartbeats becomes health_check_* samples for the
version each host runs, so an analysis judging health has canary and baseline samples from real agents."""

import json
import re
import time

import pytest

from environments.models import Target
from monitoring.models import Sample
from tests import factories
from tests.environments import test_rollout_agents
from tests.environments.test_rollout_agents import api, served, wait_for
from tests.live import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
slipway, fleet = test_rollout_agents.slipway, test_rollout_agents.fleet  # a live Slipway and its real agents


def docs_template() -> dict:
    """The analysis template docs/monitoring.md shows under "Writing an analysis template", as written there."""
    text = (ROOT / "docs" / "monitoring.md").read_text()
    block = re.search(r"```json\n(\{\n  \"name\": \"canary\",.*?)\n```", text, re.DOTALL)
    assert block, "docs/monitoring.md lost its example template"
    return json.loads(block.group(1))


def test_the_documented_template_judges_agents_health_probes_for_canary_and_baseline(fleet):
    """docs/monitoring.md's template, saved through the API, gates a canary on four real agents. Its Prometheus
    metrics have no data (a source that is down, counting missing data as a pass); `health_ok` and
    `health_latency` are judged from the probes the agents send with their heartbeats — web-1 on 2.0.0 against
    web-2…4 still on 1.0.0 over the same window — and the canary passes instead of pausing for lack of data."""
    for name, body in (
        (
            "prom",
            {"name": "prom", "kind": "prometheus", "url": "http://127.0.0.1:9/", "timeout_seconds": 0.5},
        ),
        ("pushed", {"name": "pushed", "kind": "pushed"}),
    ):
        status, answer = api(fleet, "POST", "/applications/shop/metric-sources/", body)
        assert status == 201, (name, answer)
    status, answer = api(
        fleet, "PATCH", "/applications/shop/metric-sources/prom/", {"on_missing_data": "pass"}
    )
    assert status == 200, answer
    status, answer = api(fleet, "POST", "/applications/shop/analysis-templates/", docs_template())
    assert status == 201, answer
    strategy = {
        "kind": "canary",
        "steps": [25, 100],
        "pause_seconds": 0,
        # the template measures 60 × 10 s; this strategy measures 12 × 1 s
        "analysis": {"template": "canary", "interval_seconds": 1, "count": 12},
    }
    status, answer = api(
        fleet, "PATCH", "/applications/shop/environments/production/", {"strategy": strategy}
    )
    assert status == 200, answer
    for n in range(1, 5):  # hosts that ran 1.0.0 before: the agents' state says so
        workdir = fleet["dir"] / f"web-{n}"
        workdir.mkdir()
        (workdir / "agent.json").write_text(
            json.dumps({"agent_token": None, "version": "1.0.0", "job": None})
        )
        (workdir / "current_version").write_text("1.0.0\n")
        fleet["start"](f"web-{n}", extra=("--health-probe-seconds", "0.3"))
    env = fleet["env"]
    wait_for(lambda: Target.objects.filter(environment=env).count() == 4, what="4 agents registered")
    wait_for(
        lambda: (
            Sample.objects.filter(environment=env, name="health_check_ok", version="1.0.0")
            .values("target")
            .distinct()
            .count()
            == 4
        ),
        what="every agent's health probes",
    )

    factories.ArtifactFactory(application=fleet["app"], version="2.0.0")
    status, release = api(
        fleet, "POST", "/applications/shop/releases/", {"environment": "production", "version": "2.0.0"}
    )
    assert status == 201, release
    path = f"/applications/shop/releases/{release['id']}/rollout/"
    rollout = (
        wait_for(  # paused: what the template did before agents probed between jobs (no data → a person)
            lambda: (
                (r := api(fleet, "GET", path)[1]).get("status")
                in ("succeeded", "failed", "paused", "reverted")
                and r
            ),
            what="the rollout to end or pause",
        )
    )
    analysis = next(s for s in rollout["steps"] if s["action"] == "analysis")
    assert rollout["status"] == "succeeded", analysis["output"]
    [run] = rollout["analysis_runs"]
    assert (run["verdict"], run["canary_targets"], run["baseline_targets"]) == (
        "pass",
        ["web-1"],
        ["web-2", "web-3", "web-4"],
    )
    [listed] = api(fleet, "GET", f"/applications/shop/analysis-runs/?release={release['id']}")[1]["results"]
    measured = {m["metric"]: m for m in listed["measurements"]}
    for name in ("health_ok", "health_latency"):
        assert measured[name]["outcome"] == "pass", measured[name]["reason"]
        assert measured[name]["check_phase"] == "successful"
        assert measured[name]["canary"]["count"] >= 10  # the judge's minimum, from web-1's probes on 2.0.0
        assert measured[name]["baseline"]["count"] >= 30  # web-2…4 on 1.0.0 over the same window
    assert measured["health_ok"]["canary"]["mean"] == 1.0
    for name in ("error_rate", "latency_p95", "throughput"):
        assert measured[name]["outcome"] == "ignored" and "connection refused" in measured[name]["reason"]
    probes = Sample.objects.filter(
        environment=env, name="health_check_latency_ms", target="web-1", version="2.0.0"
    )
    assert probes.count() >= 12


def test_a_heartbeat_with_bad_health_probes_is_refused_naming_the_field_and_stores_nothing(fleet):
    fleet["start"]("web-1", extra=("--health-probe-seconds", "0"))
    env = fleet["env"]
    wait_for(lambda: Target.objects.filter(environment=env).exists(), what="the agent registered")
    state = json.loads((fleet["dir"] / "web-1" / "agent.json").read_text())
    token = state["agent_token"]
    good = {"ok": True, "latency_ms": 3.5, "version": "1.0.0", "age_seconds": 1}
    for health, field in (
        ({"ok": True}, "health"),
        ([good] * 101, "health"),
        ([good, "up"], "health[1]"),
        ([good, {**good, "ok": 1}], "health[1].ok"),
        ([{**good, "latency_ms": -1}], "health[0].latency_ms"),
        ([{**good, "latency_ms": True}], "health[0].latency_ms"),
        ([{k: v for k, v in good.items() if k != "latency_ms"}], "health[0].latency_ms"),
        ([{**good, "version": ""}], "health[0].version"),
        ([{**good, "version": "x" * 101}], "health[0].version"),
        ([{**good, "age_seconds": 3601}], "health[0].age_seconds"),
    ):
        status, body = served(
            fleet, "POST", "/api/v1/agent/heartbeat", {"version": "1.0.0", "health": health}, token
        )
        assert (status, body["field"]) == (400, field), body
    assert not Sample.objects.filter(environment=env).exists()
    status, _ = served(fleet, "POST", "/api/v1/agent/heartbeat", {"health": [good]}, "sla_unknown")
    assert status == 401
    before = time.time()
    status, body = served(
        fleet,
        "POST",
        "/api/v1/agent/heartbeat",
        {"version": "1.0.0", "health": [good, {"ok": False, "latency_ms": 250}]},
        token,
    )
    assert status == 200, body
    rows = sorted(
        Sample.objects.filter(environment=env).values_list("name", "value", "version", "target", "timestamp"),
        key=lambda row: (row[4], row[0]),
    )
    assert [row[:4] for row in rows] == [
        ("health_check_latency_ms", 3.5, "1.0.0", "web-1"),
        ("health_check_ok", 1.0, "1.0.0", "web-1"),
        ("health_check_latency_ms", 250.0, "1.0.0", "web-1"),  # no version: the target's recorded one
        ("health_check_ok", 0.0, "1.0.0", "web-1"),
    ]
    assert before - 1.5 < rows[0][4].timestamp() < before - 0.5  # taken age_seconds before the heartbeat
