"""OFREP bulk evaluation over HTTP against the production runtime (uvicorn, PostgreSQL, Redis).

100 flags with a country rule and a 50% rollout; wrk at concurrency 16 on 127.0.0.1 with a fresh
targeting key per request. The reference figure — unleash-server 8.2 on Node 22 with PostgreSQL doing the
same bulk evaluation at c16 on 2 cores, about 1,900 req/s with p99 about 19 ms — is quoted, not measured here.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _server import start_uvicorn  # bench/ is the scripts' directory

ROOT = Path(__file__).resolve().parent.parent
DB = os.environ.get("BENCH_DB", "slipway_bench")
PORT = int(os.environ.get("BENCH_PORT", 8765))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
REFERENCE_RPS = 1900
LUA = r"""
counter = 0
local token = os.getenv("SLIPWAY_TOKEN")
request = function()
  counter = counter + 1
  local body = '{"context":{"targetingKey":"user-' .. counter .. '-' .. math.random(1000000000) .. '","country":"' ..
    (counter % 2 == 0 and "FR" or "US") .. '"}}'
  return wrk.format("POST", "/ofrep/v1/evaluate/flags",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
"""


def main() -> int:
    if shutil.which("wrk") is None:
        if os.geteuid() == 0:
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        if shutil.which("wrk") is None:
            print("bench: flags.ofrep_bulk_rps skipped (install wrk: apt-get install wrk)")
            return 0
    database_url = f"postgres://postgres@127.0.0.1:5432/{DB}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "SLIPWAY_ENV": "production",
        "SECRET_KEY": "bench-only-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SLIPWAY_DATA_DIR": tempfile.mkdtemp(prefix="slipway-bench-"),
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": REDIS_URL,
        # One token at full speed is this bench's load, not a client to slow down: without this, a machine that
        # serves more than the per-token limit (6,000/s per process) counts 429s as throughput.
        "OFREP_RATE_LIMIT": os.environ.get("BENCH_OFREP_RATE_LIMIT", "off"),
    }
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB}"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {DB}"],
        check=True,
        capture_output=True,
    )
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    token = (
        subprocess.run(
            [python, "manage.py", "shell", "-c", SEED],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    server = start_uvicorn(python, env, PORT, "2")
    try:
        script = Path(tempfile.mkdtemp()) / "ofrep.lua"
        script.write_text(LUA)
        wrk_env = {**os.environ, "SLIPWAY_TOKEN": token}
        subprocess.run(
            ["wrk", "-t2", "-c16", "-d3s", "-s", str(script), f"http://127.0.0.1:{PORT}"],
            env=wrk_env,
            capture_output=True,
        )  # warm the snapshots and connections
        out = subprocess.run(
            ["wrk", "-t2", "-c16", "-d15s", "--latency", "-s", str(script), f"http://127.0.0.1:{PORT}"],
            env=wrk_env,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        server.terminate()
        server.wait(timeout=15)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print(f"bench: flags.ofrep_bulk_rps {rps:.0f} req/s")
    for pct, name in (("50", "p50"), ("99", "p99")):
        value, unit = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out).groups()
        ms = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
        print(f"bench: flags.ofrep_bulk_{name}_ms {ms:.1f} ms")
    print(f"bench: flags.ofrep_bulk_vs_unleash_reference {rps / REFERENCE_RPS:.2f} x")
    if errors:
        print(f"bench: flags.ofrep_bulk_errors {errors.group(1)} responses")
    return 0


SEED = """
from django.contrib.auth import get_user_model
from flags.services import do_create_flag, do_set_flag_state
from environments.services import do_create_environment
from releases.permissions import Actor
from releases.services import do_create_application, do_create_api_token, do_grant_role
system = Actor.system()
app = do_create_application(system, slug="bench", name="Bench")
env = do_create_environment(system, app, name="production", position=1)
for n in range(100):
    flag = do_create_flag(system, app, key=f"flag-{n}")
    do_set_flag_state(system, flag, env, enabled=True, default_variant="off",
                      rules=[{"conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}],
                              "variant": "on"}], rollout={"percentage": 50, "weights": {"on": 100}})
user = get_user_model().objects.create_user("bench-sdk")
do_grant_role(system, app, user, "viewer")  # a pinned token's user needs a role there
_, key = do_create_api_token(system, user, name="bench", scopes=["flags:read"], environment=env)
print(key)
"""

if __name__ == "__main__":
    sys.exit(main())
