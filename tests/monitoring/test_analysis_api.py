"""The analysis API: metric sources (secrets never echoed), templates (checked whole, 400 naming the field), runs."""

from __future__ import annotations

import pytest

from monitoring.models import AnalysisTemplate, MetricSource
from releases.models import AuditEvent
from tests import factories
from tests.conftest import token_client
from tests.monitoring.test_analysis import END, START, error_ratios, push

SOURCES = "/api/v1/applications/shop/metric-sources/"
TEMPLATES = "/api/v1/applications/shop/analysis-templates/"
RUNS = "/api/v1/applications/shop/analysis-runs/"


@pytest.fixture
def writer(user, app):
    return token_client(user, "releases:read", "releases:write")


@pytest.fixture
def prom(app):
    return MetricSource.objects.create(
        application=app, name="prom", kind="prometheus", url="http://prom:9090"
    )


def metric(**fields):
    return {
        "name": "error_rate",
        "source": "prom",
        "query": 'sum(rate(http_errors{version="{{version}}"}[1m])) / sum(rate(http_requests{version="{{version}}"}[1m]))',
        "direction": "increase",
        **fields,
    }


def body(**fields):
    return {"name": "canary", "metrics": [metric()], **fields}


def test_a_source_keeps_its_secret_to_itself(writer):
    response = writer.post(
        SOURCES,
        {
            "name": "prom",
            "kind": "prometheus",
            "url": "https://prom.example:9090/",
            "auth": "bearer",
            "secret": "tok-123456",
            "timeout_seconds": 2,
            "on_missing_data": "fail",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["has_secret"] is True and "tok-123456" not in response.content.decode()
    assert "tok-123456" not in writer.get(SOURCES + "prom/").content.decode()
    patched = writer.patch(SOURCES + "prom/", {"timeout_seconds": 3}, format="json")
    assert patched.status_code == 200 and patched.json()["has_secret"] is True
    assert MetricSource.objects.get().secret == "tok-123456"  # kept when not given
    writer.patch(SOURCES + "prom/", {"secret": "tok-654321"}, format="json")
    events = AuditEvent.objects.filter(kind__startswith="metric_source.").order_by("id")
    assert [e.kind for e in events] == [
        "metric_source.created",
        "metric_source.updated",
        "metric_source.updated",
    ]
    assert all("tok-" not in str(e.before) + str(e.after) for e in events)
    assert events.last().after["secret_changed"] is True


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "prometheus", "url": "ftp://x"}, "url"),
        ({"kind": "prometheus", "url": "http://ops:pw@prom:9090"}, "url"),
        ({"kind": "prometheus", "url": "http://prom", "auth": "bearer"}, "secret"),
        ({"kind": "prometheus", "url": "http://prom", "timeout_seconds": 600}, "timeout_seconds"),
        ({"kind": "prometheus", "url": "http://prom", "on_missing_data": "shrug"}, "on_missing_data"),
        ({"kind": "pushed", "url": "http://prom"}, "url"),
        ({"kind": "graphite"}, "kind"),
        ({"kind": "pushed", "colour": "red"}, "colour"),
    ],
)
def test_bad_sources_are_400_naming_the_field(writer, fields, field):
    response = writer.post(SOURCES, {"name": "s", **fields}, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not MetricSource.objects.exists()


def test_a_template_round_trips_with_defaults(writer, prom):
    response = writer.post(TEMPLATES, body(), format="json")
    assert response.status_code == 201, response.json()
    saved = response.json()
    assert (
        saved["interval_seconds"],
        saved["count"],
        saved["pass_threshold"],
        saved["marginal_threshold"],
    ) == (60, 10, 95.0, 75.0)
    assert saved["metrics"][0]["weight"] == 1.0 and saved["metrics"][0]["critical"] is False
    assert writer.get(TEMPLATES).json()["results"][0]["name"] == "canary"
    patched = writer.patch(
        TEMPLATES + "canary/", {"pass_threshold": 90, "marginal_threshold": 60}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["pass_threshold"] == 90
    assert patched.json()["metrics"] == saved["metrics"]
    assert writer.post(TEMPLATES, body(), format="json").status_code == 409
    assert writer.delete(TEMPLATES + "canary/").status_code == 204
    assert [
        e.kind for e in AuditEvent.objects.filter(kind__startswith="analysis_template.").order_by("id")
    ] == ["analysis_template.created", "analysis_template.updated", "analysis_template.deleted"]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        (
            {"metrics": [metric(), metric(name="b"), metric(name="c", success_condition="c = 0.01")]},
            "metrics[2].success_condition",
            "unexpected character '=': compare with `==` at position 3",
        ),
        (
            {"metrics": [metric(failure_condition="error_rate >")]},
            "metrics[0].failure_condition",
            "position 13",
        ),
        ({"metrics": [metric(success_condition="latency < 3")]}, "metrics[0].success_condition", "'latency'"),
        ({"metrics": [metric(query="up{version={{version}}}")]}, "metrics[0].query", "inside double quotes"),
        ({"metrics": [metric(source="graphite")]}, "metrics[0].source", "this application has: prom"),
        ({"metrics": [metric(), metric()]}, "metrics[1].name", "Another metric"),
        ({"metrics": [metric(direction="sideways")]}, "metrics[0].direction", "increase"),
        ({"metrics": [metric(weight=-1)]}, "metrics[0].weight", "From 0"),
        ({"metrics": [metric(critical="yes")]}, "metrics[0].critical", "true or false"),
        ({"metrics": [metric(colour="red")]}, "metrics[0].colour", "Unknown field"),
        ({"metrics": [metric(name="result")]}, "metrics[0].name", "not one of"),
        ({"metrics": []}, "metrics", "at least one"),
        ({"metrics": [metric(name=f"m{i}") for i in range(51)]}, "metrics", "At most 50"),
        ({"marginal_threshold": 99}, "marginal_threshold", "At most pass_threshold"),
        ({"interval_seconds": 0}, "interval_seconds", "From 1"),
        ({"count": 1000, "interval_seconds": 3600}, "count", "24 hours"),
        ({"name": "Not A Slug"}, "name", "lowercase"),
    ],
)
def test_bad_templates_are_400_naming_the_field(writer, prom, fields, field, words):
    response = writer.post(TEMPLATES, body(**fields), format="json")
    assert response.status_code == 400
    assert field in response.json() and words in response.json()[field][0], response.json()
    assert not AnalysisTemplate.objects.exists()


def test_a_condition_error_carries_the_position(writer, prom):
    response = writer.post(
        TEMPLATES, body(metrics=[metric(success_condition="error_rate < 0.01 &")]), format="json"
    )
    assert response.json()["position"] == 19
    response = writer.post(TEMPLATES, body(metrics=[metric(query='up{v="{{nope}}"}')]), format="json")
    assert response.json()["position"] == 7


def test_pushed_queries_are_sample_selectors(writer, app):
    MetricSource.objects.create(application=app, name="pushed", kind="pushed")
    ok = writer.post(
        TEMPLATES, body(metrics=[metric(source="pushed", query='http_errors{route="/cart"}')]), format="json"
    )
    assert ok.status_code == 201, ok.json()
    bad = writer.post(
        TEMPLATES,
        body(name="x", metrics=[metric(source="pushed", query='http_errors{version="1"}')]),
        format="json",
    )
    assert bad.status_code == 400 and "set by the run" in bad.json()["metrics[0].query"][0]


def test_a_source_in_use_is_not_deleted(writer, prom):
    writer.post(TEMPLATES, body(), format="json")
    response = writer.delete(SOURCES + "prom/")
    assert response.status_code == 409 and response.json()["templates"] == ["canary"]


def test_changing_needs_releases_write_and_a_release_manager(user, app, prom):
    assert token_client(user, "releases:read").post(TEMPLATES, body(), format="json").status_code == 403
    developer = factories.UserFactory()
    factories.MembershipFactory(user=developer, application=app, role="developer")
    refused = token_client(developer, "releases:read", "releases:write").post(
        TEMPLATES, body(), format="json"
    )
    assert refused.status_code == 403 and "admin or release manager" in refused.json()["detail"]
    assert token_client(developer, "releases:read").get(TEMPLATES).status_code == 200
    manager = factories.UserFactory()
    factories.MembershipFactory(user=manager, application=app, role="release_manager")
    assert token_client(manager, "releases:write").post(TEMPLATES, body(), format="json").status_code == 201


def test_runs_are_listed_by_release_with_measurements(writer, user, app, django_assert_num_queries):
    from monitoring.services import do_run_analysis
    from releases.models import Release

    production = factories.EnvironmentFactory(application=app, name="production")
    MetricSource.objects.create(application=app, name="pushed", kind="pushed")
    push(app, production, "error_rate", "1.4.0", error_ratios(0.01, 1), target="web-2")
    push(app, production, "error_rate", "1.5.0", error_ratios(0.05, 2), target="web-1")
    writer.post(TEMPLATES, body(metrics=[metric(source="pushed", query="error_rate")]), format="json")
    template = AnalysisTemplate.objects.get()
    release = Release.objects.create(
        application=app,
        environment=production,
        artifact=factories.ArtifactFactory(application=app, version="1.5.0"),
    )
    for tied in (release, None):
        do_run_analysis(
            template,
            environment=production,
            canary_version="1.5.0",
            baseline_version="1.4.0",
            started_at=START,
            ended_at=END,
            release=tied,
        )
    reader = token_client(user, "releases:read")
    with django_assert_num_queries(7):  # token (+ last use), application, roles, count, runs, measurements
        page = reader.get(f"{RUNS}?release={release.pk}").json()
    assert page["count"] == 1
    [listed] = page["results"]
    assert listed["verdict"] == "fail" and listed["release"] == release.pk and listed["template"] == "canary"
    assert listed["measurements"][0]["outcome"] == "high" and "canary_values" not in listed["measurements"][0]
    detail = reader.get(f"{RUNS}{listed['id']}/").json()
    assert len(detail["measurements"][0]["canary_values"]) == 60 and detail["config"]["name"] == "canary"
    assert reader.get(f"{RUNS}?release=abc").status_code == 400
    assert reader.get(f"{RUNS}999999/").status_code == 404
    assert reader.get(RUNS).json()["count"] == 2


def test_the_documented_template_is_accepted(writer, app, prom):
    import json
    import re
    from pathlib import Path

    MetricSource.objects.create(application=app, name="pushed", kind="pushed")
    docs = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
    section = docs.read_text().split("## Writing an analysis template", 1)[1]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))
    response = writer.post(TEMPLATES, example, format="json")
    assert response.status_code == 201, response.json()
    assert [m["name"] for m in response.json()["metrics"]] == [
        "error_rate",
        "latency_p95",
        "throughput",
        "health_ok",
        "health_latency",
    ]


def test_analysis_errors_carry_stable_codes(writer, prom):
    """Each refusal names its condition: clients need not parse the sentence."""
    again = writer.post(SOURCES, {"name": "prom", "kind": "prometheus", "url": "http://p"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "metric_source_exists"
    assert writer.post(TEMPLATES, body(), format="json").status_code == 201
    twice = writer.post(TEMPLATES, body(), format="json")
    assert twice.status_code == 409 and twice.json()["code"] == "analysis_template_exists"
    used = writer.delete(SOURCES + "prom/")
    assert used.status_code == 409 and used.json()["code"] == "metric_source_in_use"
    assert writer.get(SOURCES + "nope/").json()["code"] == "metric_source_not_found"
    assert writer.get(TEMPLATES + "nope/").json()["code"] == "analysis_template_not_found"
    assert writer.get(f"{RUNS}999999/").json()["code"] == "analysis_run_not_found"
    assert writer.get("/api/v1/applications/nope/metric-sources/").json()["code"] == "application_not_found"


def documented(heading: str) -> tuple[str, list[str]]:
    """The section of docs/monitoring.md under `## heading`: its first JSON block and its plain code blocks."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
    section = docs.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    return next(code for kind, code in fenced if kind == "json"), [code for kind, code in fenced if not kind]


def test_the_documented_threshold_check_is_accepted_and_runs(writer, app):
    """docs/monitoring.md's threshold-check template is saved as written, and judges pushed samples: 2 of 10
    measurements at or above 5 % is more than its failure limit 1. Its example conditions are accepted on its
    metric; one reading another metric is refused naming the condition, as the docs say."""
    import json

    from monitoring.models import AnalysisRun
    from monitoring.services import do_run_analysis

    example, blocks = documented("Threshold checks")
    MetricSource.objects.create(application=app, name="pushed", kind="pushed")
    response = writer.post(TEMPLATES, json.loads(example), format="json")
    assert response.status_code == 201, response.json()
    template = AnalysisTemplate.objects.get(name="errors")
    production = factories.EnvironmentFactory(application=app, name="production")
    push(app, production, "http_error_ratio", "1.5.0", [0.002] * 8 + [0.06, 0.07])
    run = do_run_analysis(
        template,
        environment=production,
        canary_version="1.5.0",
        baseline_version=None,
        started_at=START,
        ended_at=END,
    )
    assert run.verdict == AnalysisRun.Verdict.FAIL
    assert (
        "error_rate: 2 failed measurements, more than the failure limit 1 → failed; last: error_rate = 0.07: "
        "`error_rate >= 0.05` holds → failed"
    ) in run.reasons[1]
    push(app, production, "http_error_ratio", "1.6.0", [0.002] * 9 + [0.06])
    passed = do_run_analysis(
        template,
        environment=production,
        canary_version="1.6.0",
        baseline_version=None,
        started_at=START,
        ended_at=END,
    )
    assert passed.verdict == AnalysisRun.Verdict.PASS, passed.reasons

    conditions = [line for line in blocks[1].splitlines() if line]
    assert conditions[0] == "error_rate < 0.01" and len(conditions) == 4
    metric = json.loads(example)["metrics"][0]
    for n, condition in enumerate(conditions):
        candidate = {"name": f"c{n}", "metrics": [{**metric, "success_condition": condition}]}
        assert writer.post(TEMPLATES, candidate, format="json").status_code == 201, condition
    refused = writer.post(
        TEMPLATES,
        {"name": "across", "metrics": [{**metric, "success_condition": "error_rate / requests < 0.01"}]},
        format="json",
    )
    assert refused.status_code == 400 and refused.json()["field"] == "metrics[0].success_condition"
    assert "Reads 'requests', which this metric does not measure" in refused.json()["detail"]
    mistake = writer.post(
        TEMPLATES,
        {"name": "typo", "metrics": [{**metric, "success_condition": "error_rate = 0.01"}]},
        format="json",
    ).json()
    shown = json.loads(blocks[2].strip().replace(", …}", "}"))
    assert {k: mistake[k] for k in shown} == shown
