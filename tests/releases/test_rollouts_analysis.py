"""Analysis gates in the rollout engine (the command driver, no agents): a strategy's analysis template judges the
canary between waves and the post-deploy watch after the last; pass goes on, fail reverts exactly the touched
targets, marginal or inconclusive pauses for a person. Samples of known truth are pushed for the window the gate
measures (its wait is replaced by the pushing, so the tests take no wall-clock time)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.utils import timezone

from environments.models import Target
from monitoring.models import AnalysisRun, AnalysisTemplate, MetricSource, Sample
from releases.models import AuditEvent, Release, Rollout, RolloutStep
from releases.permissions import Actor
from releases.rollouts import do_advance_rollout, do_control_rollout, gates, start_rollout
from tests import factories

METRIC = {
    "direction": "increase",
    "critical": False,
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


@pytest.fixture
def canary(app, tmp_path):
    env = factories.EnvironmentFactory(
        application=app,
        name="production",
        position=1,
        driver="command",
        deploy_command=f"echo $SLIPWAY_TARGET=$SLIPWAY_VERSION >> {tmp_path}/deployed",
        strategy={
            "kind": "canary",
            "steps": [33, 100],
            "pause_seconds": 0,
            "analysis": {"template": "checkout", "duration_seconds": 30},
        },
    )
    v1 = factories.ArtifactFactory(application=app, version="1.0.0")
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    for name in ("a", "b", "c"):
        Target.objects.create(environment=env, name=name, token_hash=name * 64, version="1.0.0")
    MetricSource.objects.create(application=app, name="pushed", kind="pushed")
    AnalysisTemplate.objects.create(
        application=app,
        name="checkout",
        interval_seconds=1,
        count=30,
        metrics=[
            {
                **METRIC,
                "name": "error_rate",
                "source": "pushed",
                "query": "http_error_ratio",
                "critical": True,
            }
        ],
    )
    return env, v1, v2


def rollout_for(env, v1, v2):
    release = Release.objects.create(
        application=env.application, environment=env, artifact=v2, previous_artifact=v1, status="deploying"
    )
    return release, start_rollout(release)


def pushing(monkeypatch, env, rates: dict[str, float], *, latency: bool = False):
    """Replace the gate's wait: push one sample a second for the window (and for the same length of time before
    the rollout, the baseline of a watch), per version at its error ratio, per target that runs it then."""
    windows = []
    rng = np.random.default_rng(7)

    def wait(rollout_id, start, until):
        windows.append((start, until))
        seconds = int((until - start).total_seconds())
        created = Rollout.objects.get(pk=rollout_id).created_at
        rows = []
        for version, rate in rates.items():
            for target in ("a", "b", "c"):
                for begin in (start, created - (until - start)):
                    ratios = rng.binomial(400, rate, seconds) / 400
                    rows += [
                        Sample(
                            application=env.application,
                            environment=env,
                            name="http_error_ratio",
                            value=float(r),
                            version=version,
                            target=target,
                            timestamp=begin + timedelta(seconds=i + 0.5),
                        )
                        for i, r in enumerate(ratios)
                    ]
                    if latency:
                        rows += [
                            Sample(
                                application=env.application,
                                environment=env,
                                name="latency_ms",
                                value=float(v),
                                version=version,
                                target=target,
                                timestamp=begin + timedelta(seconds=i + 0.5),
                            )
                            for i, v in enumerate(rng.lognormal(4, 0.3, seconds))
                        ]
        Sample.objects.bulk_create(rows)
        return None

    monkeypatch.setattr(gates, "_wait", wait)
    return windows


def test_a_five_times_error_rate_fails_the_canary_and_reverts_exactly_its_targets(
    canary, monkeypatch, tmp_path, settings
):
    settings.TIME_ZONE = "Europe/Paris"  # the step's output says its moments as the pages do, in this zone
    env, v1, v2 = canary
    windows = pushing(monkeypatch, env, {"1.0.0": 0.01, "2.0.0": 0.05})
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "reverted"
    assert [s.target_name for s in RolloutStep.objects.filter(rollout=rollout, action="deploy")] == ["a"]
    assert [
        (s.target_name, s.version) for s in RolloutStep.objects.filter(rollout=rollout, action="revert")
    ] == [("a", "1.0.0")]
    assert (tmp_path / "deployed").read_text().split() == ["a=2.0.0", "a=1.0.0"]
    release.refresh_from_db()
    assert release.status == "failed"

    run = AnalysisRun.objects.get()
    assert (run.release, run.rollout_id, run.template_name, run.verdict) == (
        release,
        rollout.pk,
        "checkout",
        "fail",
    )
    assert (run.canary_version, run.canary_targets, run.baseline_version, run.baseline_targets) == (
        "2.0.0",
        ["a"],
        "1.0.0",
        ["b", "c"],
    )
    deployed_at = RolloutStep.objects.get(rollout=rollout, action="deploy").finished_at
    assert windows == [(deployed_at, deployed_at + timedelta(seconds=30))]  # since the wave finished
    assert (run.started_at, run.ended_at, run.baseline_started_at) == (*windows[0], None)
    step = RolloutStep.objects.get(rollout=rollout, action="analysis")
    assert step.status == "failed" and step.wave_number == 1
    assert step.output.startswith(f"analysis run #{run.pk}: template checkout, 30 s from")
    start, end = (timezone.localtime(moment, ZoneInfo("Europe/Paris")) for moment in windows[0])
    zone = start.strftime("%Z")
    assert zone in ("CET", "CEST")
    assert f"from {start:%Y-%m-%d %H:%M:%S} {zone} to {end:%Y-%m-%d %H:%M:%S} {end:%Z} (" in step.output
    assert "measurements, one every" in step.output and ") → fail" in step.output.splitlines()[0]
    assert "UTC" not in step.output.splitlines()[0]
    assert "→ fail" in step.output and "critical metric error_rate failed" in step.output
    assert "baseline: 1.0.0 on b, c over the same window" in step.output
    assert AuditEvent.objects.filter(kind="analysis_run.completed", object_id=str(run.pk)).exists()


def test_a_healthy_canary_passes_and_the_watch_judges_against_the_version_before(canary, monkeypatch):
    env, v1, v2 = canary
    env.strategy = {**env.strategy, "watch": {"template": "checkout", "duration_seconds": 20}}
    env.save()
    pushing(monkeypatch, env, {"1.0.0": 0.01, "2.0.0": 0.01})
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    actions = list(
        RolloutStep.objects.filter(rollout=rollout).order_by("index").values_list("action", "status")
    )
    assert [a for a, _ in actions] == ["deploy", "analysis", "deploy", "deploy", "watch"]
    assert all(status == "succeeded" for _, status in actions)
    between, watch = AnalysisRun.objects.order_by("id")
    assert (between.verdict, between.canary_targets, between.baseline_targets) == ("pass", ["a"], ["b", "c"])
    # Nothing runs 1.0.0 any more: the watch compares with it in the 20 s before the rollout began.
    assert (watch.verdict, watch.canary_targets, watch.baseline_version) == ("pass", ["a", "b", "c"], "1.0.0")
    rollout.refresh_from_db()
    assert watch.baseline_ended_at == rollout.created_at
    assert watch.baseline_started_at == rollout.created_at - timedelta(seconds=20)
    assert watch.ended_at - watch.started_at == timedelta(seconds=20)
    assert (
        "the 20 s before the rollout began" in RolloutStep.objects.get(rollout=rollout, action="watch").output
    )
    release.refresh_from_db()
    assert release.status == "succeeded"


def test_a_failing_watch_reverts_every_target(canary, monkeypatch):
    env, v1, v2 = canary
    env.strategy = {"kind": "cautious", "watch": {"template": "checkout", "duration_seconds": 30}}
    env.save()
    pushing(monkeypatch, env, {"1.0.0": 0.01, "2.0.0": 0.06})
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "reverted"
    assert sorted(s.target_name for s in RolloutStep.objects.filter(rollout=rollout, action="revert")) == [
        "a",
        "b",
        "c",
    ]
    assert AnalysisRun.objects.get().verdict == "fail"


@pytest.mark.parametrize("verdict", ["inconclusive", "marginal"])
def test_marginal_or_inconclusive_pauses_for_a_person_who_resumes_or_reverts(
    canary, monkeypatch, user, verdict
):
    env, v1, v2 = canary
    if verdict == "inconclusive":  # the canary sent nothing: the source says a person decides
        pushing(monkeypatch, env, {"1.0.0": 0.01})
    else:  # one of two equal metrics fails: score 50, between marginal (50) and pass (95)
        AnalysisTemplate.objects.filter(name="checkout").update(
            marginal_threshold=50,
            metrics=[
                {**METRIC, "name": "error_rate", "source": "pushed", "query": "http_error_ratio"},
                {**METRIC, "name": "latency", "source": "pushed", "query": "latency_ms", "unit": "ms"},
            ],
        )
        pushing(monkeypatch, env, {"1.0.0": 0.01, "2.0.0": 0.05}, latency=True)
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "paused"
    step = RolloutStep.objects.get(rollout=rollout, action="analysis")
    assert step.status == "succeeded" and step.health["ok"] is None
    assert (
        f"→ {verdict}" in step.output
        and "A person decides: resume the rollout to go on, or revert it." in step.output
    )
    assert step.health["detail"] == step.output.splitlines()[0]
    assert AnalysisRun.objects.get().verdict == verdict
    held = AuditEvent.objects.get(kind="rollout.held")
    assert held.note == step.output.splitlines()[0]
    assert RolloutStep.objects.filter(rollout=rollout, action="deploy").count() == 1  # nothing more meanwhile
    assert do_advance_rollout(rollout.pk) == "paused"  # the periodic check does not move it either

    do_control_rollout(Actor(user), release, "resume")
    assert do_advance_rollout(rollout.pk) == "succeeded"
    assert AnalysisRun.objects.count() == 1  # past the gate: not judged again

    v3 = factories.ArtifactFactory(application=env.application, version="3.0.0")
    release, rollout = rollout_for(env, v2, v3)
    assert do_advance_rollout(rollout.pk) == "paused"
    do_control_rollout(Actor(user), release, "revert")
    assert do_advance_rollout(rollout.pk) == "reverted"
    assert [s.target_name for s in RolloutStep.objects.filter(rollout=rollout, action="revert")] == ["a"]


def test_a_template_deleted_after_the_rollout_started_pauses_saying_so(canary, monkeypatch):
    env, v1, v2 = canary
    pushing(monkeypatch, env, {"1.0.0": 0.01, "2.0.0": 0.01})
    AnalysisTemplate.objects.all().delete()
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "paused"
    assert (
        "analysis template 'checkout' no longer exists" in RolloutStep.objects.get(action="analysis").output
    )


def test_without_a_previous_version_only_threshold_checks_judge(canary, monkeypatch):
    env, v1, v2 = canary
    AnalysisTemplate.objects.filter(name="checkout").update(
        metrics=[
            {
                **METRIC,
                "name": "error_rate",
                "source": "pushed",
                "query": "http_error_ratio",
                "success_condition": "error_rate < 0.02",
                "failure_limit": 3,
            }
        ]
    )
    pushing(monkeypatch, env, {"2.0.0": 0.05})
    release = Release.objects.create(
        application=env.application, environment=env, artifact=v2, status="deploying"
    )
    rollout = start_rollout(release)
    assert do_advance_rollout(rollout.pk) == "reverted"
    run = AnalysisRun.objects.get()
    assert run.baseline_version == "" and run.verdict == "fail" and "threshold checks" in run.reasons[0]


def test_the_wait_gives_up_when_a_person_reverts_meanwhile(canary):
    from django.utils import timezone

    env, v1, v2 = canary
    release, rollout = rollout_for(env, v1, v2)
    Rollout.objects.filter(pk=rollout.pk).update(
        status="reverting", progress={**rollout.progress, "reverting": True}
    )
    now = timezone.now()
    assert "the rollout is reverting" in gates._wait(rollout.pk, now, now + timedelta(seconds=1))
    assert gates._wait(rollout.pk, now - timedelta(seconds=5), now) is None  # a window already over: no wait


def test_the_canary_hook_still_decides_without_a_template(canary, settings):
    env, v1, v2 = canary
    env.strategy = {"kind": "canary", "steps": [33, 100], "pause_seconds": 0}
    env.save()
    settings.SLIPWAY_CANARY_ANALYSIS = "tests.releases.test_rollouts_analysis.undecided"
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "paused"  # a hook may hand the decision to a person too
    assert RolloutStep.objects.get(action="analysis").output == "p95 latency 1.3× the baseline's"
    assert not AnalysisRun.objects.exists()


def undecided(rollout, wave, traffic_percent):
    return None, "p95 latency 1.3× the baseline's"


# --- at the door: strategies naming templates, the rollout's analysis runs ------------------------------------


def test_a_strategy_naming_an_unknown_template_is_refused_naming_the_field(canary, client, user):
    env, v1, v2 = canary
    client.force_login(user)
    url = "/api/v1/applications/shop/environments/production/"
    bad = {"kind": "cautious", "watch": {"template": "soak", "duration_seconds": 600}}
    response = client.patch(url, {"strategy": bad}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["strategy"] == [
        "watch.template: no analysis template 'soak' in this application; it has: checkout"
    ]
    response = client.patch(
        url,
        {"strategy": {"kind": "cautious", "analysis": {"template": "checkout", "duration_seconds": 0}}},
        content_type="application/json",
    )
    message = "analysis.duration_seconds: must be a whole number of seconds from 1 to 86400"
    assert response.status_code == 400
    assert (response.json()["strategy"], response.json()["code"], response.json()["field"]) == (
        [message],
        "invalid",
        "strategy",
    )
    response = client.post(
        "/api/v1/applications/shop/environments/",
        {"name": "staging", "position": 0, "strategy": {"kind": "canary", "analysis": {"template": "nope"}}},
        content_type="application/json",
    )
    assert response.status_code == 400 and response.json()["strategy"][0].startswith(
        "analysis.template: no analysis"
    )
    response = client.post(
        "/api/v1/applications/shop/releases/",
        {"environment": "production", "version": "2.0.0", "strategy": bad},
        content_type="application/json",
    )
    assert response.status_code == 400 and response.json()["strategy"][0].startswith("watch.template:")
    good = {"kind": "cautious", "watch": {"template": "checkout", "duration_seconds": 600}}
    response = client.patch(
        url, {"strategy": good, "rollback_on_new_errors": True}, content_type="application/json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["strategy"] == good and response.json()["rollback_on_new_errors"] is True


def test_the_rollout_lists_its_analysis_runs_in_constant_queries(
    canary, monkeypatch, client, user, django_assert_num_queries
):
    env, v1, v2 = canary
    pushing(monkeypatch, env, {"1.0.0": 0.01, "2.0.0": 0.05})
    release, rollout = rollout_for(env, v1, v2)
    do_advance_rollout(rollout.pk)
    client.force_login(user)
    url = f"/api/v1/applications/shop/releases/{release.pk}/rollout/"
    with django_assert_num_queries(9) as counted:  # session, user, release, rollout, steps, runs…
        body = client.get(url).json()
    [run] = body["analysis_runs"]
    stored = AnalysisRun.objects.get()
    assert run["id"] == stored.pk and run["template"] == "checkout" and run["verdict"] == "fail"
    assert run["reasons"][0].startswith("fail: canary judge: critical metric error_rate failed")
    assert run["canary_targets"] == ["a"] and run["baseline_targets"] == ["b", "c"]
    for _ in range(3):  # more runs, same queries
        stored.pk = None
        stored.save()
    with django_assert_num_queries(len(counted.captured_queries)):
        assert len(client.get(url).json()["analysis_runs"]) == 4


def test_the_strategy_sets_how_often_and_how_many_times_the_gate_measures(canary, monkeypatch, client, user):
    """`interval_seconds` and `count` in the strategy's analysis replace the template's (1 s × 30): the gate
    measures 5 × 2 s = 10 s and judges 5 measurements; a bad value is a 400 naming the field."""
    env, v1, v2 = canary
    client.force_login(user)
    url = "/api/v1/applications/shop/environments/production/"
    for analysis, message in (
        (
            {"interval_seconds": 0},
            "analysis.interval_seconds: must be a whole number of seconds from 1 to 3600",
        ),
        ({"count": 1001}, "analysis.count: must be a whole number of measurements from 1 to 1000"),
        (
            {"interval_seconds": 3600, "count": 25},
            "analysis.count: count × interval_seconds is at most 24 hours",
        ),
    ):
        strategy = {"kind": "canary", "steps": [33, 100], "analysis": {"template": "checkout", **analysis}}
        response = client.patch(url, {"strategy": strategy}, content_type="application/json")
        assert response.status_code == 400
        body = response.json()
        assert (body["strategy"], body["code"], body["field"]) == ([message], "invalid", "strategy")
    strategy = {
        "kind": "canary",
        "steps": [33, 100],
        "pause_seconds": 0,
        "analysis": {"template": "checkout", "interval_seconds": 2, "count": 5},
    }
    response = client.patch(url, {"strategy": strategy}, content_type="application/json")
    assert response.status_code == 200 and response.json()["strategy"] == strategy
    env.refresh_from_db()
    windows = pushing(monkeypatch, env, {"1.0.0": 0.01, "2.0.0": 0.01})
    release, rollout = rollout_for(env, v1, v2)
    assert do_advance_rollout(rollout.pk) == "succeeded"
    [(start, end)] = windows
    assert end - start == timedelta(seconds=10)
    run = AnalysisRun.objects.get()
    assert (run.verdict, run.config["interval_seconds"], run.config["count"]) == ("pass", 2, 5)
    step = RolloutStep.objects.get(rollout=rollout, action="analysis")
    assert "(5 measurements, one every 2 s) → pass" in step.output.partition("\n")[0]
