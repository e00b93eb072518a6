"""The Prometheus client: escaping (property tests), failures as "no data" with a reason, and a real server."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.prometheus import (
    PrometheusConfig,
    QueryInvalid,
    check_query_template,
    escape_regex,
    query,
    query_range,
    render_query,
)
from tests.live import ROOT

# --------------------------------------------------------------------------- escaping


def go_unquote_prefix(text: str) -> tuple[str, int]:
    """Read a double-quoted PromQL string at the start of `text` the way Prometheus' lexer does (Go escapes; a raw
    newline or U+FFFD is an error): its value and where it ends."""
    assert text[0] == '"'
    out, i = [], 1
    simple = {
        "a": "\a",
        "b": "\b",
        "f": "\f",
        "n": "\n",
        "r": "\r",
        "t": "\t",
        "v": "\v",
        "\\": "\\",
        '"': '"',
    }
    while True:
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char in "\n\ufffd":
            raise ValueError(f"lexer error at {i}")
        if char != "\\":
            out.append(char)
            i += 1
            continue
        kind = text[i + 1]
        if kind in simple:
            out.append(simple[kind])
            i += 2
        elif kind in "uU":
            width = 4 if kind == "u" else 8
            code = int(text[i + 2 : i + 2 + width], 16)
            assert not 0xD800 <= code < 0xE000 and code <= 0x10FFFF
            out.append(chr(code))
            i += 2 + width
        else:
            raise ValueError(f"bad escape \\{kind}")


@given(st.text(max_size=50))
def test_a_version_cannot_leave_its_string(version):
    rendered = render_query(
        'rate(http_errors{version="{{version}}", env="{{environment}}"}[1m])',
        version=version,
        environment="prod",
    )
    assert rendered.startswith('rate(http_errors{version="')
    value, end = go_unquote_prefix(rendered[len("rate(http_errors{version=") :])
    assert value == version
    assert rendered[len("rate(http_errors{version=") :][end:] == ', env="prod"}[1m])'


@given(st.lists(st.text(min_size=1, max_size=20), max_size=5))
def test_targets_become_a_regex_matching_exactly_them(targets):
    rendered = render_query('up{instance=~"{{target}}"}', version="", environment="", targets=targets)
    value, end = go_unquote_prefix(rendered[len("up{instance=~") :])
    assert rendered[len("up{instance=~") :][end:] == "}"
    pattern = re.compile(value, re.DOTALL)  # RE2 and Python agree on these escapes
    for target in targets:
        assert pattern.fullmatch(target)
    if targets:
        assert not pattern.fullmatch("".join(targets) + "x")


def test_no_target_matches_every_series():
    assert render_query('up{instance=~"{{target}}"}', version="", environment="") == 'up{instance=~".*"}'


@given(st.text(max_size=30))
def test_escape_regex_is_literal(text):
    assert re.fullmatch(escape_regex(text), text, re.DOTALL)


def test_the_classic_break_out_stays_a_string():
    assert (
        render_query('up{version="{{version}}"}', version='1.4.0"} or vector(1) #', environment="")
        == 'up{version="1.4.0\\"} or vector(1) #"}'
    )


@pytest.mark.parametrize(
    ("template", "message", "position"),
    [
        ("up{version={{version}}}", "must stand inside double quotes", 11),
        ("up{version='{{version}}'}", "must stand inside double quotes", 12),
        ('up{version="{{release}}"}', "unknown placeholder", 12),
        ('up{version="{{version}}}', "not closed", 11),
        ("", "required", 0),
    ],
)
def test_unsafe_templates_are_refused_with_the_position(template, message, position):
    with pytest.raises(QueryInvalid) as refused:
        check_query_template(template)
    assert message in str(refused.value) and refused.value.position == position


def test_placeholders_in_comments_are_ignored():
    assert check_query_template('up{v="{{version}}"} # not {{target}}') == {"version"}


# --------------------------------------------------------------------------- failures


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_server(handler_body):
    """A throwaway HTTP server on a free port; `handler_body(handler)` answers each request."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            handler_body(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def answer(status, body):
    def respond(handler):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return respond


def fetch(url, timeout=2.0, **auth):
    return query_range(
        PrometheusConfig(url=url, timeout=timeout, **auth),
        "up",
        start=1_700_000_000,
        end=1_700_000_600,
        step=60,
    )


def test_connection_refused_is_no_data_with_the_reason():
    url = f"http://127.0.0.1:{free_port()}"
    got = fetch(url)
    assert got.missing == f"prometheus at {url}: connection refused" and got.values == []


def test_a_slow_server_times_out_in_time():
    def sleepy(handler):
        time.sleep(5)

    with http_server(sleepy) as url:
        began = time.monotonic()
        got = fetch(url, timeout=0.5)
        took = time.monotonic() - began
    assert got.missing == f"prometheus at {url}: timed out after 0.5 s"
    assert took < 1.0


def test_a_trickling_server_cannot_stretch_the_timeout():
    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)

    with http_server(trickle) as url:
        began = time.monotonic()
        got = fetch(url, timeout=0.5)
        assert time.monotonic() - began < 1.0
    assert "timed out after 0.5 s" in got.missing


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (503, b"overloaded", "HTTP 503"),
        (
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"},
            "HTTP 400, status: error (bad_data: parse error at char 3)",
        ),
        (
            200,
            {"status": "error", "errorType": "timeout", "error": "query timed out"},
            "status: error (timeout: query timed out)",
        ),
        (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}, "no series matched"),
        (
            200,
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [{"metric": {}, "values": [[1, "NaN"], [2, "NaN"], [3, "+Inf"]]}],
                },
            },
            "only NaN or infinite values (3)",
        ),
        (200, b"<html>", "the answer is not JSON from Prometheus' API"),
        (
            200,
            {"status": "success", "data": {"resultType": "string", "result": [1, "x"]}},
            "unexpected result type 'string'",
        ),
    ],
)
def test_failures_are_no_data_with_the_reason(status, body, reason):
    with http_server(answer(status, body)) as url:
        got = fetch(url)
    assert got.missing == f"prometheus at {url}: {reason}" and got.points == ()


def test_matrix_vector_and_scalar_are_read_and_nan_dropped():
    matrix = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"instance": "a"}, "values": [[2, "0.5"], [1, "NaN"]]},
                {"metric": {"instance": "b"}, "values": [[1, "1e-3"]]},
            ],
        },
    }
    with http_server(answer(200, matrix)) as url:
        got = fetch(url)
    assert (
        got.missing is None
        and got.points == ((1.0, 0.001), (2.0, 0.5))
        and got.series == 2
        and got.dropped == 1
    )
    vector = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [5, "7"]}]},
    }
    with http_server(answer(200, vector)) as url:
        assert query(PrometheusConfig(url=url), "up").points == ((5.0, 7.0),)
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [5, "3"]}}
    with http_server(answer(200, scalar)) as url:
        assert query(PrometheusConfig(url=url), "up").values == [3.0]


def test_credentials_are_sent_and_never_shown():
    seen = {}

    def record(handler):
        seen["authorization"] = handler.headers.get("Authorization")
        answer(401, b"no")(handler)

    with http_server(record) as url:
        got = fetch(url, bearer_token="s3cret-token")
    assert seen["authorization"] == "Bearer s3cret-token"
    assert "s3cret" not in got.missing and got.missing.endswith("HTTP 401")
    with http_server(record) as url:
        fetch(url, username="ops", password="hunter2")
    assert seen["authorization"].startswith("Basic ")


# --------------------------------------------------------------------------- a real Prometheus


def _prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# The demo fleet's service (environments/demo/service.py), one process per host, each serving its own checkouts;
# `1.3.1-errors` fails six times as many as the others. Prometheus labels each host's series as a real
# deployment's relabelling would: `instance` is the target's name, `environment` its environment.
DEMO_HOSTS = {"web-1": "1.3.1", "web-2": "1.3.0", "web-3": "1.3.1-errors"}
DEMO_RPS = 100  # checkouts a second per host: about 10 errors in 10 s at 1 %, enough to tell 1 % from 6 %


@dataclass(frozen=True)
class RealPrometheus:
    url: str
    scraped_since: float  # the first scrape of every host (epoch seconds)

    def wait_for_history(self, seconds: float) -> None:
        """Sleep until the services have been scraped for `seconds`."""
        time.sleep(max(0.0, self.scraped_since + seconds - time.time()))


@contextmanager
def demo_services(tmp: str):
    """The real demo service on a free port per host; yields {host: port}."""
    ports, processes = {}, []
    try:
        for host, version in DEMO_HOSTS.items():
            state = Path(tmp, f"{host}.json")
            state.write_text(json.dumps({"version": version}))
            ports[host] = free_port()
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "environments.demo.service",
                        f"--port={ports[host]}",
                        f"--state-file={state}",
                        f"--name={host}",
                        f"--rps={DEMO_RPS}",
                    ],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield ports
    finally:
        for process in processes:
            _stop(process)


@pytest.fixture(scope="module")
def real_prometheus():
    """Debian's Prometheus on a free port, scraping the demo service (three hosts, three versions) every second."""
    binary = _prometheus_binary()
    if binary is None:
        if os.geteuid() == 0:
            pytest.fail("prometheus is not installed: `make test` installs it (apt-get install prometheus)")
        pytest.skip(
            "needs Debian's prometheus binary (apt-get install prometheus; `make test` does it as root)"
        )
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="slipway-prometheus-") as tmp, demo_services(tmp) as ports:
        scrape = "".join(
            f"      - targets: ['127.0.0.1:{ports[host]}']\n"
            f"        labels: {{instance: {host}, environment: production}}\n"
            for host in DEMO_HOSTS
        )
        config = Path(tmp, "prometheus.yml")
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: shop\n    static_configs:\n{scrape}"
        )
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:  # wait until every host's checkouts are in
                got = query(
                    PrometheusConfig(url=url, timeout=1),
                    'count by (instance) (shop_requests_total{status="200"})',
                )
                if got.missing is None and got.series == len(DEMO_HOSTS):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"Prometheus did not scrape the demo services in 30 s: {got.missing}; "
                        f"{process.stderr.read().decode()[-2000:] if process.poll() is not None else ''}"
                    )
                time.sleep(0.3)
            yield RealPrometheus(url=url, scraped_since=time.time())
        finally:
            _stop(process)


@pytest.mark.slow
def test_real_prometheus_query_range_per_version(real_prometheus):
    real_prometheus.wait_for_history(5)
    now = time.time()
    config = PrometheusConfig(url=real_prometheus.url, timeout=5)
    template = (
        'sum(shop_requests_total{version="{{version}}", environment="{{environment}}", job="shop", '
        'instance=~"{{target}}"})'
    )

    def served(version, *targets):
        rendered = render_query(template, version=version, environment="production", targets=targets)
        return query_range(config, rendered, start=now - 30, end=now, step=1)

    canary, baseline = served("1.3.1", "web-1"), served("1.3.0")
    assert canary.missing is None and baseline.missing is None
    assert len(canary.values) >= 2 and canary.values == sorted(canary.values) and canary.values[-1] > 0
    assert baseline.series == 1 and baseline.values[-1] > 0
    elsewhere = served("1.3.1", "web-2")  # web-2 runs 1.3.0
    assert elsewhere.missing == f"prometheus at {real_prometheus.url}: no series matched"
    gone = served("9.9.9")
    assert gone.missing == f"prometheus at {real_prometheus.url}: no series matched"
    broken = query(config, "sum(")
    assert broken.missing.startswith(
        f"prometheus at {real_prometheus.url}: HTTP 400, status: error (bad_data:"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "version",
    [
        '1.4.0"} or vector(1) #',
        "tab\there",
        "new\nline",
        "back\\slash\\",
        "ünï \u2028 \ufffd 🚀",
        "{{version}}",
        "'",
    ],
)
def test_real_prometheus_reads_escaped_values_back(real_prometheus, version):
    promql = render_query(
        'label_replace(vector(1), "v", "{{version}}", "", "")', version=version, environment=""
    )
    got = query(PrometheusConfig(url=real_prometheus.url, timeout=5), promql)
    assert got.missing is None and got.labels == ({"v": version},)


# --------------------------------------------------------------------------- an analysis on real scraped data

ERROR_RATIO = (
    'sum(rate(shop_requests_total{status="500", version="{{version}}", environment="{{environment}}", '
    'instance=~"{{target}}"}[10s])) / sum(rate(shop_requests_total{version="{{version}}", '
    'environment="{{environment}}", instance=~"{{target}}"}[10s]))'
)


@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("canary", "host", "verdict"), [("1.3.1", "web-1", "pass"), ("1.3.1-errors", "web-3", "fail")]
)
def test_an_analysis_judges_the_demo_service_through_a_real_prometheus(
    real_prometheus, app, canary, host, verdict
):
    """`do_run_analysis` reads what Prometheus scraped from the demo service: a healthy canary passes against 1.3.0
    on web-2, `1.3.1-errors` (6 % of checkouts failing, its health check green) fails."""
    from django.utils import timezone

    from monitoring.analysis import METRIC_DEFAULTS
    from monitoring.models import AnalysisTemplate, MetricSource
    from monitoring.services import do_run_analysis
    from tests import factories

    production = factories.EnvironmentFactory(application=app, name="production")
    MetricSource.objects.create(
        application=app, name="prom", kind="prometheus", url=real_prometheus.url, timeout_seconds=5
    )
    template = AnalysisTemplate.objects.create(
        application=app,
        name="checkout",
        interval_seconds=1,
        count=20,
        metrics=[
            {
                **METRIC_DEFAULTS,
                "name": "error_rate",
                "source": "prom",
                "query": ERROR_RATIO,
                "direction": "increase",
                "critical": True,
                "unit": "%",
                "allowed_increase": 2.0,  # two hosts' 1 % differ by chance over 20 s; 6 % does not
            }
        ],
    )
    real_prometheus.wait_for_history(32)  # 20 s judged, each value over the 10 s before it
    ended_at = timezone.now()
    run = do_run_analysis(
        template,
        environment=production,
        canary_version=canary,
        baseline_version="1.3.0",
        canary_targets=[host],
        baseline_targets=["web-2"],
        started_at=ended_at - timedelta(seconds=20),
        ended_at=ended_at,
    )
    measurement = run.measurements.get()
    assert (run.status, run.verdict) == ("complete", verdict), run.reasons
    assert measurement.canary_query == render_query(
        ERROR_RATIO, version=canary, environment="production", targets=[host]
    )
    assert measurement.canary["count"] >= 10 and measurement.baseline["count"] >= 10
    assert measurement.outcome == ("pass" if verdict == "pass" else "high")
    assert 0.002 < measurement.baseline["mean"] < 0.03  # the demo's 1 %
    if verdict == "fail":
        assert measurement.canary["mean"] > 0.03  # its 6 %
        assert run.reasons[0].startswith("fail: canary judge: critical metric error_rate failed")


def test_a_hanging_source_costs_a_run_one_timeout_per_eight_queries():
    """docs/monitoring.md, "How long a run takes": 9 metrics × canary and baseline = 18 queries, eight at a time,
    each waiting its full timeout on a source that never answers: ⌈18 / 8⌉ = 3 timeouts, not one."""
    from monitoring.analysis import Side, Window, fetch_all
    from monitoring.models import MetricSource

    def hang(handler):
        time.sleep(3)

    with http_server(hang) as url:
        source = MetricSource(name="prom", kind="prometheus", url=url, timeout_seconds=0.4)
        metrics = [{"name": f"m{i}", "source": "prom", "query": "up"} for i in range(9)]
        sides = {"canary": Side(version="2.0.0"), "baseline": Side(version="1.0.0")}
        start = datetime.fromtimestamp(1_700_000_000, UTC)
        window = Window(
            application_id=1, environment_id=1, environment="production", start=start, end=start, step=60
        )
        began = time.monotonic()
        fetched = fetch_all(metrics, {"prom": source}, sides, window)
        took = time.monotonic() - began
    assert all("timed out after 0.4 s" in f.missing for got in fetched for f in got.values())
    assert 3 * 0.4 <= took < 3 * 0.4 + 0.7, took  # three rounds, the last ending with its timeout
