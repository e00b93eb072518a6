"""Rollout figures end to end over real HTTP: `manage.py serve` (uvicorn + its in-process worker) and one asyncio
process simulating 1000 deploy agents that speak the real agent protocol (register, long-poll, report).

Each agent deploys instantly and reports healthy, so what is measured is Slipway's own overhead: the API call that
starts a release, the reconciler planning and dispatching each wave, agents' long-polls being answered, their
reports being stored. Versions whose name starts with `bad` fail their health check, for the revert figures.
Run on SQLite (the embedded default) and on PostgreSQL.

Figures, each `.sqlite` and `.postgres`:
- a 1000-target cautious rollout from CI's first request (registering the build, then asking for the release) to the
  release reported succeeded: the median (total and per target) and the slowest of BENCH_ROLLOUT_RUNS (5) runs, and
  the median time from that first request to the first deploy job at an agent; BENCH_TIMELINE=1 prints each wave's
  timing on stderr;
- unhealthy report leaving an agent -> revert job at that agent, p50 and p95 over BENCH_REVERT_RUNS (50) runs;
- the approval that completes a release's approvals (`POST .../releases/<id>/approvals/`, by a reviewer) -> first
  deploy job of that release at an agent, p50 and max over BENCH_PROMOTION_RUNS (5) full 1000-target rollouts;
- `POST .../artifacts/` registering a build in an environment with auto_promote -> first deploy job of that build at
  an agent, p50 and max over BENCH_PROMOTION_RUNS (5) full 1000-target rollouts.
Every rollout measured must succeed (asserted) before the next measurement starts. Beside the wall times, the server
process's CPU seconds per 1000-target rollout (`_server_cpu_s`): less swayed by other load on a shared machine.

BENCH_REVERT_RUNS=0 or BENCH_PROMOTION_RUNS=0 skip those parts; BENCH_DB names the PostgreSQL database and BENCH_PORT
the server's port (for two benches at once). `make bench BENCH="rollouts_http postgres"` runs PostgreSQL only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
ROLLOUT_RUNS = int(os.environ.get("BENCH_ROLLOUT_RUNS", 5))
REVERT_RUNS = int(os.environ.get("BENCH_REVERT_RUNS", 50))  # 0 skips the revert figures
PROMOTION_RUNS = int(os.environ.get("BENCH_PROMOTION_RUNS", 5))  # 0 skips the promotion figures


def setup() -> None:
    """In a child process on the bench database: the application, environment, tokens. Prints the keys."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from environments.models import Environment, RegistrationToken
    from releases.models import ApiToken, Application, Artifact, Release, Role
    from releases.permissions import Actor
    from releases.services import do_create_api_token, do_grant_role

    call_command("migrate", verbosity=0)
    app = Application.objects.create(slug="bench", name="Bench")
    env = Environment.objects.create(
        application=app,
        name="production",
        position=1,
        strategy={"kind": "cautious"},
        step_timeout_seconds=120,
        heartbeat_timeout_seconds=120,
    )
    v1 = Artifact.objects.create(application=app, version="1.0.0", commit="a" * 40, image="x", metadata={})
    Release.objects.create(application=app, environment=env, artifact=v1, kind="recorded", status="succeeded")
    env.current_artifact = v1
    env.save()
    RegistrationToken.objects.create(environment=env, token_hash=ApiToken.hash_key("slr_bench"))
    admin = User.objects.create_superuser("bench", password=None)
    _, key = do_create_api_token(Actor.system(), admin, name="bench", scopes=["admin"])
    # A reviewer for the approval figure: a developer (may approve batches without their own changes), whose token
    # can approve (approvals:write implies releases:read) and nothing else.
    reviewer = User.objects.create_user("reviewer", password=None)
    do_grant_role(Actor.system(), app, reviewer, Role.DEVELOPER)
    _, reviewer_key = do_create_api_token(
        Actor.system(), reviewer, name="bench-reviewer", scopes=["approvals:write"]
    )
    print(json.dumps({"api_key": key, "reviewer_key": reviewer_key, "registration_token": "slr_bench"}))


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
        status, body = await conn.request(
            "POST", "/api/v1/agent/register", {"registration_token": self.registration_token, "name": name}
        )
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
            status, answer = await conn.request(
                "POST",
                f"/api/v1/agent/jobs/{job['id']}/result",
                {
                    "status": "succeeded",
                    "health": {"ok": healthy, "detail": "simulated"},
                    "version": job["version"],
                    "output_tail": f"deployed {job['version']}\n",
                },
                token=token,
            )
            assert status == 200, (status, answer)
            self.reported.append((reported_at, name, job))
            self.changed.set()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def register(api: Connection, key: str, version: str, changes: bool = False) -> None:
    """CI registers a build; with `changes`, one change by an author who is no Slipway user, as CI sends them."""
    artifact = {"version": version, "commit": f"{abs(hash(version)):040x}"[:40], "image": f"bench:{version}"}
    if changes:
        artifact["changes"] = [
            {
                "sha": hashlib.sha1(version.encode()).hexdigest(),
                "author": "ci-bot",
                "title": f"Change for {version}",
            }
        ]
    status, body = await api.request("POST", "/api/v1/applications/bench/artifacts/", artifact, token=key)
    assert status in (200, 201), (status, body)


async def release(api: Connection, key: str, version: str, changes: bool = False) -> tuple[int, float]:
    started = time.perf_counter()
    await register(api, key, version, changes)
    status, body = await api.request(
        "POST",
        "/api/v1/applications/bench/releases/",
        {"environment": "production", "version": version},
        token=key,
    )
    assert status == 201, (status, body)
    return body["id"], started


async def wait_release(
    api: Connection,
    key: str,
    release_id: int,
    fleet: Fleet | None = None,
    reports: int = 0,
    timeout: float = 120,
) -> dict:
    """The release once finished; with a fleet, its status is first asked when `reports` jobs have been reported
    (asking all along would load the server with requests no agent makes)."""
    deadline = time.perf_counter() + timeout
    while fleet is not None and len(fleet.reported) < reports and time.perf_counter() < deadline:
        fleet.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fleet.changed.wait(), 1)
    while time.perf_counter() < deadline:
        status, body = await api.request(
            "GET", f"/api/v1/applications/bench/releases/{release_id}/", token=key
        )
        if body["status"] in ("succeeded", "failed", "rejected", "cancelled"):
            return body
        await asyncio.sleep(0.01)
    raise TimeoutError(f"release {release_id} still {body['status']}")


async def measure(url: str, keys: dict, database: str, server_pid: int) -> None:
    fleet = Fleet(url, keys["registration_token"])
    registered = await fleet.start()
    print(f"bench: rollouts.http_register_{AGENTS}_s.{database} {registered:.2f} s", flush=True)
    api = Connection(url)
    await asyncio.sleep(0.5)  # every agent is long-polling

    # 1. Cautious rollouts onto every agent, each deploying instantly: from CI's first request (registering the
    # build) to the release reported succeeded.
    totals, firsts = [], []
    cpu_before = cpu_seconds(server_pid)
    for n in range(ROLLOUT_RUNS):
        version = f"2.{n}.0"
        release_id, started = await release(api, keys["api_key"], version)
        body = await wait_release(api, keys["api_key"], release_id, fleet, len(fleet.reported) + AGENTS)
        totals.append(time.perf_counter() - started)
        assert body["status"] == "succeeded", body
        jobs = [(t, job) for got in fleet.received.values() for t, job in got if job["version"] == version]
        assert len(jobs) == AGENTS and len({j["id"] for _, j in jobs}) == AGENTS, (
            "every target deployed exactly once"
        )
        firsts.append(min(t for t, _ in jobs) - started)
        if os.environ.get("BENCH_TIMELINE"):
            timeline(fleet, version, started)
            print(f"  release seen succeeded: {totals[-1] * 1000:.0f} ms", file=sys.stderr)
    cpu = (cpu_seconds(server_pid) - cpu_before) / ROLLOUT_RUNS
    total = statistics.median(totals)
    print(f"bench: rollouts.http_cautious_{AGENTS}_total_s.{database} {total:.2f} s")
    print(f"bench: rollouts.http_cautious_{AGENTS}_total_max_s.{database} {max(totals):.2f} s")
    print(f"bench: rollouts.http_cautious_{AGENTS}_per_target_ms.{database} {total / AGENTS * 1000:.2f} ms")
    print(
        f"bench: rollouts.http_release_request_to_first_deploy_ms.{database} {statistics.median(firsts) * 1000:.1f} ms",
        flush=True,
    )
    if cpu:  # CPU, not wall time: less swayed by other load on the machine
        print(f"bench: rollouts.http_cautious_{AGENTS}_server_cpu_s.{database} {cpu:.2f} s", flush=True)

    # 2. A version failing its health check on the first target: report -> revert job at that agent.
    if REVERT_RUNS:
        await reverts(api, keys, fleet, database)
    if PROMOTION_RUNS:
        await promotions(api, keys, fleet, database)
    await api.close()
    await fleet.stop()


async def reverts(api: Connection, keys: dict, fleet: Fleet, database: str) -> None:
    latencies = []
    for n in range(REVERT_RUNS):
        version = f"bad-{n}"
        release_id, _ = await release(api, keys["api_key"], version)
        body = await wait_release(api, keys["api_key"], release_id, fleet, len(fleet.reported) + 2)
        assert body["status"] == "failed", body
        ((failed_at, name, _),) = [r for r in fleet.reported if r[2]["version"] == version]
        reverts = [t for t, job in fleet.received[name] if job["action"] == "revert" and t > failed_at]
        latencies.append(min(reverts) - failed_at)
    q = statistics.quantiles(latencies, n=20)
    print(
        f"bench: rollouts.http_revert_dispatch_p50_ms.{database} {statistics.median(latencies) * 1000:.1f} ms"
    )
    print(f"bench: rollouts.http_revert_dispatch_p95_ms.{database} {q[18] * 1000:.1f} ms", flush=True)


async def promotions(api: Connection, keys: dict, fleet: Fleet, database: str) -> None:
    # 3. Production needs one reviewer's approval: the approval that completes it -> first deploy job at an agent.
    await configure(
        api,
        keys["api_key"],
        requires_approval=True,
        approval_policy="reviewers",
        required_approvals=1,
        auto_promote=False,
    )
    latencies = []
    for n in range(PROMOTION_RUNS):
        version = f"3.{n}.0"
        release_id, _ = await release(api, keys["api_key"], version, changes=True)
        status, body = await api.request(
            "GET", f"/api/v1/applications/bench/releases/{release_id}/", token=keys["api_key"]
        )
        assert body["status"] == "pending_approval", body
        before = len(fleet.reported)
        started = time.perf_counter()
        status, body = await api.request(
            "POST",
            f"/api/v1/applications/bench/releases/{release_id}/approvals/",
            {"decision": "approve", "comment": "bench"},
            token=keys["reviewer_key"],
        )
        assert status == 201, (status, body)
        latencies.append(await rolled_out(api, keys["api_key"], fleet, release_id, version, before) - started)
    print_promotion("http_approval_to_first_deploy", latencies, database)

    # 4. Production takes every build at once (auto_promote, no approval, first in the pipeline): the artifact's
    # registration -> first deploy job of that artifact at an agent.
    await configure(api, keys["api_key"], requires_approval=False, auto_promote=True)
    latencies = []
    for n in range(PROMOTION_RUNS):
        version = f"4.{n}.0"
        before = len(fleet.reported)
        started = time.perf_counter()
        await register(api, keys["api_key"], version, changes=True)
        release_id = await release_of(api, keys["api_key"], version)
        latencies.append(await rolled_out(api, keys["api_key"], fleet, release_id, version, before) - started)
    print_promotion("http_autopromote_to_first_deploy", latencies, database)
    await configure(api, keys["api_key"], auto_promote=False)


def timeline(fleet: Fleet, version: str, started: float) -> None:
    """Per wave, on stderr: when its first job reached an agent and its last report left (ms since the request)."""
    received = sorted(
        (job["id"], t) for got in fleet.received.values() for t, job in got if job["version"] == version
    )
    reported = {job["id"]: t for t, _, job in fleet.reported if job["version"] == version}
    size, n, previous = 1, 0, None
    print(f"{version}:", file=sys.stderr)
    while n < len(received):
        wave = received[n : n + size]
        first, last = min(t for _, t in wave), max(reported[i] for i, _ in wave)
        gap = f" (+{(first - previous) * 1000:.0f} after the last wave's last report)" if previous else ""
        print(
            f"  wave of {len(wave)}: first job {(first - started) * 1000:.0f} ms{gap}, "
            f"last report {(last - started) * 1000:.0f} ms",
            file=sys.stderr,
        )
        n, size, previous = n + size, size * 2, last


async def configure(api: Connection, key: str, **settings) -> None:
    status, body = await api.request(
        "PATCH", "/api/v1/applications/bench/environments/production/", settings, token=key
    )
    assert status == 200, (status, body)
    assert all(body[name] == value for name, value in settings.items()), (settings, body)


async def release_of(api: Connection, key: str, version: str, timeout: float = 10) -> int:
    """The production release of `version` that auto-promotion asked for."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        status, page = await api.request(
            "GET", "/api/v1/applications/bench/releases/?environment=production", token=key
        )
        assert status == 200, (status, page)
        found = [r for r in page["results"] if r["version"] == version]
        if found:
            return found[0]["id"]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no release of {version} was auto-promoted")


async def rolled_out(
    api: Connection, key: str, fleet: Fleet, release_id: int, version: str, before: int
) -> float:
    """Waits for the release to succeed with every agent deployed exactly once; returns when its first deploy job
    reached an agent."""
    body = await wait_release(api, key, release_id, fleet, before + AGENTS)
    assert body["status"] == "succeeded", body
    jobs = [(t, job) for got in fleet.received.values() for t, job in got if job["version"] == version]
    assert len(jobs) == AGENTS and len({j["id"] for _, j in jobs}) == AGENTS, (
        "every target deployed exactly once"
    )
    assert all(job["action"] == "deploy" for _, job in jobs), "nothing reverted"
    return min(t for t, _ in jobs)


def print_promotion(name: str, latencies: list[float], database: str) -> None:
    print(f"bench: rollouts.{name}_ms.{database} {statistics.median(latencies) * 1000:.1f} ms")
    print(f"bench: rollouts.{name}_max_ms.{database} {max(latencies) * 1000:.1f} ms", flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(database: str, env: dict) -> None:
    prepared = subprocess.run([sys.executable, __file__, "setup"], env=env, capture_output=True, text=True)
    if prepared.returncode != 0:
        sys.stderr.write(prepared.stderr)
        raise SystemExit(f"setup of the {database} bench database failed (exit {prepared.returncode})")
    keys = json.loads(prepared.stdout.strip().splitlines()[-1])
    port = int(os.environ.get("BENCH_PORT") or free_port())
    log = open(Path(env["SLIPWAY_DATA_DIR"]) / f"serve-{database}.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        asyncio.run(measure(url, keys, database, server.pid))
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
        db = os.environ.get("BENCH_DB", "slipway_bench_http")
        for sql in (f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}"):
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True
            )
        run(
            "postgres",
            {
                **base,
                "SLIPWAY_DATA_DIR": tempfile.mkdtemp(prefix="slipway-bench-http-"),
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}",
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
