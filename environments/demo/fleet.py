"""`make run`'s demo fleet: eight demo web services on 127.0.0.1:9101–9108, each managed by a real deploy agent
registered as a target of the demo `shop` production environment. Stopping Slipway stops the fleet.

The services are watched as real ones would be: each reports its errors with `sentry-sdk` to Slipway (the
application's DSN), pushes its error ratio every 5 s (a `metrics:write` token of the demo user `shop-fleet`, kept in
the data directory) and answers `/metrics`: with a `prometheus` binary on the machine, the server starts one scraping
them (`start_demo_prometheus`), the demo's metric source `prometheus`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)
SIZE = 8
# SLIPWAY_DEMO_FLEET_FIRST_PORT: another port range, beside a demo already running
FIRST_PORT = int(os.environ.get("SLIPWAY_DEMO_FLEET_FIRST_PORT", 9101))
# The demo's Prometheus (when a `prometheus` binary is on the machine): not 9090, which Debian's own service takes.
PROMETHEUS_PORT = int(os.environ.get("SLIPWAY_DEMO_PROMETHEUS_PORT", 9190))


def _registration_key() -> tuple[str, str] | None:
    """The demo's registration token, kept (as a key file) in the data directory, and the version the demo's
    production runs; None without the demo."""
    from environments.models import Environment, RegistrationToken
    from releases.models import ApiToken

    environment = (
        Environment.objects.filter(application__slug="shop", name="production")
        .select_related("current_artifact")
        .first()
    )
    if environment is None:
        return None
    key_file = Path(settings.DATA_DIR) / "demo-registration-token"
    if not key_file.exists():
        key_file.write_text("slr_demo_" + hashlib.sha256(os.urandom(32)).hexdigest()[:32])
        key_file.chmod(0o600)
    key = key_file.read_text().strip()
    with transaction.atomic():
        RegistrationToken.objects.get_or_create(environment=environment, token_hash=ApiToken.hash_key(key))
    return key, environment.current_artifact.version if environment.current_artifact else ""


def seed_host(workdir: Path, version: str) -> Path:
    """A demo host's first start: its service and its agent both run `version`, the one the demo's history says
    production runs, so the pages agree from the first heartbeat ("production runs 1.1.0" on every host, not
    "nothing yet"). Later starts keep what the hosts really run."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / "state.json"
    if not state.exists():
        state.write_text(json.dumps({"version": version}))
    agent = workdir / "agent.json"
    if not agent.exists() and version:
        agent.write_text(json.dumps({"agent_token": None, "version": version, "job": None}))
    return state


def _monitoring_args(port: int) -> tuple[list[str], dict[str, str]]:
    """The services' --dsn and --push-url options, and their environment: the token (out of `ps`'s sight)."""
    from django.contrib.auth import get_user_model

    from environments.models import Environment
    from monitoring.selectors import active_ingest_key
    from releases.models import ApiToken, Membership, Role
    from releases.permissions import Actor
    from releases.services import do_create_api_token, do_grant_role

    environment = (
        Environment.objects.select_related("application")
        .filter(application__slug="shop", name="production")
        .first()
    )
    if environment is None:
        return [], {}
    app = environment.application
    args = []
    if (ingest := active_ingest_key(app)) is not None:
        args += ["--dsn", f"http://{ingest.public_key}@127.0.0.1:{port}/{app.pk}"]
    key_file = Path(settings.DATA_DIR) / "demo-metrics-token"
    key = key_file.read_text().strip() if key_file.exists() else ""
    if (
        not key
        or not ApiToken.objects.filter(key_hash=ApiToken.hash_key(key), revoked_at__isnull=True).exists()
    ):
        user, created = get_user_model().objects.get_or_create(username="shop-fleet")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        if not Membership.objects.filter(user=user, application=app).exists():
            do_grant_role(Actor.system(), app, user, Role.DEVELOPER)
        _, key = do_create_api_token(
            Actor.system(), user, name="demo fleet metrics", scopes=["metrics:write"], environment=environment
        )
        key_file.write_text(key)
        key_file.chmod(0o600)
    args += ["--push-url", f"http://127.0.0.1:{port}/api/v1/applications/{app.slug}/metrics/"]
    return args, {"SLIPWAY_PUSH_TOKEN": key}


def _die_with_parent() -> None:
    """In each fleet process (Linux): get SIGTERM when the server dies, even by SIGKILL, so no agent outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the server's signal handlers stop the fleet


def prometheus_config(first_port: int, size: int) -> str:
    """Scrape each demo host every 5 s, labelled as a real deployment's relabelling would: `instance` is the
    target's name (what `{{target}}` matches), `environment` its environment."""
    hosts = "".join(
        f"      - targets: ['127.0.0.1:{first_port + n - 1}']\n"
        f"        labels: {{instance: web-{n}, environment: production}}\n"
        for n in range(1, size + 1)
    )
    return (
        "# Written by Slipway's demo (environments/demo/fleet.py) at each start.\n"
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        f"scrape_configs:\n  - job_name: shop\n    static_configs:\n{hosts}"
    )


def start_demo_prometheus(
    binary: str | None = None, *, first_port: int = FIRST_PORT, port: int = PROMETHEUS_PORT
) -> subprocess.Popen | None:
    """Prometheus scraping the demo fleet, its config and data in the data directory, and the demo's metric source
    `prometheus` pointing at it; None (and nothing started) without a `prometheus` binary or without the demo."""
    from environments.models import Environment
    from monitoring.models import MetricSource
    from monitoring.services import do_create_metric_source, do_update_metric_source
    from releases.permissions import Actor

    binary = binary or shutil.which("prometheus")
    environment = (
        Environment.objects.select_related("application")
        .filter(application__slug="shop", name="production")
        .first()
    )
    if binary is None or environment is None or os.environ.get("SLIPWAY_DEMO_PROMETHEUS", "1") == "0":
        return None
    root = Path(settings.DATA_DIR) / "demo-prometheus"
    root.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text(prometheus_config(first_port, SIZE))
    log_file = (root / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    url = f"http://127.0.0.1:{port}"
    source = MetricSource.objects.filter(application=environment.application, name="prometheus").first()
    fields = {"name": "prometheus", "kind": "prometheus", "url": url, "on_missing_data": "inconclusive"}
    if source is None:
        do_create_metric_source(Actor.system(), environment.application, fields)
    elif source.url != url:
        do_update_metric_source(Actor.system(), source, fields)
    print(f"Demo Prometheus: {url}/ scraping the demo fleet (metric source 'prometheus')", flush=True)
    return process


def start_demo_fleet(*, port: int) -> Callable[[], None]:
    if os.environ.get("SLIPWAY_DEMO_FLEET", "1") == "0":
        return lambda: None
    found = _registration_key()
    if found is None:
        return lambda: None
    key, version = found
    watched, watched_env = _monitoring_args(port)
    root = Path(settings.DATA_DIR) / "demo-fleet"
    base = Path(__file__).resolve().parents[2]
    processes: list[subprocess.Popen] = []
    for n in range(1, SIZE + 1):
        name, host_port = f"web-{n}", FIRST_PORT + n - 1
        workdir = root / name
        state = seed_host(workdir, version)
        log_file = (workdir / "fleet.log").open("ab")
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "environments.demo.service",
                    "--port",
                    str(host_port),
                    "--state-file",
                    str(state),
                    "--name",
                    name,
                    *watched,
                ],
                cwd=base,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **watched_env},
                preexec_fn=_die_with_parent,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "environments.agent",
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--registration-token",
                    key,
                    "--name",
                    name,
                    "--workdir",
                    str(workdir),
                    "--deploy-command",
                    f"{sys.executable} -m environments.demo.deploy --state-file {state}",
                    "--health-url",
                    f"http://127.0.0.1:{host_port}/health",
                    "--health-timeout",
                    "3",
                    "--heartbeat-seconds",
                    "2",
                    "--poll-wait",
                    "10",
                ],
                cwd=base,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(base)},
                preexec_fn=_die_with_parent,
            )
        )
    print(
        f"Demo fleet: {SIZE} agents managing demo web services on 127.0.0.1:{FIRST_PORT}–{FIRST_PORT + SIZE - 1}",
        flush=True,
    )
    if (prometheus := start_demo_prometheus()) is not None:
        processes.append(prometheus)

    def stop() -> None:
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + 5  # for the whole fleet, not each process
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    return stop
