"""The demo's fleet starts coherent with the demo's history: every host runs what production is said to run."""

import json

import pytest
from django.core.management import call_command

from environments.demo import fleet


@pytest.mark.django_db
def test_first_start_seeds_each_host_with_the_version_production_runs(tmp_path, settings):
    settings.DATA_DIR = str(tmp_path)
    call_command("load_demo")
    key, version = fleet._registration_key()
    assert key.startswith("slr_demo_") and version == "1.1.0"  # the demo's production history

    state = fleet.seed_host(tmp_path / "web-1", version)
    assert json.loads(state.read_text()) == {"version": "1.1.0"}  # the service answers as 1.1.0
    agent = json.loads((tmp_path / "web-1" / "agent.json").read_text())
    assert agent["version"] == "1.1.0" and agent["agent_token"] is None  # its first heartbeat says 1.1.0

    (tmp_path / "web-1" / "agent.json").write_text(
        json.dumps({"agent_token": "t", "version": "1.4.0", "job": 7})
    )
    fleet.seed_host(tmp_path / "web-1", version)  # a later start keeps what the host really runs
    assert json.loads((tmp_path / "web-1" / "agent.json").read_text())["version"] == "1.4.0"


@pytest.mark.slow
@pytest.mark.django_db
def test_the_demo_prometheus_scrapes_the_fleet_and_is_the_demos_metric_source(tmp_path, settings):
    """`make run` with a `prometheus` binary: Prometheus scrapes the fleet's `/metrics` (here web-1, the one host
    started), labelled by host, and the demo has a metric source pointing at it."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    from monitoring.models import MetricSource
    from monitoring.prometheus import PrometheusConfig, query
    from tests.live import ROOT, free_port

    binary = shutil.which("prometheus")
    if binary is None:
        if os.geteuid() == 0:
            pytest.fail("prometheus is not installed: `make test` installs it (apt-get install prometheus)")
        pytest.skip("needs Debian's prometheus binary")
    settings.DATA_DIR = str(tmp_path)
    call_command("load_demo")
    first, port = free_port(), free_port()
    state = fleet.seed_host(tmp_path / "web-1", "1.1.0")
    service = subprocess.Popen(
        [sys.executable, "-m", "environments.demo.service", "--port", str(first), "--state-file", str(state)],
        cwd=ROOT,
    )
    prometheus = fleet.start_demo_prometheus(binary, first_port=first, port=port)
    try:
        assert prometheus is not None
        source = MetricSource.objects.get(application__slug="shop", name="prometheus")
        assert (source.kind, source.url) == ("prometheus", f"http://127.0.0.1:{port}")
        config = (tmp_path / "demo-prometheus" / "prometheus.yml").read_text()
        assert f"127.0.0.1:{first + 7}" in config and "instance: web-8" in config
        deadline = time.monotonic() + 30
        while True:
            got = query(
                PrometheusConfig(url=source.url, timeout=1),
                'sum by (instance, environment, version) (shop_requests_total{instance="web-1"})',
            )
            if got.missing is None:
                break
            assert time.monotonic() < deadline, got.missing
            time.sleep(0.5)
        assert got.labels == ({"instance": "web-1", "environment": "production", "version": "1.1.0"},)
        # A later start on another port moves the source with it.
        prometheus.terminate()
        prometheus.wait(10)
        moved = free_port()
        prometheus = fleet.start_demo_prometheus(binary, first_port=first, port=moved)
        assert MetricSource.objects.get(name="prometheus").url == f"http://127.0.0.1:{moved}"
    finally:
        for process in (service, prometheus):
            if process is not None:
                process.terminate()
                process.wait(10)
