#!/usr/bin/env python
"""`make soak`: the production runtime under mixed load while processes are killed, then a count of what broke.

Starts, on PostgreSQL (database `slipway_soak`, recreated), Redis (db 5) and RabbitMQ (queue `slipway_soak`):
two web processes (`manage.py serve --no-embedded`, ports 18401 and 18402), two Celery workers and one beat. Then
for SOAK_SECONDS (180) it drives, over HTTP:

- CI registering a build of `svc` every few seconds (auto-promoted to `svc/ci`, command driver: the deploy and a
  3 s smoke test run in a worker — worker-run steps with a lease);
- releases of `shop/production` (a reviewer's approval each) onto 50 simulated agents — one asyncio task each,
  speaking the agent protocol to both web processes and moving to the other when one fails — each followed by a
  rollback to the version before;
- OFREP evaluations at SOAK_OFREP_RPS (500) per second from a process of its own;

and `kill -9`s one web process at a random moment (started again on its port 3 s later, as a process manager
would) and one worker's whole process group while it runs a smoke step (a replacement starts at once). When the
time is up, releases still under way are given SOAK_SETTLE_SECONDS (120) to finish. Then it prints:

- requests answered 5xx (by the surviving processes, and by the killed one), and requests whose connection the
  kill cut (no answer at all);
- steps lost (still open at the end, or a target of a succeeded release with no successful deploy) and steps run
  twice (a job handed to an agent twice; a worker-run command that completed twice);
- releases whose records disagree with the hosts (targets whose recorded version is not what the simulated host
  runs; environments whose current version is not what their hosts run).

Exit status 1 when a figure that must be 0 is not.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _http import Connection  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", 180))
SETTLE = float(os.environ.get("SOAK_SETTLE_SECONDS", 120))
OFREP_RPS = int(os.environ.get("SOAK_OFREP_RPS", 500))
DB = os.environ.get("SOAK_DB", "slipway_soak")
PORTS = (18401, 18402)
AGENTS = 50
QUEUE = "slipway_soak"
PY = sys.executable
DATA = Path(tempfile.mkdtemp(prefix="slipway-soak-"))
HOST_LOG = DATA / "svc-host.log"  # what the command driver's "host" did: deploy/smoke start and end lines
DEPLOY = f'echo "deploy start $SLIPWAY_VERSION $$" >> {HOST_LOG}; sleep 0.5; echo "deploy end $SLIPWAY_VERSION $$" >> {HOST_LOG}'
SMOKE = f'echo "smoke start $SLIPWAY_VERSION $$" >> {HOST_LOG}; sleep 3; echo "smoke end $SLIPWAY_VERSION $$" >> {HOST_LOG}'

ENV = {
    **os.environ,
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/5",
    "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "CELERY_QUEUE": QUEUE,
    "CHANNEL_PREFIX": "soak",
    "SLIPWAY_ENV": "production",
    "SECRET_KEY": "soak-only-" + "x" * 40,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SLIPWAY_DATA_DIR": str(DATA),
    "LOG_LEVEL": "WARNING",
    "WEB_PROCESSES": "2",
    "API_RATE_LIMIT": "off",  # CI and the status polls of this one token are not what is soaked
    "SLIPWAY_DEMO_FLEET": "0",
    "PYTHONUNBUFFERED": "1",
}

SEED = """
import json
from django.contrib.auth import get_user_model
from environments.models import RegistrationToken
from environments.services import do_create_environment
from flags.services import do_create_flag, do_set_flag_state
from releases.models import ApiToken
from releases.permissions import Actor
from releases.services import do_create_api_token, do_create_application, do_grant_role

system, User = Actor.system(), get_user_model()
admin = User.objects.create_superuser("soak", password=None)
_, key = do_create_api_token(system, admin, name="soak-ci", scopes=["admin"])
shop = do_create_application(system, slug="shop", name="Shop")
prod = do_create_environment(system, shop, name="production", position=1, requires_approval=True,
                             approval_policy="reviewers", required_approvals=1, strategy={"kind": "cautious"})
RegistrationToken.objects.create(environment=prod, token_hash=ApiToken.hash_key("slr_soak"))
reviewer = User.objects.create_user("reviewer", password=None)
do_grant_role(system, shop, reviewer, "developer")
_, reviewer_key = do_create_api_token(system, reviewer, name="soak-reviewer", scopes=["approvals:write"])
svc = do_create_application(system, slug="svc", name="Service")
do_create_environment(system, svc, name="ci", position=1, auto_promote=True, driver="command",
                      deploy_command=DEPLOY_COMMAND, smoke_test_command=SMOKE_COMMAND)
flag = do_create_flag(system, shop, key="checkout")
do_set_flag_state(system, flag, prod, enabled=True, default_variant="off",
                  rollout={"percentage": 50, "weights": {"on": 100}})
sdk = User.objects.create_user("soak-sdk")
do_grant_role(system, shop, sdk, "viewer")
_, sdk_key = do_create_api_token(system, sdk, name="soak-sdk", scopes=["flags:read"], environment=prod)
print(json.dumps({"key": key, "reviewer": reviewer_key, "sdk": sdk_key}))
""".replace("DEPLOY_COMMAND", repr(DEPLOY)).replace("SMOKE_COMMAND", repr(SMOKE))


# --- processes ----------------------------------------------------------------------------------------------


class Fleet:
    """The Slipway processes this soak started (and only those: it stops them by their own ids)."""

    def __init__(self) -> None:
        self.web: dict[int, subprocess.Popen] = {}
        self.workers: list[subprocess.Popen] = []
        self.beat: subprocess.Popen | None = None
        self.killed_web: int | None = None
        self.events: list[str] = []
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:6.1f} s  {text}")
        print(f"soak: {self.events[-1]}", flush=True)

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        log = (DATA / f"{name}.log").open("ab")
        # Each in a process group of its own: a worker is killed with its pool children, as a lost host would be.
        return subprocess.Popen(
            args, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_web(self, port: int) -> None:
        self.web[port] = self._spawn(
            [PY, "manage.py", "serve", "--no-embedded", "--host", "127.0.0.1", "--port", str(port)],
            f"web-{port}",
        )

    def start_worker(self) -> subprocess.Popen:
        worker = self._spawn(
            [
                PY,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--concurrency",
                "2",
                "-n",
                f"soak{len(self.workers)}@%h",
            ],
            f"worker-{len(self.workers)}",
        )
        self.workers.append(worker)
        return worker

    def start_beat(self) -> None:
        self.beat = self._spawn(
            [PY, "-m", "celery", "-A", "config", "beat", "-s", str(DATA / "beat")], "beat"
        )

    def wait_up(self, port: int, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                return
            time.sleep(0.2)
        raise SystemExit(f"web process on {port} did not come up: see {DATA}/web-{port}.log")

    def stop_all(self) -> None:
        processes = [*self.web.values(), *self.workers, *([self.beat] if self.beat else [])]
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- what the clients saw -----------------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.answers: collections.Counter = collections.Counter()  # (port, status class) -> count
        self.cut: collections.Counter = collections.Counter()  # port -> requests without an answer

    def answered(self, port: int, status: int) -> None:
        self.answers[(port, "5xx" if status >= 500 else "ok")] += 1

    def failed(self, port: int) -> None:
        self.cut[port] += 1


NETWORK_ERRORS = (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError)


class Client:
    """Requests to either web process: moves to the other one when its connection fails."""

    def __init__(self, tally: Tally, first: int = 0) -> None:
        self.tally, self.index = tally, first
        self.conn = Connection(f"http://127.0.0.1:{PORTS[self.index]}")

    async def request(self, method: str, path: str, body=None, token=None, timeout: float = 30):
        for _ in range(20):
            port = PORTS[self.index]
            try:
                status, answer = await self.conn.request(method, path, body, token=token, timeout=timeout)
            except NETWORK_ERRORS:
                self.tally.failed(port)
                await self.conn.close()
                self.index = 1 - self.index
                self.conn = Connection(f"http://127.0.0.1:{PORTS[self.index]}")
                await asyncio.sleep(0.2)
                continue
            self.tally.answered(port, status)
            if status >= 500:
                await asyncio.sleep(0.5)
                continue
            return status, answer
        raise RuntimeError(f"{method} {path}: no web process answered")


# --- the load -----------------------------------------------------------------------------------------------


class Hosts:
    """50 simulated agents: each remembers what its host runs and every job id it was handed."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.runs: dict[str, str | None] = {}
        self.jobs: collections.Counter = collections.Counter()
        self.stop = asyncio.Event()

    async def agent(self, n: int) -> None:
        name = f"host-{n:02d}"
        client = Client(self.tally, first=n % 2)
        status, body = await client.request(
            "POST", "/api/v1/agent/register", {"registration_token": "slr_soak", "name": name}
        )
        assert status == 201, (status, body)
        token = body["agent_token"]
        self.runs[name] = None
        while not self.stop.is_set():
            status, body = await client.request("GET", "/api/v1/agent/work?wait=5", token=token, timeout=30)
            if status != 200 or not body or not body.get("job"):
                continue
            job = body["job"]
            self.jobs[job["id"]] += 1
            await asyncio.sleep(random.uniform(0.05, 0.6))  # the deploy
            self.runs[name] = job["version"]
            await client.request(
                "POST",
                f"/api/v1/agent/jobs/{job['id']}/result",
                {
                    "status": "succeeded",
                    "health": {"ok": True, "detail": "simulated"},
                    "version": job["version"],
                    "output_tail": f"{job['action']} {job['version']}\n",
                },
                token=token,
            )


async def wait_release(client: Client, key: str, app: str, release_id: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        _, body = await client.request("GET", f"/api/v1/applications/{app}/releases/{release_id}/", token=key)
        status = body["status"]
        if status in ("succeeded", "failed", "cancelled", "rejected", "superseded", "rolled_back"):
            return status
        await asyncio.sleep(0.5)
    return status


def artifact(version: str) -> dict:
    digest = hashlib.sha1(version.encode()).hexdigest()
    return {
        "version": version,
        "commit": digest,
        "image": f"registry.example.com/soak:{version}",
        "changes": [{"sha": digest, "author": "ci-bot", "title": f"Change for {version}"}],
    }


async def shop_cycles(keys: dict, tally: Tally, until: float, log: list[str]) -> None:
    """Release (approved by the reviewer) onto the 50 hosts, then roll back to the version before; again."""
    client = Client(tally)
    n = 0
    previous = None
    while time.monotonic() < until:
        version = f"1.{n}.0"
        status, body = await client.request(
            "POST", "/api/v1/applications/shop/artifacts/", artifact(version), token=keys["key"]
        )
        assert status in (200, 201), (status, body)
        status, body = await client.request(
            "POST",
            "/api/v1/applications/shop/releases/",
            {"environment": "production", "version": version},
            token=keys["key"],
        )
        assert status == 201, (status, body)
        release_id = body["id"]
        status, body = await client.request(
            "POST",
            f"/api/v1/applications/shop/releases/{release_id}/approvals/",
            {"decision": "approve", "comment": "soak"},
            token=keys["reviewer"],
        )
        assert status == 201, (status, body)
        outcome = await wait_release(client, keys["key"], "shop", release_id, 120)
        log.append(f"shop {version}: {outcome}")
        if outcome == "succeeded" and previous and time.monotonic() < until:
            status, body = await client.request(
                "POST",
                "/api/v1/applications/shop/environments/production/rollback/",
                {"version": previous, "reason": "soak"},
                token=keys["key"],
            )
            assert status == 201, (status, body)
            outcome = await wait_release(client, keys["key"], "shop", body["id"], 120)
            log.append(f"shop rollback to {previous}: {outcome}")
        previous = version if outcome == "succeeded" else previous
        n += 1


async def ci_builds(keys: dict, tally: Tally, until: float, log: list[str]) -> None:
    client = Client(tally, first=1)
    n = 0
    while time.monotonic() < until:
        status, body = await client.request(
            "POST", "/api/v1/applications/svc/artifacts/", artifact(f"5.{n}.0"), token=keys["key"]
        )
        assert status in (200, 201), (status, body)
        n += 1
        await asyncio.sleep(4)
    log.append(f"svc: {n} builds registered")


async def chaos(fleet: Fleet, until: float) -> None:
    """kill -9 one web process at a random moment, and one worker while it runs a smoke step."""
    begin = time.monotonic()
    span = until - begin
    web_at = begin + random.uniform(0.2, 0.6) * span
    worker_after = begin + random.uniform(0.3, 0.6) * span
    web_done = worker_done = False
    while not (web_done and worker_done) and time.monotonic() < until + 10:
        now = time.monotonic()
        if not web_done and now >= web_at:
            port = random.choice(PORTS)
            fleet.web[port].kill()  # SIGKILL to the web process alone
            fleet.web[port].wait()
            fleet.killed_web = port
            fleet.note(f"kill -9 web process :{port}")
            await asyncio.sleep(3)
            fleet.start_web(port)
            await asyncio.to_thread(fleet.wait_up, port)
            fleet.note(f"web process :{port} started again")
            web_done = True
        if not worker_done and now >= worker_after:
            victim = running_smoke(fleet)
            if victim is not None:
                worker, command = victim
                # The worker's host is lost: the worker, its pool and the command it runs (its own session).
                for group in (worker.pid, command):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(group, signal.SIGKILL)
                worker.wait()
                fleet.note(
                    f"kill -9 worker {worker.pid}, its pool and the smoke command it runs (group {command})"
                )
                fleet.start_worker()
                fleet.note("replacement worker started")
                worker_done = True
        await asyncio.sleep(0.1)


def running_smoke(fleet: Fleet) -> tuple[subprocess.Popen, int] | None:
    """The worker running a smoke command now (the command's parent chain leads to it), with that command's pid."""
    if not HOST_LOG.exists():
        return None
    started, ended = set(), set()
    for line in HOST_LOG.read_text().splitlines():
        kind, what, _, pid = line.split()
        if kind == "smoke":
            (started if what == "start" else ended).add(int(pid))
    workers = {w.pid: w for w in fleet.workers if w.poll() is None}
    for pid in started - ended:
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            continue
        ancestor = pid
        while ancestor > 1:
            with contextlib.suppress(OSError):
                if os.getpgid(ancestor) in workers:  # the worker or one of its pool children
                    return workers[os.getpgid(ancestor)], group
            try:
                ancestor = int(Path(f"/proc/{ancestor}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break
    return None


def ofrep_main(sdk_key: str, seconds: float, out: str) -> None:
    """In a process of its own: OFREP evaluations at OFREP_RPS, spread over both web processes."""
    tally = Tally()
    sent = [0]

    async def lane(i: int, lanes: int, until: float) -> None:
        client = Client(tally, first=i % 2)
        interval = lanes / OFREP_RPS
        next_at = time.monotonic() + i * interval / lanes
        n = 0
        while time.monotonic() < until:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - 1)  # catch up at most a second's backlog
            n += 1
            with contextlib.suppress(RuntimeError):
                await client.request(
                    "POST",
                    "/ofrep/v1/evaluate/flags/checkout",
                    {"context": {"targetingKey": f"user-{i}-{n}"}},
                    token=sdk_key,
                    timeout=10,
                )
            sent[0] += 1

    async def run() -> None:
        lanes = max(1, OFREP_RPS // 20)
        until = time.monotonic() + seconds
        await asyncio.gather(*(lane(i, lanes, until) for i in range(lanes)))

    started = time.monotonic()
    asyncio.run(run())
    Path(out).write_text(
        json.dumps(
            {
                "sent": sent[0],
                "seconds": time.monotonic() - started,
                "answers": [[p, k, c] for (p, k), c in tally.answers.items()],
                "cut": list(tally.cut.items()),
            }
        )
    )


# --- the check ----------------------------------------------------------------------------------------------


def verify(hosts: Hosts) -> dict:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DB}") as db:
        rows = db.execute

        unfinished = rows(
            "SELECT count(*) FROM releases_release WHERE status IN ('approved', 'queued', 'deploying')"
        ).fetchone()[0]
        open_steps = rows(
            "SELECT count(*) FROM releases_rolloutstep WHERE status IN ('pending', 'running')"
        ).fetchone()[0]
        # Each target of a succeeded release has a successful deploy of it.
        missing = rows(
            """SELECT count(*) FROM releases_release r
               JOIN releases_rollout o ON o.release_id = r.id
               JOIN environments_target t ON t.environment_id = r.environment_id
               WHERE r.status IN ('succeeded', 'rolled_back') AND t.registered_at < r.started_at
                 AND NOT EXISTS (SELECT 1 FROM releases_rolloutstep s WHERE s.rollout_id = o.id
                                 AND s.target_id = t.id AND s.action = 'deploy' AND s.status = 'succeeded')"""
        ).fetchone()[0]
        recorded = dict(
            rows(
                """SELECT t.name, t.version FROM environments_target t
                   JOIN environments_environment e ON e.id = t.environment_id WHERE e.name = 'production'"""
            ).fetchall()
        )
        current = dict(
            rows(
                """SELECT a.slug, v.version FROM environments_environment e
                   JOIN releases_application a ON a.id = e.application_id
                   LEFT JOIN releases_artifact v ON v.id = e.current_artifact_id"""
            ).fetchall()
        )
        retries = rows(
            "SELECT count(*) FROM releases_rolloutstep WHERE runs_on_server AND attempts > 1"
        ).fetchone()[0]
        outcomes = rows(
            """SELECT a.slug, r.kind, r.status, count(*) FROM releases_release r
               JOIN releases_application a ON a.id = r.application_id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
        ).fetchall()
    ends = collections.Counter()
    starts = collections.Counter()
    last_deploy = None
    for line in HOST_LOG.read_text().splitlines() if HOST_LOG.exists() else ():
        kind, what, version, _ = line.split()
        (ends if what == "end" else starts)[(kind, version)] += 1
        if kind == "deploy" and what == "end":
            last_deploy = version
    wrong_targets = sorted(n for n, v in hosts.runs.items() if recorded.get(n) != v)
    shop_versions = set(hosts.runs.values())
    wrong_envs = []
    if len(shop_versions) != 1 or current.get("shop") not in shop_versions:
        wrong_envs.append(
            f"shop/production records {current.get('shop')}, hosts run {sorted(map(str, shop_versions))}"
        )
    if last_deploy is not None and current.get("svc") != last_deploy:
        wrong_envs.append(f"svc/ci records {current.get('svc')}, its host last deployed {last_deploy}")
    return {
        "unfinished": unfinished,
        "lost": open_steps + missing,
        "twice_agents": sum(1 for c in hosts.jobs.values() if c > 1),
        "twice_worker": sum(1 for c in ends.values() if c > 1),
        "restarted": sum(1 for k, c in starts.items() if c > ends.get(k, 0)),
        "lease_takeovers": retries,
        "wrong_targets": wrong_targets,
        "wrong_envs": wrong_envs,
        "outcomes": outcomes,
        "worker_steps": sum(ends.values()),
        "agent_jobs": sum(hosts.jobs.values()),
    }


async def load(keys: dict, fleet: Fleet) -> tuple[Tally, Hosts, list[str]]:
    tally, log = Tally(), []
    hosts = Hosts(tally)
    agents = [asyncio.create_task(hosts.agent(n)) for n in range(AGENTS)]
    while len(hosts.runs) < AGENTS:
        await asyncio.sleep(0.2)
    fleet.note(f"{AGENTS} agents registered; load starts")
    until = time.monotonic() + SECONDS
    await asyncio.gather(
        shop_cycles(keys, tally, until, log), ci_builds(keys, tally, until, log), chaos(fleet, until)
    )
    fleet.note("load over; waiting for releases under way to finish")
    client = Client(tally)
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        busy = 0
        for app in ("shop", "svc"):
            _, page = await client.request(
                "GET", f"/api/v1/applications/{app}/releases/?page_size=100", token=keys["key"]
            )
            busy += sum(r["status"] in ("approved", "queued", "deploying") for r in page["results"])
        if not busy:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(2)  # the last reports' effects
    hosts.stop.set()
    for task in agents:
        task.cancel()
    await asyncio.gather(*agents, return_exceptions=True)
    return tally, hosts, log


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "ofrep":
        ofrep_main(sys.argv[2], float(sys.argv[3]), sys.argv[4])
        return 0
    print(f"soak: {SECONDS:.0f} s on {DB}, Redis db 5, RabbitMQ queue {QUEUE}; logs in {DATA}", flush=True)
    for sql in (f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", f"CREATE DATABASE {DB}"):
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True
        )
    subprocess.run(
        [PY, "-c", f"import redis; redis.Redis.from_url({ENV['REDIS_URL']!r}).flushdb()"], check=True
    )
    subprocess.run(
        [
            PY,
            "-c",
            f"import kombu; c = kombu.Connection({ENV['CELERY_BROKER_URL']!r}); "
            f"c.SimpleQueue({QUEUE!r}).clear() if True else None; c.release()",
        ],
        check=False,
        capture_output=True,
    )
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=ENV, check=True)
    seeded = subprocess.run(
        [PY, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=ENV, check=True, capture_output=True, text=True
    )
    keys = json.loads(seeded.stdout.strip().splitlines()[-1])

    fleet = Fleet()
    ofrep = None
    try:
        for port in PORTS:
            fleet.start_web(port)
        fleet.start_worker()
        fleet.start_worker()
        fleet.start_beat()
        for port in PORTS:
            fleet.wait_up(port)
        fleet.note("2 web processes, 2 workers and beat up")
        ofrep_out = DATA / "ofrep.json"
        ofrep = subprocess.Popen(
            [PY, __file__, "ofrep", keys["sdk"], str(SECONDS + 5), str(ofrep_out)], cwd=ROOT
        )
        tally, hosts, log = asyncio.run(load(keys, fleet))
        ofrep.wait(timeout=SETTLE + 60)
        figures = verify(hosts)
    finally:
        if ofrep is not None and ofrep.poll() is None:
            ofrep.kill()
        fleet.stop_all()

    of = json.loads(ofrep_out.read_text())
    answers = collections.Counter({(p, k): c for (p, k), c in tally.answers.items()})
    for p, k, c in of["answers"]:
        answers[(p, k)] += c
    cut = collections.Counter(tally.cut)
    for p, c in of["cut"]:
        cut[p] += c
    killed = fleet.killed_web
    total = sum(answers.values())
    five = sum(c for (p, k), c in answers.items() if k == "5xx")
    five_killed = sum(c for (p, k), c in answers.items() if k == "5xx" and p == killed)
    print("\nsoak: what happened")
    for event in fleet.events:
        print(f"  {event}")
    for line in log:
        print(f"  {line}")
    print(
        "  releases: "
        + ", ".join(f"{app} {kind} {status} {n}" for app, kind, status, n in figures["outcomes"])
    )
    print(
        f"  OFREP: {of['sent']} evaluations in {of['seconds']:.0f} s = {of['sent'] / of['seconds']:.0f} req/s (goal {OFREP_RPS})"
    )
    print(f"  agent jobs {figures['agent_jobs']}, worker-run commands completed {figures['worker_steps']}")
    print("\nsoak: figures")
    print(f"  requests answered: {total}")
    print(
        f"  requests answered 5xx: {five} (by the killed process :{killed}: {five_killed}; by the others: {five - five_killed})"
    )
    print(
        f"  requests to the killed process left without an answer (cut, or refused while it was down; the client moved to the other process): {sum(cut.values())} "
        f"({', '.join(f':{p} {c}' for p, c in sorted(cut.items()))})"
    )
    print(f"  steps lost: {figures['lost']}")
    print(
        f"  steps run twice: {figures['twice_agents'] + figures['twice_worker']} "
        f"(agent jobs handed out twice: {figures['twice_agents']}; worker-run commands completed twice: {figures['twice_worker']})"
    )
    print(
        f"  worker-run steps started again after their worker died (lease taken over): {figures['lease_takeovers']} "
        f"(commands started but never completed: {figures['restarted']})"
    )
    print(f"  releases not finished at the end: {figures['unfinished']}")
    disagree = len(figures["wrong_targets"]) + len(figures["wrong_envs"])
    print(
        f"  records disagreeing with the hosts: {disagree} "
        f"(targets {figures['wrong_targets'][:5]}, environments {figures['wrong_envs']})"
    )
    bad = (
        (five - five_killed)
        or figures["lost"]
        or figures["twice_agents"]
        or figures["twice_worker"]
        or disagree
        or figures["unfinished"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
