"""Running an analysis (`do_run_analysis`): pushed samples of known truth, sources that fail or hang, storage."""

from __future__ import annotations

import http.server
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitoring.models import AnalysisMeasurement, AnalysisRun, AnalysisTemplate, MetricSource, Sample
from monitoring.services import do_run_analysis
from releases.models import AuditEvent, Release
from tests import factories
from tests.monitoring.test_prometheus import free_port

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
END = START + timedelta(minutes=10)


@pytest.fixture
def production(app):
    return factories.EnvironmentFactory(application=app, name="production")


def error_ratios(rate: float, seed: int, n: int = 60, requests: int = 200) -> np.ndarray:
    """Per-10-second error ratios of a service serving 20 requests a second."""
    return np.random.default_rng(seed).binomial(requests, rate, n) / requests


def push(app, environment, name, version, values, *, target="web-1", labels=None):
    Sample.objects.bulk_create(
        [
            Sample(
                application=app,
                environment=environment,
                name=name,
                value=float(v),
                version=version,
                target=target,
                timestamp=START + timedelta(seconds=10 * i + 5),
                labels=labels or {},
            )
            for i, v in enumerate(values)
        ]
    )


def source(app, name="pushed", **fields):
    return MetricSource.objects.create(
        application=app, name=name, kind=fields.pop("kind", "pushed"), **fields
    )


def template(app, metrics, **fields):
    defaults = {
        "direction": "increase",
        "critical": False,
        "weight": 1.0,
        "unit": "",
        "allowed_increase": 1.0,
        "allowed_decrease": 1.0,
        "success_condition": "",
        "failure_condition": "",
        "failure_limit": 0,
        "inconclusive_limit": 0,
        "consecutive_error_limit": 4,
    }
    return AnalysisTemplate.objects.create(
        application=app,
        name=fields.pop("name", "canary"),
        interval_seconds=10,
        count=60,
        metrics=[{**defaults, **m} for m in metrics],
        **fields,
    )


def run(tpl, environment, **fields):
    return do_run_analysis(
        tpl,
        environment=environment,
        canary_version="1.5.0",
        baseline_version="1.4.0",
        canary_targets=["web-1"],
        baseline_targets=["web-2"],
        started_at=START,
        ended_at=END,
        **fields,
    )


def test_a_five_times_error_rate_fails_naming_the_metric(app, production):
    source(app)
    push(app, production, "error_rate", "1.4.0", error_ratios(0.01, 1), target="web-2")
    push(app, production, "error_rate", "1.5.0", error_ratios(0.05, 2), target="web-1")
    push(
        app, production, "latency_ms", "1.4.0", np.random.default_rng(3).lognormal(4, 0.3, 60), target="web-2"
    )
    push(
        app, production, "latency_ms", "1.5.0", np.random.default_rng(4).lognormal(4, 0.3, 60), target="web-1"
    )
    tpl = template(
        app,
        [
            {"name": "error_rate", "source": "pushed", "query": "error_rate", "unit": "%"},
            {"name": "latency", "source": "pushed", "query": "latency_ms", "unit": "ms"},
        ],
    )
    result = run(tpl, production)
    assert result.verdict == "fail" and result.status == "complete" and result.score == 50
    assert "error_rate" in result.reasons[0] and result.reasons[0].startswith(
        "fail: canary judge: score 50 (1 of 2 metrics pass; failing: error_rate"
    )
    error_rate, latency = result.measurements.order_by("position")
    assert error_rate.outcome == "high" and "too high" in error_rate.reason and latency.outcome == "pass"
    assert error_rate.canary["count"] == 60 and error_rate.baseline["count"] == 60
    assert error_rate.canary["mean"] > 4 * error_rate.baseline["mean"]
    assert (
        len(error_rate.canary_values) == 60
        and error_rate.canary_values[0][0] == (START + timedelta(seconds=5)).timestamp()
    )
    event = AuditEvent.objects.get(kind="analysis_run.completed")
    assert (
        event.after["verdict"] == "fail"
        and event.object_id == str(result.pk)
        and event.actor_label == "system"
    )


def test_identical_versions_pass(app, production):
    source(app)
    push(app, production, "error_rate", "1.4.0", error_ratios(0.01, 5), target="web-2")
    push(app, production, "error_rate", "1.5.0", error_ratios(0.01, 6), target="web-1")
    tpl = template(app, [{"name": "error_rate", "source": "pushed", "query": "error_rate", "unit": "%"}])
    result = run(tpl, production)
    assert (result.verdict, result.score) == ("pass", 100)
    assert result.reasons[0].startswith("pass: canary judge: score 100")


def test_pushed_samples_are_matched_by_labels_targets_and_window(app, production):
    source(app)
    push(app, production, "errors", "1.4.0", error_ratios(0.01, 7), target="web-2", labels={"route": "/cart"})
    push(app, production, "errors", "1.5.0", error_ratios(0.01, 8), target="web-1", labels={"route": "/cart"})
    push(app, production, "errors", "1.5.0", [1.0] * 60, target="web-1", labels={"route": "/other"})
    push(app, production, "errors", "1.5.0", [1.0] * 60, target="web-9", labels={"route": "/cart"})
    tpl = template(app, [{"name": "cart_errors", "source": "pushed", "query": 'errors{route="/cart"}'}])
    result = run(tpl, production)
    assert result.verdict == "pass"
    [measured] = result.measurements.all()
    assert measured.canary["count"] == 60 and measured.canary["max"] < 1


def test_threshold_checks_judge_the_canary_alone(app, production):
    source(app)
    push(app, production, "health_ok", "1.5.0", [1.0] * 8 + [0.0] * 2, target="web-1")
    tpl = template(
        app,
        [
            {
                "name": "health_ok",
                "source": "pushed",
                "query": "health_ok",
                "success_condition": "health_ok == 1",
                "failure_limit": 1,
            }
        ],
    )
    result = do_run_analysis(
        tpl,
        environment=production,
        canary_version="1.5.0",
        baseline_version=None,
        started_at=START,
        ended_at=END,
    )
    assert result.verdict == "fail" and result.score is None
    assert "2 failed measurements, more than the failure limit 1" in result.reasons[0]
    assert result.measurements.get().check_phase == "failed"


@pytest.mark.parametrize(
    ("rule", "verdict"), [("inconclusive", "inconclusive"), ("fail", "fail"), ("pass", "pass")]
)
def test_an_unreachable_source_decides_by_on_missing_data(app, production, rule, verdict):
    url = f"http://127.0.0.1:{free_port()}"
    source(app, "prom", kind="prometheus", url=url, timeout_seconds=2, on_missing_data=rule)
    source(app)
    push(app, production, "error_rate", "1.4.0", error_ratios(0.01, 5), target="web-2")
    push(app, production, "error_rate", "1.5.0", error_ratios(0.01, 6), target="web-1")
    tpl = template(
        app,
        [
            {"name": "error_rate", "source": "pushed", "query": "error_rate"},
            {"name": "latency", "source": "prom", "query": 'latency{version="{{version}}"}'},
        ],
    )
    result = run(tpl, production)
    assert result.verdict == verdict and result.status == "partial"
    said = {"inconclusive": "inconclusive", "fail": "fail", "pass": "ignored"}[rule]
    missing = (
        f"latency: no data (canary: prometheus at {url}: connection refused; baseline: prometheus at {url}: "
        f"connection refused) → {said} (the source's on_missing_data is {rule})"
    )
    assert missing in result.reasons
    latency = result.measurements.get(metric="latency")
    assert latency.outcome == ("ignored" if rule == "pass" else "missing")
    assert (
        latency.canary_query == 'latency{version="1.5.0"}'
        and latency.baseline_query == 'latency{version="1.4.0"}'
    )
    assert (
        latency.canary["missing"] == f"prometheus at {url}: connection refused"
        and latency.canary["count"] == 0
    )


class Sleepy(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        time.sleep(6)

    def log_message(self, *args):
        pass


def test_a_slow_source_cannot_hang_the_run(app, production):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sleepy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        source(app, "prom", kind="prometheus", url=url, timeout_seconds=1, on_missing_data="inconclusive")
        tpl = template(
            app,
            [{"name": f"m{i}", "source": "prom", "query": 'up{version="{{version}}"}'} for i in range(12)],
        )  # 24 queries, 8 at a time: at most 3 timeouts end to end
        began = time.monotonic()
        result = run(tpl, production)
        took = time.monotonic() - began
    finally:
        server.shutdown()
        server.server_close()
    assert took < 4.5
    assert result.verdict == "inconclusive" and result.status == "no_data"
    assert (
        f"m0: no data (canary: prometheus at {url}: timed out after 1 s; baseline: prometheus at {url}: "
        f"timed out after 1 s) → inconclusive (the source's on_missing_data is inconclusive)"
        in result.reasons
    )


def test_runs_are_tied_to_a_release_and_keep_values_capped(app, production):
    source(app)
    artifact = factories.ArtifactFactory(application=app, version="1.5.0")
    release = Release.objects.create(application=app, environment=production, artifact=artifact)
    many = np.random.default_rng(9).normal(10, 1, 3000)
    Sample.objects.bulk_create(
        [
            Sample(
                application=app,
                environment=production,
                name="cpu",
                value=float(v),
                version=version,
                target="",
                timestamp=START + timedelta(milliseconds=150 * i),
            )
            for version in ("1.4.0", "1.5.0")
            for i, v in enumerate(many)
        ]
    )
    tpl = template(app, [{"name": "cpu", "source": "pushed", "query": "cpu"}])
    result = do_run_analysis(
        tpl,
        environment=production,
        canary_version="1.5.0",
        baseline_version="1.4.0",
        started_at=START,
        ended_at=END,
        release=release,
        rollout_id=77,
    )
    assert result.release == release and result.rollout_id == 77 and result.verdict == "pass"
    measured = AnalysisMeasurement.objects.get(run=result)
    assert measured.canary["count"] == 3000 and len(measured.canary_values) == AnalysisMeasurement.MAX_VALUES
    assert measured.canary_values[0][1] == many[0] and measured.canary_values[-1][1] == many[-1]
    assert AnalysisRun.objects.filter(release=release).count() == 1


def test_a_window_must_be_forwards_and_the_environment_the_templates(app, production):
    from config.errors import Invalid

    source(app)
    tpl = template(app, [{"name": "cpu", "source": "pushed", "query": "cpu"}])
    with pytest.raises(Invalid) as refused:
        do_run_analysis(
            tpl,
            environment=production,
            canary_version="1",
            baseline_version="0",
            started_at=END,
            ended_at=START,
        )
    assert refused.value.field == "ended_at"
    elsewhere = factories.EnvironmentFactory(name="production")
    with pytest.raises(Invalid) as refused:
        do_run_analysis(
            tpl,
            environment=elsewhere,
            canary_version="1",
            baseline_version="0",
            started_at=START,
            ended_at=END,
        )
    assert refused.value.field == "environment"
    assert not AnalysisRun.objects.exists()
