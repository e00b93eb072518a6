"""Monitoring ingestion over HTTP on PostgreSQL (uvicorn; one process, as `manage.py serve` runs it:
BENCH_INGEST_WORKERS=2 for two, whose error writers then contend for the same hot group rows).

- `monitoring.envelope_events_per_s`: Sentry envelopes (one event each, 10 distinct errors, ~2 KB with frames)
  sent by wrk at concurrency 32 to `/api/<id>/envelope/`; every answer 200 and every event counted in its group.
  Baseline, same run: the naive write, one transaction per event through the ORM (lock or create the group, add
  to its count, insert the event), in one process.
- `monitoring.samples_per_s`: samples pushed to `/api/v1/applications/<app>/metrics/` in batches of 5,000 by 2
  concurrent clients, each batch stored all or none. Baseline, same run: `Sample.objects.bulk_create` of the same rows in one process.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _server import start_uvicorn  # bench/ is the scripts' directory

ROOT = Path(__file__).resolve().parent.parent
DB = "slipway_bench_ingest"
PORT = 8766
DURATION = 10
SAMPLE_BATCH = 5_000
SAMPLE_BATCHES = 40  # 200,000 samples
BASELINE_EVENTS = 2_000

SEED = """
from environments.models import Environment
from monitoring.selectors import active_ingest_key

from releases.permissions import Actor
from releases.services import do_create_api_token, do_create_application
from django.contrib.auth import get_user_model
user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
app = do_create_application(Actor.system(), slug="bench", name="Bench")
Environment.objects.create(application=app, name="production", position=1)
_, token = do_create_api_token(Actor.system(), user, name="bench", scopes=["metrics:write"])
print(app.pk, active_ingest_key(app).public_key, token)
"""

LUA = r"""
local bodies = {}
local key = os.getenv("SENTRY_KEY")
local path = os.getenv("ENVELOPE_PATH")
init = function(args)
  for i = 1, 10 do
    local frames = {}
    for f = 1, 12 do
      frames[f] = '{"filename":"shop/module' .. f .. '.py","module":"shop.module' .. f .. '","function":"step' .. f ..
        '","lineno":' .. (f * 7) .. ',"in_app":true,"context_line":"    result = handle(request, order_id)"}'
    end
    local event = '{"level":"error","platform":"python","release":"bench@1.4.0","environment":"production",' ..
      '"server_name":"web-' .. i .. '","timestamp":"2026-05-01T10:00:00Z","exception":{"values":[{"type":"Error' .. i ..
      '","value":"order 4711 failed for user 42","stacktrace":{"frames":[' .. table.concat(frames, ",") .. ']}}]}}'
    bodies[i] = '{"sent_at":"2026-05-01T10:00:00Z"}\n{"type":"event","content_type":"application/json","length":' ..
      #event .. '}\n' .. event .. '\n'
  end
end
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", path, {["Content-Type"] = "application/x-sentry-envelope",
    ["X-Sentry-Auth"] = "Sentry sentry_key=" .. key .. ", sentry_version=7"}, bodies[(counter % 10) + 1])
end
"""

BASELINE = """
import time, uuid
from django.db import transaction
from django.utils import timezone
from monitoring.models import ErrorEvent, ErrorGroup, Sample
from releases.models import Application
from environments.models import Environment
app = Application.objects.get(slug="bench"); env = Environment.objects.get(application=app)
mode = "%s"; n = %d
if mode == "events":
    started = time.perf_counter()
    for i in range(n):
        with transaction.atomic():
            now = timezone.now()
            group, _ = ErrorGroup.objects.select_for_update().get_or_create(
                application=app, environment=env, fingerprint="baseline%%d" %% (i %% 10),
                defaults={"type": "E", "title": "E", "first_seen": now, "last_seen": now})
            group.count += 1; group.last_seen = now; group.save(update_fields=["count", "last_seen"])
            ErrorEvent.objects.create(group=group, event_id=uuid.uuid4().hex, version="1.4.0", target="web-1",
                                      message="order 4711 failed", stacktrace="x" * 900, timestamp=now, received_at=now)
    print(n / (time.perf_counter() - started))
else:
    now = timezone.now()
    rows = [Sample(application=app, environment=env, name="http_errors", value=i, timestamp=now, version="1.4.0",
                   target="web-%%d" %% (i %% 3), labels={"route": "/cart"}) for i in range(n)]
    started = time.perf_counter()
    with transaction.atomic():
        Sample.objects.bulk_create(rows, batch_size=5000)
    print(n / (time.perf_counter() - started))
"""


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True)


def push_samples(token: str, batches: int, errors: list) -> None:
    now = time.time()
    body = json.dumps(
        [
            {
                "name": "http_errors",
                "value": i,
                "timestamp": now,
                "labels": {
                    "environment": "production",
                    "version": "1.4.0",
                    "target": f"web-{i % 3}",
                    "route": "/cart",
                },
            }
            for i in range(SAMPLE_BATCH)
        ]
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    for _ in range(batches):
        conn.request(
            "POST",
            "/api/v1/applications/bench/metrics/",
            body,
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        if response.status != 201:
            errors.append(response.status)
    conn.close()


def main() -> int:
    if shutil.which("wrk") is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    database_url = f"postgres://postgres@127.0.0.1:5432/{DB}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": "redis://127.0.0.1:6379/10",
        "SLIPWAY_ENV": "production",
        "SECRET_KEY": "bench-only-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SLIPWAY_DATA_DIR": tempfile.mkdtemp(prefix="slipway-bench-"),
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/10",
    }
    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    python = sys.executable

    def shell(code: str) -> str:
        return (
            subprocess.run(
                [python, "manage.py", "shell", "-c", code],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )

    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    app_id, key, token = shell(SEED).split()
    server = start_uvicorn(python, env, PORT, os.environ.get("BENCH_INGEST_WORKERS", "1"))
    try:
        if shutil.which("wrk") is None:
            print("bench: monitoring.envelope_events_per_s skipped (install wrk: apt-get install wrk)")
        else:
            script = Path(tempfile.mkdtemp()) / "envelope.lua"
            script.write_text(LUA)
            wrk_env = {**os.environ, "SENTRY_KEY": key, "ENVELOPE_PATH": f"/api/{app_id}/envelope/"}
            url = f"http://127.0.0.1:{PORT}"
            subprocess.run(
                ["wrk", "-t1", "-c8", "-d2s", "-s", str(script), url], env=wrk_env, capture_output=True
            )
            out = subprocess.run(
                ["wrk", "-t2", "-c32", f"-d{DURATION}s", "--latency", "-s", str(script), url],
                env=wrk_env,
                capture_output=True,
                text=True,
            ).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            total = int(re.search(r"(\d+) requests in", out).group(1))
            refused = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            p99 = re.search(r"\s99%\s+([\d.]+\w+)", out).group(1)
            stored = int(
                shell(
                    "from django.db.models import Sum; from monitoring.models import ErrorGroup; "
                    "print(ErrorGroup.objects.aggregate(n=Sum('count'))['n'] or 0)"
                )
            )
            print(
                f"bench: monitoring.envelope_events_per_s {rps:.0f} events/s (c32, p99 {p99}, "
                f"{refused.group(1) if refused else 0} refused, {stored} stored of {total} + warm-up)"
            )
        errors: list = []
        threads = [
            threading.Thread(target=push_samples, args=(token, SAMPLE_BATCHES // 2, errors)) for _ in range(2)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        pushed = SAMPLE_BATCH * SAMPLE_BATCHES
        print(
            f"bench: monitoring.samples_per_s {pushed / elapsed:.0f} samples/s (batches of {SAMPLE_BATCH}, "
            f"2 clients, {len(errors)} refused)"
        )
    finally:
        server.terminate()
        server.wait(timeout=15)
    events_baseline = float(shell(BASELINE % ("events", BASELINE_EVENTS)))
    print(
        f"bench: monitoring.envelope_baseline_orm_per_event_per_s {events_baseline:.0f} events/s "
        "(one transaction per event through the ORM, in process, no HTTP)"
    )
    samples_baseline = float(shell(BASELINE % ("samples", 200_000)))
    print(
        f"bench: monitoring.samples_baseline_bulk_create_per_s {samples_baseline:.0f} samples/s "
        "(Sample.objects.bulk_create in process, no HTTP)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
