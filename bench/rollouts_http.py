"""Rollout figures end to end over real HTTP: `manage.py serve` (uvicorn + its in-process worker) and one asyncio
process simulating 1000 deploy agents that speak the real agent protocol (register, long-poll, report).

Each agent deploys instantly and reports healthy, so what is measured is Slipway's own overhead: the API call that
starts a release, the reconciler planning and dispatching each wave, agents' long-polls being answered, their
reports being stored. Versions whose name starts with `bad` fail their health check, for the revert figures.
Run on SQLite (the embedded default) and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _http import Connection

ROOT = Path(__file__).resolve().parent.parent
AGENTS = int(os.environ.get("BENCH_AGENTS", 1000))
REVERT_RUNS = int(os.environ.get("BENCH_REVERT_RUNS", 30))


def setup() -> None:
    """In a child process on the bench database: the application, environment, tokens. Prints the keys."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from environments.models import Environment, RegistrationToken
    from releases.models import ApiToken, Application, Artifact, Release
    from releases.permissions import Actor
    from releases.services import do_create_api_token

    call_command("migrate", verbosity=0)
    app = Application.objects.create(slug="bench", name="Bench")
    env = Environment.objects.create(application=app, name="production", position=1, strategy={"kind": "cautious"},
                                     step_timeout_seconds=120, heartbeat_timeout_seconds=120)
    v1 = Artifact.objects.create(application=app, version="1.0.0", commit="a" * 40, image="x", metadata={})
    Release.objects.create(application=app, environment=env, artifact=v1, kind="recorded", status="succeeded")
    env.current_artifact = v1
    env.save()
    RegistrationToken.objects.create(environment=env, token_hash=ApiToken.hash_key("slr_bench"))
    admin = User.objects.create_superuser("bench", password=None)
    _, key = do_create_api_token(Actor.system(), admin, name="bench", scopes=["admin"])
    print(json.dumps({"api_key": key, "registration_token": "slr_bench"}))


class Fleet:
    """AGENTS simulated agents in one event loop; each deploys at once and reports."""

    def __init__(self, url: str, registration_token: str) -> None:
        self.url, self.registration_token = url, registration_token
        self.received: dict[str, list[tuple[float, dict]]] = {}
        self.reported: list[tuple[float, str, dict]] = []
        self.tasks: list[asyncio.Task] = []
        self.changed = asyncio.Event()

    async def start(self) -> float:
        started = time.perf_counter()
        ready = [asyncio.get_running_loop().create_future() for _ in range(AGENTS)]
        self.tasks = [asyncio.create_task(self.agent(f"t{n:04d}", ready[n])) for n in range(AGENTS)]
        await asyncio.gather(*ready)
        return time.perf_counter() - started

    async def agent(self, name: str, ready: asyncio.Future) -> None:
        try:
            await self._agent(name, ready)
        except Exception as error:
            if not ready.done():
                ready.set_exception(error)  # the bench stops rather than waiting forever
            raise

    async def _agent(self, name: str, ready: asyncio.Future) -> None:
        conn = Connection(self.url)
        status, body = await conn.request("POST", "/api/v1/agent/register",
                                          {"registration_token": self.registration_token, "name": name})
        assert status == 201, (status, body)
        token = body["agent_token"]
        ready.set_result(None)
        while True:
            status, body = await conn.request("GET", "/api/v1/agent/work?wait=20", token=token)
            if status != 200:
                assert status == 204, (status, body)
                continue
            job = body["job"]
            self.received.setdefault(name, []).append((time.perf_counter(), job))
            healthy = not job["version"].startswith("bad")
            reported_at = time.perf_counter()
            status, answer = await conn.request("POST", f"/api/v1/agent/jobs/{job['id']}/result", {
                "status": "succeeded", "health": {"ok": healthy, "detail": "simulated"}, "version": job["version"],
                "output_tail": f"deployed {job['version']}\n"}, token=token)
            assert status == 200, (status, answer)
            self.reported.append((reported_at, name, job))
            self.changed.set()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def release(api: Connection, key: str, version: str) -> tuple[int, float]:
    started = time.perf_counter()
    status, body = await api.request("POST", "/api/v1/applications/bench/artifacts/", {
        "version": version, "commit": f"{abs(hash(version)):040x}"[:40], "image": f"bench:{version}"}, token=key)
    assert status in (200, 201), (status, body)
    status, body = await api.request("POST", "/api/v1/applications/bench/releases/",
                                     {"environment": "production", "version": version}, token=key)
    assert status == 201, (status, body)
    return body["id"], started


async def wait_release(api: Connection, key: str, release_id: int, fleet: Fleet | None = None, reports: int = 0,
                       timeout: float = 120) -> dict:
    """The release once finished; with a fleet, its status is first asked when `reports` jobs have been reported
    (asking all along would load the server with requests no agent makes)."""
    deadline = time.perf_counter() + timeout
    while fleet is not None and len(fleet.reported) < reports and time.perf_counter() < deadline:
        fleet.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fleet.changed.wait(), 1)
    while time.perf_counter() < deadline:
        status, body = await api.request("GET", f"/api/v1/applications/bench/releases/{release_id}/", token=key)
        if body["status"] in ("succeeded", "failed", "rejected", "cancelled"):
            return body
        await asyncio.sleep(0.01)
    raise TimeoutError(f"release {release_id} still {body['status']}")


async def measure(url: str, keys: dict, database: str) -> None:
    fleet = Fleet(url, keys["registration_token"])
    registered = await fleet.start()
    print(f"bench: rollouts.http_register_{AGENTS}_s.{database} {registered:.2f} s", flush=True)
    api = Connection(url)
    await asyncio.sleep(0.5)  # every agent is long-polling

    # 1. A cautious rollout onto every agent, each deploying instantly.
    release_id, started = await release(api, keys["api_key"], "2.0.0")
    body = await wait_release(api, keys["api_key"], release_id, fleet, AGENTS)
    total = time.perf_counter() - started
    assert body["status"] == "succeeded", body
    jobs = [job for got in fleet.received.values() for _, job in got if job["version"] == "2.0.0"]
    assert len(jobs) == AGENTS and len({j["id"] for j in jobs}) == AGENTS, "every target deployed exactly once"
    first = min(t for got in fleet.received.values() for t, job in got if job["version"] == "2.0.0")
    print(f"bench: rollouts.http_cautious_{AGENTS}_total_s.{database} {total:.2f} s")
    print(f"bench: rollouts.http_cautious_{AGENTS}_per_target_ms.{database} {total / AGENTS * 1000:.2f} ms")
    print(f"bench: rollouts.http_release_request_to_first_deploy_ms.{database} {(first - started) * 1000:.1f} ms",
          flush=True)

    # 2. A version failing its health check on the first target: report -> revert job at that agent.
    latencies = []
    for n in range(REVERT_RUNS):
        version = f"bad-{n}"
        release_id, _ = await release(api, keys["api_key"], version)
        body = await wait_release(api, keys["api_key"], release_id, fleet, len(fleet.reported) + 2)
        assert body["status"] == "failed", body
        (failed_at, name, _), = [r for r in fleet.reported if r[2]["version"] == version]
        reverts = [t for t, job in fleet.received[name] if job["action"] == "revert" and t > failed_at]
        latencies.append(min(reverts) - failed_at)
    q = statistics.quantiles(latencies, n=20)
    print(f"bench: rollouts.http_revert_dispatch_p50_ms.{database} {statistics.median(latencies) * 1000:.1f} ms")
    print(f"bench: rollouts.http_revert_dispatch_p95_ms.{database} {q[18] * 1000:.1f} ms", flush=True)
    await api.close()
    await fleet.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(database: str, env: dict) -> None:
    keys = json.loads(subprocess.run([sys.executable, __file__, "setup"], env=env, check=True, capture_output=True,
                                     text=True).stdout.strip().splitlines()[-1])
    port = free_port()
    log = open(Path(env["SLIPWAY_DATA_DIR"]) / f"serve-{database}.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        asyncio.run(measure(url, keys, database))
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> int:
    if sys.argv[1:] == ["setup"]:
        setup()
        return 0
    base = {**os.environ, "SLIPWAY_DEMO_FLEET": "0", "LOG_LEVEL": "ERROR", "PYTHONUNBUFFERED": "1"}
    base.pop("DATABASE_URL", None)
    databases = sys.argv[1:] or ["sqlite", "postgres"]
    if "sqlite" in databases:
        run("sqlite", {**base, "SLIPWAY_DATA_DIR": tempfile.mkdtemp(prefix="slipway-bench-http-")})
    if "postgres" in databases:
        db = "slipway_bench_http"
        for sql in (f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}"):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True)
        run("postgres", {**base, "SLIPWAY_DATA_DIR": tempfile.mkdtemp(prefix="slipway-bench-http-"),
                         "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
