"""`make run`'s demo web service, as a process, watched the real way: `/metrics` for Prometheus, its errors sent by
sentry-sdk to a live Slipway (the served envelope route) and its error ratio pushed through the metrics API. A
`…-errors` build fails several times as many checkouts while its `/health` passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import transaction

from monitoring.models import ErrorGroup, Sample
from monitoring.services import create_ingest_key
from releases.permissions import Actor
from releases.services import do_create_api_token
from tests import factories
from tests.live import free_port

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(predicate, timeout: float = 30, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_demo_service_is_watched_and_an_errors_build_fails_more_checkouts(live_slipway, tmp_path):
    app = factories.ApplicationFactory(slug="shop")
    factories.EnvironmentFactory(application=app, name="production")
    pusher = factories.UserFactory(is_superuser=True)
    with transaction.atomic():
        ingest = create_ingest_key(Actor.system(), app)
    _, token = do_create_api_token(Actor.system(), pusher, name="fleet", scopes=["metrics:write"])
    dsn = live_slipway.url.replace("http://", f"http://{ingest.public_key}@") + f"/{app.pk}"
    services = {}
    try:
        for name, version in (("web-1", "1.3.0"), ("web-2", "1.3.1-errors")):
            state = tmp_path / f"{name}.json"
            state.write_text(json.dumps({"version": version}))
            port = free_port()
            services[name] = (
                port,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "environments.demo.service",
                        *("--port", str(port), "--state-file", str(state), "--name", name),
                        *("--rps", "200", "--dsn", dsn, "--push-seconds", "1"),
                        *("--push-url", live_slipway.url + "/api/v1/applications/shop/metrics/"),
                    ],
                    cwd=ROOT,
                    env={**os.environ, "SLIPWAY_PUSH_TOKEN": token},
                ),
            )
        for name, (port, _) in services.items():
            status, body = wait_for(lambda p=port: get(f"http://127.0.0.1:{p}/health"), what=f"{name} up")
            assert (
                status == 200 and json.loads(body)["healthy"] is True
            )  # the errors build passes /health too

        def counts(port: int, version: str) -> tuple[float, float]:
            text = get(f"http://127.0.0.1:{port}/metrics")[1]
            found = {"200": 0.0, "500": 0.0}
            for line in text.splitlines():
                if line.startswith("shop_requests_total{") and f'version="{version}"' in line:
                    found[line.split('status="')[1][:3]] = float(line.rsplit(" ", 1)[1])
            return found["200"], found["500"]

        wait_for(lambda: sum(counts(services["web-2"][0], "1.3.1-errors")) >= 1500, 60, "1,500 checkouts")
        ok, failed = counts(services["web-1"][0], "1.3.0")
        ok_e, failed_e = counts(services["web-2"][0], "1.3.1-errors")
        base, noisy = failed / (ok + failed), failed_e / (ok_e + failed_e)
        assert 0.002 < base < 0.03 and noisy > 3 * base  # 1 % against 6 %, with room for chance

        # sentry-sdk sent them to Slipway: grouped, with the version each was served by and the host
        groups = wait_for(
            lambda: (
                {g.type: g for g in ErrorGroup.objects.all()}
                if ErrorGroup.objects.filter(type="BasketTotalError").exists()
                and ErrorGroup.objects.filter(type="CouponLookupError").exists()
                else None
            ),
            what="both error groups",
        )
        assert groups["BasketTotalError"].first_seen_version == "1.3.1-errors"
        assert groups["BasketTotalError"].events.filter(target="web-2").exists()
        assert groups["CouponLookupError"].environment.name == "production"
        # and the error ratio, once a second per version and host, through the push API
        wait_for(
            lambda: (
                Sample.objects.filter(name="http_error_ratio", version="1.3.1-errors", target="web-2").count()
                >= 2
            ),
            what="pushed samples",
        )
        pushed = Sample.objects.filter(name="http_error_ratio", version="1.3.0", target="web-1").first()
        assert pushed is not None and 0 <= pushed.value < 0.2 and pushed.environment.name == "production"
    finally:
        for _, process in services.values():
            process.terminate()
            process.wait(timeout=10)
